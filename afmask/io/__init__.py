"""afmask.io: audio, ArrayFire saveArray files, af::toString dumps and named-array files (NumPy in, NumPy out)."""

from afmask.io.arrayfire_file import AfFileError, ArrayInfo, list_arrays, read_array, read_arrays, save_array
from afmask.io.arrays import load_arrays, save_arrays
from afmask.io.audio import AudioError, demo_audio, load_audio, write_audio
from afmask.io.text_dump import AfTextError, read_af_string

__all__ = [
    "AfFileError",
    "AfTextError",
    "ArrayInfo",
    "AudioError",
    "demo_audio",
    "list_arrays",
    "load_arrays",
    "load_audio",
    "read_af_string",
    "read_array",
    "read_arrays",
    "save_array",
    "save_arrays",
    "write_audio",
]

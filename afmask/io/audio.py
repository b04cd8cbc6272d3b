"""Audio in and out: 16 kHz mono float32 samples in [-1, 1), as libsndfile decodes them."""

from __future__ import annotations

import math
import os
import struct
import warnings

import numpy as np

try:
    import soundfile as sf
except (ImportError, OSError) as _exc:  # OSError: the package is there but libsndfile is not
    # afmask still runs (everything but audio files) where soundfile is missing, e.g. on a bare GPU machine
    sf = None
    _SOUNDFILE_MISSING = str(_exc)

from afmask.io.files import atomic_write

__all__ = ["AudioError", "AudioWarning", "CLIP_FRACTION", "CLIP_LEVEL", "MIN_SAMPLES", "SAMPLE_RATE", "load_audio", "write_audio"]

#: The rate the wav2letter model was trained on.
SAMPLE_RATE = 16000
#: One 25 ms feature frame at 16 kHz: anything shorter gives no features at all.
MIN_SAMPLES = 400
#: A sample counts as clipped at or beyond the largest 16-bit value, 32767/32768.
CLIP_LEVEL = 32767 / 32768
#: Audio with more than this fraction (0.1 %) of clipped samples is refused unless allowed.
CLIP_FRACTION = 0.001

_LARGEST_BELOW_ONE = np.nextafter(np.float32(1), np.float32(0))
_FORMATS = {".flac": "FLAC", ".wav": "WAV"}
_CONVERT = "convert it, e.g. `sox IN -r 16000 -c 1 OUT.flac`"


class AudioError(ValueError):
    """Audio that afmask cannot use as it is; the message names the file and the fix."""

    def __init__(self, filename: str | os.PathLike, message: str):
        self.filename = os.fspath(filename)
        super().__init__(f"{self.filename}: {message}")


def _soundfile():
    """The soundfile module, or an ImportError saying how to install it."""
    if sf is None:
        raise ImportError(f"reading and writing audio needs soundfile and libsndfile ({_SOUNDFILE_MISSING}); "
                          "`pip install soundfile`")
    return sf


class AudioWarning(UserWarning):
    """Audio that afmask uses but that is probably not what the user meant (truncated, near-silent, too short)."""


def wav_header_frames(path: str) -> int | None:
    """Frames a RIFF/WAVE file's header declares (its data chunk size / block size); None if not a plain RIFF WAV."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None  # RF64, RIFX, or not WAV: libsndfile's own count is all there is
            block = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(min(size, 16))
                    if len(fmt) < 14:
                        return None
                    block = struct.unpack("<H", fmt[12:14])[0]
                    f.seek(size - len(fmt) + (size & 1), os.SEEK_CUR)
                elif cid == b"data":
                    # 0 and 0xFFFFFFFF: a streamed file whose writer never knew the size
                    if not block or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block
                else:
                    f.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to an even size
    except OSError:
        return None


def _check_complete(path: str, frames_read: int) -> None:
    """Warn (AudioWarning, with the counts) when the file holds fewer frames than its header says."""
    declared = wav_header_frames(path)
    if declared is None:
        try:
            declared = sf.info(path).frames
        except (sf.SoundFileError, RuntimeError):
            return
    if declared > frames_read:
        warnings.warn(f"{path}: the file is truncated: its header says {declared} frames, only {frames_read} are "
                      f"present ({100 * frames_read / declared:.1f} %); using those {frames_read} (copy or export "
                      "the file again if that is not the whole recording)", AudioWarning, stacklevel=3)


def _read(path: str) -> tuple[np.ndarray, int]:
    if not os.path.exists(path):
        raise AudioError(path, "no such file; check the path")
    if os.path.isdir(path):
        raise AudioError(path, "is a folder, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(path, f"file is empty (0 bytes); {_CONVERT}")
    sf = _soundfile()
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as e:
        raise AudioError(path, f"libsndfile cannot read it ({e}); use a WAV or FLAC file or {_CONVERT}") from None
    except MemoryError:
        raise AudioError(path, f"too large to decode in memory ({os.path.getsize(path) / 1e9:.1f} GB on disk); "
                               "cut it into shorter utterances") from None
    _check_complete(path, data.shape[0])
    return data, rate


def _pick_channel(data: np.ndarray, path: str, channel: int | None) -> np.ndarray:
    n = data.shape[1]
    if channel is None:
        if n != 1:
            raise AudioError(path, f"has {n} channels; afmask needs mono: choose one with channel=0..{n - 1} "
                                   f"(CLI: --channel) or {_CONVERT}")
        channel = 0
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < n:
        raise AudioError(path, f"channel={channel!r} is not one of its {n} channel(s) 0..{n - 1}")
    return np.ascontiguousarray(data[:, channel])


def _resample(x: np.ndarray, rate: int) -> np.ndarray:
    from scipy.signal import resample_poly  # scipy is slow to import; only resampling needs it

    g = math.gcd(SAMPLE_RATE, rate)
    y = resample_poly(x.astype(np.float64), SAMPLE_RATE // g, rate // g)
    # The anti-aliasing filter can overshoot full scale; keep the promised [-1, 1) range.
    return np.clip(y, -1.0, _LARGEST_BELOW_ONE).astype(np.float32)


def load_audio(path: str | os.PathLike, *, resample: bool = False, channel: int | None = None,
               allow_clipping: bool = False) -> np.ndarray:
    """Load 16 kHz mono audio as (N,) float32 in [-1, 1), refusing what would give wrong features."""
    path = os.fspath(path)
    data, rate = _read(path)
    if data.shape[0] == 0:
        raise AudioError(path, f"contains no samples; afmask needs at least {MIN_SAMPLES} (25 ms at 16 kHz)")
    x = _pick_channel(data, path, channel)
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise AudioError(path, f"{bad} samples are NaN or infinite (first at sample "
                               f"{int(np.argmin(np.isfinite(x)))}); repair or re-export the audio")
    if rate != SAMPLE_RATE and not resample:
        raise AudioError(path, f"sample rate is {rate} Hz; afmask needs {SAMPLE_RATE} Hz: pass resample=True "
                               f"(CLI: --resample) or {_CONVERT}")
    clipped = int(np.count_nonzero(np.abs(x) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION * x.size and not allow_clipping:
        raise AudioError(path, f"{clipped} of {x.size} samples ({100 * clipped / x.size:.2f} %) are at or beyond "
                               f"full scale (limit {100 * CLIP_FRACTION:g} %): the audio is clipped; "
                               f"use a cleaner recording or pass allow_clipping=True (CLI: --allow-clipping)")
    if rate != SAMPLE_RATE:
        x = _resample(x, rate)
    elif np.any(x > _LARGEST_BELOW_ONE) or np.any(x < -1.0):
        x = np.clip(x, -1.0, _LARGEST_BELOW_ONE)  # float files may exceed full scale (allowed as clipping)
    if x.size < MIN_SAMPLES:
        raise AudioError(path, f"has {x.size} samples at {SAMPLE_RATE} Hz ({1000 * x.size / SAMPLE_RATE:.1f} ms); "
                               f"afmask needs at least {MIN_SAMPLES} (one 25 ms frame): use a longer recording")
    return x


def write_audio(path: str | os.PathLike, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write (N,) float samples in [-1, 1] as 16-bit FLAC or WAV (by extension), whole or not at all."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _FORMATS:
        raise ValueError(f"{path}: cannot tell the audio format from {ext!r}; use .flac or .wav")
    x = np.asarray(samples)
    if x.ndim != 1 or x.dtype.kind != "f":
        raise ValueError(f"{path}: samples must be a 1-D float array (mono), got {x.dtype} of shape {x.shape}")
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"{path}: rate must be a positive int (Hz), got {rate!r}")
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: samples contain NaN or infinity")
    peak = float(np.max(np.abs(x), initial=0.0))
    if peak > 1.0:
        raise ValueError(f"{path}: samples reach {peak:.4g}, beyond [-1, 1]; divide by the peak first")
    # Scale by 32768, the factor libsndfile reads 16-bit audio back with, so that samples
    # loaded from 16-bit files survive a round trip bit for bit (1.0 saturates to 32767).
    pcm = np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    sf = _soundfile()
    with atomic_write(path) as f:
        sf.write(f, pcm, int(rate), format=_FORMATS[ext], subtype="PCM_16")


def demo_audio() -> "os.PathLike[str]":
    """The bundled utterance, a LibriVox recording in the public domain (afmask/data/audio/NOTICE.md)."""
    from importlib import resources
    from pathlib import Path

    path = Path(str(resources.files("afmask") / "data" / "audio" / "demo.wav"))
    if not path.exists():
        raise FileNotFoundError(f"the bundled utterance is missing ({path}); reinstall afmask")
    return path

"""Named arrays on disk, format by extension: ``.af`` (ArrayFire saveArray), ``.npz``, ``.npy``."""

from __future__ import annotations

import os
import zipfile
from typing import Mapping

import numpy as np

from afmask.io.arrayfire_file import _write_af, read_arrays
from afmask.io.files import atomic_write

__all__ = ["load_arrays", "save_arrays"]

_EXTS = (".af", ".npz", ".npy")


def _ext(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in _EXTS:
        raise ValueError(f"{path}: unknown extension {ext!r}; expected one of {', '.join(_EXTS)}")
    return ext


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Save ``{key: array}`` as .af (in order, as saveArray with append), .npz, or .npy (exactly one array)."""
    path = os.fspath(path)
    ext = _ext(path)
    for key in arrays:
        if not isinstance(key, str):
            raise TypeError(f"{path}: array names must be str, got {key!r}")
    items = [(k, np.asarray(v)) for k, v in arrays.items()]
    if ext == ".npy" and len(items) != 1:
        raise ValueError(f"{path}: a .npy file holds exactly one array, got {len(items)}; use .npz or .af")
    for key, arr in items:
        if arr.dtype.hasobject:
            raise TypeError(f"{path}: array {key!r} has dtype object, which is not saved (no pickles)")
    # Everything is checked and written into one temporary file, so a failure leaves no partial file.
    with atomic_write(path) as f:
        if ext == ".af":
            _write_af(f, items)
        elif ext == ".npy":
            np.lib.format.write_array(f, items[0][1], allow_pickle=False)
        else:
            # Written member by member as np.savez does, without savez's clash of a key named "file".
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for key, arr in items:
                    with zf.open(key + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, arr, allow_pickle=False)


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load ``{key: array}`` from .af (first entry per key), .npz, or .npy (keyed by the file's stem)."""
    path = os.fspath(path)
    ext = _ext(path)
    if ext == ".af":
        return read_arrays(path)
    try:
        if ext == ".npy":
            return {os.path.splitext(os.path.basename(path))[0]: np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable {ext} file ({e})") from e

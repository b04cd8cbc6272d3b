"""ArrayFire ``af::saveArray`` / ``af::readArray`` files, read and written with NumPy.

Format (version 1, little-endian, no padding; ArrayFire ``src/api/c/stream.cpp``)::

    char  version (= 1)
    int32 count
    count times:
        int32 keylen, key bytes (no NUL)
        int64 offset            bytes that follow it up to the next entry: 1 + 32 + data
        char  dtype code        f32=0 c32=1 f64=2 c64=3 b8=4 s32=5 u32=6 u8=7 s64=8 u64=9 s16=10 u16=11
        int64 dims[4]
        data, column-major (dim 0 fastest)

Arrays come and go in ArrayFire orientation: dims ``d0 x d1 x d2 x d3`` are the
NumPy shape ``(d0, d1, d2, d3)`` with trailing 1s dropped (at least one dim).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Union

import numpy as np

from afmask.io.files import atomic_write

__all__ = [
    "AfFileError",
    "ArrayInfo",
    "DTYPE_CODES",
    "atomic_write",
    "list_arrays",
    "read_array",
    "read_arrays",
    "save_array",
]

PathLike = Union[str, os.PathLike]  # not `str | os.PathLike`: setup.py still allows Python 3.9

VERSION = 1
_HEAD = struct.Struct("<bi")  # version, count
_KEYLEN = struct.Struct("<i")
_ENTRY = struct.Struct("<qb4q")  # offset, dtype code, dims
_INT32_MAX = 2**31 - 1
_MIN_ENTRY = _KEYLEN.size + _ENTRY.size  # an entry with an empty key and no data

#: ArrayFire dtype code -> (name, little-endian NumPy dtype of the stored bytes).
DTYPE_CODES: dict[int, tuple[str, np.dtype]] = {
    0: ("f32", np.dtype("<f4")),
    1: ("c32", np.dtype("<c8")),
    2: ("f64", np.dtype("<f8")),
    3: ("c64", np.dtype("<c16")),
    4: ("b8", np.dtype("u1")),  # one byte per value; NumPy bool on the way in and out
    5: ("s32", np.dtype("<i4")),
    6: ("u32", np.dtype("<u4")),
    7: ("u8", np.dtype("u1")),
    8: ("s64", np.dtype("<i8")),
    9: ("u64", np.dtype("<u8")),
    10: ("s16", np.dtype("<i2")),
    11: ("u16", np.dtype("<u2")),
}
_BY_NAME = {name: stored for name, stored in DTYPE_CODES.values()}
# Keyed by (kind, itemsize) so that big-endian and native dtypes map alike.
_CODE_OF = {("f", 4): 0, ("c", 8): 1, ("f", 8): 2, ("c", 16): 3, ("b", 1): 4, ("i", 4): 5,
            ("u", 4): 6, ("u", 1): 7, ("i", 8): 8, ("u", 8): 9, ("i", 2): 10, ("u", 2): 11}
_SUPPORTED = ("float32 (f32), complex64 (c32), float64 (f64), complex128 (c64), bool (b8), "
              "int32 (s32), uint32 (u32), uint8 (u8), int64 (s64), uint64 (u64), "
              "int16 (s16), uint16 (u16)")


class AfFileError(ValueError):
    """A saveArray file that is truncated, corrupt or lacks the requested array."""

    def __init__(self, filename: PathLike, offset: int, message: str):
        self.filename = os.fspath(filename)
        self.offset = offset
        super().__init__(f"{self.filename}: at byte {offset}: {message}")


@dataclass(frozen=True)
class ArrayInfo:
    """One entry of a saveArray file: position, key, dtype name ("f32"), dims and data offset."""

    index: int
    key: str
    dtype: str
    dims: tuple[int, int, int, int]
    data_offset: int

    @property
    def shape(self) -> tuple[int, ...]:
        """NumPy shape in ArrayFire orientation (trailing 1s dropped, at least one dim)."""
        return _shape_of(self.dims)

    @property
    def nbytes(self) -> int:
        """Bytes of raw data in the file."""
        return _nbytes(self.dtype, self.dims)


def _shape_of(dims: Iterable[int]) -> tuple[int, ...]:
    shape = list(dims)
    while len(shape) > 1 and shape[-1] == 1:
        shape.pop()
    return tuple(shape)


def _nbytes(name: str, dims: Iterable[int]) -> int:
    count = 1
    for d in dims:
        count *= d  # Python ints: no overflow however absurd the dims
    return count * _BY_NAME[name].itemsize


# --------------------------------------------------------------------------- writing




def _key_bytes(key: str) -> bytes:
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    if "\0" in key:
        raise ValueError(f"key {key!r} contains a NUL character, which ArrayFire cannot store")
    raw = key.encode("utf-8", "surrogateescape")
    if len(raw) > _INT32_MAX:
        raise ValueError(f"key is {len(raw)} bytes long; at most {_INT32_MAX} fit the format")
    return raw


def _entry_parts(key: str, array) -> tuple[bytes, np.ndarray]:
    """Header bytes of one entry and its data as a flat little-endian array in column-major order."""
    raw_key = _key_bytes(key)
    arr = np.asarray(array)
    code = _CODE_OF.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise TypeError(f"dtype {arr.dtype} cannot be saved in an ArrayFire file; supported: {_SUPPORTED}")
    if arr.ndim > 4:
        raise ValueError(f"array has {arr.ndim} dims {arr.shape}; ArrayFire arrays have at most 4")
    dims = tuple(arr.shape) + (1,) * (4 - arr.ndim)
    stored = DTYPE_CODES[code][1]
    flat = arr.astype(stored, copy=False).ravel(order="F")
    nbytes = flat.size * stored.itemsize
    header = _KEYLEN.pack(len(raw_key)) + raw_key + _ENTRY.pack(1 + 32 + nbytes, code, *dims)
    return header, flat


def _write_entries(f: BinaryIO, entries: list[tuple[bytes, np.ndarray]]) -> None:
    for header, flat in entries:
        f.write(header)
        f.write(flat.view(np.uint8).data)


def _write_af(f: BinaryIO, arrays: list[tuple[str, np.ndarray]]) -> None:
    """Write a whole saveArray file holding ``arrays`` in order (what saving them with append gives)."""
    entries = [_entry_parts(k, a) for k, a in arrays]
    if len(entries) > _INT32_MAX:
        raise ValueError(f"{len(entries)} arrays do not fit the format's int32 count")
    f.write(_HEAD.pack(VERSION, len(entries)))
    _write_entries(f, entries)


def save_array(key: str, array, filename: PathLike, append: bool = False) -> int:
    """Save ``array`` (ArrayFire orientation, <= 4 dims, one of the 12 dtypes) under ``key``; return its index."""
    entry = _entry_parts(key, array)
    filename = os.fspath(filename)
    existing = append and os.path.exists(filename) and os.path.getsize(filename) > 0
    if not existing:
        with atomic_write(filename) as f:
            f.write(_HEAD.pack(VERSION, 1))
            _write_entries(f, [entry])
        return 0
    # Append as ArrayFire does (count rewritten, entry added at the end), but into a new file
    # so that a failure leaves the old one intact; refuse to extend a file that is already broken.
    with open(filename, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        count = len(_scan(src, filename, size))
        if count >= _INT32_MAX:
            raise AfFileError(filename, 1, f"holds {count} arrays; the int32 count cannot grow")
        with atomic_write(filename) as dst:
            dst.write(_HEAD.pack(VERSION, count + 1))
            src.seek(_HEAD.size)
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            _write_entries(dst, [entry])
    return count


# --------------------------------------------------------------------------- reading


def _read_exact(f: BinaryIO, n: int, filename: str, offset: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise AfFileError(filename, offset, f"file ends inside {what} ({len(data)} of {n} bytes)")
    return data


def _scan(f: BinaryIO, filename: str, size: int) -> list[ArrayInfo]:
    """Walk and validate every header of an open file, checking each size against ``size`` before use."""
    if size == 0:
        raise AfFileError(filename, 0, "file is empty, not an ArrayFire saveArray file")
    f.seek(0)
    version, count = _HEAD.unpack(_read_exact(f, _HEAD.size, filename, 0, "the file header"))
    if version != VERSION:
        raise AfFileError(filename, 0, f"unknown format version {version} (expected {VERSION})")
    if count < 0 or count * _MIN_ENTRY > size - _HEAD.size:
        raise AfFileError(filename, 1, f"array count {count} cannot fit in a file of {size} bytes")
    infos = []
    pos = _HEAD.size
    for index in range(count):
        (keylen,) = _KEYLEN.unpack(_read_exact(f, _KEYLEN.size, filename, pos, f"the key length of array {index}"))
        if keylen < 0 or pos + _MIN_ENTRY + keylen > size:
            raise AfFileError(filename, pos, f"key length {keylen} of array {index} does not fit in "
                                             f"the {size - pos} bytes left")
        key = _read_exact(f, keylen, filename, pos + 4, f"the key of array {index}")
        head_at = pos + 4 + keylen
        offset, code, *dims = _ENTRY.unpack(_read_exact(f, _ENTRY.size, filename, head_at,
                                                        f"the header of array {index}"))
        if code not in DTYPE_CODES:
            raise AfFileError(filename, head_at + 8, f"unknown dtype code {code} for array {index} "
                                                     f"(known: 0..11)")
        if any(d < 0 for d in dims):
            raise AfFileError(filename, head_at + 9, f"negative dims {dims} for array {index}")
        name = DTYPE_CODES[code][0]
        nbytes = _nbytes(name, dims)
        data_at = head_at + _ENTRY.size
        if data_at + nbytes > size:
            raise AfFileError(filename, head_at + 9, f"array {index} ({name}, dims {dims}) needs {nbytes} "
                                                     f"bytes of data but only {size - data_at} are left")
        if offset != 1 + 32 + nbytes:
            raise AfFileError(filename, head_at, f"entry offset {offset} of array {index} disagrees with "
                                                 f"its dtype and dims (expected {1 + 32 + nbytes})")
        infos.append(ArrayInfo(index, key.decode("utf-8", "surrogateescape"), name, tuple(dims), data_at))
        pos = data_at + nbytes
        f.seek(pos)
    if pos != size:
        raise AfFileError(filename, pos, f"{size - pos} unexpected bytes after the last of {count} arrays")
    return infos


def _open_scan(filename: PathLike) -> tuple[BinaryIO, str, list[ArrayInfo]]:
    name = os.fspath(filename)
    f = open(name, "rb")
    try:
        return f, name, _scan(f, name, os.fstat(f.fileno()).st_size)
    except BaseException:
        f.close()
        raise


def _read_data(f: BinaryIO, filename: str, info: ArrayInfo) -> np.ndarray:
    stored = _BY_NAME[info.dtype]
    # The scan bounded nbytes by the file size, so this allocation is at most the file's size.
    buf = np.empty(info.nbytes, np.uint8)
    f.seek(info.data_offset)
    if f.readinto(memoryview(buf)) != info.nbytes:
        raise AfFileError(filename, info.data_offset, f"file ends inside the data of array {info.index}")
    flat = buf.view(stored)
    if info.dtype == "b8":
        flat = flat != 0
    return flat.astype(flat.dtype.newbyteorder("="), copy=False).reshape(info.shape, order="F")


def list_arrays(filename: PathLike) -> list[ArrayInfo]:
    """Describe every entry of a saveArray file (index, key, dtype, dims, data offset), in file order."""
    f, _, infos = _open_scan(filename)
    f.close()
    return infos


def read_array(filename: PathLike, index: int | None = None, key: str | None = None) -> np.ndarray:
    """Read one array by ``index`` or ``key`` (first match, as af::readArray) in ArrayFire orientation."""
    if (index is None) == (key is None):
        raise TypeError("read_array() takes exactly one of index= or key=")
    f, name, infos = _open_scan(filename)
    with f:
        if key is not None:
            raw = _key_bytes(key).decode("utf-8", "surrogateescape")
            found = next((i for i in infos if i.key == raw), None)
            if found is None:
                keys = ", ".join(repr(i.key) for i in infos[:20]) + (", ..." if len(infos) > 20 else "")
                raise AfFileError(name, 1, f"key {key!r} not found among {len(infos)} arrays ({keys})")
        else:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise TypeError(f"index must be an int, got {type(index).__name__}")
            if not 0 <= index < len(infos):
                raise AfFileError(name, 1, f"index {index} out of range: the file holds {len(infos)} arrays")
            found = infos[int(index)]
        return _read_data(f, name, found)


def read_arrays(filename: PathLike) -> dict[str, np.ndarray]:
    """Read every array of a saveArray file into ``{key: array}``; a repeated key keeps its first entry."""
    f, name, infos = _open_scan(filename)
    out: dict[str, np.ndarray] = {}
    with f:
        for info in infos:
            if info.key not in out:
                out[info.key] = _read_data(f, name, info)
    return out

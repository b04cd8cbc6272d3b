"""ArrayFire-style indices: ``seq`` (inclusive end), ``span``, ints that keep their dim, index arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from afmask.backend.base import MAX_DIMS, AxisIndex


class seq:  # noqa: N801 - mirrors af::seq
    """``af::seq``: ``seq(n)`` is 0..n-1; ``seq(begin, end, step)`` includes ``end``; negatives count from the end (-1 is the last)."""

    __slots__ = ("begin", "end", "step")

    def __init__(self, begin: int, end: int | None = None, step: int = 1):
        if end is None:
            if begin < 0:
                raise ValueError(f"seq(n) needs n >= 0, got {begin}")
            begin, end = 0, begin - 1
        if step == 0:
            raise ValueError("seq step must not be 0")
        self.begin, self.end, self.step = int(begin), int(end), int(step)

    def __repr__(self) -> str:
        return f"seq({self.begin}, {self.end}, {self.step})"

    def resolve(self, size: int, axis: int) -> slice:
        """The Python slice this seq selects on a dim of ``size`` elements."""
        b = self.begin + size if self.begin < 0 else self.begin
        e = self.end + size if self.end < 0 else self.end
        count = (e - b) // self.step + 1
        if count <= 0:
            raise IndexError(f"{self!r} selects nothing on dim {axis} of size {size}")
        last = b + (count - 1) * self.step
        if not (0 <= b < size and 0 <= last < size):
            raise IndexError(f"{self!r} is out of range for dim {axis} of size {size}")
        stop = last + (1 if self.step > 0 else -1)
        return slice(b, None if stop < 0 else stop, self.step)


class _Span:
    """``af::span``: the whole dim."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "span"


span = _Span()


def resolve_index(key: Any, dims: tuple[int, int, int, int], to_host=None) -> tuple[AxisIndex, ...]:
    """One slice or int index array per dim for an index key (never drops a dim).

    Accepted per dim: ``span``, ``seq``, an int (kept as a size-1 dim, negatives from the end),
    a Python slice (Python semantics), or a 1-D integer array / list. ``to_host`` turns
    a backend array into NumPy for integer-array indices.
    """
    if not isinstance(key, tuple):
        key = (key,)
    if len(key) > MAX_DIMS:
        raise IndexError(f"at most {MAX_DIMS} indices, got {len(key)}")
    out: list[AxisIndex] = []
    for axis, k in enumerate(key):
        size = dims[axis]
        if k is span or k is None:
            out.append(slice(None))
        elif isinstance(k, seq):
            out.append(k.resolve(size, axis))
        elif isinstance(k, slice):
            out.append(slice(*k.indices(size)))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            i = int(k) + size if k < 0 else int(k)
            if not 0 <= i < size:
                raise IndexError(f"index {int(k)} is out of range for dim {axis} of size {size}")
            out.append(slice(i, i + 1))
        elif k is Ellipsis:
            raise IndexError("Ellipsis is not an ArrayFire index; use span for each dim")
        else:
            arr = np.asarray(to_host(k) if to_host is not None else k)
            if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer) and not np.all(np.mod(arr, 1) == 0):
                raise IndexError(f"index arrays must hold integers, got dtype {arr.dtype} for dim {axis}")
            arr = arr.reshape(-1).astype(np.int64)
            arr = np.where(arr < 0, arr + size, arr)
            if arr.size == 0 or arr.min() < 0 or arr.max() >= size:
                raise IndexError(f"index array out of range for dim {axis} of size {size}")
            out.append(arr)
    return tuple(out)

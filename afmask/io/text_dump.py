"""Text dumps made by ``af::toString`` / ``af::print`` (ArrayFire ``src/api/c/print.cpp``).

Layout, for ``af::toString(title, a)`` with the default ``transpose=true``::

    title
    [d0 d1 d2 d3]
    one line per (i0, i2, i3): the d1 values a(i0, :, i2, i3), each right-aligned in
    precision + 6 characters and followed by one space; lines never wrap
    a blank line after each d2 slice's d0 lines, one more after each d3 block,
    one more at the end (the printer recurses over the *transposed* array's dims)

An array with one element prints one line and no blank line; a ``d0 x 1`` column
prints d0 one-value lines then a blank line; a ``1 x d1`` row prints one line.
Debug builds insert ``Offset``/``Strides`` lines after the dims; empty arrays print
``<empty>``. Complex values print as ``(re,im)``.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

__all__ = ["AfTextError", "read_af_string"]

_DIMS = re.compile(r"^\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]$")
_DEBUG = re.compile(r"^\s+(Offsets?|Strides):")
_COMPLEX = re.compile(r"^\(([^,()]+),([^,()]+)\)$")


class AfTextError(ValueError):
    """An ``af::toString`` dump that does not have the layout ArrayFire prints."""

    def __init__(self, filename: str | os.PathLike, line: int, message: str):
        self.filename = os.fspath(filename)
        self.line = line
        super().__init__(f"{self.filename}: line {line}: {message}")


def _ndims(dims: tuple[int, ...]) -> int:
    """``af::dim4::ndims``: 1 for one element, else up to the last dim that is not 1."""
    if math.prod(dims) == 1:
        return 1
    return max(i + 1 for i, d in enumerate(dims) if d != 1)


def _layout(dims: tuple[int, ...], dim: int) -> list[int]:
    """Values per printed line (0 = blank line) of ArrayFire's recursive printer at ``dim``."""
    if dim == 0:
        return [dims[0]]
    inner = _layout(dims, dim - 1)
    return inner * dims[dim] + [0]


def _parse_row(tokens: list[str], path, lineno: int) -> list:
    values = []
    for tok in tokens:
        try:
            m = _COMPLEX.match(tok)
            values.append(complex(float(m[1]), float(m[2])) if m else float(tok))
        except ValueError:
            raise AfTextError(path, lineno, f"{tok!r} is not a number") from None
    return values


def read_af_string(path: str | os.PathLike, *, transpose: bool = True) -> tuple[str, np.ndarray]:
    """Parse an af::toString dump into (title, array): float32 (complex64 if complex), ArrayFire orientation."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [ln.rstrip("\r\n") for ln in f]
    if not lines:
        raise AfTextError(path, 1, "file is empty; expected a title line, then dims like [31 804 1 1]")
    title = lines[0]
    if len(lines) < 2 or not (m := _DIMS.match(lines[1].strip())):
        got = repr(lines[1]) if len(lines) > 1 else "end of file"
        raise AfTextError(path, 2, f"expected dims like [31 804 1 1], got {got}")
    dims = tuple(int(d) for d in m.groups())
    if max(dims) >= 2**63:
        raise AfTextError(path, 2, f"dims {list(dims)} exceed ArrayFire's 64-bit dim_t")
    at = 2
    while at < len(lines) and _DEBUG.match(lines[at]):
        at += 1  # debug builds of ArrayFire print offsets and strides here
    shape = tuple(dims)
    while len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    if 0 in dims:
        if at >= len(lines) or lines[at].strip() != "<empty>":
            raise AfTextError(path, at + 1, f"dims {list(dims)} hold no elements; expected <empty>")
        _expect_blank_tail(lines, at + 1, path)
        return title, np.zeros(shape, np.float32)

    # The printer walks the (optionally) transposed array, dim 0 along each line.
    pdims = (dims[1], dims[0], dims[2], dims[3]) if transpose else dims
    rows = math.prod(pdims[1:])
    if rows > len(lines):
        # Checked before building the layout, so that absurd dims cannot exhaust memory.
        raise AfTextError(path, 2, f"dims {list(dims)} need {rows} lines of values; the file has "
                                   f"only {len(lines)} lines")
    values: list = []
    for want in _layout(pdims, _ndims(pdims) - 1):
        lineno = at + 1
        if at >= len(lines):
            if want == 0:
                continue  # trailing blank lines may have been trimmed; the values are all there
            raise AfTextError(path, lineno, f"file ends early: expected a line of {want} values "
                                            f"for dims {list(dims)}")
        tokens = lines[at].split()
        if len(tokens) != want:
            what = "a blank line" if want == 0 else f"{want} values"
            raise AfTextError(path, lineno, f"expected {what} for dims {list(dims)}, found {len(tokens)} values")
        values.extend(_parse_row(tokens, path, lineno))
        at += 1
    _expect_blank_tail(lines, at, path)

    is_complex = any(isinstance(v, complex) for v in values)
    flat = np.array(values, dtype=np.complex64 if is_complex else np.float32)
    arr = flat.reshape(pdims, order="F")
    if transpose:
        arr = arr.transpose(1, 0, 2, 3)
    return title, np.asfortranarray(arr.reshape(shape, order="A"))


def _expect_blank_tail(lines: list[str], at: int, path) -> None:
    for i in range(at, len(lines)):
        if lines[i].strip():
            raise AfTextError(path, i + 1, f"unexpected text after the array: {lines[i][:60]!r}")

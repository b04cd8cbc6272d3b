"""The backend interface: arrays with ArrayFire semantics on NumPy, CuPy or ArrayFire.

Every backend keeps ArrayFire's logical dimension order (dim 0 fastest, at most
four dims) and returns arrays in *canonical shape*: the ArrayFire dims with
trailing size-1 dims dropped, at least one dim kept. Element-wise arithmetic
(``+ - * / **``, unary ``-``, comparisons) uses the arrays' own operators, which
all three array types provide; everything else goes through these methods.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np

Array = Any  # numpy.ndarray | cupy.ndarray | arrayfire.Array
Dims = Sequence[int]
#: One axis of an index: a Python slice (already resolved to the axis) or an int index array.
AxisIndex = Union[slice, np.ndarray]

MAX_DIMS = 4


def dims4(shape: Dims) -> tuple[int, int, int, int]:
    """Pad a shape with trailing 1s to ArrayFire's four dims."""
    shape = tuple(int(d) for d in shape)
    if len(shape) > MAX_DIMS:
        raise ValueError(f"ArrayFire arrays have at most 4 dims, got shape {shape}")
    return shape + (1,) * (MAX_DIMS - len(shape))  # type: ignore[return-value]


def canonical_shape(shape: Dims) -> tuple[int, ...]:
    """Drop trailing size-1 dims (keep at least one): ArrayFire's ``dims()`` as a shape."""
    shape = tuple(int(d) for d in shape)
    if len(shape) > MAX_DIMS:
        extra = shape[MAX_DIMS:]
        if any(d != 1 for d in extra):
            raise ValueError(f"ArrayFire arrays have at most 4 dims, got shape {shape}")
        shape = shape[:MAX_DIMS]
    n = len(shape)
    while n > 1 and shape[n - 1] == 1:
        n -= 1
    return shape[: max(n, 1)] if shape else (1,)


def unwrap_counts(size: int, window: int, stride: int, pad: int) -> int:
    """Number of window positions along one dim, as ``af::unwrap`` counts them."""
    if window < 1 or stride < 1 or pad < 0:
        raise ValueError(f"unwrap needs window >= 1, stride >= 1, pad >= 0; got {window}, {stride}, {pad}")
    span = size + 2 * pad - window
    if span < 0:
        raise ValueError(f"window {window} does not fit a dim of {size} padded by {pad} on each side")
    return span // stride + 1


@dataclass(frozen=True)
class DeviceInfo:
    """What a backend runs on, for ``afmask info``."""

    backend: str
    device: str
    detail: str = ""


class Backend(abc.ABC):
    """Array operations with ArrayFire semantics; one instance per array library."""

    name: str = ""

    # -- conversion and creation -------------------------------------------------------
    @abc.abstractmethod
    def asarray(self, a: Any, dtype: Any = None) -> Array:
        """A backend array from a NumPy array, a scalar, a list, or an array of this backend."""

    @abc.abstractmethod
    def to_numpy(self, a: Array) -> np.ndarray:
        """A host NumPy copy of ``a`` in canonical shape."""

    @abc.abstractmethod
    def is_array(self, a: Any) -> bool:
        """Whether ``a`` is an array of this backend."""

    @abc.abstractmethod
    def dims(self, a: Array) -> tuple[int, int, int, int]:
        """ArrayFire dims of ``a`` (always four)."""

    @abc.abstractmethod
    def dtype(self, a: Array) -> np.dtype:
        """The NumPy dtype equivalent of ``a``'s element type."""

    @abc.abstractmethod
    def astype(self, a: Array, dtype: Any) -> Array:
        """``a`` converted to ``dtype`` (a NumPy dtype or name)."""

    @abc.abstractmethod
    def copy(self, a: Array) -> Array:
        """A deep copy of ``a``."""

    @abc.abstractmethod
    def zeros(self, dims: Dims, dtype: Any = np.float32) -> Array:
        """An array of zeros with ArrayFire dims ``dims``."""

    @abc.abstractmethod
    def full(self, dims: Dims, value: float, dtype: Any = np.float32) -> Array:
        """``af::constant(value, dims)``."""

    @abc.abstractmethod
    def identity(self, n: int, dtype: Any = np.float32) -> Array:
        """``af::identity(n, n)``."""

    @abc.abstractmethod
    def randn(self, dims: Dims, seed: int, dtype: Any = np.float32) -> Array:
        """Standard normal samples, reproducible for a given seed on a given backend."""

    @abc.abstractmethod
    def randu(self, dims: Dims, seed: int, dtype: Any = np.float32) -> Array:
        """Uniform samples in [0, 1), reproducible for a given seed on a given backend."""

    # -- element-wise -------------------------------------------------------------------
    @abc.abstractmethod
    def sqrt(self, a: Array) -> Array:
        """Element-wise square root."""

    @abc.abstractmethod
    def exp(self, a: Array) -> Array:
        """Element-wise exponential."""

    @abc.abstractmethod
    def log(self, a: Array) -> Array:
        """Element-wise natural logarithm."""

    @abc.abstractmethod
    def log1p(self, a: Array) -> Array:
        """Element-wise ``log(1 + a)``."""

    @abc.abstractmethod
    def abs(self, a: Array) -> Array:
        """Element-wise absolute value."""

    @abc.abstractmethod
    def sign(self, a: Array) -> Array:
        """Element-wise sign (-1, 0 or 1) in ``a``'s dtype."""

    @abc.abstractmethod
    def sigmoid(self, a: Array) -> Array:
        """Element-wise logistic function."""

    @abc.abstractmethod
    def tanh(self, a: Array) -> Array:
        """Element-wise hyperbolic tangent."""

    @abc.abstractmethod
    def maximum(self, a: Array, b: Union[Array, float]) -> Array:
        """Element-wise maximum (``af::max(a, b)``); ``b`` may be a scalar."""

    @abc.abstractmethod
    def minimum(self, a: Array, b: Union[Array, float]) -> Array:
        """Element-wise minimum; ``b`` may be a scalar."""

    @abc.abstractmethod
    def where(self, cond: Array, a: Union[Array, float], b: Union[Array, float]) -> Array:
        """``af::select(cond, a, b)``: the dtype of the array operand; float32 when both are scalars."""

    @abc.abstractmethod
    def isfinite_all(self, a: Array) -> bool:
        """Whether every element of ``a`` is finite."""

    # -- reductions (reduced dims kept as size 1, as ArrayFire does) --------------------
    def total64(self, a: Array, squares: bool = False) -> float:
        """The sum of all elements of ``a`` (of their squares if ``squares``), accumulated in float64."""
        a64 = self.astype(a, np.float64)
        return float(self.scalar(self.sum(a64 * a64 if squares else a64, [0, 1, 2, 3])))

    @abc.abstractmethod
    def sum(self, a: Array, axes: Sequence[int]) -> Array:
        """Sum over ``axes``."""

    @abc.abstractmethod
    def mean(self, a: Array, axes: Sequence[int]) -> Array:
        """Mean over ``axes``."""

    @abc.abstractmethod
    def var(self, a: Array, axes: Sequence[int], biased: bool) -> Array:
        """Variance over ``axes``: divide by N if ``biased`` else by N-1."""

    @abc.abstractmethod
    def max(self, a: Array, axis: int) -> Array:
        """Maximum along one axis."""

    @abc.abstractmethod
    def min(self, a: Array, axis: int) -> Array:
        """Minimum along one axis."""

    @abc.abstractmethod
    def scalar(self, a: Array) -> float:
        """The single element of a one-element array, as a Python float."""

    # -- shape --------------------------------------------------------------------------
    @abc.abstractmethod
    def transpose(self, a: Array) -> Array:
        """Swap dims 0 and 1 (batched over dims 2 and 3), as ``af::transpose``."""

    @abc.abstractmethod
    def reorder(self, a: Array, perm: Sequence[int]) -> Array:
        """Permute dims: output dim i is input dim ``perm[i]`` (``af::reorder``)."""

    @abc.abstractmethod
    def moddims(self, a: Array, dims: Dims) -> Array:
        """Column-major reshape to ``dims`` (``af::moddims``)."""

    @abc.abstractmethod
    def tile(self, a: Array, reps: Dims) -> Array:
        """Repeat ``a`` ``reps[i]`` times along dim i (``af::tile``)."""

    @abc.abstractmethod
    def concatenate(self, arrays: Sequence[Array], axis: int) -> Array:
        """Join arrays along ``axis`` (``af::join``)."""

    @abc.abstractmethod
    def index(self, a: Array, idx: Sequence[AxisIndex]) -> Array:
        """``a(idx...)``: one slice or int index array per dim; dims are never dropped."""

    @abc.abstractmethod
    def index_add(self, dims: Dims, idx: Sequence[AxisIndex], values: Array) -> Array:
        """Zeros of ``dims`` with ``values`` added at ``idx`` (repeated indices accumulate)."""

    @abc.abstractmethod
    def index_assign(self, a: Array, idx: Sequence[AxisIndex], values: Array) -> Array:
        """A copy of ``a`` with the region ``idx`` replaced by ``values``."""

    # -- linear algebra and windows -------------------------------------------------------
    @abc.abstractmethod
    def matmul(self, a: Array, b: Array, trans_a: bool = False, trans_b: bool = False) -> Array:
        """Matrix product over dims 0-1, batched over dims 2-3 (``af::matmul``)."""

    @abc.abstractmethod
    def unwrap(self, a: Array, wx: int, wy: int, sx: int, sy: int, px: int, py: int) -> Array:
        """``af::unwrap`` (is_column): [W, H, C, N] -> [wx*wy, nx*ny, C, N] patches, zero padded."""

    @abc.abstractmethod
    def wrap(self, cols: Array, ox: int, oy: int, wx: int, wy: int, sx: int, sy: int, px: int, py: int) -> Array:
        """``af::wrap`` (is_column): the adjoint of unwrap, summing overlaps into [ox, oy, C, N]."""

    # -- device ---------------------------------------------------------------------------
    def eval(self, *arrays: Array) -> None:
        """Compute lazily evaluated arrays now (ArrayFire's JIT), so later uses read them instead of recomputing
        their expressions; a no-op on eager backends."""

    @abc.abstractmethod
    def sync(self) -> None:
        """Wait for queued work on the device to finish (for timing)."""

    @abc.abstractmethod
    def device_info(self) -> DeviceInfo:
        """What this backend computes on."""

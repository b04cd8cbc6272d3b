"""The NumPy backend (the reference) and the CuPy backend, which share one implementation."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

from afmask.backend.base import (
    Array,
    Backend,
    DeviceInfo,
    Dims,
    canonical_shape,
    dims4,
    unwrap_counts,
)

#: trailing 1s that pad a shape of n dims to four
_ONES = ((1, 1, 1, 1), (1, 1, 1), (1, 1), (1,), ())


class XpBackend(Backend):
    """ArrayFire semantics on a NumPy-compatible array module ``xp``."""

    def __init__(self, xp: Any, name: str):
        self.xp = xp
        self.name = name

    # -- helpers --------------------------------------------------------------------------
    # an array's .shape is already a tuple of ints: these skip dims4's checks, called a hundred times a pass
    def _canon(self, a: Array) -> Array:
        shape = a.shape
        if 1 < len(shape) <= 4 and shape[-1] != 1:
            return a
        shape = canonical_shape(shape)
        return a if a.shape == shape else a.reshape(shape)

    def _4d(self, a: Array) -> Array:
        shape = a.shape
        return a if len(shape) == 4 else a.reshape(shape + _ONES[len(shape)] if len(shape) < 4 else dims4(shape))

    # -- conversion and creation -------------------------------------------------------
    def asarray(self, a: Any, dtype: Any = None) -> Array:
        if isinstance(a, (int, float, list, tuple)) and dtype is None:
            dtype = np.float32
        if self.name == "cupy" and hasattr(a, "__array__") and not isinstance(a, self.xp.ndarray):
            a = np.asarray(a)
        arr = self.xp.asarray(a, dtype=dtype)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        return self._canon(arr)

    def to_numpy(self, a: Array) -> np.ndarray:
        if self.name == "cupy":
            return self._canon(self.xp.asnumpy(a))
        return self._canon(np.asarray(a))

    def is_array(self, a: Any) -> bool:
        return isinstance(a, self.xp.ndarray)

    def dims(self, a: Array) -> tuple[int, int, int, int]:
        shape = a.shape
        return shape + _ONES[len(shape)] if len(shape) <= 4 else dims4(shape)

    def dtype(self, a: Array) -> np.dtype:
        return np.dtype(a.dtype)

    def astype(self, a: Array, dtype: Any) -> Array:
        return a.astype(dtype, copy=False)

    def copy(self, a: Array) -> Array:
        return a.copy()

    def zeros(self, dims: Dims, dtype: Any = np.float32) -> Array:
        return self.xp.zeros(canonical_shape(dims), dtype=dtype)

    def full(self, dims: Dims, value: float, dtype: Any = np.float32) -> Array:
        return self.xp.full(canonical_shape(dims), value, dtype=dtype)

    def identity(self, n: int, dtype: Any = np.float32) -> Array:
        return self._canon(self.xp.eye(n, dtype=dtype))

    def _rng(self, seed: int):
        if self.name == "cupy":
            return self.xp.random.RandomState(seed)
        return np.random.default_rng(seed)

    def randn(self, dims: Dims, seed: int, dtype: Any = np.float32) -> Array:
        shape = canonical_shape(dims)
        if self.name == "cupy":
            return self._rng(seed).standard_normal(shape, dtype=dtype)
        return self._rng(seed).standard_normal(shape, dtype=np.dtype(dtype).type)

    def randu(self, dims: Dims, seed: int, dtype: Any = np.float32) -> Array:
        shape = canonical_shape(dims)
        if self.name == "cupy":
            return self._rng(seed).random_sample(shape).astype(dtype)
        return self._rng(seed).random(shape, dtype=np.dtype(dtype).type)

    # -- element-wise -------------------------------------------------------------------
    def sqrt(self, a):
        return self.xp.sqrt(a)

    def exp(self, a):
        return self.xp.exp(a)

    def log(self, a):
        return self.xp.log(a)

    def log1p(self, a):
        return self.xp.log1p(a)

    def abs(self, a):
        return self.xp.abs(a)

    def sign(self, a):
        return self.xp.sign(a)

    def sigmoid(self, a):
        # exp of a non-positive argument only, so neither branch overflows
        e = self.xp.exp(-self.xp.abs(a))
        return self.xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)

    def tanh(self, a):
        return self.xp.tanh(a)

    def maximum(self, a, b):
        return self.xp.maximum(a, self._scalar_like(b, a))

    def minimum(self, a, b):
        return self.xp.minimum(a, self._scalar_like(b, a))

    def where(self, cond, a, b):
        ref = a if self.is_array(a) else b
        if not self.is_array(ref):
            # two scalars: float32, ArrayFire's default type (what the arrayfire backend gives)
            return self._canon(self.xp.where(cond, np.float32(a), np.float32(b)))
        out = self.xp.where(cond, self._scalar_like(a, ref), self._scalar_like(b, ref))
        return self._canon(out.astype(ref.dtype, copy=False))

    def _scalar_like(self, v, ref):
        # keep ArrayFire's rule that an array-scalar op has the array's type
        if self.is_array(v) or not self.is_array(ref):
            return v
        return ref.dtype.type(v)

    def isfinite_all(self, a) -> bool:
        return bool(self.xp.isfinite(a).all())

    # -- reductions -----------------------------------------------------------------------
    def total64(self, a, squares=False):
        # float64 accumulation through the ufunc's buffered casting: no float64 copy of the array
        flat = a.ravel(order="K")
        if squares:
            return float(self.xp.einsum("i,i->", flat, flat, dtype=np.float64))
        return float(flat.sum(dtype=np.float64))

    def sum(self, a, axes):
        return self._canon(self._4d(a).sum(axis=tuple(axes), keepdims=True))

    def mean(self, a, axes):
        return self._canon(self._4d(a).mean(axis=tuple(axes), keepdims=True))

    def var(self, a, axes, biased):
        a4 = self._4d(a)
        n = int(np.prod([a4.shape[i] for i in axes]))
        ddof = 0 if biased else 1
        if n - ddof <= 0:
            raise ValueError(f"variance over axes {tuple(axes)} of dims {dims4(a.shape)} needs more than {ddof} element(s)")
        return self._canon(a4.var(axis=tuple(axes), ddof=ddof, keepdims=True))

    def max(self, a, axis):
        return self._canon(self._4d(a).max(axis=axis, keepdims=True))

    def min(self, a, axis):
        return self._canon(self._4d(a).min(axis=axis, keepdims=True))

    def scalar(self, a) -> float:
        if a.size != 1:
            raise ValueError(f"scalar() needs a one-element array, got dims {dims4(a.shape)}")
        return float(a.reshape(()))

    # -- shape ------------------------------------------------------------------------------
    def transpose(self, a):
        return self._canon(self.xp.swapaxes(self._4d(a), 0, 1))

    def reorder(self, a, perm):
        perm = tuple(int(p) for p in perm) + tuple(range(len(perm), 4))
        if sorted(perm) != [0, 1, 2, 3]:
            raise ValueError(f"reorder needs a permutation of 0..3, got {perm}")
        return self._canon(self.xp.transpose(self._4d(a), perm))

    def moddims(self, a, dims):
        shape = canonical_shape(dims)
        if int(np.prod(shape)) != a.size:
            raise ValueError(f"moddims to {dims4(dims)} needs {int(np.prod(shape))} elements, array has {a.size}")
        return a.reshape(shape, order="F")

    def tile(self, a, reps):
        return self._canon(self.xp.tile(self._4d(a), dims4(reps)))

    def concatenate(self, arrays, axis):
        return self._canon(self.xp.concatenate([self._4d(a) for a in arrays], axis=axis))

    def _apply_index(self, a4, idx):
        basic = tuple(i if isinstance(i, slice) else slice(None) for i in idx)
        out = a4[basic]
        for axis, i in enumerate(idx):
            if not isinstance(i, slice):
                out = self.xp.take(out, self.xp.asarray(i), axis=axis)
        return out

    def _full_index(self, idx):
        idx = list(idx) + [slice(None)] * (4 - len(idx))
        return tuple(idx)

    def index(self, a, idx):
        return self._canon(self._apply_index(self._4d(a), self._full_index(idx)))

    def index_add(self, dims, idx, values):
        out = self.xp.zeros(dims4(dims), dtype=values.dtype)
        idx = self._full_index(idx)
        vals = values.reshape(self._apply_index(out, idx).shape)
        if all(isinstance(i, slice) for i in idx):
            out[idx] += vals
        else:
            mesh = self._mesh(out.shape, idx)
            if self.name == "cupy":
                import cupyx

                cupyx.scatter_add(out, mesh, vals)
            else:
                np.add.at(out, mesh, vals)
        return self._canon(out)

    def index_assign(self, a, idx, values):
        out = self._4d(a).copy()
        idx = self._full_index(idx)
        vals = values.reshape(self._apply_index(out, idx).shape) if self.is_array(values) else values
        if all(isinstance(i, slice) for i in idx):
            out[idx] = vals
        else:
            out[self._mesh(out.shape, idx)] = vals
        return self._canon(out)

    def _mesh(self, shape, idx):
        axes = []
        for n, i in zip(shape, idx):
            axes.append(self.xp.arange(n)[i] if isinstance(i, slice) else self.xp.asarray(i))
        return self.xp.ix_(*axes)

    # -- linear algebra and windows -------------------------------------------------------
    def matmul(self, a, b, trans_a=False, trans_b=False):
        a4, b4 = self._4d(a), self._4d(b)
        if trans_a:
            a4 = self.xp.swapaxes(a4, 0, 1)
        if trans_b:
            b4 = self.xp.swapaxes(b4, 0, 1)
        if a4.shape[1] != b4.shape[0]:
            raise ValueError(f"matmul: inner dims differ: {dims4(a4.shape)} x {dims4(b4.shape)}")
        if a4.shape[2:] == (1, 1) and b4.shape[2:] == (1, 1):
            return self._canon(self._blas_ready(a4[:, :, 0, 0]) @ self._blas_ready(b4[:, :, 0, 0]))
        # ArrayFire batches over dims 2-3, NumPy over leading dims; a batch of 1 broadcasts
        am = self.xp.moveaxis(a4, (0, 1), (2, 3))
        bm = self.xp.moveaxis(b4, (0, 1), (2, 3))
        return self._canon(self.xp.moveaxis(am @ bm, (2, 3), (0, 1)))

    def _blas_ready(self, m):
        # NumPy hands a matrix to BLAS only if it is C- or F-contiguous; a strided view (a reorder)
        # would take its slow generic loop, orders of magnitude slower than one copy
        if m.flags.c_contiguous or m.flags.f_contiguous:
            return m
        return self.xp.ascontiguousarray(m)

    def unwrap(self, a, wx, wy, sx, sy, px, py):
        W, H, C, N = dims4(a.shape)
        nx, ny = unwrap_counts(W, wx, sx, px), unwrap_counts(H, wy, sy, py)
        a4 = self._4d(a)
        if px or py:
            a4 = self.xp.pad(a4, ((px, px), (py, py), (0, 0), (0, 0)))
        # Fill a buffer whose memory is the column-major layout of [nx*ny, wx*wy, C, N], so the
        # reorder + moddims a convolution applies next are views, not copies.
        buf = self.xp.empty((N, C, wy, wx, ny, nx), dtype=a4.dtype)
        for b in range(wy):
            for a_ in range(wx):
                patch = a4[a_ : a_ + sx * (nx - 1) + 1 : sx, b : b + sy * (ny - 1) + 1 : sy]
                buf[:, :, b, a_] = self.xp.transpose(patch, (3, 2, 1, 0))
        cols = buf.reshape(N, C, wy * wx, ny * nx)
        return self._canon(self.xp.transpose(cols, (2, 3, 1, 0)))

    def wrap(self, cols, ox, oy, wx, wy, sx, sy, px, py):
        nx, ny = unwrap_counts(ox, wx, sx, px), unwrap_counts(oy, wy, sy, py)
        q, L, C, N = dims4(cols.shape)
        if q != wx * wy or L != nx * ny:
            raise ValueError(f"wrap: columns of dims {dims4(cols.shape)} do not fit windows {wx}x{wy} over {ox}x{oy}")
        out = self.xp.zeros((ox + 2 * px, oy + 2 * py, C, N), dtype=cols.dtype)
        c4 = self._4d(cols)
        for b in range(wy):
            for a_ in range(wx):
                block = c4[a_ + wx * b].reshape(nx, ny, C, N, order="F")
                out[a_ : a_ + sx * (nx - 1) + 1 : sx, b : b + sy * (ny - 1) + 1 : sy] += block
        return self._canon(out[px : px + ox, py : py + oy])

    # -- device -----------------------------------------------------------------------------
    def sync(self) -> None:
        if self.name == "cupy":
            self.xp.cuda.Stream.null.synchronize()

    def device_info(self) -> DeviceInfo:
        if self.name == "cupy":
            dev = self.xp.cuda.Device()
            props = self.xp.cuda.runtime.getDeviceProperties(dev.id)
            name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            free, total = dev.mem_info
            return DeviceInfo("cupy", f"CUDA device {dev.id}: {name}", f"{total / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free")
        return DeviceInfo("numpy", f"CPU: {_cpu_name()}, {os.cpu_count()} logical cores", f"numpy {np.__version__}")


def _cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

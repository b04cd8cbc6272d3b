"""The hot step of the mask experiment: perturbed magnitudes forward, the mask gradient and SGD update backward.

One API over five implementations ("paths") that compute the same thing:

``loop``
    the original C++ loop (notes, Part 3) transcribed: magnitudes formed row
    pair by row pair, then ``mGrad(j) = xGrad(j/2) * xGradm(j)`` row by row. The
    reference of the tests and the baseline of the benchmark. NumPy or CuPy arrays.
``expr``
    the same maths as whole-array expressions. NumPy or CuPy arrays.
``ext``
    the fused C++ kernel (``afmask._ext``, csrc/mask_step.cpp): one pass, no
    temporaries, SSE2 or AVX chosen at run time, OpenMP over frames. NumPy arrays.
``opencl``
    the same kernel in OpenCL C (``afmask/kernels/mask_step.cl``) through
    pyopencl, on any OpenCL device (a GPU, or a CPU implementation such as
    pocl). NumPy arrays, copied to the device and back on every call.
``cuda``
    the fused CUDA kernel (``afmask/kernels/mask_step.cu``) compiled at run time
    by CuPy. CuPy arrays.
``arrayfire``
    one ArrayFire expression per step (ArrayFire's JIT fuses it). ``arrayfire.Array``.

Maths (all float32). ``x`` is the clean interleaved FFT, ``(2K, T)``: row ``2k`` is
Re and row ``2k+1`` is Im of bin k. ``eps`` is the noise, ``(2K, T, S)`` for S
samples or ``(2K, T)`` for one. ``m`` is the noise scale, ``(2K, T)``.

- forward: ``mag[k, t, s] = |x + eps*m|`` of bin k, ``(K, T, S)`` (``(K, T)`` if eps is 2-D).
- backward: with ``xgrad = dL/dmag`` shaped like mag,
  ``g[j, t] = 1/S * sum_s xgrad[j//2, t, s] * (eps*eps*m + eps*x)[j, t, s] / mag[j//2, t, s]``
  (the note's ``xGrad(j/2) * (eps*eps*m + eps*x) / backinput``; 0 where mag is 0,
  where the C++ gives NaN), ``mgrad = g - 2*lam*m / m_sqnorm`` (the gradient of
  ``-lam*log(||m||^2)``), and optionally the plain SGD update ``m -= lr*mgrad``.

Layout: ArrayFire orientation and column-major memory, as everywhere in afmask:
NumPy/CuPy arrays must be float32 (native byte order) and Fortran-contiguous.
Anything else raises TypeError (not an array, wrong dtype) or ValueError (shape,
order, read-only output, output sharing memory with an input), naming the
argument, what was expected and what was given. Nothing is ever copied or cast.

Non-finite values: every path counts them in the same pass (forward: NaN/Inf
magnitudes, which any NaN/Inf in x, eps or m produces, as does an overflow of
re^2 + im^2; backward: (k, t, s) pairs with a non-finite magnitude or xgrad,
plus elements whose mgrad or m_next is non-finite). The update never writes a
non-finite value into m: such elements keep their old value. If the count is
not 0, ``NonFiniteError`` (a ValueError) is raised after the pass unless
``check_finite=False``, in which case the count is returned (``StepResult.nonfinite``).

Equality: every path equals ``loop`` to within 1e-6 relative, relative meaning
``max|a - ref| / max|ref|`` over the array (tests/test_kernel.py).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from afmask.backend import threads

#: Every implementation, slowest first.
PATHS = ("loop", "expr", "ext", "opencl", "cuda", "arrayfire")

#: The CUDA source shipped with the package.
CUDA_SOURCE = Path(__file__).with_name("mask_step.cu")

#: Options for NVRTC: no FMA contraction, so products and sums round as on the CPU.
CUDA_OPTIONS = ("--std=c++14", "--fmad=false")

_CUDA_BLOCK = 256


class NonFiniteError(ValueError):
    """NaN or Inf met during a step; the message says how many, and in which step."""


@dataclass
class StepResult:
    """What a backward step returns: the gradient, m after the step, and the numbers the next step needs."""

    #: d loss / d m, (2K, T) float32, same array module as the inputs.
    mgrad: Any
    #: m after the step: the input array updated in place (numpy/cupy), a new array on arrayfire; m itself if lr is None.
    m: Any
    #: ||m after the step||^2, accumulated in float64: pass it as the next step's m_sqnorm.
    m_sqnorm: float
    #: ||mgrad||^2, accumulated in float64 (diagnostics: the size of the gradient).
    mgrad_sqnorm: float
    #: Count of non-finite values met (see the module doc); 0 unless check_finite=False.
    nonfinite: int
    #: The path that ran.
    path: str


# ---------------------------------------------------------------------------
# array modules and availability


def _module_name(a: Any) -> str:
    """'numpy', 'cupy' or 'arrayfire' for an array, without importing anything."""
    mod = type(a).__module__.split(".")[0]
    if mod in ("cupy", "arrayfire"):
        return mod
    if isinstance(a, np.ndarray):
        return "numpy"
    raise TypeError(
        f"expected a numpy.ndarray, cupy.ndarray or arrayfire.Array, got {type(a).__module__}.{type(a).__name__}"
    )


def _name_of(array_module: Any) -> str:
    """Normalise an array module given as a module, a name, or an object with a ``name`` (a Backend)."""
    if isinstance(array_module, str):
        name = array_module
    elif hasattr(array_module, "__name__"):
        name = array_module.__name__.split(".")[0]
    elif hasattr(array_module, "name"):
        name = str(array_module.name)
    else:
        raise TypeError(f"array_module: expected a module or one of 'numpy', 'cupy', 'arrayfire', got {array_module!r}")
    if name not in ("numpy", "cupy", "arrayfire"):
        raise ValueError(f"array_module: expected 'numpy', 'cupy' or 'arrayfire', got {name!r}")
    return name


#: The extension runs with afmask's thread choice (afmask.backend.threads): OpenMP threads that wait for a
#: busy core slow the step several times (seen on a shared 2-core machine: 0.65 ms with one thread, 2.3 ms
#: with two), so more than one only when they measure faster; AFMASK_THREADS fixes the count.
THREADS_ENV = threads.THREADS_ENV


@functools.cache
def _ext_or_reason() -> tuple[Any, str]:
    try:
        from afmask import _ext
    except ImportError as exc:
        return None, f"afmask._ext is not built ({exc}); run `python setup.py build_ext --inplace` or `pip install .`"
    # one thread count for BLAS, OpenMP and the extension's loops: afmask's choice (AFMASK_THREADS overrides it)
    _ext.set_num_threads(threads.ensure())
    return _ext, ""


def _ext():
    mod, reason = _ext_or_reason()
    if mod is None:
        raise RuntimeError(f"path 'ext' unavailable: {reason}")
    return mod


def _cupy_or_reason() -> tuple[Any, str]:
    """CuPy with a CUDA device, or why not (the cupy backend's own probe)."""
    from afmask.backend import get_backend, probe

    found = probe("cupy")
    return (get_backend("cupy").xp, "") if found.available else (None, found.reason)


@functools.cache
def _cuda_module_or_reason() -> tuple[Any, str]:
    cupy, reason = _cupy_or_reason()
    if cupy is None:
        return None, reason
    try:
        module = cupy.RawModule(code=CUDA_SOURCE.read_text(encoding="utf-8"), options=CUDA_OPTIONS)
        kernels = (module.get_function("afmask_forward"), module.get_function("afmask_backward"))
    except Exception as exc:
        return None, f"compiling {CUDA_SOURCE} with NVRTC failed ({type(exc).__name__}: {exc})"
    return kernels, ""


def _af_or_reason() -> tuple[Any, str]:
    """The arrayfire module with a loadable library, or why not (the arrayfire backend's own probe)."""
    from afmask.backend import get_backend, probe

    found = probe("arrayfire")
    return (get_backend("arrayfire").af, "") if found.available else (None, found.reason)


def _af():
    af, reason = _af_or_reason()
    if af is None:
        raise RuntimeError(f"path 'arrayfire' unavailable: {reason}")
    return af


def _state(path: str) -> str:
    """One path's state: 'available' or why not (each probe runs once per process)."""
    if path in ("loop", "expr"):
        return "available"
    if path == "ext":
        return "available" if _ext_or_reason()[0] is not None else _ext_or_reason()[1]
    if path == "cuda":
        kernels, reason = _cuda_module_or_reason()
        return "available" if kernels is not None else reason
    if path == "arrayfire":
        return "available" if _af_or_reason()[0] is not None else _af_or_reason()[1]
    return _opencl().status()  # builds the OpenCL program: only asked for when needed


def path_status() -> dict[str, str]:
    """Each path's state on this machine: 'available' or why not (for ``afmask info``)."""
    return {p: _state(p) for p in PATHS}


def _opencl():
    from afmask.kernels import opencl

    return opencl


def opencl_info() -> dict | None:
    """The OpenCL platform and device of the opencl path (None where it does not run)."""
    return _opencl().info()


# slowest first per array module: 'auto' takes the last one available (opencl copies NumPy arrays to its
# device and back, so the in-place extension comes after it)
# ("ext" takes ArrayFire arrays on ArrayFire's CPU backend only, where its buffers are host memory: see _paths_for)
_PATHS_FOR = {"numpy": ("loop", "expr", "opencl", "ext"), "cupy": ("loop", "expr", "cuda"), "arrayfire": ("arrayfire", "ext")}


def _af_on_cpu() -> bool:
    """Whether ArrayFire loads here and runs its CPU backend (its arrays then live in host memory)."""
    af, _ = _af_or_reason()
    return af is not None and str(af.get_active_backend()).lower() == "cpu"


def _paths_for(name: str) -> tuple:
    """The paths that take ``name``'s arrays here, slowest first."""
    paths = _PATHS_FOR[name]
    if name == "arrayfire" and not _af_on_cpu():
        paths = tuple(p for p in paths if p != "ext")
    return paths


def available_paths(array_module: Any = None) -> list[str]:
    """Paths that run here, slowest first; for one array module (module, name or backend) if given."""
    status = path_status()
    names = PATHS if array_module is None else _paths_for(_name_of(array_module))
    if array_module is not None and _name_of(array_module) == "cupy" and _cupy_or_reason()[0] is None:
        return []
    return [p for p in names if status[p] == "available"]


def best_path(array_module: Any) -> str:
    """The fastest path that runs here for arrays of this module ('ext', 'cuda', 'arrayfire', else 'expr')."""
    name = _name_of(array_module)
    if name == "cupy" and _cupy_or_reason()[0] is None:
        raise RuntimeError(f"no path runs cupy arrays here: {_cupy_or_reason()[1]}")
    for p in reversed(_paths_for(name)):  # fastest first, probing no further than needed
        if _state(p) == "available":
            return p
    raise RuntimeError(f"no path runs {name} arrays here: {_state(_paths_for(name)[-1])}")


def _resolve(path: str, first: Any) -> tuple[str, str]:
    """(path, array module name) for a call; 'auto' picks best_path for the inputs' module."""
    mod = _module_name(first)
    if path == "auto":
        return best_path(mod), mod
    if path not in PATHS:
        raise ValueError(f"path: expected 'auto' or one of {', '.join(PATHS)}, got {path!r}")
    if path not in _paths_for(mod):
        where = " on ArrayFire's CPU backend only" if path in _PATHS_FOR[mod] else ""
        raise ValueError(f"path {path!r} does not take {mod} arrays{where}; for {mod} use one of {', '.join(_paths_for(mod))}")
    return path, mod


# ---------------------------------------------------------------------------
# argument checks (numpy and cupy arrays; the extension repeats them in C++)


def _check(a: Any, name: str, mod: str, shape: tuple | None, written: bool = False) -> None:
    if _module_name(a) != mod:
        raise TypeError(f"{name}: expected a {mod} array like x, got {type(a).__module__}.{type(a).__name__}")
    if a.dtype != np.float32 or not a.dtype.isnative:
        raise TypeError(f"{name}: expected dtype float32 (native byte order), got {a.dtype}; convert explicitly")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(a.shape)}")
    if not a.flags.f_contiguous:
        raise ValueError(
            f"{name}: expected a Fortran-ordered (column-major, ArrayFire layout) contiguous array of shape "
            f"{tuple(a.shape)}, got a C-ordered or strided one; create it with order='F'"
        )
    if written and mod == "numpy" and not a.flags.writeable:
        raise ValueError(f"{name}: is written in place but the array is read-only")


def _dims(x: Any, eps: Any) -> tuple[int, int, int, tuple, tuple]:
    """(K, T, S, shape of x/m/mgrad, shape of mag/xgrad) from x (2K, T) and eps (2K, T[, S])."""
    shape = tuple(int(d) for d in x.shape)
    if len(shape) != 2 or shape[0] < 2 or shape[0] % 2 or shape[1] < 1:
        raise ValueError(f"x: expected shape (2K, T) with K >= 1, T >= 1 (interleaved re/im rows), got {shape}")
    K, T = shape[0] // 2, shape[1]
    eshape = tuple(int(d) for d in eps.shape)
    if len(eshape) == 2 and eshape == shape:
        return K, T, 1, shape, (K, T)
    if len(eshape) == 3 and eshape[:2] == shape and eshape[2] >= 1:
        return K, T, eshape[2], shape, (K, T, eshape[2])
    raise ValueError(f"eps: expected shape (2K, T) or (2K, T, S) with (2K, T) = {shape}, got {eshape}")


def _disjoint(out: Any, name: str, *inputs: tuple[Any, str]) -> None:
    """Raise if an output shares memory with an input (the fused kernels read and write in one pass)."""
    for a, a_name in inputs:
        if _module_name(out) == "numpy":
            shared = np.may_share_memory(out, a)  # exact for contiguous arrays, O(1)
        else:
            o0, a0 = out.data.ptr, a.data.ptr
            shared = o0 < a0 + a.nbytes and a0 < o0 + out.nbytes
        if shared:
            raise ValueError(f"{name}: shares memory with {a_name}; the output must be a separate array")


def _check_forward(x, eps, m, out, mod):
    _check(x, "x", mod, None)
    _check(eps, "eps", mod, None)
    K, T, S, xshape, kshape = _dims(x, eps)
    _check(m, "m", mod, xshape)
    if out is not None:
        _check(out, "out", mod, kshape, written=True)
        _disjoint(out, "out", (x, "x"), (eps, "eps"), (m, "m"))
    return K, T, S, xshape, kshape


def _check_backward(xgrad, x, eps, m, out, lam, m_sqnorm, lr, mod):
    _check(x, "x", mod, None)
    _check(eps, "eps", mod, None)
    K, T, S, xshape, kshape = _dims(x, eps)
    _check(m, "m", mod, xshape, written=lr is not None)
    _check(xgrad, "xgrad", mod, kshape)
    if out is not None:
        _check(out, "out", mod, xshape, written=True)
        _disjoint(out, "out", (x, "x"), (eps, "eps"), (m, "m"), (xgrad, "xgrad"))
    if lr is not None:
        _disjoint(m, "m", (x, "x"), (eps, "eps"), (xgrad, "xgrad"))
    _check_scalars(lam, m_sqnorm, lr)
    return K, T, S, xshape, kshape


def _check_scalars(lam: float, m_sqnorm: float | None, lr: float | None) -> None:
    if not math.isfinite(lam):
        raise ValueError(f"lam: expected a finite number, got {lam}")
    if lam != 0 and m_sqnorm is not None and not (math.isfinite(m_sqnorm) and m_sqnorm > 0):
        raise ValueError(f"m_sqnorm: expected a finite value > 0 when lam != 0, got {m_sqnorm}")
    if lr is not None and not math.isfinite(lr):
        raise ValueError(f"lr: expected a finite number, got {lr}")


def _xp(mod: str):
    if mod == "numpy":
        return np
    cupy, reason = _cupy_or_reason()
    if cupy is None:
        raise RuntimeError(reason)
    return cupy


def _sqnorm(xp, a) -> float:
    """||a||^2 accumulated in float64 (a temporary: only the reference paths use it)."""
    d = a.astype(xp.float64).ravel(order="K")
    return float(xp.dot(d, d))


def _raise_nonfinite(count: int, step: str) -> None:
    if step == "forward":
        where = "magnitude(s) in the forward step (NaN/Inf in x, eps or m, or |x + eps*m| overflowing float32)"
    else:
        where = (
            "value(s) in the backward step (NaN/Inf in x, eps, m or xgrad, or a float32 overflow); "
            "m kept its old value wherever its gradient or update was not finite"
        )
    raise NonFiniteError(f"{count} non-finite {where}; pass check_finite=False to get the count instead")


# ---------------------------------------------------------------------------
# the reference: the C++ loop of the notes, transcribed


def _loop_forward(xp, x, eps, m):
    """absinput (K, T[, S]) and backinput (2K, T[, S]) built row pair by row pair, as the C++ does."""
    xb, mb = (x[:, :, None], m[:, :, None]) if eps.ndim == 3 else (x, m)
    noisy = xb + eps * mb  # pre_sample + epsilon * m
    K2 = x.shape[0]
    absinput = xp.empty((K2 // 2,) + noisy.shape[1:], dtype=xp.float32, order="F")
    backinput = xp.empty(noisy.shape, dtype=xp.float32, order="F")
    for j in range(0, K2, 2):
        a = xp.sqrt(noisy[j] * noisy[j] + noisy[j + 1] * noisy[j + 1])
        absinput[j // 2] = a
        backinput[j] = a
        backinput[j + 1] = a
    return absinput, backinput


def _loop_backward(xp, xgrad, x, eps, m, backinput, lam, m_sqnorm, lr):
    """(mGrad, m_next) with the C++'s per-bin chain rule loop; 0 where backinput is 0."""
    xb, mb = (x[:, :, None], m[:, :, None]) if eps.ndim == 3 else (x, m)
    midGrad = eps * eps * mb + eps * xb
    with np.errstate(divide="ignore", invalid="ignore"):
        xGradm = xp.where(backinput == 0, xp.float32(0), midGrad / backinput)
    mGrad = xp.zeros(eps.shape, dtype=xp.float32, order="F")
    for j in range(0, x.shape[0], 2):
        mGrad[j] = xgrad[j // 2] * xGradm[j]
        mGrad[j + 1] = xgrad[j // 2] * xGradm[j + 1]
    if eps.ndim == 3:  # mean over noise samples, in sample order
        acc = mGrad[:, :, 0].copy(order="F")
        for s in range(1, eps.shape[2]):
            acc = acc + mGrad[:, :, s]
        mGrad = acc / xp.float32(eps.shape[2]) if eps.shape[2] > 1 else acc
    if lam != 0:
        mGrad = mGrad - xp.float32(2 * lam) * m / xp.float32(m_sqnorm)
    m_next = m - xp.float32(lr) * mGrad if lr is not None else m
    return mGrad, m_next


def per_bin_loop(
    x: Any, eps: Any, m: Any, xgrad: Any, lam: float = 0.0, m_sqnorm: float | None = None, lr: float | None = None
) -> tuple[Any, Any, Any]:
    """The C++ loop of the notes on NumPy/CuPy float32 arrays: (mag (K,T[,S]), mgrad (2K,T), m_next (2K,T)); m is not modified."""
    mod = _module_name(x)
    xp = _xp(mod)
    for a, name in ((x, "x"), (eps, "eps"), (m, "m"), (xgrad, "xgrad")):
        _check(a, name, mod, None)
    _, _, _, xshape, kshape = _dims(x, eps)
    _check(m, "m", mod, xshape)
    _check(xgrad, "xgrad", mod, kshape)
    if lam != 0 and m_sqnorm is None:
        m_sqnorm = _sqnorm(xp, m)
    _check_scalars(lam, m_sqnorm, lr)
    absinput, backinput = _loop_forward(xp, x, eps, m)
    mgrad, m_next = _loop_backward(xp, xgrad, x, eps, m, backinput, lam, m_sqnorm, lr)
    return absinput, mgrad, m_next


# ---------------------------------------------------------------------------
# whole-array expressions (numpy or cupy)


def _expr_mag(xp, x, eps, m, out):
    xb, mb = (x[:, :, None], m[:, :, None]) if eps.ndim == 3 else (x, m)
    noisy = eps * mb
    noisy += xb
    re, im = noisy[0::2], noisy[1::2]
    sq = re * re
    sq += im * im
    return xp.sqrt(sq, out=out)


def _expr_backward(xp, xgrad, x, eps, m, coef, out):
    """Writes mgrad into out with whole-array operations; returns the count of non-finite pairs."""
    xb, mb = (x[:, :, None], m[:, :, None]) if eps.ndim == 3 else (x, m)
    mag = _expr_mag(xp, x, eps, m, None)
    term = eps * eps
    term *= mb
    term += eps * xb  # eps*eps*m + eps*x, in the C++'s order
    with np.errstate(divide="ignore", invalid="ignore"):
        term[0::2] /= mag
        term[1::2] /= mag
    zero = mag == 0
    term[0::2][zero] = 0
    term[1::2][zero] = 0
    term[0::2] *= xgrad
    term[1::2] *= xgrad
    bad = int(xp.count_nonzero(~(xp.isfinite(mag) & xp.isfinite(xgrad))))
    if eps.ndim == 3:
        g = term[:, :, 0].copy(order="F")
        for s in range(1, eps.shape[2]):
            g += term[:, :, s]
        if eps.shape[2] > 1:
            g /= xp.float32(eps.shape[2])
    else:
        g = term
    xp.subtract(g, (m.astype(xp.float64) * coef).astype(xp.float32), out=out)
    return bad


# ---------------------------------------------------------------------------
# CUDA (cupy arrays)


@functools.cache
def _sm_count(device_id: int) -> int:
    return int(_xp("cupy").cuda.Device(device_id).attributes["MultiProcessorCount"])


def _cuda_launch(kernel, n: int, args: tuple) -> None:
    sms = _sm_count(_xp("cupy").cuda.Device().id)
    # Enough blocks to fill the GPU, few enough that the per-block atomics stay cheap.
    blocks = max(1, min((n + _CUDA_BLOCK - 1) // _CUDA_BLOCK, sms * 8))
    kernel((blocks,), (_CUDA_BLOCK,), args)


def _cuda_kernels():
    kernels, reason = _cuda_module_or_reason()
    if kernels is None:
        raise RuntimeError(f"path 'cuda' unavailable: {reason}")
    return kernels


def _cuda_check_sizes(K, T, S, *arrays):
    if K * T * S >= 2**31:
        raise ValueError(f"cuda path: K*T*S = {K * T * S} pairs exceeds the kernel's 32-bit index range")
    for a, name in arrays:
        if a.data.ptr % 8:
            raise ValueError(f"{name}: the cuda path reads re/im pairs as float2 and needs 8-byte aligned data")


# ---------------------------------------------------------------------------
# ArrayFire (arrayfire.Array)


def _af_dims4(a) -> tuple[int, int, int, int]:
    """ArrayFire's four dims (arrayfire-python's dims() drops trailing 1s: (2K, 1) reads as (2K,))."""
    d = tuple(int(v) for v in a.dims())
    return d + (1,) * (4 - len(d))


def _af_check(a, name, dims4=None) -> None:
    af = _af()
    if not isinstance(a, af.Array):
        raise TypeError(f"{name}: expected an arrayfire.Array like x, got {type(a).__module__}.{type(a).__name__}")
    if a.dtype() != af.Dtype.f32:
        raise TypeError(f"{name}: expected dtype f32, got {a.dtype()}")
    if dims4 is not None and _af_dims4(a) != tuple(dims4):
        raise ValueError(f"{name}: expected dims {tuple(dims4)}, got {_af_dims4(a)}")


def _af_shapes(x, eps) -> tuple[int, int, int]:
    """K, T, S of ArrayFire x (2K x T) and eps (2K x T x S)."""
    _af_check(x, "x")
    _af_check(eps, "eps")
    xd, ed = _af_dims4(x), _af_dims4(eps)
    if xd[0] < 2 or xd[0] % 2 or xd[2:] != (1, 1):
        raise ValueError(f"x: expected dims (2K, T, 1, 1) with K >= 1 (interleaved re/im rows), got {xd}")
    if ed[:2] != xd[:2] or ed[3] != 1:
        raise ValueError(f"eps: expected dims (2K, T, S, 1) with (2K, T) = {xd[:2]}, got {ed}")
    return xd[0] // 2, xd[1], ed[2]


def _af_sqnorm(a) -> float:
    """||a||^2 accumulated in float64 (ArrayFire sums f32 in f32)."""
    a64 = a.as_type(_af().Dtype.f64)
    return float(_af().sum(a64 * a64))


def _af_nonfinite(af, a):
    return af.isnan(a) | af.isinf(a)


def _af_mag4(af, x, eps, m, K, T, S):
    """|x + eps*m| as (1, K, T, S): the sum of the squared re/im pair along a (2, K, T, S) view."""
    xt, mt = (af.tile(x, 1, 1, S), af.tile(m, 1, 1, S)) if S > 1 else (x, m)
    noisy = xt + eps * mt
    return af.sqrt(af.sum(af.moddims(noisy * noisy, 2, K, T, S), 0)), xt, mt


def _af_forward(x, eps, m):
    af = _af()
    K, T, S = _af_shapes(x, eps)
    _af_check(m, "m", (2 * K, T, 1, 1))
    mag4, _, _ = _af_mag4(af, x, eps, m, K, T, S)
    mag = af.moddims(mag4, K, T, S)
    return mag, int(af.count(_af_nonfinite(af, mag)))


def _af_backward(xgrad, x, eps, m, coef, lr):
    af = _af()
    K, T, S = _af_shapes(x, eps)
    _af_check(m, "m", (2 * K, T, 1, 1))
    _af_check(xgrad, "xgrad", (K, T, S, 1))
    mag4, xt, mt = _af_mag4(af, x, eps, m, K, T, S)
    # magnitude and xgrad repeated for the re and im rows: (1, K, T, S) -> (2, K, T, S) -> (2K, T, S)
    back = af.moddims(af.tile(mag4, 2), 2 * K, T, S)
    xg2 = af.moddims(af.tile(af.moddims(xgrad, 1, K, T, S), 2), 2 * K, T, S)
    term = xg2 * af.select(back != 0, (eps * eps * mt + eps * xt) / back, 0.0)
    g = af.sum(term, 2) / float(S) if S > 1 else term
    g = af.moddims(g, 2 * K, T)
    mgrad = g - (m.as_type(af.Dtype.f64) * coef).as_type(af.Dtype.f32)
    m_next = m - lr * mgrad if lr is not None else m
    skip = _af_nonfinite(af, mgrad) | _af_nonfinite(af, m_next)
    m_new = af.select(skip, m, m_next) if lr is not None else m
    m64, g64 = m_new.as_type(af.Dtype.f64), mgrad.as_type(af.Dtype.f64)
    bad = int(af.count(_af_nonfinite(af, mag4) | _af_nonfinite(af, af.moddims(xgrad, 1, K, T, S))))
    bad += int(af.count(skip))
    return mgrad, m_new, float(af.sum(m64 * m64)), float(af.sum(g64 * g64)), bad


def _af_host(af, arrays: dict) -> dict:
    """NumPy views (float32, column-major, 3-D) of the memory of ArrayFire CPU-backend arrays, by name, each with
    the array that owns it (see ArrayFireBackend.host_views)."""
    from afmask.backend import get_backend

    names = list(arrays)
    ready, views = get_backend("arrayfire").host_views(*(arrays[n] for n in names))
    return {n: (v.reshape(v.shape[:2] + (-1,), order="F"), a) for n, a, v in zip(names, ready, views)}


def _af_fresh(af, dims) -> Any:
    """A new ArrayFire f32 array with its own (uninitialised) buffer, for the extension to write."""
    out = af.Array(dims=tuple(int(v) for v in dims), dtype=af.Dtype.f32)
    af.eval(out)
    return out


def _af_host_forward(x, eps, m):
    af = _af()
    K, T, S = _af_shapes(x, eps)
    _af_check(m, "m", (2 * K, T, 1, 1))
    mag = _af_fresh(af, (K, T, S) if S > 1 else (K, T))
    v = _af_host(af, {"x": x, "eps": eps, "m": m, "mag": mag})
    bad = _ext().forward(v["x"][0][:, :, 0], v["eps"][0] if S > 1 else v["eps"][0][:, :, 0], v["m"][0][:, :, 0],
                         v["mag"][0] if S > 1 else v["mag"][0][:, :, 0])
    return mag, int(bad)


def _af_host_backward(xgrad, x, eps, m, lam, m_sqnorm, lr):
    af = _af()
    K, T, S = _af_shapes(x, eps)
    _af_check(m, "m", (2 * K, T, 1, 1))
    _af_check(xgrad, "xgrad", (K, T, S, 1))
    mgrad = _af_fresh(af, (2 * K, T))
    arrays = {"xgrad": xgrad, "x": x, "eps": eps, "mgrad": mgrad}
    # the update is written in place: into a copy of m with its own buffer (m itself may be shared)
    if lr is not None:
        af.eval(m)
        m = m.copy()
    arrays["m"] = m
    v = _af_host(af, arrays)
    two = lambda a: a[:, :, 0]  # noqa: E731
    sq_m, sq_g, bad = _ext().backward(
        v["xgrad"][0] if S > 1 else two(v["xgrad"][0]), two(v["x"][0]), v["eps"][0] if S > 1 else two(v["eps"][0]),
        two(v["m"][0]), two(v["mgrad"][0]), lam, 0.0 if m_sqnorm is None else m_sqnorm, 0.0 if lr is None else lr,
        lr is not None)
    return mgrad, v["m"][1], sq_m, sq_g, bad


# ---------------------------------------------------------------------------
# the public API


def forward(x: Any, eps: Any, m: Any, out: Any = None, path: str = "auto", check_finite: bool = True) -> Any:
    """Perturbed magnitudes |x + eps*m| per bin: x, m (2K, T), eps (2K, T[, S]) float32 F-order -> (K, T[, S]) float32."""
    path, mod = _resolve(path, x)
    if path == "arrayfire":
        if out is not None:
            raise ValueError("out: the arrayfire path returns a new array; pass out=None")
        mag, bad = _af_forward(x, eps, m)
    elif mod == "arrayfire":  # ext on ArrayFire's host buffers
        if out is not None:
            raise ValueError("out: ArrayFire arrays come back as new arrays; pass out=None")
        mag, bad = _af_host_forward(x, eps, m)
    else:
        xp = _xp(mod)
        K, T, S, _, kshape = _check_forward(x, eps, m, out, mod)
        mag = xp.empty(kshape, dtype=xp.float32, order="F") if out is None else out
        if path == "ext":
            bad = _ext().forward(x, eps, m, mag)
        elif path == "opencl":
            bad = _opencl().forward(x, eps, m, mag, K, T, S)
        elif path == "cuda":
            fwd, _ = _cuda_kernels()
            _cuda_check_sizes(K, T, S, (x, "x"), (eps, "eps"), (m, "m"))
            acc = xp.zeros(1, dtype=xp.float64)
            _cuda_launch(fwd, K * T * S, (x, eps, m, mag, np.uint32(K * T * S), np.uint32(K * T), acc))
            bad = int(acc.get()[0])
        elif path == "expr":
            _expr_mag(xp, x, eps, m, mag)
            bad = int(xp.count_nonzero(~xp.isfinite(mag)))
        else:  # loop
            absinput, _ = _loop_forward(xp, x, eps, m)
            mag[...] = absinput
            bad = int(xp.count_nonzero(~xp.isfinite(mag)))
    if bad and check_finite:
        _raise_nonfinite(bad, "forward")
    return mag


def backward(
    xgrad: Any,
    x: Any,
    eps: Any,
    m: Any,
    lam: float = 0.0,
    m_sqnorm: float | None = None,
    lr: float | None = None,
    out: Any = None,
    path: str = "auto",
    check_finite: bool = True,
) -> StepResult:
    """Mask gradient (2K, T) from xgrad = dL/dmag (K, T[, S]) and, if lr is given, m -= lr*mgrad in place; float32 F-order."""
    path, mod = _resolve(path, x)
    lam = float(lam)
    lr = None if lr is None else float(lr)
    if lam != 0 and m_sqnorm is None:
        # One extra pass; the experiment loop passes the previous step's StepResult.m_sqnorm instead.
        m_sqnorm = _af_sqnorm(m) if mod == "arrayfire" else _sqnorm(_xp(mod), m)
    m_sqnorm = None if m_sqnorm is None else float(m_sqnorm)
    _check_scalars(lam, m_sqnorm, lr)
    # 2*lam*m/||m||^2 is computed as coef*m in float64: a float32 coef would overflow
    # for a tiny ||m|| where the C++'s (2*lam*m)/||m||^2 does not.
    coef = 0.0 if lam == 0 else 2.0 * lam / m_sqnorm
    if path == "arrayfire":
        if out is not None:
            raise ValueError("out: the arrayfire path returns a new array; pass out=None")
        mgrad, m_new, sq_m, sq_g, bad = _af_backward(xgrad, x, eps, m, coef, lr)
    elif mod == "arrayfire":  # ext on ArrayFire's host buffers
        if out is not None:
            raise ValueError("out: ArrayFire arrays come back as new arrays; pass out=None")
        mgrad, m_new, sq_m, sq_g, bad = _af_host_backward(xgrad, x, eps, m, lam, m_sqnorm, lr)
    else:
        xp = _xp(mod)
        K, T, S, xshape, _ = _check_backward(xgrad, x, eps, m, out, lam, m_sqnorm, lr, mod)
        mgrad = xp.empty(xshape, dtype=xp.float32, order="F") if out is None else out
        m_new = m
        if path == "ext":
            sq_m, sq_g, bad = _ext().backward(
                xgrad,
                x,
                eps,
                m,
                mgrad,
                lam,
                0.0 if m_sqnorm is None else m_sqnorm,
                0.0 if lr is None else lr,
                lr is not None,
            )
        elif path == "opencl":
            sq_m, sq_g, bad = _opencl().backward(xgrad, x, eps, m, mgrad, K, T, S, coef, lr)
        elif path == "cuda":
            _, bwd = _cuda_kernels()
            _cuda_check_sizes(K, T, S, (x, "x"), (eps, "eps"), (m, "m"), (mgrad, "out"))
            acc = xp.zeros(3, dtype=xp.float64)
            args = (
                xgrad,
                x,
                eps,
                m,
                mgrad,
                np.uint32(K * T),
                np.uint32(S),
                np.float64(coef),
                np.float32(0.0 if lr is None else lr),
                np.int32(lr is not None),
                acc,
            )
            _cuda_launch(bwd, K * T, args)
            sq_m, sq_g, bad = acc.get().tolist()
            bad = int(bad)
        else:
            if path == "expr":
                bad = _expr_backward(xp, xgrad, x, eps, m, coef, mgrad)
                m_next = m - xp.float32(lr) * mgrad if lr is not None else m
            else:  # loop
                _, backinput = _loop_forward(xp, x, eps, m)
                g, m_next = _loop_backward(xp, xgrad, x, eps, m, backinput, lam, m_sqnorm, lr)
                mgrad[...] = g
                mag = backinput[0::2]
                bad = int(xp.count_nonzero(~(xp.isfinite(mag) & xp.isfinite(xgrad))))
            ok = xp.isfinite(mgrad) & xp.isfinite(m_next)
            bad += int(xp.count_nonzero(~ok))
            if lr is not None:
                xp.copyto(m, m_next, where=ok)  # never write NaN/Inf into m
            sq_m, sq_g = _sqnorm(xp, m), _sqnorm(xp, mgrad)
    if bad and check_finite:
        _raise_nonfinite(bad, "backward")
    return StepResult(
        mgrad=mgrad, m=m_new, m_sqnorm=float(sq_m), mgrad_sqnorm=float(sq_g), nonfinite=int(bad), path=path
    )


def extension_info() -> dict | None:
    """The built extension's SIMD level ('avx', 'sse2', 'none'), OpenMP and threads; None if it is not built."""
    ext = _ext_or_reason()[0]
    if ext is None:
        return None
    return {"simd": str(ext.simd), "openmp": bool(ext.openmp), "threads": int(ext.get_num_threads())}


def set_num_threads(n: int) -> None:
    """Threads for the extension's OpenMP loops (0 = the OpenMP default, i.e. OMP_NUM_THREADS or all cores)."""
    _ext().set_num_threads(int(n))


def get_num_threads() -> int:
    """Threads the extension's loops use (1 when it was built without OpenMP)."""
    return int(_ext().get_num_threads())


# ---------------------------------------------------------------------------
# The rest of an iteration on NumPy arrays, in the extension (None where it is not built): the network input's
# statistics and normalisation, the normalisation's backward, and the default update. Each computes what the
# NumPy code beside its caller computes, with the same float32 operations in the same order; only float64 sums
# add in another order.


def extension() -> Any:
    """The built extension module, or None where it is not built."""
    return _ext_or_reason()[0]


def forward_stats(x: np.ndarray, eps: np.ndarray, m: np.ndarray, out: np.ndarray) -> tuple[int, list, list]:
    """forward on the ext path into ``out`` (K, T[, S]), also each sample's float64 sum and sum of squares of the
    magnitudes: (non-finite count, sums, sums of squares). No finiteness check (the caller raises)."""
    return _ext().forward_stats(x, eps, m, out)


def update_exp_mean_log(theta: np.ndarray, m: np.ndarray, g: np.ndarray, m1: np.ndarray, m2: np.ndarray,
                        outs: tuple, c: float, b1: float, b2: float, step: float, epsc: float, bound: float) -> dict:
    """One Adam step of theta for m = exp(theta) and the mean-log regulariser with ``c = -2 lam / N`` (all (2K, T)
    float32 F-order), bounded at ``bound``, into ``outs`` = (theta, m1, m2); returns the float64 sums
    (sum_m, sum_m2, sum_greg2, sum_log_m) and the counts "special" (m 0, subnormal, Inf, NaN) and "nonfinite"
    (new theta). The float32 arithmetic is afmask.mask.optim.Adam's and afmask.mask.terms' (see
    tests/test_mask_fused.py)."""
    return _ext().update_exp_mean_log(theta, m, g, m1, m2, outs[0], outs[1], outs[2], c, b1, 1 - b1, b2, 1 - b2,
                                      step, epsc, bound)

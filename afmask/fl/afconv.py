"""The time convolution on ArrayFire arrays, without ``af.unwrap`` (the ArrayFire twin of afmask.fl.conv).

wav2letter's convolutions are 1-D: input [W, 1, C, N], weights [kw, 1, C, cout]. On
ArrayFire's CPU backend the im2col route (unwrap, a reorder that moves dim 0, a batched
matmul over tiled weights, wrap in the backward) cost about 14x the GEMMs themselves:
any copy that changes which dim is the fastest runs element by element there (so do
strided copies, tile along dim 0 and select), while copies that keep dim 0 in place
(reorder of the outer dims, pad, join, contiguous sub-arrays) run at memory speed. So
everything here keeps time as dim 0:

- the input is reordered to time-major [W, N, C] (dim 0 stays) and zero-padded in time;
- the kw windows (sub-arrays shifted in time, no copy) are joined side by side in one
  copy of whole columns, [nx, N, C * kw], with a column of ones for the bias, and ONE
  GEMM by the taps [C * kw + 1, cout] gives the output, time-major; the ReLU is fused;
- the backward to the input is the same on the time-padded output gradient: windows of
  the gradient joined, times the taps [cout * kw, C];
- a stride s > 1 splits the padded input into its s phases (rows ph, ph + s, ...) by one
  GEMM with the identity (the backward interleaves them the same way), so each tap
  reads a contiguous window of its phase.

The backward needs no saved input; the input phases are kept only when the weights
need a gradient. Gradients below the smallest normal float are flushed to 0 (see
afmask.fl.functions._conv_time_af).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from afmask.backend.arrayfire_backend import cached_dims, fast_reorder
from afmask.fl import conv as _conv
from afmask.fl.conv import IdentityCache

#: Reordered weights of fixed (evaluation-mode) parameters and bias, per stride: their GEMM matrices.
_weights_cache = IdentityCache()


def supported(backend: Any, wdims: tuple, idims: tuple, sy: int, py: int) -> bool:
    """Whether the ArrayFire time convolution applies: the arrayfire backend, H = 1, a kernel one high, no stride or
    padding in H."""
    return (getattr(backend, "name", None) == "arrayfire" and idims[1] == 1 and wdims[1] == 1 and sy == 1 and py == 0)


#: Whether, on ArrayFire's CPU backend, fixed-weight convolutions run afmask.fl.conv's loops on ArrayFire's own
#: buffers (tests compare both ways). Its arrays are host memory there, and NumPy's route is faster: the join of
#: the kw windows below copies kw times the input, most of ArrayFire's time per layer.
HOST_ROUTE = True
_host_taps_cache = IdentityCache()


def host_route(backend: Any, x: Any, weights: Any, bias: Optional[Any]) -> bool:
    """Whether this convolution takes the host route: ArrayFire's CPU backend, fixed float weights and bias of the
    input's type, and afmask.fl.conv's direct BLAS calls available."""
    if not HOST_ROUTE or weights.isCalcGrad() or (bias is not None and bias.isCalcGrad()):
        return False
    dt = backend.dtype(x)
    if dt not in (np.float32, np.float64) or backend.dtype(weights.array()) != dt:
        return False
    if bias is not None and backend.dtype(bias.array()) != dt:
        return False
    if _conv._blas(np, dt) is None or _conv._ext() is None:
        return False
    return backend.active_backend() == "cpu"


def host_taps(backend: Any, w: Any, bias: Optional[Any]) -> tuple:
    """Fixed weights [kw, 1, C, cout] (and bias [1, 1, cout]) as host copies: the taps (kw, C, cout) and the bias
    row (cout,), cached while the arrays live (afmask never changes fixed weights in place)."""

    def make() -> tuple:
        _, views = backend.host_views(w, *(() if bias is None else (bias,)))
        return np.ascontiguousarray(views[0][:, 0]), None if bias is None else np.array(views[1].reshape(-1))

    return _host_taps_cache.get((w, bias), make)


def _phase_taps(k: int, s: int) -> list:
    """For each stride phase ph, the taps j = ph, ph + s, ... that read it."""
    return [list(range(ph, k, s)) for ph in range(s)]


def taps(af: Any, w: Any, s: int, cache: bool, bias: Optional[Any] = None) -> tuple:
    """Weights ``w`` [kw, 1, C, cout] as GEMM operands: the forward matrix [C * kw (+ 1), cout] (row c + C * i for
    the i-th tap in phase order, the order of the input's columns; then the bias [1, 1, cout] as the last row, if
    given) and per phase the backward matrix [cout * k_ph, C] (row o + cout * m for tap ph + s * m; None for a
    phase no tap reads); cached for fixed weights and bias, which afmask never changes in place."""
    if not cache:
        return _matrices(af, w, s, bias)
    return _weights_cache.get((w, bias), lambda: _matrices(af, w, s, bias), extra=(s,))


def _matrices(af: Any, w: Any, s: int, bias: Optional[Any]) -> tuple:
    """The GEMM operands of :func:`taps`, made anew."""
    k, _, C, O = _dims4(w)
    per_phase = []
    fwd_parts = []
    for js in _phase_taps(k, s):
        if not js:
            per_phase.append(None)
            continue
        wp = w[js[0] : js[-1] + 1 : s, :, :, :] if s > 1 else w
        kp = len(js)
        fwd_parts.append(af.moddims(fast_reorder(af, wp, (2, 0, 3, 1)), C * kp, O))  # [C, k_ph, cout]
        bwd = af.moddims(fast_reorder(af, wp, (3, 0, 2, 1)), O * kp, C)  # [cout, k_ph, C]
        af.eval(bwd)
        per_phase.append(bwd)
    if bias is not None:
        fwd_parts.append(af.moddims(bias, 1, O))
    fwd = _join_many(af, 0, fwd_parts)
    af.eval(fwd)
    return fwd, tuple(per_phase)


def _join_many(af: Any, dim: int, arrays: list) -> Any:
    """``af_join_many``: the arrays joined along ``dim`` in one copy (arrayfire-python's join takes four)."""
    if len(arrays) == 1:
        return arrays[0]
    import ctypes

    out = ctypes.c_void_p(0)
    handles = (ctypes.c_void_p * len(arrays))(*[a.arr.value for a in arrays])
    af.safe_call(af.backend.get().af_join_many(ctypes.pointer(out), ctypes.c_int(dim), ctypes.c_uint(len(arrays)),
                                               handles))
    res = af.Array()
    res.arr = out
    return res


class _Seq3:
    """af_seq (begin, end, step) as ctypes, built once."""

    cls = None


def _rows(af: Any, a: Any, start: int, count: int, step: int = 1) -> Any:
    """``a[start : start + step * (count - 1) + 1 : step]`` along dim 0 (all of the other dims) by one ``af_index``
    call: arrayfire-python's indexing costs ~45 us of Python per sub-array, a third of a layer's non-GEMM time."""
    import ctypes

    if _Seq3.cls is None:
        class Seq(ctypes.Structure):
            _fields_ = [("begin", ctypes.c_double), ("end", ctypes.c_double), ("step", ctypes.c_double)]
        _Seq3.cls = Seq
    seqs = (_Seq3.cls * 4)((float(start), float(start + step * (count - 1)), float(step)),
                           (1.0, 1.0, 0.0), (1.0, 1.0, 0.0), (1.0, 1.0, 0.0))  # af_span for dims 1-3
    out = ctypes.c_void_p(0)
    af.safe_call(af.backend.get().af_index(ctypes.pointer(out), a.arr, ctypes.c_uint(4), seqs))
    res = af.Array()
    res.arr = out
    return res


def _time_major(af: Any, a: Any) -> Any:
    """[W, 1, C, N] <-> [W, N, C, 1]: swaps dims 1 and 3, dim 0 stays (a memory-speed copy on every backend)."""
    return af.reorder(a, 0, 3, 2, 1)


def _pad_time(af: Any, a: Any, before: int, after: int) -> Any:
    if before == 0 and after == 0:
        return a
    return af.pad(a, (before, 0, 0, 0), (after, 0, 0, 0))


def _dims4(a: Any) -> tuple:
    return cached_dims(a)


def _ones(af: Any, rows: int, N: int, dtype: Any) -> Any:
    """An evaluated [rows, N, 1] block of ones (the bias's column), kept for the next call of the same size."""
    key = (rows, N, dtype)
    hit = _ones_cache.get(key)
    if hit is None:
        hit = af.constant(1, rows, N, 1, dtype=dtype)
        af.eval(hit)
        if len(_ones_cache) > 64:
            _ones_cache.clear()
        _ones_cache[key] = hit
    return hit


_ones_cache: dict = {}


def _identity(af: Any, n: int, dtype: Any) -> Any:
    """An evaluated n x n identity, kept."""
    key = (n, dtype)
    hit = _ones_cache.get(key)
    if hit is None:
        hit = af.identity(n, n, dtype=dtype)
        af.eval(hit)
        _ones_cache[key] = hit
    return hit


def forward(af: Any, x: Any, mats: tuple, k: int, with_bias: bool, s: int, p: int, keep_input: bool,
            relu: bool = False):
    """Output [nx, 1, cout, N] of input ``x`` [W, 1, C, N] (with the bias in the last row of ``mats``' forward
    matrix if ``with_bias``, and a fused ReLU); also the input phases ([rows, N, C]) if ``keep_input``."""
    W, _, C, N = _dims4(x)
    nx = (W + 2 * p - k) // s + 1
    need = s * (nx - 1) + k  # padded rows any tap reads
    total = -(-max(need, p + W) // s) * s  # padded rows: a multiple of s
    xp = _pad_time(af, _time_major(af, x), p, total - p - W)
    if s > 1:
        # the phases (rows ph, ph + s, ...) as the columns of (padded input viewed as [s, rows / s * N * C])^T x I:
        # one GEMM, exact for finite inputs (x * 1 + y * 0); ArrayFire's CPU strided copy took 2.2 ms per phase
        # here against 0.5 ms for both (a NaN or inf in one phase would also reach its neighbours in the others)
        U = total // s
        split = af.matmul(af.moddims(xp, s, U * N * C), _identity(af, s, xp.dtype()), af.MATPROP.TRANS)
    phases, windows = [], []
    for ph, js in enumerate(_phase_taps(k, s)):
        if not js:
            phases.append(None)
            continue
        part = af.moddims(split[:, ph], U, N, C) if s > 1 else xp
        windows += [_rows(af, part, m, nx) for m in range(len(js))]
        phases.append(part if keep_input else None)
    # the windows side by side, [nx, N, C * kw] (whole columns copied), times all the taps in one GEMM; the bias
    # is one more column of ones times one more row of the matrix (no tiled bias, no extra pass)
    fwd = mats[0]
    O = _dims4(fwd)[1]
    if with_bias:
        windows.append(_ones(af, nx, N, fwd.dtype()))
    cols = _join_many(af, 2, windows)
    acc = af.moddims(af.matmul(af.moddims(cols, nx * N, _dims4(fwd)[0]), fwd), nx, N, O)
    if relu:
        acc = af.maxof(acc, 0.0)
    return _time_major(af, acc), (phases if keep_input else None)


def backward_input(af: Any, g: Any, mats: tuple, k: int, W: int, s: int, p: int) -> Any:
    """Gradient [W, 1, C, N] of the input from the output gradient ``g`` [nx, 1, cout, N] (already masked by a fused
    ReLU)."""
    nx, _, O, N = _dims4(g)
    pt = _phase_taps(k, s)
    mm = max(len(js) for js in pt) - 1  # the most steps a phase's taps reach back
    U = -(-(p + W) // s)  # phase rows that cover padded rows up to p + W
    first = p if s == 1 else 0  # stride 1: only the rows of the input itself
    count = W if s == 1 else U
    gt = _pad_time(af, _time_major(af, g), mm, max(first + count - nx, 0))
    parts = []
    C = None
    for ph, js in enumerate(pt):
        if not js:
            parts.append(None)
            continue
        bwd = mats[1][ph]
        C = _dims4(bwd)[1]
        # padded row u * s + ph gets tap ph + s * m from output step u - m, at row u - m + mm of gt
        windows = [_rows(af, gt, first + mm - m, count) for m in range(len(js))]
        cols = _join_many(af, 2, windows)  # [count, N, cout * k_ph]
        parts.append(af.moddims(af.matmul(af.moddims(cols, count * N, O * len(js)), bwd), count, N, C))
    if s == 1:
        return _time_major(af, parts[0])
    # interleave the phases (padded row u * s + ph): the phases side by side as the columns of [U * N * C, s]
    # (contiguous copies), times I as the transposed operand: [s, U * N * C] is the interleaved input, exactly
    # (the forward's phase split backwards; ArrayFire's CPU backend copies element by element when the new
    # dim 0 is this short: a join along dim 0 cost 10 ms)
    dt = parts[[i for i, q in enumerate(parts) if q is not None][0]].dtype()
    cols = _join_many(af, 1, [af.moddims(q, U * N * C, 1) if q is not None else af.constant(0, U * N * C, 1, dtype=dt)
                              for q in parts])
    dxp = af.moddims(af.matmul(_identity(af, s, dt), cols, af.MATPROP.NONE, af.MATPROP.TRANS), s * U, N, C)
    return _time_major(af, _rows(af, dxp, p, W))


def backward_weights(af: Any, g: Any, phases: list, k: int, s: int) -> Any:
    """Gradient [kw, 1, C, cout] of the weights from the output gradient [nx, 1, cout, N] (already masked by a fused
    ReLU) and the kept input phases."""
    nx, _, O, N = _dims4(g)
    g2 = af.moddims(_time_major(af, g), nx * N, O)
    per_tap = []
    C = _dims4(phases[0])[2]
    for j in range(k):
        m = j // s
        x2 = af.moddims(phases[j % s][m : m + nx, :, :, :], nx * N, C)
        per_tap.append(af.matmul(x2, g2, af.MATPROP.TRANS))  # [C, cout]
    stacked = af.moddims(per_tap[0], C, O, 1)
    for i in range(1, k, 3):
        stacked = af.join(2, stacked, *[af.moddims(a, C, O, 1) for a in per_tap[i : i + 3]])
    return fast_reorder(af, af.moddims(stacked, C, O, k), (2, 3, 0, 1))  # [C, cout, kw] -> [kw, 1, C, cout]


def promote(af: Any, backend: Any, *arrays: Any) -> list:
    """The arrays in one dtype (NumPy's promotion: float32 with float64 gives float64); af.matmul takes one type."""
    dts = [backend.dtype(a) for a in arrays if a is not None]
    dt = np.result_type(*dts)
    return [a if a is None or backend.dtype(a) == dt else backend.astype(a, dt) for a in arrays]

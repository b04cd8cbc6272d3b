"""A convolution over time that never builds the im2col buffer (NumPy and CuPy arrays).

wav2letter's convolutions are 1-D: input [T, 1, C, N], weights [kw, 1, C, cout].
Instead of copying every window into a [T' * N, kw * C] matrix (8x the input,
which was a third of an iteration's time), the output is accumulated from kw
GEMMs, one per tap, each reading a shifted view of the padded input. The batch
is laid out time-major, [T, N, C] in memory, so a shifted view of all N
samples is one contiguous matrix and one GEMM serves the whole batch. A stride
s > 1 splits the padded input into s phases (rows ph, ph + s, ...), so each tap
is again a contiguous slice. Rows are processed in blocks that stay in the
cache, as a direct convolution does, and every buffer comes from a pool that
reuses it in the next iteration (afmask.backend.workspace).

The backward to the input runs the same GEMMs transposed and needs no saved
input; the input (its padded phases, not the patches) is kept only when the
weights need a gradient.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from afmask.backend.workspace import POOL

#: Rows (time steps x samples) of one block. OpenBLAS blocks for its caches itself: measured here, blocks of 4096
#: rows were 2-12% faster than blocks of 256-1024 (fewer, larger GEMMs), so only very long inputs are split.
BLOCK_ROWS = 4096


class _Cblas:
    """``cblas_?gemm`` of the OpenBLAS numpy itself uses, through ctypes: C += A B with beta = 1, so the taps
    accumulate inside the GEMM instead of through a scratch matrix and a second pass over the output block."""

    ROW, NOTRANS, TRANS = 101, 111, 112

    def __init__(self):
        import ctypes

        self.fns = {}
        lib, suffix = self._find(ctypes)
        self.ilp64 = suffix.endswith("64_")
        if lib is None:
            return
        i = ctypes.c_int64 if self.ilp64 else ctypes.c_int
        p = ctypes.c_void_p
        for name, dt, real in (("sgemm", np.float32, ctypes.c_float), ("dgemm", np.float64, ctypes.c_double)):
            f = getattr(lib, name.join(suffix.split("{}")))
            f.restype = None
            f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, real, p, i, p, i, real, p, i]
            self.fns[np.dtype(dt)] = f
        self.addresses = {dt: ctypes.cast(f, ctypes.c_void_p).value for dt, f in self.fns.items()}

    @staticmethod
    def _find(ctypes):
        try:
            from threadpoolctl import threadpool_info
        except ImportError:
            return None, ""
        for info in threadpool_info():
            path = info.get("filepath", "")
            if info.get("internal_api") != "openblas" or "numpy" not in path:
                continue
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for pattern in ("scipy_cblas_{}64_", "cblas_{}64_", "cblas_{}"):
                if hasattr(lib, "sgemm".join(pattern.split("{}"))):
                    return lib, pattern
        return None, ""

    def gemm(self, dtype: Any, ta: bool, tb: bool, m: int, n: int, k: int, a: int, lda: int, b: int, ldb: int,
             beta: float, c: int, ldc: int) -> None:
        """C (m x n, row-major, leading dim ldc) = op(A) op(B) + beta C on raw pointers to ``dtype`` elements."""
        self.fns[dtype](self.ROW, self.TRANS if ta else self.NOTRANS, self.TRANS if tb else self.NOTRANS, m, n, k, 1.0,
                        a, lda, b, ldb, beta, c, ldc)


_cblas: Optional[_Cblas] = None


def _blas(xp: Any, dtype: Any) -> Optional[_Cblas]:
    """The direct GEMM for NumPy arrays of ``dtype``, if numpy's OpenBLAS offers it; else None (NumPy matmul)."""
    global _cblas
    if xp is not np or not USE_CBLAS:
        return None
    if _cblas is None:
        _cblas = _Cblas()
    return _cblas if np.dtype(dtype) in _cblas.fns else None


#: Whether to call numpy's OpenBLAS directly (tests compare both ways).
USE_CBLAS = True
#: Whether the tap loops run in afmask._ext (csrc/conv_time.cpp) where it is built: the same GEMMs, without a
#: ctypes call per tap, and the bias, ReLU and ReLU mask applied block by block (tests compare both ways).
USE_EXT = True


def _ext() -> Any:
    """afmask._ext if it is built and has the time convolution, else None."""
    if not USE_EXT:
        return None
    try:
        from afmask import _ext as ext
    except ImportError:
        return None
    return ext if hasattr(ext, "conv_forward") else None

class IdentityCache:
    """Values derived from arrays, kept for as long as those very arrays live: an entry holds its arrays, so
    their ids cannot be reused while it exists (afmask never changes fixed weights in place)."""

    #: Entries kept at most; past it the cache starts again (another model, or another length of a batch).
    MAX_ENTRIES = 256

    def __init__(self) -> None:
        self._entries: dict = {}

    def get(self, arrays: tuple, make: Callable[[], Any], extra: tuple = ()) -> Any:
        """``make()`` for ``arrays`` (and the hashable ``extra``), made once while the same arrays are given."""
        key = (*(id(a) for a in arrays), *extra)
        hit = self._entries.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], arrays)):
            return hit[1]
        value = make()
        if len(self._entries) > self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (arrays, value)
        return value


_taps_cache = IdentityCache()
_transposed_cache = IdentityCache()


def supported(backend: Any, wdims: tuple, idims: tuple, sy: int, py: int) -> bool:
    """Whether the time convolution applies: an xp backend, H = 1, a kernel one high, no padding or stride in H."""
    return getattr(backend, "xp", None) is not None and idims[1] == 1 and wdims[1] == 1 and sy == 1 and py == 0


def taps(xp: Any, w: Any, w4: Any, cache: bool) -> Any:
    """Weights ``w`` (its 4-D view ``w4``: [kw, 1, C, cout]) as kw contiguous (C, cout) matrices; cached for fixed
    (evaluation-mode) weights, whose arrays afmask never changes in place."""
    make = lambda: xp.ascontiguousarray(w4[:, 0])  # noqa: E731
    return _taps_cache.get((w,), make) if cache else make()


def transposed_taps(xp: Any, wk: Any) -> Any:
    """The taps ``wk`` (k, C, cout) as (k, cout, C), contiguous: the backward's GEMMs then transpose no operand,
    about 3 % faster in OpenBLAS here. Cached for as long as ``wk`` lives (the cached evaluation-mode taps)."""
    return _transposed_cache.get((wk,), lambda: xp.ascontiguousarray(wk.transpose(0, 2, 1)))


def _time_major(x4: Any) -> Any:
    """[W, 1, C, N] (any strides) -> a [W, N, C] view."""
    return x4[:, 0].transpose(0, 2, 1)


def _from_time_major(xp: Any, a: Any) -> Any:
    """[W, N, C] -> a [W, 1, C, N] view."""
    return a[:, None].transpose(0, 1, 3, 2)


def pad_phases(xp: Any, xt: Any, s: int, p: int, k: int, nx: int) -> list:
    """The zero-padded input [W + 2p, N, C] split into s phases, phase ph holding padded rows ph, ph + s, ..."""
    W, N, C = xt.shape
    phases = []
    for ph in range(s):
        rows = (k - 1 - ph) // s + nx if ph < k else 0  # rows any tap of this phase reads
        buf = POOL.take(xp, (rows, N, C), xt.dtype)
        # padded row ph + s*i is input row ph + s*i - p
        i0 = min(max(-(-(p - ph) // s), 0), rows)
        i1 = max(min(-(-(W + p - ph) // s), rows), i0)
        buf[:i0] = 0
        buf[i1:] = 0
        if i1 > i0:
            start = ph + s * i0 - p
            buf[i0:i1] = xt[start : start + s * (i1 - i0 - 1) + 1 : s]
        phases.append(buf)
    return phases


def forward(xp: Any, x4: Any, wk: Any, bias: Optional[Any], s: int, p: int, keep_input: bool, relu: bool = False):
    """Output [nx, 1, cout, N] (time-major memory) of input [W, 1, C, N]; also the phases if ``keep_input``.

    ``relu``: max(out, 0) applied to each block while it is in the cache (a fused ReLU)."""
    W, _, C, N = x4.shape
    k, _, O = wk.shape
    nx = (W + 2 * p - k) // s + 1
    phases = pad_phases(xp, _time_major(x4), s, p, k, nx)
    dt = xp.result_type(x4.dtype, wk.dtype)
    out = POOL.take(xp, (nx, N, O), dt)
    blas = _blas(xp, x4.dtype) if x4.dtype == wk.dtype else None  # mixed types: NumPy's promotion rules
    ext = _ext() if blas is not None and (bias is None or bias.dtype == wk.dtype) else None
    if ext is not None:
        b = None if bias is None else xp.ascontiguousarray(bias)
        ext.conv_forward(phases, wk, b, out, s, relu, BLOCK_ROWS, blas.addresses[out.dtype], blas.ilp64)
        return _from_time_major(xp, out), (phases if keep_input else None)
    out2 = out.reshape(nx * N, O)
    tb = max(BLOCK_ROWS // N, 1)
    scratch = POOL.take(xp, (min(tb, nx) * N, O), dt) if blas is None else None
    flat = [ph.reshape(-1, C) for ph in phases]
    if blas is not None:
        isz = out.itemsize
        ptrs = [f.ctypes.data for f in flat]
        wptr = [wk[j].ctypes.data for j in range(k)]
        optr = out2.ctypes.data
    for t0 in range(0, nx, tb):
        t1 = min(t0 + tb, nx)
        rows = slice(t0 * N, t1 * N)
        oc = out2[rows]
        if blas is not None:
            oc[...] = 0 if bias is None else bias  # the block starts as the bias; every tap accumulates
            for j in range(k):
                src = ptrs[j % s] + (j // s + t0) * N * C * isz
                blas.gemm(out.dtype, False, False, (t1 - t0) * N, O, C, src, C, wptr[j], O, 1.0,
                          optr + t0 * N * O * isz, O)
        else:
            tmp = scratch[: (t1 - t0) * N]
            for j in range(k):
                src = flat[j % s][(j // s + t0) * N : (j // s + t1) * N]
                if j == 0:
                    xp.matmul(src, wk[j], out=oc)
                else:
                    xp.matmul(src, wk[j], out=tmp)
                    oc += tmp
            if bias is not None:
                oc += bias
        if relu:
            xp.maximum(oc, 0, out=oc)
    return _from_time_major(xp, out), (phases if keep_input else None)


def _gt(xp: Any, g4: Any) -> Any:
    g = _time_major(g4)
    return g if g.flags.c_contiguous else xp.ascontiguousarray(g)


def _masked(xp: Any, gc: Any, out_rows: Optional[Any], buf: Any) -> Any:
    """A block of the output gradient, zeroed where the fused ReLU's output is not positive."""
    if out_rows is None:
        return gc
    xp.multiply(gc, out_rows > 0, out=buf)
    return buf


def backward_input(xp: Any, g4: Any, wk: Any, W: int, s: int, p: int, relu_out: Optional[Any] = None) -> Any:
    """Gradient [W, 1, C, N] of the input from the output gradient [nx, 1, cout, N] (through the fused ReLU whose
    output is ``relu_out``, if given)."""
    nx, _, O, N = g4.shape
    k, C, _ = wk.shape
    g2 = _gt(xp, g4).reshape(nx * N, O)
    o2 = None if relu_out is None else _time_major(relu_out).reshape(nx * N, O)
    Wp = W + 2 * p
    rows_of = [((k - 1 - ph) // s + nx if ph < k else 0) for ph in range(s)]
    dt = xp.result_type(g4.dtype, wk.dtype)
    tb = max(BLOCK_ROWS // N, 1)
    blas = _blas(xp, g4.dtype) if g4.dtype == wk.dtype else None  # mixed types: NumPy's promotion rules
    ext = _ext() if blas is not None and (relu_out is None or relu_out.dtype == g4.dtype) else None
    dph = [POOL.take(xp, (r, N, C), dt, zero=ext is None) for r in rows_of]  # the extension zeroes them itself
    flat = [d.reshape(-1, C) for d in dph]
    scratch = POOL.take(xp, (min(tb, nx) * N, C), dt) if blas is None else None
    gbuf = POOL.take(xp, (min(tb, nx) * N, O), g4.dtype) if o2 is not None else None
    wkt = transposed_taps(xp, wk) if blas is not None else None
    if ext is not None:
        o3 = None if o2 is None else xp.ascontiguousarray(o2).reshape(nx, N, O)
        ext.conv_backward_input(xp.ascontiguousarray(g2).reshape(nx, N, O), o3, wkt, dph, s, BLOCK_ROWS, gbuf,
                                blas.addresses[g4.dtype], blas.ilp64)
    for t0 in range(0, nx if ext is None else 0, tb):
        t1 = min(t0 + tb, nx)
        rows = slice(t0 * N, t1 * N)
        gc = _masked(xp, g2[rows], None if o2 is None else o2[rows], None if gbuf is None else gbuf[: (t1 - t0) * N])
        if blas is not None:
            gc = gc if gc.flags.c_contiguous else xp.ascontiguousarray(gc)
            gptr, isz = gc.ctypes.data, gc.itemsize
            for j in range(k):
                dst = flat[j % s].ctypes.data + (j // s + t0) * N * C * isz
                blas.gemm(gc.dtype, False, False, (t1 - t0) * N, C, O, gptr, O, wkt[j].ctypes.data, C, 1.0, dst, C)
            continue
        tmp = scratch[: (t1 - t0) * N]
        for j in range(k):
            dst = flat[j % s][(j // s + t0) * N : (j // s + t1) * N]
            xp.matmul(gc, wk[j].T, out=tmp)
            dst += tmp
    if s == 1:
        dxp = dph[0]
    else:
        counts = [min(rows_of[ph], len(range(ph, Wp, s))) for ph in range(s)]
        # zeroed only where some padded row gets no phase row (the strided copies below cover the rest)
        dxp = POOL.take(xp, (Wp, N, C), dt, zero=any(n < len(range(ph, Wp, s)) for ph, n in enumerate(counts)))
        for ph, n in enumerate(counts):
            dxp[ph : ph + s * (n - 1) + 1 : s] = dph[ph][:n]
    lo, hi = p, min(p + W, dxp.shape[0])
    if hi - lo < W:  # rows past the last window get no gradient
        full = xp.zeros((W, N, C), dtype=dt)
        full[: hi - lo] = dxp[lo:hi]
        return _from_time_major(xp, full)
    return _from_time_major(xp, dxp[lo:hi])


def backward_weights(xp: Any, g4: Any, phases: list, k: int, s: int, relu_out: Optional[Any] = None) -> Any:
    """Gradient [kw, 1, C, cout] of the weights from the output gradient and the kept input phases."""
    nx, _, O, N = g4.shape
    C = phases[0].shape[2]
    g2 = _gt(xp, g4).reshape(nx * N, O)
    if relu_out is not None:
        g2 = _masked(xp, g2, _time_major(relu_out).reshape(nx * N, O), xp.empty_like(g2))
    flat = [ph.reshape(-1, C) for ph in phases]
    dw = xp.empty((k, C, O), dtype=g4.dtype)
    for j in range(k):
        src = flat[j % s][(j // s) * N : (j // s + nx) * N]
        xp.matmul(src.T, g2, out=dw[j])
    return dw.reshape(k, 1, C, O)


"""The fused mask step: every path equals the C++ per-bin loop; bad arguments and NaN are caught.

Tolerance: relative error means ``max|a - ref| / max|ref|`` over the whole
array, and must be <= 1e-6. The paths differ from the loop only in rounding
(the loop divides ``(2*lam*m) / ||m||^2`` as the C++ does, the fused paths
multiply by one factor ``2*lam/||m||^2``, and sums over noise samples may be
ordered differently on a GPU): a few float32 ulps of the largest value.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from afmask import kernels
from afmask.kernels import NonFiniteError, backward, forward, per_bin_loop

RTOL = 1e-6
#: Float64 sums of up to ~3M float32 squares, added in different orders.
NORM_RTOL = 1e-9

K_REAL, T_REAL = 257, 1593


def rel_err(a, ref) -> float:
    """max|a - ref| / max|ref| (absolute when ref is all zero)."""
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    scale = np.abs(ref).max() if ref.size else 0.0
    diff = np.abs(a - ref).max() if ref.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def make(K, T, S=None, seed=0, x_scale=100.0, m_scale=1.0):
    """Random float32 F-order inputs: x, m (2K, T), eps (2K, T[, S]), xgrad (K, T[, S])."""
    rng = np.random.default_rng(seed)
    noise_shape = (2 * K, T) if S is None else (2 * K, T, S)
    k_shape = (K, T) if S is None else (K, T, S)

    def f(shape, scale):
        return np.asfortranarray((rng.standard_normal(shape) * scale).astype(np.float32))

    x = f((2 * K, T), x_scale)
    eps = f(noise_shape, 1.0)
    m = np.asfortranarray((rng.random((2 * K, T)) * m_scale).astype(np.float32))
    xgrad = f(k_shape, 1.0)
    return x, eps, m, xgrad


def sqnorm(a) -> float:
    return float(np.sum(np.asarray(a, dtype=np.float64) ** 2))


# ---------------------------------------------------------------------------
# paths: how to move the NumPy inputs to each path's arrays and back


def _cupy_or_skip():
    status = kernels.path_status()["cuda"]
    if status != "available":
        pytest.skip(f"cuda path unavailable: {status}")
    import cupy

    return cupy


def _af_or_skip():
    status = kernels.path_status()["arrayfire"]
    if status != "available":
        pytest.skip(f"arrayfire path unavailable: {status}")
    import arrayfire

    return arrayfire


def _to(path, a):
    if path == "cuda":
        cupy = _cupy_or_skip()
        return cupy.asfortranarray(cupy.asarray(a))
    if path == "arrayfire":
        af = _af_or_skip()
        return af.interop.from_ndarray(a)  # keeps the logical shape
    return a.copy(order="F")


def _back(path, a, shape=None):
    if path == "cuda":
        return a.get()
    if path == "arrayfire":  # ArrayFire drops trailing 1s: (K, T, 1) comes back as (K, T)
        out = a.to_ndarray()
        return out if shape is None else out.reshape(shape, order="F")
    return a


FAST_PATHS = ["expr", "ext", "opencl", "cuda", "arrayfire"]


def _ext_or_skip():
    status = kernels.path_status()["ext"]
    if status != "available":
        pytest.skip(f"ext path unavailable: {status}")


def _opencl_or_skip():
    status = kernels.path_status()["opencl"]
    if status != "available":
        pytest.skip(f"opencl path unavailable: {status}")


def _host_path_or_skip(path):
    """Skip where a path that takes NumPy arrays (ext, opencl) does not run here."""
    if path == "ext":
        _ext_or_skip()
    elif path == "opencl":
        _opencl_or_skip()


def run_path(path, x, eps, m, xgrad, lam, m_sqnorm, lr):
    """(mag, mgrad, m_next, StepResult) of one step on path, as NumPy arrays."""
    _host_path_or_skip(path)
    xs, es, ms, gs = (_to(path, a) for a in (x, eps, m, xgrad))
    mag = forward(xs, es, ms, path=path)
    res = backward(gs, xs, es, ms, lam=lam, m_sqnorm=m_sqnorm, lr=lr, path=path)
    return _back(path, mag, xgrad.shape), _back(path, res.mgrad, m.shape), _back(path, res.m, m.shape), res


def assert_matches_loop(path, x, eps, m, xgrad, lam=10.0, lr=0.1):
    m_sqnorm = sqnorm(m)
    mag_r, mgrad_r, mnext_r = per_bin_loop(x, eps, m, xgrad, lam=lam, m_sqnorm=m_sqnorm, lr=lr)
    mag, mgrad, mnext, res = run_path(path, x, eps, m, xgrad, lam, m_sqnorm, lr)
    assert mag.shape == mag_r.shape and mgrad.shape == mgrad_r.shape and mnext.shape == mnext_r.shape
    assert rel_err(mag, mag_r) <= RTOL, "mag"
    assert rel_err(mgrad, mgrad_r) <= RTOL, "mgrad"
    assert rel_err(mnext, mnext_r) <= RTOL, "m_next"
    assert res.nonfinite == 0
    # the norms are those of the path's own outputs (float64 sums, any order) ...
    assert res.m_sqnorm == pytest.approx(sqnorm(mnext), rel=NORM_RTOL, abs=1e-300)
    assert res.mgrad_sqnorm == pytest.approx(sqnorm(mgrad), rel=NORM_RTOL, abs=1e-300)
    # ... which differ from the loop's by the arrays' rounding: squares double RTOL
    assert res.m_sqnorm == pytest.approx(sqnorm(mnext_r), rel=2 * RTOL, abs=1e-300)
    return mag, mgrad, mnext, res


# ---------------------------------------------------------------------------
# the reference itself: the formula, in float64, and finite differences


def formula64(x, eps, m, xgrad, lam, m_sqnorm):
    """The module doc's maths in float64 with NumPy, independent of the loop."""
    x, eps, m, xgrad = (np.asarray(a, dtype=np.float64) for a in (x, eps, m, xgrad))
    if eps.ndim == 2:
        eps, xgrad = eps[:, :, None], xgrad[:, :, None]
    xt = x[:, :, None] + eps * m[:, :, None]
    mag = np.sqrt(xt[0::2] ** 2 + xt[1::2] ** 2)
    back = np.repeat(mag, 2, axis=0)
    xg = np.repeat(xgrad, 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(back == 0, 0.0, xg * eps * xt / back)
    g = term.mean(axis=2)
    return mag, g - 2 * lam * m / m_sqnorm


@pytest.mark.parametrize("S", [None, 1, 4])
def test_loop_is_the_formula(S):
    x, eps, m, xgrad = make(17, 23, S, seed=1)
    mag, mgrad, mnext = per_bin_loop(x, eps, m, xgrad, lam=3.0, m_sqnorm=sqnorm(m), lr=0.5)
    mag64, mgrad64 = formula64(x, eps, m, xgrad, 3.0, sqnorm(m))
    assert rel_err(mag, mag64.reshape(mag.shape)) <= 1e-6
    assert rel_err(mgrad, mgrad64) <= 1e-5  # float32 against float64
    assert rel_err(mnext, m - np.float32(0.5) * mgrad) == 0.0


def test_gradient_matches_finite_differences():
    """mgrad is d/dm of L(m) = mean_s sum(xgrad * |x + eps*m|) - lam*log(||m||^2), checked in float64."""
    K, T, S, lam = 3, 4, 2, 0.7
    x, eps, m, xgrad = make(K, T, S, seed=2, x_scale=1.0)
    x64, e64, g64 = (a.astype(np.float64) for a in (x, eps, xgrad))

    def loss(mm):
        xt = x64[:, :, None] + e64 * mm[:, :, None]
        mag = np.sqrt(xt[0::2] ** 2 + xt[1::2] ** 2)
        return np.sum(g64 * mag) / S - lam * np.log(np.sum(mm**2))

    _, mgrad, _ = per_bin_loop(x, eps, m, xgrad, lam=lam, m_sqnorm=sqnorm(m))
    m64 = m.astype(np.float64)
    rng = np.random.default_rng(3)
    for _ in range(5):
        v = rng.standard_normal(m.shape)
        h = 1e-6
        fd = (loss(m64 + h * v) - loss(m64 - h * v)) / (2 * h)
        assert float(np.sum(mgrad * v)) == pytest.approx(fd, rel=1e-4)


# ---------------------------------------------------------------------------
# every path against the loop


@pytest.mark.parametrize("path", FAST_PATHS)
@pytest.mark.parametrize("S", [None, 1, 4])
def test_real_size(path, S):
    assert_matches_loop(path, *make(K_REAL, T_REAL, S, seed=10))


@pytest.mark.parametrize("path", FAST_PATHS)
@pytest.mark.parametrize("K,T,S", [(1, 1, None), (1, 1, 1), (1, 1, 3), (1, 5, None), (4, 1, 2), (3, 7, None)])
def test_tiny_shapes(path, K, T, S):
    assert_matches_loop(path, *make(K, T, S, seed=K * 100 + T))


@pytest.mark.parametrize("path", FAST_PATHS)
def test_lam_zero_and_no_update(path):
    x, eps, m, xgrad = make(8, 9, 2, seed=4)
    m_before = m.copy()
    _, mgrad_r, _ = per_bin_loop(x, eps, m, xgrad)
    _, mgrad, mnext, res = run_path(path, x, eps, m, xgrad, lam=0.0, m_sqnorm=None, lr=None)
    assert rel_err(mgrad, mgrad_r) <= RTOL
    assert np.array_equal(mnext, m_before)  # lr=None: m untouched
    assert res.m_sqnorm == pytest.approx(sqnorm(m_before), rel=NORM_RTOL)


@pytest.mark.parametrize("path", FAST_PATHS)
def test_zero_magnitude_bin(path):
    """Where |x + eps*m| = 0 the data term is 0 (the C++ gives NaN): mgrad is the regulariser's term only."""
    x, eps, m, xgrad = make(5, 6, None, seed=5)
    x[4:6, 2] = 0.0  # bin 2 of frame 2: x = 0 and eps = 0 -> x~ = 0
    eps[4:6, 2] = 0.0
    x[0:2, 3] = 0.0  # bin 0 of frame 3: x = 0 and m = 0
    m[0:2, 3] = 0.0
    mag, mgrad, _, _ = assert_matches_loop(path, x, eps, m, xgrad, lam=2.0)
    assert mag[2, 2] == 0.0 and mag[0, 3] == 0.0
    coef = np.float32(2 * 2.0 / sqnorm(m))
    assert np.allclose(mgrad[4:6, 2], -coef * m[4:6, 2], rtol=1e-6)
    assert np.all(mgrad[0:2, 3] == 0.0)
    assert np.all(np.isfinite(mgrad))


@pytest.mark.parametrize("path", FAST_PATHS)
@pytest.mark.parametrize(
    "x_scale,m_scale,lam",
    [
        (1e17, 1e16, 1.0),  # re^2 + im^2 up to ~1e36, below float32 overflow (3.4e38)
        (1e-17, 1e-18, 1.0),  # squares ~1e-34: still normal floats
        # squares ~1e-42: subnormal; lam = 0 because the C++ (and so the loop) divides
        # by ||m||^2 rounded to float32, itself subnormal and a few digits only here
        (1e-21, 1e-21, 0.0),
        (1.0, 0.0, 0.0),  # m = 0: the clean magnitudes, the first step of a run from zero
    ],
)
def test_extreme_values(path, x_scale, m_scale, lam):
    """Huge and tiny values, and m = 0: every path still equals the loop."""
    x, eps, m, xgrad = make(9, 11, 2, seed=6, x_scale=x_scale, m_scale=m_scale)
    assert_matches_loop(path, x, eps, m, xgrad, lam=lam)


# ---------------------------------------------------------------------------
# non-finite values


@pytest.mark.parametrize("path", ["loop", "expr", "ext", "opencl", "cuda", "arrayfire"])
def test_nonfinite_is_reported_and_never_written_to_m(path):
    x, eps, m, xgrad = make(6, 5, None, seed=7)
    x[3, 1] = np.nan  # bin 1 of frame 1: its magnitude, both mgrad entries
    xgrad[4, 2] = np.inf  # bin 4 of frame 2: its pair, both mgrad entries
    _host_path_or_skip(path)
    xs, es, ms, gs = (_to(path, a) for a in (x, eps, m, xgrad))
    with pytest.raises(NonFiniteError, match="1 non-finite"):
        forward(xs, es, ms, path=path)
    mag = _back(path, forward(xs, es, ms, path=path, check_finite=False), xgrad.shape)
    bad = ~np.isfinite(mag)
    assert bad.sum() == 1 and np.isnan(mag[1, 1])
    with pytest.raises(NonFiniteError, match="6 non-finite"):
        backward(gs, xs, es, ms, lam=1.0, m_sqnorm=sqnorm(m), lr=0.1, path=path)
    if path != "arrayfire":  # in place: the raise came after the pass; m got no NaN/Inf
        m_after = _back(path, ms, m.shape)
        assert np.isfinite(m_after).all()
        assert np.array_equal(m_after[2:4, 1], m[2:4, 1]) and np.array_equal(m_after[8:10, 2], m[8:10, 2])
        ms = _to(path, m)
    res = backward(gs, xs, es, ms, lam=1.0, m_sqnorm=sqnorm(m), lr=0.1, path=path, check_finite=False)
    # 2 pairs + 4 gradient entries; 2 + 2 entries of m kept their value
    assert res.nonfinite == 6
    m_after = _back(path, res.m, m.shape)
    assert np.isfinite(m_after).all() and np.isfinite(res.m_sqnorm)
    assert np.array_equal(m_after[2:4, 1], m[2:4, 1]) and np.array_equal(m_after[8:10, 2], m[8:10, 2])
    assert not np.isfinite(res.mgrad_sqnorm)


def test_nonfinite_counts_agree_across_cpu_paths():
    x, eps, m, xgrad = make(7, 8, 3, seed=8)
    eps[0, 0, 1] = np.nan
    m[5, 6] = np.inf
    xgrad[2, 3, 2] = np.nan
    counts = set()
    for path in kernels.available_paths(np):
        mm = m.copy(order="F")
        n_fwd = forward(x, eps, mm, path=path, check_finite=False)
        res = backward(xgrad, x, eps, mm, lam=0.5, m_sqnorm=10.0, lr=0.1, path=path, check_finite=False)
        counts.add((int(np.sum(~np.isfinite(n_fwd))), res.nonfinite))
    assert len(counts) == 1, counts


# ---------------------------------------------------------------------------
# arguments: wrong dtype, layout, shape; never a silent copy


def _ext_mod():
    _ext_or_skip()
    from afmask import _ext

    return _ext


@pytest.mark.parametrize("path", ["loop", "expr", "ext", "opencl"])
def test_rejects_c_order(path):
    _host_path_or_skip(path)
    x, eps, m, xgrad = make(4, 6)
    with pytest.raises(ValueError, match=r"x: expected a Fortran-ordered"):
        forward(np.ascontiguousarray(x), eps, m, path=path)
    with pytest.raises(ValueError, match=r"eps: expected a Fortran-ordered"):
        backward(xgrad, x, np.ascontiguousarray(eps), m, path=path)


@pytest.mark.parametrize("path", ["loop", "expr", "ext", "opencl"])
def test_rejects_wrong_dtype_and_shape(path):
    _host_path_or_skip(path)
    x, eps, m, xgrad = make(4, 6, 2)
    with pytest.raises(TypeError, match=r"m: expected dtype float32.*float64"):
        forward(x, eps, np.asfortranarray(m, dtype=np.float64), path=path)
    with pytest.raises(ValueError, match=r"m: expected shape \(8, 6\), got \(8, 5\)"):
        forward(x, eps, np.asfortranarray(m[:, :5]), path=path)
    with pytest.raises(ValueError, match=r"xgrad: expected shape \(4, 6, 2\), got \(4, 6\)"):
        backward(np.asfortranarray(xgrad[:, :, 0]), x, eps, m, path=path)
    with pytest.raises(ValueError, match=r"x: expected shape \(2K, T\)"):
        forward(np.asfortranarray(x[:7]), eps, m, path=path)
    with pytest.raises(ValueError, match=r"eps: expected shape"):
        forward(x, np.asfortranarray(eps[:, :3]), m, path=path)
    with pytest.raises(ValueError, match=r"out: expected shape \(4, 6, 2\)"):
        forward(x, eps, m, out=np.zeros((4, 6), np.float32, order="F"), path=path)


def test_ext_rejects_directly():
    """The C++ module checks on its own: no implicit conversion, errors name the argument."""
    ext = _ext_mod()
    x, eps, m, xgrad = make(4, 6)
    mag = np.zeros((4, 6), np.float32, order="F")
    with pytest.raises(TypeError, match=r"x: expected a numpy.ndarray of float32, got list"):
        ext.forward(x.tolist(), eps, m, mag)
    with pytest.raises(TypeError, match=r"eps: expected dtype float32 .*got float64"):
        ext.forward(x, eps.astype(np.float64, order="F"), m, mag)
    with pytest.raises(TypeError, match=r"m: expected dtype float32 .*got >f4"):
        ext.forward(x, eps, m.astype(">f4", order="F"), mag)
    with pytest.raises(ValueError, match=r"x: expected a Fortran-ordered"):
        ext.forward(np.ascontiguousarray(x), eps, m, mag)
    with pytest.raises(ValueError, match=r"eps: expected a Fortran-ordered"):
        ext.forward(x, np.asfortranarray(np.zeros((8, 12), np.float32))[:, ::2], m, mag)
    with pytest.raises(ValueError, match=r"mag: expected shape \(4, 6\), got \(6, 4\)"):
        ext.forward(x, eps, m, np.zeros((6, 4), np.float32, order="F"))
    ro = mag.copy(order="F")
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"mag: is written in place but the array is read-only"):
        ext.forward(x, eps, m, ro)
    with pytest.raises(ValueError, match=r"mag: shares memory with x"):
        ext.forward(x, eps, m, x.reshape(-1, order="F")[:24].reshape(4, 6, order="F"))
    mgrad = np.zeros_like(m, order="F")
    with pytest.raises(ValueError, match=r"mgrad: shares memory with m"):
        ext.backward(xgrad, x, eps, m, m, 0.0, 0.0, 0.1, True)
    with pytest.raises(ValueError, match=r"m_sqnorm: expected a finite value > 0 when lam != 0"):
        ext.backward(xgrad, x, eps, m, mgrad, 1.0, 0.0, 0.1, True)
    m_ro = m.copy(order="F")
    m_ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"m: is written in place but the array is read-only"):
        ext.backward(xgrad, x, eps, m_ro, mgrad, 0.0, 0.0, 0.1, True)
    ext.backward(xgrad, x, eps, m_ro, mgrad, 0.0, 0.0, 0.1, False)  # no update: read-only m is fine


def test_ext_works_in_place():
    _ext_or_skip()
    x, eps, m, xgrad = make(6, 7, 2)
    mag = np.full((6, 7, 2), -1.0, np.float32, order="F")
    mgrad = np.full_like(m, -1.0, order="F")
    ptr = m.ctypes.data
    assert forward(x, eps, m, out=mag, path="ext") is mag
    res = backward(xgrad, x, eps, m, lam=1.0, lr=0.1, out=mgrad, path="ext")
    assert res.mgrad is mgrad and res.m is m and m.ctypes.data == ptr
    assert (mag >= 0).all() and (mgrad != -1.0).all()


def test_scalars_are_checked():
    x, eps, m, xgrad = make(3, 4)
    with pytest.raises(ValueError, match="m_sqnorm"):
        backward(xgrad, x, eps, m, lam=1.0, m_sqnorm=0.0)
    with pytest.raises(ValueError, match="lam"):
        backward(xgrad, x, eps, m, lam=float("nan"))
    with pytest.raises(ValueError, match="lr"):
        backward(xgrad, x, eps, m, lr=float("inf"))


def test_m_sqnorm_defaults_to_the_norm_of_m():
    x, eps, m, xgrad = make(5, 6, seed=9)
    a = backward(xgrad, x, eps, m, lam=2.0, path="expr")
    b = backward(xgrad, x, eps, m, lam=2.0, m_sqnorm=sqnorm(m), path="expr")
    assert np.array_equal(a.mgrad, b.mgrad)


def test_chained_steps_agree_with_the_loop():
    """Three SGD steps, each fed the previous step's m_sqnorm, as the experiment loop does."""
    x, eps, m, xgrad = make(16, 20, 1, seed=11)
    m_ref, m_fast = m.copy(order="F"), m.copy(order="F")
    sq = sqnorm(m)
    path = kernels.best_path(np)
    for _ in range(3):
        _, _, m_ref = per_bin_loop(x, eps, m_ref, xgrad, lam=5.0, m_sqnorm=sqnorm(m_ref), lr=0.05)
        m_ref = np.asfortranarray(m_ref)
        forward(x, eps, m_fast, path=path)
        sq = backward(xgrad, x, eps, m_fast, lam=5.0, m_sqnorm=sq, lr=0.05, path=path).m_sqnorm
    assert rel_err(m_fast, m_ref) <= RTOL
    assert sq == pytest.approx(sqnorm(m_ref), rel=NORM_RTOL)


@pytest.mark.parametrize("S", [None, 1, 3])
def test_ext_simd_levels_agree_bit_for_bit(S):
    """The AVX, SSE2 and portable scalar loops of the extension do the same operations in the same order."""
    ext = _ext_mod()
    levels = {"avx": ["avx", "sse2", "none"], "sse2": ["sse2", "none"], "none": ["none"]}[ext.simd]
    x, eps, m, xgrad = make(37, 19, S, seed=13)  # K = 37: whole AVX and SSE2 blocks and a scalar rest
    x[2:4, 3] = 0.0  # a zero magnitude
    eps[2:4, 3] = 0.0
    x[5, 7] = np.nan  # and a non-finite one
    out = {}
    for level in levels:
        mm, mgrad = m.copy(order="F"), np.empty_like(m, order="F")
        sq_m, _, bad = ext.backward(xgrad, x, eps, mm, mgrad, 1.5, sqnorm(m), 0.1, True, level)
        out[level] = (mgrad, mm, sq_m, bad)
    ref = out["none"]
    for level, (mgrad, mm, sq_m, bad) in out.items():
        assert np.array_equal(mgrad, ref[0], equal_nan=True), level
        assert np.array_equal(mm, ref[1]), level
        assert sq_m == pytest.approx(ref[2], rel=1e-12) and bad == ref[3] == (3 if S in (None, 1) else 5), level
    with pytest.raises(ValueError, match="simd: expected 'auto', 'avx', 'sse2' or 'none'"):
        ext.backward(xgrad, x, eps, m, np.empty_like(m, order="F"), 0.0, 0.0, 0.0, False, "fast")


def test_threads_do_not_change_results():
    _ext_or_skip()
    x, eps, m, xgrad = make(K_REAL, 300, 2, seed=12)
    before = kernels.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            kernels.set_num_threads(n)
            mm = m.copy(order="F")
            mag = forward(x, eps, mm, path="ext")
            res = backward(xgrad, x, eps, mm, lam=1.0, m_sqnorm=sqnorm(m), lr=0.1, path="ext")
            out.append((mag, res.mgrad, mm, res.m_sqnorm))
    finally:
        kernels.set_num_threads(before)
    assert kernels.get_num_threads() == before
    for a, b in zip(out[0][:3], out[1][:3]):
        assert np.array_equal(a, b)
    assert out[0][3] == pytest.approx(out[1][3], rel=1e-12)


# ---------------------------------------------------------------------------
# path choice


def test_path_choice():
    status = kernels.path_status()
    assert set(status) == set(kernels.PATHS)
    paths = kernels.available_paths(np)
    assert paths[:2] == ["loop", "expr"]
    expected = next(p for p in ("ext", "opencl", "expr") if status[p] == "available")
    assert kernels.best_path(np) == expected == kernels.best_path("numpy")
    x, eps, m, _ = make(2, 3)
    with pytest.raises(ValueError, match="path: expected 'auto' or one of"):
        forward(x, eps, m, path="fast")
    with pytest.raises(ValueError, match="path 'cuda' does not take numpy arrays"):
        forward(x, eps, m, path="cuda")
    with pytest.raises(TypeError, match="expected a numpy.ndarray, cupy.ndarray or arrayfire.Array"):
        forward(x.tolist(), eps, m)
    info = kernels.extension_info()
    assert (info is None) == (status["ext"] != "available")
    if info is not None:
        assert info["simd"] in ("avx", "sse2", "none") and info["threads"] >= 1


# ---------------------------------------------------------------------------
# the CUDA source compiles


def test_cuda_source_compiles_with_nvcc(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH")
    ptx = tmp_path / "mask_step.ptx"
    cmd = [nvcc, "-arch=sm_90", "--fmad=false", "--ptx", "-o", str(ptx), str(kernels.CUDA_SOURCE)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    text = ptx.read_text()
    assert ".entry afmask_forward(" in text and ".entry afmask_backward(" in text


# ---------------------------------------------------------------------------
# the OpenCL kernel: the CUDA kernel's arithmetic in OpenCL C (tested on pocl in CI)


def test_opencl_kernel_is_the_cuda_kernels_arithmetic():
    """The two GPU sources carry the same statements, so a fix in one shows up as a difference here."""
    from afmask.kernels.opencl import OPENCL_SOURCE

    cu, cl = kernels.CUDA_SOURCE.read_text(), OPENCL_SOURCE.read_text()
    for line in (
        "const float re = xv.x + ev.x * mv.x;",
        "const float q0 = (ev.x * ev.x * mv.x + ev.x * xv.x) / a;",
        "g0 = s == 0 ? t0 : g0 + t0;",
        "const float n0 = update ? mv.x - lr * mg0 : mv.x, n1 = update ? mv.y - lr * mg1 : mv.y;",
        "sq_m += (double)s0 * s0 + (double)s1 * s1;",
    ):
        assert line in cu and line in cl, line
    assert "#pragma OPENCL FP_CONTRACT OFF" in cl and "--fmad=false" in kernels.mask_step.CUDA_OPTIONS


def test_opencl_in_place_and_reused_buffers():
    _opencl_or_skip()
    for K, T, S in [(5, 9, 3), (257, 40, None), (2, 3, 1)]:  # buffers grow and shrink between calls
        x, eps, m, xgrad = make(K, T, S, seed=K)
        m_sqnorm = sqnorm(m)
        _, mgrad_r, mnext_r = per_bin_loop(x, eps, m, xgrad, lam=2.0, m_sqnorm=m_sqnorm, lr=0.05)
        mm = m.copy(order="F")
        out = np.empty_like(m, order="F")
        res = backward(xgrad, x, eps, mm, lam=2.0, m_sqnorm=m_sqnorm, lr=0.05, out=out, path="opencl")
        assert res.mgrad is out and res.m is mm
        assert rel_err(out, mgrad_r) <= RTOL and rel_err(mm, mnext_r) <= RTOL


def test_opencl_info_names_the_device():
    _opencl_or_skip()
    info = kernels.opencl_info()
    assert info["platform"] and info["device"] and info["work_group"] >= 1


def test_kernel_path_setting_accepts_opencl():
    """A mask run with kernel_path='opencl' gives the m of the default path (same noise, same maths)."""
    _opencl_or_skip()
    from afmask.backend import get_backend, use_backend
    from afmask.mask import MaskConfig, MaskObjective, run_mask
    from test_mask_gradients import clean_fft, small_model

    B = get_backend("numpy")
    cfg = MaskConfig.preset("default", iterations=5, early_stop=False, samples=2)
    ms = {}
    for path in ("opencl", "expr"):
        with use_backend("numpy"):  # the OpenCL path reads host arrays, whichever backend the suite runs on
            obj = MaskObjective(clean_fft(), small_model(B, np.float32), cfg.variant, noise=cfg.noise, backend=B,
                                kernel_path=path)
            assert obj.kernel_path == path
            ms[path] = run_mask(obj, cfg.replace(kernel_path=path), None, progress=False).m_last
    assert rel_err(ms["opencl"], ms["expr"]) <= 1e-5

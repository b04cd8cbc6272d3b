"""The time convolution (no im2col buffer) against the im2col convolution it replaces, values and gradients."""

import itertools

import numpy as np
import pytest

from afmask import fl
from afmask.fl import Variable
from afmask.fl import afconv as _afconv
from afmask.fl import conv as _conv


def _run(x, w, b, sx, px, direct, calc_w):
    xv, wv, bv = Variable(x, True), Variable(w, calc_w), Variable(b, calc_w)
    out = fl.conv2d(xv, wv, bv, sx, 1, px, 0)
    g = np.random.default_rng(1).standard_normal(out.host().shape).astype(x.dtype)
    out.backward(Variable(g, False))
    grads = [xv.grad().host()] + ([wv.grad().host(), bv.grad().host()] if calc_w else [])
    return out.host(), grads


@pytest.mark.parametrize("sx,px,k,n,calc_w", [(s, p, k, n, c) for (s, p, k), n, c in itertools.product(
    [(1, 0, 1), (1, 3, 8), (2, 3, 8), (2, 0, 3), (3, 2, 5), (2, 6, 4), (3, 0, 2)], [1, 3], [False, True])])
def test_time_convolution_equals_im2col(sx, px, k, n, calc_w, monkeypatch):
    rng = np.random.default_rng(k * 10 + sx)
    W, C, O = 23, 5, 4
    x = rng.standard_normal((W, 1, C, n)).astype(np.float64)
    w = np.asfortranarray(rng.standard_normal((k, 1, C, O)))
    b = rng.standard_normal((1, 1, O))
    fast = _run(x, w, b, sx, px, True, calc_w)
    monkeypatch.setattr(_conv, "BLOCK_ROWS", 4)  # several row blocks, partial last block
    blocked = _run(x, w, b, sx, px, True, calc_w)
    monkeypatch.setattr(_conv, "USE_EXT", False)  # the tap loops in Python, one ctypes GEMM call per tap
    loops = _run(x, w, b, sx, px, True, calc_w)
    monkeypatch.setattr(_conv, "USE_CBLAS", False)  # NumPy's matmul and a scratch block instead of BLAS directly
    plain = _run(x, w, b, sx, px, True, calc_w)
    monkeypatch.setattr(_conv, "supported", lambda *a: False)
    monkeypatch.setattr(_afconv, "supported", lambda *a: False)  # on arrayfire, its own time convolution above
    ref = _run(x, w, b, sx, px, False, calc_w)
    for got in (fast, blocked, loops, plain):
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-12, atol=1e-12)
        for a, r in zip(got[1], ref[1]):
            np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)


def test_eval_mode_keeps_no_input_for_the_backward():
    """Without a weight gradient the graph holds no copy of the input (the im2col patches were kept before)."""
    x = np.random.default_rng(0).standard_normal((40, 1, 3, 2)).astype(np.float32)
    w = Variable(np.asfortranarray(np.ones((4, 1, 3, 2), np.float32)), False)
    out = fl.conv2d(Variable(x, True), w, None, 2, 1, 1, 0)
    cells = [c.cell_contents for c in out._grad_func.__closure__]
    held = [c for c in cells if isinstance(c, list) or (isinstance(c, np.ndarray) and c.size >= x.size)]
    assert held == [], f"the backward keeps {[(type(c).__name__, getattr(c, 'shape', None)) for c in held]}"


@pytest.mark.parametrize("calc_w", [False, True])
def test_fused_relu_equals_relu_of_conv(calc_w):
    from afmask.fl.functions import conv2d_relu

    rng = np.random.default_rng(3)
    x = rng.standard_normal((19, 1, 4, 2))
    w = np.asfortranarray(rng.standard_normal((5, 1, 4, 3)))
    b = rng.standard_normal((1, 1, 3))
    g = rng.standard_normal((10, 1, 3, 2))
    res = []
    for fused in (True, False):
        xv, wv, bv = Variable(x, True), Variable(w, calc_w), Variable(b, calc_w)
        out = conv2d_relu(xv, wv, bv, 2, 1, 2, 0) if fused else fl.relu(fl.conv2d(xv, wv, bv, 2, 1, 2, 0))
        out.backward(Variable(g, False))
        res.append([out.host(), xv.grad().host()] + ([wv.grad().host(), bv.grad().host()] if calc_w else []))
    assert (res[0][0] == 0).any() and (res[0][0] > 0).any()
    for a, r in zip(*res):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)


def test_direct_blas_is_found_and_used():
    """numpy's own OpenBLAS is called directly for float32 and float64 (else the tests above compare matmul twice)."""
    from threadpoolctl import threadpool_info

    if not any(i.get("internal_api") == "openblas" and "numpy" in i.get("filepath", "") for i in threadpool_info()):
        pytest.skip("numpy here does not use its bundled OpenBLAS; the time convolution uses NumPy's matmul")
    assert _conv._blas(np, np.float32) is not None and _conv._blas(np, np.float64) is not None


def test_a_float64_gradient_through_float32_weights_promotes():
    """A float64 output gradient into a float32 layer (as a float64 loss gives): NumPy's promotion, not garbage."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((21, 1, 6, 1)).astype(np.float32)
    w = Variable(np.asfortranarray(rng.standard_normal((5, 1, 6, 4)).astype(np.float32)), False)
    g = rng.standard_normal((11, 1, 4))
    grads = []
    for fast in (True, False):
        xv = Variable(x, True)
        with pytest.MonkeyPatch.context() as mp:
            if not fast:
                mp.setattr(_conv, "supported", lambda *a: False)
            fl.conv2d(xv, w, None, 2, 1, 2, 0).backward(Variable(g, False))
        grads.append(xv.grad().host())
    assert np.all(np.isfinite(grads[0]))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-5)


@pytest.fixture()
def numpy_backend():
    """The NumPy backend, whatever AFMASK_BACKEND says: these tests are about afmask.fl.conv's own loops."""
    from afmask.backend import use_backend

    with use_backend("numpy"):
        yield


def _needs_extension_loops():
    if _conv._ext() is None:
        pytest.skip("afmask._ext is not built (python setup.py build_ext --inplace): the tap loops run in Python")
    if _conv._blas(np, np.float32) is None:
        pytest.skip("numpy here does not use its bundled OpenBLAS: there is no GEMM for the extension to call")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sx,px,k,n,relu,bias,block", [
    (1, 3, 8, 1, True, True, 4096), (2, 3, 8, 1, True, True, 4096), (1, 3, 8, 3, False, True, 5),
    (2, 0, 3, 2, True, False, 7), (3, 2, 5, 1, False, False, 4096), (2, 6, 4, 3, True, True, 3)])
def test_extension_tap_loops_give_the_python_loops_bits(dtype, sx, px, k, n, relu, bias, block, monkeypatch,
                                                         numpy_backend):
    """The C++ tap loops make the same GEMM calls in the same order: values and gradients equal to the bit."""
    from afmask.fl.functions import conv2d_relu

    _needs_extension_loops()
    monkeypatch.setattr(_conv, "BLOCK_ROWS", block)
    rng = np.random.default_rng(k + 10 * sx + n)
    x = rng.standard_normal((41, 1, 6, n)).astype(dtype)
    w = np.asfortranarray(rng.standard_normal((k, 1, 6, 5)).astype(dtype))
    b = rng.standard_normal((1, 1, 5)).astype(dtype) if bias else None
    res = []
    for ext in (True, False):
        monkeypatch.setattr(_conv, "USE_EXT", ext)
        xv = Variable(x, True)
        bv = None if b is None else Variable(b, False)
        op = conv2d_relu if relu else fl.conv2d
        out = op(xv, Variable(w, False), bv, sx, 1, px, 0)
        out.backward(Variable(rng.standard_normal(out.host().shape).astype(dtype), False))
        res.append((out.host(), xv.grad().host()))
        rng = np.random.default_rng(k + 10 * sx + n)
        rng.standard_normal(x.size + w.size + (0 if b is None else b.size))  # the same output gradient again
    if relu:
        assert (res[0][0] == 0).any() and (res[0][0] > 0).any()
    for a, r in zip(*res):
        np.testing.assert_array_equal(a, r)


def test_extension_tap_loops_are_used(monkeypatch, numpy_backend):
    _needs_extension_loops()
    calls = []
    real = _conv._ext()

    class Spy:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(real, name)

    monkeypatch.setattr(_conv, "_ext", lambda: Spy())
    x = np.random.default_rng(0).standard_normal((30, 1, 4, 1)).astype(np.float32)
    xv = Variable(x, True)
    out = fl.conv2d(xv, Variable(np.asfortranarray(np.ones((3, 1, 4, 2), np.float32)), False), None, 1, 1, 1, 0)
    out.backward(Variable(np.ones(out.host().shape, np.float32), False))
    assert calls == ["conv_forward", "conv_backward_input"]


def test_extension_tap_loops_refuse_bad_arrays():
    _needs_extension_loops()
    ext, blas = _conv._ext(), _conv._blas(np, np.float32)
    addr = blas.addresses[np.dtype(np.float32)]
    wk = np.ones((3, 4, 2), np.float32)
    ph = [np.zeros((12, 1, 4), np.float32)]
    out = np.empty((10, 1, 2), np.float32)
    ext.conv_forward(ph, wk, None, out, 1, False, 4096, addr, blas.ilp64)  # well formed: runs
    with pytest.raises(TypeError, match="phases\\[0\\]: expected dtype float32"):
        ext.conv_forward([ph[0].astype(np.float64)], wk, None, out, 1, False, 4096, addr, blas.ilp64)
    with pytest.raises(ValueError, match="phases\\[0\\]: 11 rows, the taps read 12"):
        ext.conv_forward([ph[0][:11]], wk, None, out, 1, False, 4096, addr, blas.ilp64)
    with pytest.raises(ValueError, match="expected 2 phases"):
        ext.conv_forward(ph, wk, None, out, 2, False, 4096, addr, blas.ilp64)
    with pytest.raises(ValueError, match="out: expected a C-contiguous"):
        ext.conv_forward(ph, wk, None, np.empty((10, 1, 4), np.float32)[:, :, ::2], 1, False, 4096, addr, blas.ilp64)
    with pytest.raises(ValueError, match="bias: unexpected shape"):
        ext.conv_forward(ph, wk, np.zeros(3, np.float32), out, 1, False, 4096, addr, blas.ilp64)
    with pytest.raises(ValueError, match="scratch: fewer rows"):
        ext.conv_backward_input(out, out, np.ones((3, 2, 4), np.float32), [np.empty((12, 1, 4), np.float32)], 1, 4096,
                                np.empty((2, 2), np.float32), addr, blas.ilp64)
    with pytest.raises(ValueError, match="null function address"):
        ext.conv_forward(ph, wk, None, out, 1, False, 4096, 0, blas.ilp64)

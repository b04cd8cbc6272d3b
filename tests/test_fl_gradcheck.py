"""Every afmask.fl function: autograd against float64 central differences, on every backend found."""

import numpy as np
import pytest

from afmask import fl
from afmask.fl import Variable, gradcheck, seq, span

RNG = np.random.default_rng(11)


def V(backend, shape, positive=False, grad=True):
    x = RNG.standard_normal(shape)
    if positive:
        x = np.abs(x) + 0.5
    return Variable(backend.asarray(x), grad)


CASES = {
    "add": (lambda a, b: fl.add(a, b), [(4, 5), (4, 5)], False),
    "sub": (lambda a, b: a - b, [(4, 5), (4, 5)], False),
    "mul": (lambda a, b: a * b, [(4, 5), (4, 5)], False),
    "div": (lambda a, b: a / b, [(4, 5), (4, 5)], True),
    "scalar_ops": (lambda a: (2.0 - a) * 3.0 / 1.5 + 1.0 - (2.0 / a), [(4, 5)], True),
    "negate": (lambda a: -a, [(4, 5)], False),
    "exp": (fl.exp, [(4, 5)], False),
    "log": (fl.log, [(4, 5)], True),
    "log1p": (fl.log1p, [(4, 5)], True),
    "sqrt": (fl.sqrt, [(4, 5)], True),
    "abs": (fl.abs, [(4, 5)], True),
    "pow": (lambda a: fl.pow(a, 3), [(4, 5)], False),
    "sigmoid": (fl.sigmoid, [(4, 5)], False),
    "tanh": (fl.tanh, [(4, 5)], False),
    "relu": (fl.relu, [(4, 5)], False),
    "max": (lambda a, b: fl.max(a, b), [(4, 5), (4, 5)], False),
    "min_scalar": (lambda a: fl.min(a, 0.1), [(4, 5)], False),
    "sum": (lambda a: fl.sum(a, [1, 2]), [(4, 5, 3)], False),
    "mean": (lambda a: fl.mean(a, [0]), [(4, 5, 3)], False),
    "var": (lambda a: fl.var(a, [1]), [(4, 5)], False),
    "var_biased_01": (lambda a: fl.var(a, [0, 1], True), [(4, 5)], False),
    "norm": (lambda a: fl.norm(a, [0, 1]), [(4, 5)], False),
    "norm_p3": (lambda a: fl.norm(a, [1], p=3), [(4, 5)], True),
    "softmax0": (lambda a: fl.softmax(a, 0), [(6, 5)], False),
    "softmax1": (lambda a: fl.softmax(a, 1), [(6, 5)], False),
    "logSoftmax": (lambda a: fl.logSoftmax(a, 0), [(6, 5)], False),
    "transpose": (fl.transpose, [(4, 5, 2)], False),
    "reorder": (lambda a: fl.reorder(a, 2, 0, 3, 1), [(2, 3, 4, 5)], False),
    "moddims": (lambda a: fl.moddims(a, (-1, 1, 5, 0)), [(4, 5)], False),
    "tile": (lambda a: fl.tile(a, (1, 3, 2)), [(4, 1)], False),
    "tileAs": (lambda a, b: fl.tileAs(a, b) * b, [(4, 1), (4, 6)], False),
    "sumAs": (lambda a, b: fl.sumAs(a, b) * b, [(4, 6), (4, 1)], False),
    "concatenate": (lambda a, b: fl.concatenate([a, b, a], 1), [(3, 2), (3, 4)], False),
    "index_seq": (lambda a: a(seq(2, 5), span), [(8, 3)], False),
    "index_int": (lambda a: a[1, 1:3], [(4, 5)], False),
    "index_array": (lambda a: a(np.array([3, 0, 3]), span), [(5, 2)], False),
    "assignIndex": (lambda a, b: fl.assignIndex(a, b, seq(1, 2), span), [(5, 3), (2, 3)], False),
    "matmul": (fl.matmul, [(3, 4), (4, 5)], False),
    "matmulTN": (fl.matmulTN, [(4, 3), (4, 5)], False),
    "matmulNT": (fl.matmulNT, [(3, 4), (5, 4)], False),
    "matmul_batched": (fl.matmul, [(3, 4), (4, 5, 2)], False),
    "linear": (fl.linear, [(4, 6, 2), (3, 4), (3,)], False),
    "conv2d_same_stride2": (lambda x, w, b: fl.conv2d(x, w, b, 2, 1, 3, 0), [(11, 1, 3, 2), (8, 1, 3, 4), (1, 1, 4)], False),
    "conv2d_2d_window": (lambda x, w: fl.conv2d(x, w, None, 1, 2, 1, 1), [(6, 5, 2), (3, 2, 2, 3)], False),
    "astype_roundtrip": (lambda a: a.astype(np.float64), [(3, 3)], False),
    "clamp": (lambda a: fl.clamp(a, -0.5, 0.7), [(4, 5)], False),
    "elu": (lambda a: fl.elu(a, 0.8), [(4, 5)], False),
    "padding": (lambda a: fl.padding(a, [(1, 2), (0, 1)], 0.5), [(3, 4)], False),
    "pool2d_max": (lambda a: fl.pool2d(a, 3, 2, 2, 1, 1, 0, fl.MAX), [(7, 4, 2)], False),
    "pool2d_avg": (lambda a: fl.pool2d(a, 3, 1, 2, 1, 1, 0, fl.AVG_EXCLUDE_PADDING), [(7, 3, 2)], False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(backend, name):
    fn, shapes, positive = CASES[name]
    inputs = [V(backend, s, positive) for s in shapes]
    if name == "max":  # keep the two operands apart so the kink is not straddled
        inputs[1] = Variable(backend.asarray(inputs[0].host() + np.where(RNG.random((4, 5)) > 0.5, 0.5, -0.5)), True)
    report = gradcheck(fn, inputs)
    assert report.passed, f"{name}: {report}"


def test_gradcheck_catches_a_wrong_gradient(backend):
    from afmask.fl.functions import _add_grad, _out

    def bad_square(x):
        a = x.array()
        return _out(a * a, x, (x,), lambda inputs, g: _add_grad(inputs[0], g.array() * a * 3.0))  # should be 2

    report = gradcheck(bad_square, [V(backend, (3, 3))])
    assert not report.passed


def test_gradient_accumulates_over_reuse_and_graph_is_released(backend):
    x = V(backend, (3, 3))
    y = fl.sum(x * x + x, [0, 1])
    y.backward()
    np.testing.assert_allclose(x.grad().host(), 2 * x.host() + 1, rtol=1e-12)
    y2 = fl.sum(x * 2.0, [0, 1])
    y2.backward()  # gradients accumulate until zeroGrad, as in flashlight
    np.testing.assert_allclose(x.grad().host(), 2 * x.host() + 3, rtol=1e-12)
    x.zeroGrad()
    with pytest.raises(RuntimeError, match="not calculated"):
        x.grad()


def test_no_graph_without_calcgrad(backend):
    x = V(backend, (3, 3), grad=False)
    y = fl.exp(x)
    assert not y.isCalcGrad()
    with pytest.raises(RuntimeError, match="does not need a gradient"):
        y.backward()


def test_dims_must_match_flashlight_does_not_broadcast(backend):
    a, b = V(backend, (31, 40)), V(backend, (31, 1))
    with pytest.raises(ValueError, match="does not broadcast"):
        a / b
    np.testing.assert_allclose((a / fl.tileAs(b, a)).host(), a.host() / b.host()[:, None], rtol=1e-12)
    with pytest.raises(TypeError, match="Variable"):
        a + a.array()


def test_conv2d_is_cross_correlation_with_flashlight_layout(backend):
    """Direct definition: out[i, j, o] = b[o] + sum_{a,c,k} x[i*sx + a - px, j*sy + c - py, k] w[a, c, k, o]."""
    x = RNG.standard_normal((10, 3, 2))
    w = RNG.standard_normal((4, 2, 2, 3))
    bias = RNG.standard_normal((1, 1, 3))
    sx, sy, px, py = 2, 1, 2, 1
    out = fl.conv2d(Variable(backend.asarray(x)), Variable(backend.asarray(w)), Variable(backend.asarray(bias)), sx, sy, px, py).host()
    xp = np.pad(x, ((px, px), (py, py), (0, 0)))
    nx, ny = (10 + 2 * px - 4) // sx + 1, (3 + 2 * py - 2) // sy + 1
    want = np.zeros((nx, ny, 3))
    for i in range(nx):
        for j in range(ny):
            patch = xp[i * sx : i * sx + 4, j * sy : j * sy + 2]
            want[i, j] = np.einsum("ack,acko->o", patch, w) + bias[0, 0]
    np.testing.assert_allclose(out, want, rtol=1e-10)


@pytest.mark.parametrize("T,stride,expected", [(1593, 2, 797), (1594, 2, 797), (100, 1, 101), (7, 1, 8), (5, 2, 3)])
def test_same_padding_rule(T, stride, expected):
    from afmask.fl.nn import SAME, derive_padding

    pad = derive_padding(T, 8, stride, SAME)
    assert (T + 2 * pad - 8) // stride + 1 == expected

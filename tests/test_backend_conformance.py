"""Every backend operation against its ArrayFire definition, checked with NumPy loops."""

import itertools

import numpy as np
import pytest

from afmask.backend import canonical_shape, dims4, unwrap_counts
from afmask.backend.indexing import resolve_index, seq, span

RNG = np.random.default_rng(7)
X = RNG.standard_normal((3, 4, 2, 5)).astype(np.float32)
M = RNG.standard_normal((31, 40)).astype(np.float32)


def host(b, a):
    return b.to_numpy(a)


def test_canonical_shape_drops_trailing_ones():
    assert canonical_shape((31, 804, 1, 1)) == (31, 804)
    assert canonical_shape((1, 1, 1, 1)) == (1,)
    assert canonical_shape((1, 5)) == (1, 5)
    assert canonical_shape((3, 1, 2)) == (3, 1, 2)
    assert dims4((31,)) == (31, 1, 1, 1)
    with pytest.raises(ValueError, match="at most 4 dims"):
        dims4((1, 2, 3, 4, 5))


def test_roundtrip_and_dims(backend):
    a = backend.asarray(X)
    assert backend.dims(a) == (3, 4, 2, 5)
    np.testing.assert_array_equal(host(backend, a), X)
    s = backend.asarray(np.float32(2.5))
    assert backend.dims(s) == (1, 1, 1, 1) and backend.scalar(s) == 2.5
    col = backend.asarray(np.ones((7, 1, 1), np.float32))
    assert backend.dims(col) == (7, 1, 1, 1) and host(backend, col).shape == (7,)
    assert backend.dtype(backend.asarray([1.0, 2.0])) == np.float32  # float32 by default


def test_creation(backend):
    np.testing.assert_array_equal(host(backend, backend.zeros((2, 3))), np.zeros((2, 3)))
    np.testing.assert_array_equal(host(backend, backend.full((2, 1, 3), 0.1)), np.full((2, 1, 3), 0.1, np.float32))
    eye = host(backend, backend.identity(31))
    np.testing.assert_array_equal(eye, np.eye(31, dtype=np.float32))
    r1 = host(backend, backend.randn((1000, 20), seed=3))
    r2 = host(backend, backend.randn((1000, 20), seed=3))
    np.testing.assert_array_equal(r1, r2)  # reproducible for a seed
    assert r1.shape == (1000, 20) and r1.dtype == np.float32
    assert abs(r1.mean()) < 0.02 and abs(r1.std() - 1) < 0.02
    u = host(backend, backend.randu((1000, 20), seed=4))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.02


@pytest.mark.parametrize(
    "op,ref",
    [
        ("sqrt", lambda x: np.sqrt(np.abs(x))),
        ("exp", np.exp),
        ("log", lambda x: np.log(np.abs(x) + 0.1)),
        ("log1p", lambda x: np.log1p(np.abs(x))),
        ("abs", np.abs),
        ("sign", np.sign),
        ("sigmoid", lambda x: 1 / (1 + np.exp(-x.astype(np.float64)))),
        ("tanh", np.tanh),
    ],
)
def test_elementwise(backend, op, ref):
    x = X.copy()
    if op == "sqrt":
        x = np.abs(x)
    elif op == "log":
        x = np.abs(x) + 0.1
    elif op == "log1p":
        x = np.abs(x)
    arg = {"sqrt": x, "log": x, "log1p": x}.get(op, X)
    got = host(backend, getattr(backend, op)(backend.asarray(arg)))
    np.testing.assert_allclose(got, ref(X).astype(np.float32), rtol=2e-6, atol=1e-7)
    assert got.dtype == np.float32


def test_sign_of_zero_and_sigmoid_extremes(backend):
    got = host(backend, backend.sign(backend.asarray(np.array([-2.0, 0.0, 3.0], np.float32))))
    np.testing.assert_array_equal(got, [-1, 0, 1])
    s = host(backend, backend.sigmoid(backend.asarray(np.array([-1000.0, 0.0, 1000.0], np.float32))))
    np.testing.assert_array_equal(s, [0.0, 0.5, 1.0])


def test_arithmetic_operators_keep_float32(backend):
    a, b = backend.asarray(X), backend.asarray(X[::-1].copy())
    for got, want in [(a + b, X + X[::-1]), (a - b, X - X[::-1]), (a * b, X * X[::-1]), (a / 2.0, X / 2), (-a, -X), (a**2, X**2)]:
        h = host(backend, got)
        np.testing.assert_allclose(h, want, rtol=1e-6)
        assert h.dtype == np.float32


def test_maximum_minimum_where_finite(backend):
    a = backend.asarray(X)
    np.testing.assert_array_equal(host(backend, backend.maximum(a, 0.0)), np.maximum(X, 0))
    np.testing.assert_array_equal(host(backend, backend.minimum(a, 0.5)), np.minimum(X, np.float32(0.5)))
    np.testing.assert_array_equal(host(backend, backend.where(a > 0, a, 0.0)), np.where(X > 0, X, 0))
    assert backend.isfinite_all(a)
    bad = X.copy()
    bad[1, 2, 0, 3] = np.nan
    assert not backend.isfinite_all(backend.asarray(bad))
    bad[1, 2, 0, 3] = np.inf
    assert not backend.isfinite_all(backend.asarray(bad))


@pytest.mark.parametrize("axes", [[0], [1], [3], [0, 1], [1, 2], [0, 1, 2, 3]])
def test_reductions_keep_dims(backend, axes):
    a = backend.asarray(X)
    x64 = X.astype(np.float64)
    want_shape = canonical_shape([1 if i in axes else d for i, d in enumerate(X.shape)])
    for name, ref in [("sum", np.sum), ("mean", np.mean)]:
        got = host(backend, getattr(backend, name)(a, axes))
        assert got.shape == want_shape
        np.testing.assert_allclose(got, ref(x64, axis=tuple(axes), keepdims=True).reshape(want_shape), rtol=1e-5, atol=1e-6)
    for biased, ddof in [(True, 0), (False, 1)]:
        got = host(backend, backend.var(a, axes, biased))
        want = x64.var(axis=tuple(axes), ddof=ddof, keepdims=True).reshape(want_shape)
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_max_min_scalar_and_var_errors(backend):
    a = backend.asarray(M)
    np.testing.assert_array_equal(host(backend, backend.max(a, 0)), M.max(axis=0, keepdims=True))
    np.testing.assert_array_equal(host(backend, backend.min(a, 1)), M.min(axis=1))
    assert backend.scalar(backend.sum(a, [0, 1])) == pytest.approx(float(M.astype(np.float64).sum()), rel=1e-5)
    with pytest.raises(ValueError, match="one-element"):
        backend.scalar(a)
    with pytest.raises(ValueError, match="more than 1"):
        backend.var(backend.asarray(np.ones((1, 3), np.float32)), [0], biased=False)


def test_transpose_reorder_moddims_tile_concat(backend):
    a = backend.asarray(X)
    t = host(backend, backend.transpose(a))
    assert t.shape == (4, 3, 2, 5)
    for i, j, k, l in itertools.product(range(3), range(4), range(2), range(5)):
        assert t[j, i, k, l] == X[i, j, k, l]
    r = host(backend, backend.reorder(a, (2, 0, 3, 1)))  # af::reorder: out dim i = in dim perm[i]
    assert r.shape == (2, 3, 5, 4)
    assert r[1, 2, 4, 3] == X[2, 3, 1, 4]
    m = host(backend, backend.moddims(a, (6, 20)))  # column-major: the flat order is unchanged
    np.testing.assert_array_equal(m.reshape(-1, order="F"), X.reshape(-1, order="F"))
    assert m.shape == (6, 20)
    with pytest.raises(ValueError, match="elements"):
        backend.moddims(a, (7, 20))
    tl = host(backend, backend.tile(backend.asarray(M[:, :1]), (1, 40)))
    np.testing.assert_array_equal(tl, np.tile(M[:, :1], (1, 40)))
    c = host(backend, backend.concatenate([a, a, a, a, a], 1))
    assert c.shape == (3, 20, 2, 5)
    np.testing.assert_array_equal(c[:, 4:8], X)


def test_seq_is_inclusive_and_negative_counts_from_end():
    dims = (31, 40, 1, 1)
    idx = resolve_index((seq(2, 27), span), dims)
    assert idx[0] == slice(2, 28, 1) and idx[1] == slice(None)
    assert len(range(31)[idx[0]]) == 26
    assert resolve_index(seq(5), dims)[0] == slice(0, 5, 1)
    assert resolve_index(seq(-3, -1), dims)[0] == slice(28, 31, 1)
    assert resolve_index((3,), dims)[0] == slice(3, 4)  # an int keeps its dim
    assert resolve_index((-1,), dims)[0] == slice(30, 31)
    with pytest.raises(IndexError, match="out of range"):
        resolve_index(seq(2, 31), dims)
    with pytest.raises(IndexError, match="out of range"):
        resolve_index((31,), dims)
    with pytest.raises(IndexError, match="at most 4"):
        resolve_index((0, 0, 0, 0, 0), dims)


def test_index_index_add_index_assign(backend):
    a = backend.asarray(M)
    idx = resolve_index((seq(2, 27), span), backend.dims(a))
    got = host(backend, backend.index(a, idx))
    np.testing.assert_array_equal(got, M[2:28])
    row = host(backend, backend.index(a, resolve_index((3, span), backend.dims(a))))
    assert row.shape == (1, 40)  # dims are never dropped
    arr_idx = resolve_index((np.array([4, 1, 4]), seq(0, 9, 3)), backend.dims(a))
    got = host(backend, backend.index(a, arr_idx))
    np.testing.assert_array_equal(got, M[[4, 1, 4]][:, 0:10:3])
    vals = backend.asarray(np.ones((3, 4), np.float32))
    added = host(backend, backend.index_add((31, 40), arr_idx, vals))
    want = np.zeros((31, 40), np.float32)
    for r in [4, 1, 4]:
        want[r, 0:10:3] += 1  # repeated rows accumulate
    np.testing.assert_array_equal(added, want)
    repl = host(backend, backend.index_assign(a, idx, backend.zeros((26, 40))))
    want = M.copy()
    want[2:28] = 0
    np.testing.assert_array_equal(repl, want)
    np.testing.assert_array_equal(host(backend, a), M)  # the input is untouched


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul(backend, ta, tb):
    A = RNG.standard_normal((5, 7)).astype(np.float32)
    B = RNG.standard_normal((7, 3)).astype(np.float32)
    a = A.T.copy() if ta else A
    b = B.T.copy() if tb else B
    got = host(backend, backend.matmul(backend.asarray(a), backend.asarray(b), ta, tb))
    np.testing.assert_allclose(got, A @ B, rtol=1e-5, atol=1e-5)


def test_matmul_batched_over_dims_2_3(backend):
    A = RNG.standard_normal((5, 7, 2, 3)).astype(np.float32)
    B = RNG.standard_normal((7, 4, 2, 3)).astype(np.float32)
    got = host(backend, backend.matmul(backend.asarray(A), backend.asarray(B)))
    for i, j in itertools.product(range(2), range(3)):
        np.testing.assert_allclose(got[:, :, i, j], A[:, :, i, j] @ B[:, :, i, j], rtol=1e-5, atol=1e-5)
    W = RNG.standard_normal((6, 5)).astype(np.float32)  # a batch of one broadcasts
    got = host(backend, backend.matmul(backend.asarray(W), backend.asarray(A)))
    for i, j in itertools.product(range(2), range(3)):
        np.testing.assert_allclose(got[:, :, i, j], W @ A[:, :, i, j], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        backend.matmul(backend.asarray(A), backend.asarray(A))


def unwrap_reference(x, wx, wy, sx, sy, px, py):
    """af::unwrap by its definition: column p = ix + nx*iy holds the window at (ix*sx-px, iy*sy-py), x fastest."""
    W, H, C, N = dims4(x.shape)
    x4 = x.reshape(W, H, C, N)
    nx, ny = unwrap_counts(W, wx, sx, px), unwrap_counts(H, wy, sy, py)
    out = np.zeros((wx * wy, nx * ny, C, N), x.dtype)
    for iy, ix, b, a in itertools.product(range(ny), range(nx), range(wy), range(wx)):
        u, v = ix * sx - px + a, iy * sy - py + b
        if 0 <= u < W and 0 <= v < H:
            out[a + wx * b, ix + nx * iy] = x4[u, v]
    return out


@pytest.mark.parametrize("shape,win", [((13, 1, 5, 1), (8, 1, 2, 1, 3, 0)), ((9, 7, 2, 2), (3, 2, 2, 3, 1, 1)), ((6, 6), (2, 2, 1, 1, 0, 0))])
def test_unwrap_and_wrap_are_adjoint(backend, shape, win):
    x = RNG.standard_normal(shape).astype(np.float32)
    got = host(backend, backend.unwrap(backend.asarray(x), *win))
    want = unwrap_reference(x, *win)
    np.testing.assert_array_equal(got, want.reshape(canonical_shape(want.shape)))
    # wrap is the adjoint of unwrap: <unwrap(x), c> == <x, wrap(c)>
    c = RNG.standard_normal(want.shape).astype(np.float32)
    W, H = dims4(shape)[:2]
    back = host(backend, backend.wrap(backend.asarray(c), W, H, *win))
    assert back.shape == canonical_shape(dims4(shape))
    np.testing.assert_allclose(np.sum(want * c), np.sum(x.reshape(back.shape) * back), rtol=1e-4)


def test_unwrap_rejects_a_window_larger_than_the_input(backend):
    with pytest.raises(ValueError, match="does not fit"):
        backend.unwrap(backend.asarray(np.zeros((3, 1), np.float32)), 8, 1, 1, 1, 0, 0)


def test_device_info_names_the_backend(backend):
    info = backend.device_info()
    assert info.backend == backend.name and info.device


def test_unknown_backend_name_is_an_error(monkeypatch):
    import afmask.backend as B

    with pytest.raises(ValueError, match="unknown backend"):
        B.get_backend("tensorflow")


def test_env_var_choice_and_clear_error_for_missing_backend(monkeypatch):
    import afmask.backend as B

    monkeypatch.setattr(B, "_current", None)
    monkeypatch.setenv("AFMASK_BACKEND", "numpy")
    assert B.get_backend().name == "numpy" and "AFMASK_BACKEND=numpy" in B.choice_reason()
    monkeypatch.setenv("AFMASK_BACKEND", "nonsense")
    monkeypatch.setattr(B, "_current", None)
    with pytest.raises(ValueError, match="not a backend"):
        B.get_backend()
    for name in ("cupy", "arrayfire"):
        p = B.probe(name)
        if not p.available:
            monkeypatch.setenv("AFMASK_BACKEND", name)
            monkeypatch.setattr(B, "_current", None)
            with pytest.raises(B.BackendUnavailable, match="install"):
                B.get_backend()
    monkeypatch.setattr(B, "_current", None)


def test_af_var_follows_the_arrayfire_release(backend, monkeypatch):
    from afmask.backend.af_version import af_var, af_version

    a = backend.asarray(M)
    n = M.size
    pop = float(M.astype(np.float64).var())
    assert af_var(backend, a, version="3.6.2") == pytest.approx(pop * n / (n - 1), rel=1e-5)
    assert af_var(backend, a, version="3.9.0") == pytest.approx(pop, rel=1e-5)
    assert af_var(backend, a, isbiased=True, version="3.6.2") == pytest.approx(pop, rel=1e-5)
    monkeypatch.setenv("AFMASK_AF_VERSION", "3.7")
    assert af_version() == (3, 7, 0)
    assert af_var(backend, a) == pytest.approx(pop, rel=1e-5)
    monkeypatch.setenv("AFMASK_AF_VERSION", "latest")
    with pytest.raises(ValueError, match="3.6.2"):
        af_version()


# -- what ArrayFire 3.9.0 got wrong or refused (issue 10); each case runs on every backend -------------------


def _np_index(a, idx):
    out = a
    for axis, i in enumerate(idx):
        out = np.take(out, np.arange(out.shape[axis])[i] if isinstance(i, slice) else i, axis=axis)
    return out


@pytest.mark.parametrize(
    "key",
    [
        (np.array([4, 1, 4]), seq(0, 9, 3)),  # index array on dim 0, strided seq on dim 1
        (seq(1, 30, 7), np.array([5, 0, 39, 5])),  # strided seq on dim 0, index array on dim 1
        (seq(20, 2, -6), np.array([3, 2])),  # a negative step
        (np.array([0, 30]), seq(3, 12)),  # unit step with an offset
    ],
)
def test_index_arrays_combined_with_seqs(backend, key):
    a = backend.asarray(M)
    idx = resolve_index(key, backend.dims(a))
    want = _np_index(M, idx)
    np.testing.assert_array_equal(host(backend, backend.index(a, idx)), want)
    vals = RNG.standard_normal(want.shape).astype(np.float32)
    replaced = M.copy()
    rows = np.arange(31)[idx[0]] if isinstance(idx[0], slice) else idx[0]
    cols = np.arange(40)[idx[1]] if isinstance(idx[1], slice) else idx[1]
    replaced[np.ix_(rows, cols)] = vals
    np.testing.assert_array_equal(host(backend, backend.index_assign(a, idx, backend.asarray(vals))), replaced)
    added = np.zeros_like(M)
    np.add.at(added, np.ix_(rows, cols), vals)
    np.testing.assert_allclose(host(backend, backend.index_add((31, 40), idx, backend.asarray(vals))), added, rtol=1e-6)


def test_index_array_on_dim_2_with_a_strided_seq_on_dim_0(backend):
    a = backend.asarray(X)  # 3 x 4 x 2 x 5
    idx = resolve_index((seq(0, 2, 2), span, np.array([1, 1, 0]), seq(4, 0, -2)), backend.dims(a))
    np.testing.assert_array_equal(host(backend, backend.index(a, idx)), X[0:3:2][:, :, [1, 1, 0]][:, :, :, 4::-2])


def test_matmul_errors_and_broadcast_over_one_batch_dim(backend):
    A = RNG.standard_normal((5, 7, 1, 3)).astype(np.float32)
    B = RNG.standard_normal((7, 4, 2, 3)).astype(np.float32)
    got = host(backend, backend.matmul(backend.asarray(A), backend.asarray(B)))
    assert got.shape == (5, 4, 2, 3)
    for i, j in itertools.product(range(2), range(3)):
        np.testing.assert_allclose(got[:, :, i, j], A[:, :, 0, j] @ B[:, :, i, j], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="inner dims"):
        backend.matmul(backend.asarray(A), backend.asarray(B), trans_a=True)
    C = RNG.standard_normal((7, 4, 2, 2)).astype(np.float32)
    with pytest.raises(ValueError):
        backend.matmul(backend.asarray(A), backend.asarray(C))


def test_where_maximum_minimum_with_scalars(backend):
    a = backend.asarray(X)
    cond = a > 0
    both = backend.where(cond, 1.0, 0.0)  # two Python scalars: float32, ArrayFire's default type
    assert backend.dtype(both) == np.float32
    np.testing.assert_array_equal(host(backend, both), (X > 0).astype(np.float32))
    np.testing.assert_array_equal(host(backend, backend.where(cond, np.float32(2), a)), np.where(X > 0, 2, X))
    np.testing.assert_array_equal(host(backend, backend.maximum(a, np.float32(0.25))), np.maximum(X, np.float32(0.25)))
    np.testing.assert_array_equal(host(backend, backend.minimum(a, np.float64(-0.25))), np.minimum(X, np.float32(-0.25)))
    assert backend.dtype(backend.maximum(a, np.float64(0))) == np.float32


@pytest.mark.parametrize("geom", [(2, 2, 2, 2, 0, 0), (3, 2, 2, 1, 1, 0), (2, 1, 2, 1, 0, 0)])
def test_max_pooling_forward_and_backward_ties_to_the_first_maximum(backend, geom):
    from afmask import fl
    from afmask.fl import Variable

    wx, wy, sx, sy, px, py = geom
    x = np.round(RNG.standard_normal((7, 4, 2, 1)) * 2).astype(np.float32)  # small integers: many ties
    x[:2] = 0  # all tied windows, as after a ReLU
    v = Variable(backend.asarray(x), True)
    out = fl.pool2d(v, wx, wy, sx, sy, px, py, "max")
    g = RNG.standard_normal(out.dims()).astype(np.float32)
    out.backward(Variable(backend.asarray(g), False))
    nx, ny = unwrap_counts(7, wx, sx, px), unwrap_counts(4, wy, sy, py)
    pad = np.full((7 + 2 * px, 4 + 2 * py, 2, 1), -np.inf, np.float32)
    pad[px : px + 7, py : py + 4] = x
    want_out = np.zeros((nx, ny, 2, 1), np.float32)
    want_grad = np.zeros_like(pad)
    for ix, iy, c in itertools.product(range(nx), range(ny), range(2)):
        win = pad[ix * sx : ix * sx + wx, iy * sy : iy * sy + wy, c, 0]
        first = np.argmax(win.T.reshape(-1))  # window element a + wx*b: x fastest, as af::unwrap orders it
        a_, b_ = first % wx, first // wx
        want_out[ix, iy, c, 0] = win.max()
        want_grad[ix * sx + a_, iy * sy + b_, c, 0] += g.reshape(nx, ny, 2, 1)[ix, iy, c, 0]
    np.testing.assert_array_equal(out.host().reshape(nx, ny, 2, 1), want_out)
    np.testing.assert_allclose(v.grad().host().reshape(7, 4, 2, 1), want_grad[px : px + 7, py : py + 4], rtol=1e-6)

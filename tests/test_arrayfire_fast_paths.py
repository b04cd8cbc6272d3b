"""The shortcuts the arrayfire backend takes on ArrayFire's CPU backend give what the plain ArrayFire calls give."""

import itertools

import numpy as np
import pytest

from afmask.backend import get_backend, probe


@pytest.fixture
def afb():
    found = probe("arrayfire")
    if not found.available:
        pytest.skip(found.reason)
    return get_backend("arrayfire")


@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (3, 1, 5, 6), (1, 4, 5, 2), (3, 4, 1, 1), (2, 1, 1, 5), (7, 3, 2, 1)])
def test_fast_reorder_equals_af_reorder_for_every_permutation(afb, shape):
    from afmask.backend.arrayfire_backend import fast_reorder

    af = afb.af
    x = afb.asarray(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    for perm in itertools.permutations(range(4)):
        got, want = fast_reorder(af, x, perm), af.reorder(x, *perm)
        assert afb.dims(got) == afb.dims(want), perm
        assert np.array_equal(afb.to_numpy(got), afb.to_numpy(want)), perm


@pytest.mark.parametrize("S", [1, 3])
@pytest.mark.parametrize("lr", [None, 0.1])
def test_extension_on_arrayfire_buffers_equals_the_arrayfire_expressions(afb, S, lr):
    from afmask.kernels import mask_step

    if afb.active_backend() != "cpu" or "ext" not in mask_step.available_paths("arrayfire"):
        pytest.skip("the extension takes ArrayFire arrays only on ArrayFire's CPU backend, with the extension built")
    rng = np.random.default_rng(S)
    K, T = 7, 11
    host = {
        "x": rng.standard_normal((2 * K, T)), "m": rng.random((2 * K, T)),
        "eps": rng.standard_normal((2 * K, T, S) if S > 1 else (2 * K, T)),
        "xgrad": rng.standard_normal((K, T, S) if S > 1 else (K, T)),
    }
    a = {k: afb.asarray(np.asfortranarray(v, np.float32)) for k, v in host.items()}
    mag = [afb.to_numpy(mask_step.forward(a["x"], a["eps"], a["m"], path=p)) for p in ("ext", "arrayfire")]
    np.testing.assert_allclose(mag[0], mag[1], rtol=1e-6)
    res = [mask_step.backward(a["xgrad"], a["x"], a["eps"], a["m"], lam=0.5, lr=lr, path=p) for p in ("ext", "arrayfire")]
    np.testing.assert_allclose(afb.to_numpy(res[0].mgrad), afb.to_numpy(res[1].mgrad), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(afb.to_numpy(res[0].m), afb.to_numpy(res[1].m), rtol=1e-6)
    assert res[0].m_sqnorm == pytest.approx(res[1].m_sqnorm, rel=1e-9)
    assert res[0].mgrad_sqnorm == pytest.approx(res[1].mgrad_sqnorm, rel=1e-5)
    # the input m is left alone: the step's result is a new array
    np.testing.assert_array_equal(afb.to_numpy(a["m"]), np.asarray(host["m"], np.float32))


def _needs_host_route(afb):
    from afmask.fl import conv

    if afb.active_backend() != "cpu":
        pytest.skip("the host route runs on ArrayFire's CPU backend only")
    if conv._ext() is None or conv._blas(np, np.float32) is None:
        pytest.skip("the host route needs afmask._ext built and numpy's own OpenBLAS")


def test_host_views_are_the_arrays_memory(afb):
    _needs_host_route(afb)
    host = np.random.default_rng(0).standard_normal((5, 1, 3, 2)).astype(np.float32)
    a = afb.asarray(host)
    _, (v,) = afb.host_views(a)
    np.testing.assert_array_equal(v, host)
    out, w = afb.empty_host((4, 1, 3, 2))
    w[...] = 7.0  # written through the view: ArrayFire reads it
    np.testing.assert_array_equal(afb.to_numpy(out), np.full((4, 1, 3, 2), 7.0, np.float32))


@pytest.mark.parametrize("sx,px,k,n,relu,bias", [(2, 3, 8, 4, True, True), (1, 3, 8, 1, True, True),
                                                  (1, 2, 5, 3, False, True), (3, 0, 2, 2, True, False)])
def test_convolution_host_route_equals_the_arrayfire_route(afb, monkeypatch, sx, px, k, n, relu, bias):
    """On ArrayFire's CPU backend fixed-weight convolutions run afmask.fl.conv's loops on ArrayFire's buffers:
    the same values and input gradients as ArrayFire's own route, and NumPy's bits."""
    from afmask import fl
    from afmask.backend import use_backend
    from afmask.fl import Variable, afconv
    from afmask.fl.functions import conv2d_relu

    _needs_host_route(afb)
    rng = np.random.default_rng(k + n)
    x = rng.standard_normal((37, 1, 6, n)).astype(np.float32)
    w = np.asfortranarray(rng.standard_normal((k, 1, 6, 5)).astype(np.float32))
    b = rng.standard_normal((1, 1, 5)).astype(np.float32) if bias else None
    op = conv2d_relu if relu else fl.conv2d
    used = []
    real = afconv.host_route
    monkeypatch.setattr(afconv, "host_route", lambda *a: used.append(real(*a)) or used[-1])

    def run(name, host):
        monkeypatch.setattr(afconv, "HOST_ROUTE", host)
        with use_backend(name):
            B = get_backend(name)
            xv = Variable(B.asarray(x), True)
            out = op(xv, Variable(B.asarray(w), False), None if b is None else Variable(B.asarray(b), False), sx, 1, px, 0)
            g = np.random.default_rng(1).standard_normal(B.to_numpy(out.array()).shape).astype(np.float32)
            out.backward(Variable(B.asarray(g), False))
            return B.to_numpy(out.array()), B.to_numpy(xv.grad().array())

    host, plain, ref = run("arrayfire", True), run("arrayfire", False), run("numpy", True)
    assert used and used[0] is True and used[-1] is False
    for a, p, r in zip(host, plain, ref):
        np.testing.assert_array_equal(a, r)  # NumPy's arithmetic exactly
        np.testing.assert_allclose(a, p, rtol=1e-5, atol=1e-5 * np.abs(p).max())


def test_fused_update_runs_on_arrayfire_buffers_and_equals_the_arrayfire_update(afb, monkeypatch):
    """On ArrayFire's CPU backend the default update (exp, mean_log, Adam, the bound) is the extension's one pass
    on ArrayFire's buffers; theta and Adam's moments equal the generic update's in ArrayFire expressions."""
    import afmask.mask.run as run_mod
    from afmask.backend import use_backend
    from afmask.kernels import mask_step
    from afmask.mask import MaskConfig, MaskObjective, MaskRun
    from test_mask_gradients import clean_fft, small_model

    if afb.active_backend() != "cpu" or mask_step.extension() is None:
        pytest.skip("the fused update takes ArrayFire arrays on ArrayFire's CPU backend, with the extension built")
    results = []
    real = run_mod.MaskRun._fused_update
    for on in (True, False):
        monkeypatch.setattr(run_mod, "FUSED_UPDATE", on)
        used = []
        monkeypatch.setattr(run_mod.MaskRun, "_fused_update", lambda self, *a: used.append(real(self, *a)) or used[-1])
        with use_backend("arrayfire"):
            obj = MaskObjective(clean_fft(), small_model(afb, np.float32), "posteriors", noise="attenuate", backend=afb)
            cfg = MaskConfig.preset("default", samples=2, m_max=1.0, lr=0.5, lam=0.5, iterations=8)
            run = MaskRun(obj, cfg)
            for _ in range(6):
                run.step()
            results.append([afb.to_numpy(a) for a in (run.theta, run.optimizer.m1, run.optimizer.m2)])
        assert all(u is not None for u in used) if on else all(u is None for u in used)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("S", [1, 3])
def test_host_passes_around_the_network_give_numpys_bits(afb, monkeypatch, S):
    """On ArrayFire's CPU backend the attenuation noise, the magnitudes with their sums, the normalised input and
    the normalisation's backward run the extension's passes on ArrayFire's buffers: NumPy's values bit for bit,
    and the same values as ArrayFire's own expressions (the passes turned off) to rounding."""
    import afmask.mask.objective as objective
    from afmask.backend import use_backend
    from afmask.kernels import mask_step
    from afmask.mask import MaskObjective
    from test_mask_gradients import clean_fft, small_model

    if afb.active_backend() != "cpu" or mask_step.extension() is None:
        pytest.skip("the host passes run on ArrayFire's CPU backend, with the extension built")

    def run(name, passes):
        monkeypatch.setattr(objective, "EXT_PASSES", passes)
        with use_backend(name):
            B = get_backend(name)
            obj = MaskObjective(clean_fft(), small_model(B, np.float32), "posteriors", noise="attenuate", backend=B)
            assert (obj._af_ext() is not None) == (name == "arrayfire" and passes)
            eps = obj.draw_noise(5, S)
            m = B.asarray(np.asfortranarray(np.random.default_rng(2).random((2 * obj.K, obj.T)), np.float32))
            fw = obj.forward(m, eps)
            dy = np.random.default_rng(3).standard_normal(B.to_numpy(fw.input.array()).shape).astype(np.float32)
            xg = obj.normalisation_backward(B.asarray(dy), fw.centred, fw.stdev, scale=float(S))
            return [np.asarray(B.to_numpy(a)) for a in (eps, fw.mag, fw.input.array(), xg)] + [fw.f.scalar()]

    host, plain, ref = run("arrayfire", True), run("arrayfire", False), run("numpy", True)
    for name, a, p, r in zip(("noise", "magnitudes", "input", "input gradient", "f"), host, plain, ref):
        np.testing.assert_array_equal(np.reshape(a, np.shape(r)), r, err_msg=name)
        np.testing.assert_allclose(np.reshape(a, np.shape(p)), p, rtol=1e-5, atol=1e-6 * np.abs(p).max(), err_msg=name)


def test_a_host_written_array_changed_by_arrayfire_is_read_afresh(afb):
    """A view of an array only the host wrote is reused without waiting; once ArrayFire assigns into the array,
    its next view shows ArrayFire's values."""
    _needs_host_route(afb)
    a, v = afb.empty_host((4, 3))
    v[...] = 1.0
    _, (w,) = afb.host_views(a)
    assert w is v  # nothing to wait for
    a[1, :] = 5.0  # an indexed assignment queued on ArrayFire's worker
    _, (w,) = afb.host_views(a)
    expect = np.ones((4, 3, 1, 1), np.float32)
    expect[1] = 5.0
    np.testing.assert_array_equal(w, expect)


def test_empty_host_hands_an_array_out_again_only_once_nothing_holds_it(afb):
    """empty_host reuses its arrays (a new one waits for ArrayFire's worker), but never one that a Python name,
    another array on the same buffer or a queued ArrayFire operation still holds."""
    _needs_host_route(afb)
    af = afb.af
    a, v = afb.empty_host((6, 5))
    v[...] = 2.0
    b, _ = afb.empty_host((6, 5))
    assert b is not a  # a is still held
    ident = id(a)
    lazy = a * 3.0  # an operation on a's buffer, not yet run
    del a, v
    c, _ = afb.empty_host((6, 5))
    assert id(c) != ident  # the queued operation still reads the buffer
    af.eval(lazy)
    af.sync()
    np.testing.assert_array_equal(afb.to_numpy(lazy), np.full((6, 5), 6.0, np.float32))
    del lazy, b, c
    d, w = afb.empty_host((6, 5))
    assert id(d) == ident  # free again: reused (the first of its shape in the pool)
    w[...] = 1.0
    np.testing.assert_array_equal(afb.to_numpy(d), np.ones((6, 5), np.float32))


def test_the_host_pool_keeps_a_bounded_number_of_bytes(afb, monkeypatch):
    _needs_host_route(afb)
    afb.clear_host_pool()
    monkeypatch.setattr(afb, "HOST_POOL_BYTES", 3 * 4 * 100)  # three arrays of 100 floats
    held = [afb.empty_host((100,))[0] for _ in range(5)]
    assert afb._host_pool_bytes <= afb.HOST_POOL_BYTES
    del held
    afb.clear_host_pool()
    assert afb._host_pool_bytes == 0 and not afb._host_pool

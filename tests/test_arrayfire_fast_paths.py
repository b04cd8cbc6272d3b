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

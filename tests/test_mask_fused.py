"""The extension's passes around the fused step equal the NumPy code they replace (NumPy backend, ext path).

The default update (exp, mean_log, Adam, m_max), the network input's statistics and normalisation, the
normalisation's backward and the attenuation noise run in afmask._ext where it is built; each does NumPy's
float32 operations in NumPy's order, so the float32 results are the same bit for bit and only float64 sums
(added in another order) may differ in their last bits.
"""

import math

import numpy as np
import pytest

import afmask.mask.objective as objective_mod
import afmask.mask.run as run_mod
from afmask.backend import get_backend, use_backend
from afmask.kernels import mask_step
from afmask.mask import MaskConfig, MaskObjective, MaskRun
from test_mask_gradients import K, clean_fft, small_model

ROW_FLOATS = ("total", "f_term", "reg_term", "grad_f_norm", "grad_reg_norm", "m_mean", "m_var")


@pytest.fixture(autouse=True)
def _ext_built():
    if mask_step.extension() is None:
        pytest.skip(f"ext path unavailable: {mask_step.path_status()['ext']}")
    with use_backend("numpy"):  # the fused passes are the NumPy path's, whichever backend the suite runs on
        yield


class _Counting:
    """The extension module, counting the calls of each function (so a test knows the new passes ran)."""

    def __init__(self, ext):
        self.ext, self.calls = ext, {}

    def __getattr__(self, name):
        fn = getattr(self.ext, name)

        def counted(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            return fn(*args, **kwargs)

        return counted


def _switch(monkeypatch, on: bool) -> _Counting:
    monkeypatch.setattr(run_mod, "FUSED_UPDATE", on)
    monkeypatch.setattr(objective_mod, "EXT_PASSES", on)
    counting = _Counting(mask_step.extension())
    monkeypatch.setattr(mask_step, "extension", lambda: counting)
    monkeypatch.setattr(mask_step, "_ext", lambda: counting)
    return counting


def _run(noise: str, samples: int, m_max: float, lr: float) -> MaskRun:
    B = get_backend("numpy")
    obj = MaskObjective(clean_fft(), small_model(B, np.float32), "posteriors", noise=noise, backend=B)
    assert obj.kernel_path == "ext"
    cfg = MaskConfig.preset("default", noise=noise, samples=samples, m_max=m_max, lr=lr, lam=0.5, iterations=20)
    return MaskRun(obj, cfg)


@pytest.mark.parametrize("noise,samples,m_max", [("attenuate", 4, 1.0), ("relative", 4, 1.0), ("attenuate", 1, 1.0),
                                                 ("absolute", 3, None)])
def test_extension_steps_equal_the_numpy_steps(monkeypatch, noise, samples, m_max):
    runs = []
    for on in (True, False):
        counting = _switch(monkeypatch, on)
        run = _run(noise, samples, m_max, lr=0.5)  # large steps: many elements reach the bound
        rows = [run.step() for _ in range(6)]
        runs.append((run, rows))
        ran = {k for k, v in counting.calls.items() if v}
        wanted = {"update_exp_mean_log", "forward_stats", "normalise", "grad_stats", "norm_backward"}
        wanted |= {"attenuate"} if noise == "attenuate" else set()
        assert ran >= wanted if on else not ran & wanted
    (a, rows_a), (b, rows_b) = runs
    for name, x, y in (("theta", a.theta, b.theta), ("m1", a.optimizer.m1, b.optimizer.m1),
                       ("m2", a.optimizer.m2, b.optimizer.m2), ("best_theta", a.best_theta, b.best_theta)):
        np.testing.assert_array_equal(x, y, err_msg=name)
        assert name == "best_theta" or x.flags.f_contiguous, name
    assert a.optimizer.t == b.optimizer.t == 6
    if m_max is not None:
        at_bound = int(np.count_nonzero(b.theta == np.float32(math.log(m_max))))
        assert 0 < at_bound < b.theta.size  # the test reaches the bound, and not everywhere
    for ra, rb in zip(rows_a, rows_b):
        assert ra["f_term"] == rb["f_term"]  # float32 pipeline: bit for bit
        for k in ROW_FLOATS:
            assert ra[k] == pytest.approx(rb[k], rel=1e-9, abs=1e-12), k


@pytest.mark.parametrize("noise,samples", [("attenuate", 4), ("relative", 2), ("absolute", 1)])
def test_extension_gradient_equals_the_numpy_gradient(monkeypatch, noise, samples):
    results = []
    for on in (True, False):
        counting = _switch(monkeypatch, on)
        run = _run(noise, samples, 1.0, lr=0.05)
        m = run.scale()
        eps = run.obj.draw_noise(11, samples)
        f, g, g_sq = run.obj.value_and_gradient(m, eps)
        results.append((f, np.array(g), g_sq, np.array(eps)))
        assert bool(counting.calls.get("norm_backward")) == on
    (fa, ga, sa, ea), (fb, gb, sb, eb) = results
    np.testing.assert_array_equal(ea, eb)
    assert fa == fb
    np.testing.assert_array_equal(ga, gb)
    assert sa == pytest.approx(sb, rel=1e-12)


def test_update_sums_and_counts():
    rng = np.random.default_rng(0)
    shape = (2 * K, 37)
    theta = np.asfortranarray(rng.uniform(-30, 30, shape).astype(np.float32))
    m = np.exp(theta)
    g = np.asfortranarray(rng.standard_normal(shape).astype(np.float32))
    m1 = np.asfortranarray(rng.standard_normal(shape).astype(np.float32))
    m2 = np.asfortranarray(rng.random(shape).astype(np.float32))
    outs = tuple(np.empty(shape, np.float32, order="F") for _ in range(3))
    c = -2.0 * 0.3 / m.size
    r = mask_step.update_exp_mean_log(theta, m, g, m1, m2, outs, c, 0.9, 0.999, 0.01, 1e-9, 2.0)
    m64 = m.astype(np.float64)
    greg = np.float32(c) / m
    grad = (g + greg) * m
    n1 = m1 * np.float32(0.9) + grad * np.float32(1 - 0.9)
    n2 = m2 * np.float32(0.999) + grad * grad * np.float32(1 - 0.999)
    new = np.minimum(theta - n1 * np.float32(0.01) / (np.sqrt(n2) + np.float32(1e-9)), np.float32(2.0))
    for got, want in zip(outs, (new, n1, n2)):
        np.testing.assert_array_equal(got, want)
    assert r["sum_log_m"] == pytest.approx(np.log(m64).sum(), rel=1e-13, abs=1e-9)
    assert r["sum_m"] == pytest.approx(m64.sum(), rel=1e-13)
    assert r["sum_m2"] == pytest.approx((m64 * m64).sum(), rel=1e-13)
    assert r["sum_greg2"] == pytest.approx((greg.astype(np.float64) ** 2).sum(), rel=1e-13)
    assert r["special"] == 0 and r["nonfinite"] == 0
    # 0, subnormal, Inf and NaN scales are counted, for the generic update to take over
    m[0, 0], m[1, 0], m[2, 0], m[3, 0] = 0.0, 1e-40, np.inf, np.nan
    r = mask_step.update_exp_mean_log(theta, m, g, m1, m2, outs, c, 0.9, 0.999, 0.01, 1e-9, 2.0)
    assert r["special"] == 4 and r["nonfinite"] >= 1


def test_unusual_scale_leaves_the_state_to_the_generic_update(monkeypatch):
    _switch(monkeypatch, True)
    run = _run("attenuate", 2, 1.0, lr=0.05)
    run.step()
    t, m1 = run.optimizer.t, run.optimizer.m1.copy()
    theta = run.theta.copy(order="F")
    theta[5, 3] = -200.0  # exp underflows to 0 in float32
    run.theta = theta
    m = run.scale()
    assert run._fused_update(run.theta, m, 0.5, np.zeros_like(m)) is None
    assert run.optimizer.t == t
    np.testing.assert_array_equal(run.optimizer.m1, m1)
    with pytest.raises(FloatingPointError, match="underflowed to 0"):
        run.step()


def test_forward_stats_counts_what_forward_counts():
    rng = np.random.default_rng(2)
    x = np.asfortranarray(rng.standard_normal((2 * K, 30)).astype(np.float32))
    m = np.asfortranarray(rng.random((2 * K, 30)).astype(np.float32))
    eps = np.asfortranarray(rng.standard_normal((2 * K, 30, 3)).astype(np.float32))
    ext = mask_step.extension()
    got, want = np.empty((K, 30, 3), np.float32, order="F"), np.empty((K, 30, 3), np.float32, order="F")
    bad, sums, squares = ext.forward_stats(x, eps, m, got)
    assert bad == ext.forward(x, eps, m, want) == 0
    np.testing.assert_array_equal(got, want)
    want64 = want.astype(np.float64)
    np.testing.assert_allclose(sums, want64.sum(axis=(0, 1)), rtol=1e-13)
    np.testing.assert_allclose(squares, (want64 ** 2).sum(axis=(0, 1)), rtol=1e-13)
    eps[3, 5, 2], eps[7, 9, 0], eps[0, 0, 0] = np.inf, np.nan, np.inf
    assert ext.forward_stats(x, eps, m, got)[0] == ext.forward(x, eps, m, want) == 3

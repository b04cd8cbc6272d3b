"""The mask loop: presets, diagnostics, convergence, best state, checkpoints and resume, outputs."""

import csv
import json

import numpy as np
import pytest

from afmask.io import read_array
from afmask.mask import LOG_COLUMNS, MaskConfig, MaskObjective, MaskRun, run_mask
from test_mask_gradients import clean_fft, small_model


def objective(backend, variant="letters", noise="absolute"):
    return MaskObjective(clean_fft(), small_model(backend, np.float32), variant, noise=noise, backend=backend)


def test_faithful_preset_is_the_original():
    c = MaskConfig.preset("faithful")
    assert (c.variant, c.regularizer, c.lam, c.parametrization, c.m_init) == ("letters", "log_norm", 10.0, "raw", 0.1)
    assert (c.noise, c.samples, c.optimizer, c.lr, c.iterations, c.early_stop) == ("absolute", 1, "sgd", 0.001, 5000, False)
    assert c.gradient == "hand"


@pytest.mark.parametrize("bad,match", [
    ({"variant": "softmax"}, "variant"), ({"lr": 0}, "lr"), ({"lam": -1}, "lam"), ({"samples": 0}, "samples"),
    ({"parametrization": "exp", "m_init": 0}, "m_init"), ({"stats": "arrayfire_cpu", "samples": 2}, "samples=1"),
    ({"colour": "red"}, "unknown setting"),
])
def test_bad_settings_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        MaskConfig.preset("default", **bad)


def test_config_files_round_trip(tmp_path):
    c = MaskConfig.preset("faithful", iterations=7, lam=3.0)
    (tmp_path / "c.json").write_text(json.dumps(c.to_dict()))
    assert MaskConfig.load(tmp_path / "c.json") == c
    (tmp_path / "c.toml").write_text('mode = "default"\nlr = 0.02\nnoise = "absolute"\n')
    d = MaskConfig.load(tmp_path / "c.toml", iterations=9)
    assert (d.mode, d.lr, d.noise, d.iterations) == ("default", 0.02, "absolute", 9)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read config"):
        MaskConfig.load(tmp_path / "bad.json")


def test_one_faithful_step_is_the_notes_update(backend):
    """m_next = m - lr * (df/dm - 2 lambda m / ||m||^2), with df/dm checked against autograd elsewhere."""
    obj = objective(backend)
    cfg = MaskConfig.preset("faithful", iterations=1)
    run = MaskRun(obj, cfg)
    run.lam = 10.0
    m0 = backend.to_numpy(run.scale()).copy()
    row = run.step()
    from afmask.mask.run import iteration_seed

    eps = obj.draw_noise(iteration_seed(cfg.seed, 0), 1)
    fw = obj.forward(backend.asarray(np.asfortranarray(m0)), eps)
    g = backend.to_numpy(obj.data_gradient(fw)[0])
    sq = float(np.sum(m0.astype(np.float64) ** 2))
    want = m0 - np.float32(0.001) * (g - np.float32(20.0 / sq) * m0)
    np.testing.assert_allclose(backend.to_numpy(run.theta), want, rtol=1e-6, atol=1e-9)
    assert row["reg_term"] == pytest.approx(-10.0 * np.log(sq), rel=1e-9)
    assert row["grad_reg_norm"] == pytest.approx(20.0 / np.sqrt(sq), rel=1e-9)
    assert row["grad_f_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-5)
    assert row["total"] == pytest.approx(row["f_term"] + row["reg_term"])


def test_outputs_and_log(tmp_path, backend):
    cfg = MaskConfig.preset("default", iterations=12, window=4, checkpoint_every=5, early_stop=False)
    result = run_mask(objective(backend, "posteriors", "relative"), cfg, tmp_path, progress=False)
    for name in ("m.npy", "m.af", "m_last.npy", "log.csv", "config.json", "summary.json", "checkpoint.npz"):
        assert (tmp_path / name).is_file(), name
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), result.m)
    np.testing.assert_array_equal(read_array(tmp_path / "m.af", key="m"), result.m)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == LOG_COLUMNS and len(rows) == 12
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["auto_lambda"]["lambda"] == pytest.approx(result.lam)
    assert len(summary["auto_lambda"]["grad_f_norms"]) == 4
    assert np.all(result.m > 0)  # positive by construction (exp parametrisation)
    assert MaskConfig.from_dict(json.loads((tmp_path / "config.json").read_text())) == cfg.replace(
        **{k: v for k, v in json.loads((tmp_path / "config.json").read_text()).items() if k in ("audio", "model", "extra")})


def test_auto_lambda_balances_the_gradient_norms_at_the_start(backend):
    run = MaskRun(objective(backend, "posteriors", "relative"), MaskConfig.preset("default", iterations=1, lambda_scale=1.0))
    lam = run.choose_lambda()
    scaled = MaskRun(objective(backend, "posteriors", "relative"), MaskConfig.preset("default", iterations=1, lambda_scale=0.1))
    assert scaled.choose_lambda() == pytest.approx(0.1 * lam, rel=1e-9)
    run.lam = lam
    row = run.step()
    # at the first step the two gradient norms are of the same size (the noise draw differs)
    assert 0.3 < row["grad_f_norm"] / row["grad_reg_norm"] < 3


def test_killed_run_resumes_to_the_same_result(tmp_path, backend, monkeypatch):
    cfg = MaskConfig.preset("default", iterations=30, window=5, checkpoint_every=10, early_stop=False)
    whole = run_mask(objective(backend), cfg, tmp_path / "whole", progress=False)

    calls = {"n": 0}
    original = MaskRun.step

    def dying_step(self):
        calls["n"] += 1
        if calls["n"] == 26:
            raise KeyboardInterrupt  # killed between checkpoints 20 and 30
        return original(self)

    monkeypatch.setattr(MaskRun, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        run_mask(objective(backend), cfg, tmp_path / "killed", progress=False)
    monkeypatch.setattr(MaskRun, "step", original)
    with pytest.raises(ValueError, match="--resume"):
        run_mask(objective(backend), cfg, tmp_path / "killed", progress=False)
    resumed = run_mask(objective(backend), cfg, tmp_path / "killed", resume=True, progress=False)
    np.testing.assert_array_equal(resumed.m, whole.m)
    np.testing.assert_array_equal(resumed.m_last, whole.m_last)
    assert whole.tiebreak is not None  # the default mode orders the bins at the bound by the path
    np.testing.assert_array_equal(resumed.tiebreak, whole.tiebreak)
    np.testing.assert_array_equal(np.load(tmp_path / "killed" / "tiebreak.npy"), whole.tiebreak)
    assert [r["total"] for r in resumed.history] == [r["total"] for r in whole.history]
    with pytest.raises(ValueError, match="settings differ"):
        run_mask(objective(backend), cfg.replace(lr=0.5), tmp_path / "killed", resume=True, progress=False)


def test_early_stop_and_best_state_by_smoothed_loss(backend):
    cfg = MaskConfig.preset("default", iterations=400, window=5, patience=2, rtol=0.5)
    result = run_mask(objective(backend, "posteriors", "relative"), cfg, progress=False)
    assert result.converged and result.iterations < 400
    totals = np.array([r["total"] for r in result.history])
    windows = totals[: len(totals) // 5 * 5].reshape(-1, 5).mean(axis=1)
    assert result.best_iteration == 5 * int(np.argmin(windows)) + 4  # the window with the lowest mean loss


def test_divergence_is_reported_not_propagated(backend):
    cfg = MaskConfig.preset("default", iterations=50, lr=50.0, lam=1e6, m_max=None)  # exp(theta) overflows float32
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        run_mask(objective(backend), cfg, progress=False)


def test_autograd_and_hand_gradient_runs_agree(backend):
    cfg = MaskConfig.preset("faithful", iterations=5)
    a = run_mask(objective(backend), cfg, progress=False)
    b = run_mask(objective(backend), cfg.replace(gradient="autograd"), progress=False)
    np.testing.assert_allclose(a.m, b.m, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("parametrization", ["exp", "softplus", "raw"])
def test_m_stays_below_its_bound(backend, parametrization):
    cfg = MaskConfig.preset("default", iterations=30, lr=2.0, lam=50.0, m_max=0.5, early_stop=False,
                            parametrization=parametrization, regularizer="log_norm")
    result = run_mask(objective(backend, "posteriors", "relative"), cfg, progress=False)
    assert np.max(np.abs(result.m_last)) <= 0.5 * (1 + 1e-6)
    assert np.max(np.abs(result.m_last)) > 0.4  # the regulariser pushed m up to the bound


@pytest.mark.parametrize("noise", ["absolute", "attenuate", "drop"])
def test_noise_drawn_ahead_equals_noise_drawn_in_place(backend, noise, monkeypatch):
    """The background draw (on the host, on every backend) gives the very numbers of the same seed drawn in place."""
    from afmask.backend import threads

    monkeypatch.setattr(threads, "spare_core", lambda: True)  # it draws ahead only where BLAS leaves a core free
    obj = objective(backend, noise=noise)
    r = MaskRun(obj, MaskConfig.preset("default", samples=2, noise=noise, iterations=3))
    r.prefetch_noise(11)
    assert r._ahead is not None and r._ahead[0] == 11
    ahead = backend.to_numpy(r._noise(11))
    np.testing.assert_array_equal(ahead, backend.to_numpy(obj.draw_noise(11, 2)))


def test_noise_is_drawn_in_place_when_blas_takes_every_core(monkeypatch):
    from afmask.backend import get_backend, threads

    monkeypatch.setattr(threads, "spare_core", lambda: False)
    r = MaskRun(objective(get_backend("numpy")), MaskConfig.preset("default", samples=2, iterations=3))
    r.prefetch_noise(11)
    assert r._ahead is None and r._pool is None


def test_a_drop_noise_run_is_seeded_bounded_and_not_the_attenuation_run(backend, tmp_path):
    cfg = MaskConfig.preset("default", noise="drop", iterations=6, samples=2, early_stop=False)
    a = run_mask(objective(backend, "posteriors", "drop"), cfg, tmp_path / "a", progress=False)
    b = run_mask(objective(backend, "posteriors", "drop"), cfg, tmp_path / "b", progress=False)
    np.testing.assert_array_equal(a.m_last, b.m_last)
    assert 0 < a.m_last.min() and a.m_last.max() <= 1 + 1e-6
    att = run_mask(objective(backend, "posteriors", "attenuate"), cfg.replace(noise="attenuate"), tmp_path / "c",
                   progress=False)
    assert not np.array_equal(a.m_last, att.m_last)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["noise"] == "drop"

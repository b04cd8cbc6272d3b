"""The attribution methods: analytic answers on a linear model, finite differences and completeness in float64,
a model that reads one band, and the shape every method shares."""

import json

import numpy as np
import pytest

from afmask.attribute import (
    METHODS,
    RISE,
    Attribution,
    InputXGradient,
    IntegratedGradients,
    NoiseMask,
    Saliency,
    SmoothGrad,
    Target,
    integration_rule,
    make_method,
    random_masks,
)
from afmask.fl import Variable, nn
from afmask.mask import MaskConfig, MaskObjective, run_mask

K, T = 9, 24


def _cast(model, dtype, scale=1.0):
    for i, p in enumerate(model.params()):
        model.setParams(Variable(p.host().astype(dtype) * scale, False), i)
    return model


def small_model(dtype=np.float64, seed=0, width=6, activation=nn.ReLU):
    """A wav2letter-shaped network: View, stride-2 SAME conv, ReLU, Reorder, Linear -> 31 tokens."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential([
        nn.View((-1, 1, K, 0)), nn.Conv2D(K, width, 4, 1, 2, 1, nn.SAME, 0, rng=rng), activation(),
        nn.Reorder(2, 0, 3, 1), nn.Linear(width, 31, rng=rng),
    ])
    return _cast(model, dtype, 3.0)


def linear_model(weight, bias=None):
    """output[:, t] = W z_t + b: one linear layer on each frame of the network input z (T, K)."""
    model = nn.Sequential([nn.View((-1, 1, weight.shape[1], 0)), nn.Reorder(2, 0, 3, 1), nn.Linear(weight.shape[1], 31)])
    model.setParams(Variable(np.asarray(weight, np.float64), False), 0)
    model.setParams(Variable(np.zeros(31) if bias is None else np.asarray(bias, np.float64), False), 1)
    return model


def clean_fft(seed=1, k=K, t=T):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2 * k, t)) * 300).astype(np.float32)


def analytic_logprob_gradient(weight, z):
    """d/dz of sum_t log softmax(W z_t)[c_t] with c_t = argmax at z: W[c_t] - sum_j p_jt W[j], as (K, T)."""
    out = weight @ z.T  # (31, T)
    p = np.exp(out - out.max(0))
    p /= p.sum(0)
    c = np.argmax(out, axis=0)
    return (weight[c] - p.T @ weight).T


# -- gradients against the analytic answer and finite differences --------------------------------------
def test_saliency_equals_the_analytic_gradient_on_a_linear_model():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((31, K))
    model = linear_model(w)
    fft = clean_fft()
    target = Target(model, fft, "logprob", "input")
    expected = analytic_logprob_gradient(w, target.clean_input)
    signed = Saliency(model, space="input", abs=False).attribute(fft)
    np.testing.assert_allclose(signed.importance, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    plain = Saliency(model, space="input").attribute(fft)
    np.testing.assert_allclose(plain.importance, np.abs(expected), rtol=0, atol=1e-12 * np.abs(expected).max())
    ixg = InputXGradient(model, space="input").attribute(fft)
    np.testing.assert_allclose(ixg.importance, target.point * expected, rtol=0, atol=1e-12 * np.abs(target.point * expected).max())


@pytest.mark.parametrize("score", ["logprob", "prob"])
def test_magnitude_gradient_through_the_normalisation_matches_finite_differences(score):
    model = small_model()
    fft = clean_fft()
    target = Target(model, fft, score, "magnitude")
    g = Saliency(model, score=score, abs=False).attribute(fft).importance
    x = target.point
    rng = np.random.default_rng(4)
    picks = rng.choice(K * T, 40, replace=False)
    bumped = []
    steps = []
    for j in picks:
        k, t = np.unravel_index(j, (K, T))
        h = 1e-6 * max(1.0, abs(x[k, t]))
        for sign in (1, -1):
            y = x.copy()
            y[k, t] += sign * h
            bumped.append(y)
        steps.append(h)
    s = target.scores(np.stack(bumped, axis=2))
    numeric = (s[0::2] - s[1::2]) / (2 * np.array(steps))
    analytic = np.array([g[np.unravel_index(j, (K, T))] for j in picks])
    assert np.abs(numeric).max() > 0
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=1e-5 * np.abs(numeric).max())
    ixg = InputXGradient(model, score=score).attribute(fft).importance
    np.testing.assert_allclose(ixg, x * g, rtol=1e-12, atol=0)


def test_batched_gradients_are_each_inputs_own():
    model = small_model()
    target = Target(model, clean_fft(), "logprob", "magnitude")
    rng = np.random.default_rng(2)
    pts = target.point[:, :, None] * (0.5 + rng.random((K, T, 3)))
    g3, s3 = target.gradients(pts)
    for i in range(3):
        g1, s1 = target.gradients(pts[:, :, i])
        np.testing.assert_allclose(g3[:, :, i], g1[:, :, 0], rtol=1e-12, atol=1e-14)
        assert s3[i] == pytest.approx(s1[0], rel=1e-12)


# -- Integrated Gradients -------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"])
def test_integration_rules_integrate_on_the_unit_interval(method):
    a, w = integration_rule(method, 20)
    assert a.shape == w.shape == (20,)
    assert np.all((a >= 0) & (a <= 1))
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    err = abs(np.sum(w * a ** 2) - 1 / 3)
    assert err < (1e-12 if method == "gausslegendre" else 0.06)


def test_gauss_legendre_is_exact_for_polynomials_up_to_degree_2n_minus_1():
    a, w = integration_rule("gausslegendre", 5)
    for d in range(10):
        assert np.sum(w * a ** d) == pytest.approx(1 / (d + 1), abs=1e-13)


@pytest.mark.parametrize("space,score,activation,tol", [
    ("input", "logprob", nn.Tanh, 1e-9), ("input", "prob", nn.Tanh, 1e-9), ("magnitude", "logprob", nn.Tanh, 1e-9),
    # ReLU's kinks cost Gauss-Legendre its spectral accuracy: the error then falls only as a power of the steps
    ("input", "logprob", nn.ReLU, 2e-3),
])
def test_integrated_gradients_completeness(space, score, activation, tol):
    model = small_model(activation=activation)
    fft = clean_fft()
    baseline = None
    if space == "magnitude":
        tg = Target(model, fft, score, space)
        baseline = tg.point * np.random.default_rng(5).random(tg.point.shape)  # not constant: a valid baseline
    ig = IntegratedGradients(model, score=score, space=space, n_steps=64, baseline=baseline, batch=16)
    a = ig.attribute(fft)
    c = a.extras["completeness"]
    assert abs(c["score_difference"]) > 1e-3  # the check is not trivial
    assert a.importance.sum() == pytest.approx(c["score_difference"], rel=tol)
    assert c["relative_delta"] < tol
    # fewer steps, larger error: the check measures the quadrature, it is not built in
    coarse = IntegratedGradients(model, score=score, space=space, n_steps=2, baseline=baseline, method="riemann_right").attribute(fft)
    assert coarse.extras["completeness"]["relative_delta"] > c["relative_delta"]


def test_integrated_gradients_matches_the_definition_on_a_linear_model():
    # the score's gradient is analytic for a linear model (analytic_logprob_gradient); integrate it along the
    # straight path from the zero input with a fine midpoint rule and compare
    rng = np.random.default_rng(1)
    w = rng.standard_normal((31, K)) * 0.1
    model = linear_model(w)
    fft = clean_fft()
    target = Target(model, fft, "logprob", "input")
    z = target.point  # (K, T)
    # IG by definition with a fine midpoint rule in numpy, on the analytic gradient
    alphas = (np.arange(2000) + 0.5) / 2000
    c = np.argmax(w @ z, axis=0)  # the clean path, fixed along the path
    total = np.zeros_like(z)
    for a in alphas:
        out = w @ (a * z)
        p = np.exp(out - out.max(0))
        p /= p.sum(0)
        total += (w[c].T - w.T @ p) / alphas.size
    expected = z * total
    got = IntegratedGradients(model, space="input", n_steps=50).attribute(fft).importance
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def test_integrated_gradients_refuses_a_constant_magnitude_baseline():
    with pytest.raises(ValueError, match="degenerate"):
        IntegratedGradients(small_model(), space="magnitude").attribute(clean_fft())


# -- SmoothGrad ---------------------------------------------------------------------------------------------
def test_smoothgrad_without_noise_is_saliency():
    model = small_model()
    fft = clean_fft()
    sg = SmoothGrad(model, n_samples=3, stdev=0.0).attribute(fft).importance
    np.testing.assert_allclose(sg, Saliency(model).attribute(fft).importance, rtol=1e-12, atol=0)


def test_smoothgrad_is_the_mean_saliency_over_noisy_inputs_whatever_the_batch():
    model = small_model()
    fft = clean_fft()
    target = Target(model, fft, "logprob", "magnitude")
    x = target.point
    sigma = 0.2 * (x.max() - x.min())
    rng = np.random.default_rng([7, 11])
    expected = np.zeros_like(x)
    for _ in range(5):
        noisy = x + sigma * rng.standard_normal(x.shape)
        expected += np.abs(target.gradients(noisy)[0][:, :, 0]) / 5
    for batch in (1, 2, 8):
        got = SmoothGrad(model, n_samples=5, stdev=0.2, seed=7, batch=batch).attribute(fft)
        np.testing.assert_allclose(got.importance, expected, rtol=1e-10, atol=0)
        assert got.extras["sigma"] == pytest.approx(sigma)
    other = SmoothGrad(model, n_samples=5, stdev=0.2, seed=8).attribute(fft).importance
    assert not np.allclose(other, expected)


# -- RISE ---------------------------------------------------------------------------------------------------
def test_rise_masks_are_smooth_random_and_the_same_in_any_batch():
    m = random_masks((40, 60), range(200), (8, 10), 0.3, seed=3)
    assert m.shape == (40, 60, 200)
    assert m.min() >= 0 and m.max() <= 1
    assert m.mean() == pytest.approx(0.3, abs=0.03)
    # bilinear: neighbouring points differ by at most one cell's step
    assert np.abs(np.diff(m, axis=0)).max() <= 1 / 8 + 1e-12
    assert np.abs(np.diff(m, axis=1)).max() <= 1 / 10 + 1e-12
    np.testing.assert_array_equal(random_masks((40, 60), [5, 6], (8, 10), 0.3, seed=3), m[:, :, 5:7])
    assert not np.array_equal(random_masks((40, 60), [5], (8, 10), 0.3, seed=4)[:, :, 0], m[:, :, 5])


def band_model(k, lo, hi, seed=0):
    """A linear model that reads only bins lo..hi-1 of its input."""
    w = np.random.default_rng(seed).standard_normal((31, k)) * 2.0
    w[:, :lo] = 0
    w[:, hi:] = 0
    return linear_model(w)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("space", ["magnitude", "input"])
def test_rise_on_a_model_that_reads_one_band_puts_the_band_on_top(space, seed):
    k, t, lo, hi, cell = 32, 30, 12, 18, 3
    model = band_model(k, lo, hi, seed)
    a = RISE(model, n_masks=300, cell=(cell, 5), batch=100, space=space).attribute(clean_fft(2 + seed, k, t))
    rows = a.importance.mean(axis=1)  # importance per frequency bin
    # smooth masks blur the answer by up to two cells each way; beyond that a bin outside the band acts only
    # through the global mean and stdev (magnitudes) or not at all (the normalised input)
    assert lo <= np.argmax(rows) < hi
    far = np.r_[0 : lo - 2 * cell, hi + 2 * cell : k]
    # (the leak through the normalisation is real: out-of-band bins then reach a third of the band's level)
    assert rows[lo:hi].mean() > (2 if space == "magnitude" else 3) * np.abs(rows[far]).max()


def test_rise_is_the_same_for_any_batch_size():
    model = small_model()
    fft = clean_fft()
    a = RISE(model, n_masks=20, cell=(3, 4), batch=20).attribute(fft).importance
    b = RISE(model, n_masks=20, cell=(3, 4), batch=3).attribute(fft).importance
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


# -- afmask's own mask ------------------------------------------------------------------------------------------
def test_importance_of_m_has_a_floor_where_m_is_zero():
    from afmask.evaluate.importance import importance

    m = np.abs(np.random.default_rng(0).standard_normal((2 * K, T))) + 1e-3
    m[3, 4] = m[2, 4] = 0.0  # the floor
    imp = importance(m)
    assert imp[1, 4] == -np.log(np.finfo(np.float64).tiny)
    np.testing.assert_allclose(imp[0, 0], -np.log(np.sqrt((m[0, 0] ** 2 + m[1, 0] ** 2) / 2)))


def test_noise_mask_wraps_run_mask():
    from afmask.evaluate.importance import importance

    model = small_model(np.float32)
    fft = clean_fft()
    cfg = MaskConfig.preset("default", iterations=6, samples=2, seed=5, restarts=1)  # one run, as run_mask makes
    method = NoiseMask(model, cfg)
    a = method.attribute(fft)
    objective = MaskObjective(fft, model, cfg.variant, noise=cfg.noise, stats=cfg.stats)
    m = run_mask(objective, cfg, progress=False).m
    np.testing.assert_array_equal(a.importance, importance(m))
    np.testing.assert_array_equal(method.last_result.m, m)
    assert a.method == "mask" and a.settings["config"]["iterations"] == 6
    assert NoiseMask(model, cfg, iterations=3).config.iterations == 3


def test_noise_mask_restarts_average_the_runs_percentile_ranks():
    """restarts=N: runs with the seeds seed .. seed + N - 1, each map as percentile ranks, averaged."""
    from scipy.stats import rankdata

    from afmask.attribute.noise_mask import mean_rank

    model = small_model(np.float32)
    fft = clean_fft()
    cfg = MaskConfig.preset("default", iterations=6, samples=2, seed=5, lambda_scale=3.0)
    a = NoiseMask(model, cfg, restarts=2).attribute(fft)
    objective = MaskObjective(fft, model, cfg.variant, noise=cfg.noise, stats=cfg.stats)
    maps = [run_mask(objective, cfg.replace(seed=s), progress=False).importance() for s in (5, 6)]
    assert not np.array_equal(maps[0], maps[1])  # two seeds, two maps
    want = (rankdata(maps[0].ravel()) + rankdata(maps[1].ravel())).reshape(maps[0].shape) / (2 * maps[0].size)
    np.testing.assert_allclose(a.importance, want, rtol=1e-12)
    assert a.extras["restarts"]["seeds"] == [5, 6] and a.extras["forwards"] == 2 * 6 * 2
    assert a.settings["restarts"] == 2
    # ranks: in (0, 1], ties share their mean rank, one map is its own ranking
    r = mean_rank([np.array([[3.0, 1.0], [1.0, 2.0]])])
    np.testing.assert_allclose(r, [[1.0, 0.375], [0.375, 0.75]])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="restarts"):
            NoiseMask(model, cfg, restarts=bad)


# -- the shared shape -----------------------------------------------------------------------------------------
FAST = {"smoothgrad": {"n_samples": 2}, "ig": {"n_steps": 4}, "rise": {"n_masks": 6, "cell": 3}, "mask": {"iterations": 3}}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_gives_a_finite_map_of_the_utterance_and_saves_it(name, tmp_path):
    model = small_model(np.float32 if name == "mask" else np.float64)
    fft = clean_fft()
    a = make_method(name, model, **FAST.get(name, {})).attribute(fft)
    assert isinstance(a, Attribution)
    assert a.method == name
    assert a.importance.shape == (K, T) and np.all(np.isfinite(a.importance))
    assert np.ptp(a.importance) > 0
    assert a.seconds > 0 and a.extras["forwards"] >= 1
    back = Attribution.load(a.save(tmp_path / name))
    np.testing.assert_array_equal(back.importance, a.importance)
    assert back.method == name and back.settings == a.settings


def test_a_features_dict_is_an_utterance():
    model = small_model()
    fft = clean_fft()
    mag = np.sqrt(fft[0::2].astype(np.float64) ** 2 + fft[1::2].astype(np.float64) ** 2).astype(np.float32)
    a = Saliency(model).attribute(fft).importance
    b = Saliency(model).attribute({"fft": fft, "magnitude": mag}).importance
    np.testing.assert_array_equal(a, b)
    c = Saliency(model).attribute({"fft": fft, "magnitude": 2 * mag}).importance  # the dict's magnitudes are used
    assert not np.allclose(a, c)


def test_bad_settings_are_refused_early():
    model = small_model()
    with pytest.raises(ValueError, match="unknown attribution method 'lime'"):
        make_method("lime", model)
    with pytest.raises(ValueError, match="score must be one of"):
        Saliency(model, score="ctc")
    with pytest.raises(ValueError, match="space must be one of"):
        Saliency(model, space="fft")
    with pytest.raises(ValueError, match="n_masks"):
        RISE(model, n_masks=0)
    with pytest.raises(ValueError, match="p_keep"):
        RISE(model, p_keep=1.0)
    with pytest.raises(ValueError, match="method must be one of"):
        IntegratedGradients(model, method="simpson")
    with pytest.raises(ValueError, match="stdev"):
        SmoothGrad(model, stdev=-1)
    with pytest.raises(ValueError, match="interleaved FFT"):
        Saliency(model).attribute(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        Attribution(np.full((2, 2), np.nan), "x", {}, 0.0)


def test_the_comparison_script_tabulates_rows_per_method():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "compare_methods.py"
    spec = importlib.util.spec_from_file_location("compare_methods", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = [{"clip": c, "method": m, "seconds": 2.0, "most_random": mr, "least_random": lr, "most_shifted": 0.1,
             "most_shifted_worst": ms, "stratified_passes": mr > 0 and lr <= 0 and ms > 0, "gap": 0.3, "gap_energy": 0.5,
             "tied_share": 0.0, "spearman_energy": 0.2}
            for c, m, mr, lr, ms in (("a", "ig", 0.2, -0.1, 0.05), ("b", "ig", 0.1, 0.1, -0.01), ("a", "rise", -0.1, 0.0, 0.0))]
    table = module.summary_table(rows, ["saliency", "ig", "rise"])
    lines = table.splitlines()
    ig = next(line for line in lines if line.startswith("| ig |"))
    assert "+0.150 (2/2)" in ig and "+0.000 (1/2)" in ig and "| 1/2 |" in ig and "0.300 (0/2)" in ig
    assert not any(line.startswith("| saliency |") for line in lines)  # no rows, no line
    assert "Means over 2 clips (a, b)" in table


def test_compare_methods_adds_parts_to_saved_rows(tmp_path):
    """A rerun asking for own-noise deletion, insertion and randomisation completes the saved rows from the saved
    maps, and gives what a run asking for everything at once gives."""
    import importlib.util
    from pathlib import Path

    import soundfile as sf

    from afmask.io import load_audio

    path = Path(__file__).resolve().parents[1] / "examples" / "compare_methods.py"
    spec = importlib.util.spec_from_file_location("compare_methods", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    clip = tmp_path / "clip.wav"
    sf.write(clip, load_audio(Path(module.ROOT) / "afmask" / "data" / "audio" / "demo.wav")[4000:12000], 16000)
    base = ["--clips", str(clip), "--methods", "saliency", "smoothgrad", "--smoothgrad-samples", "2", "--blind-clips", "0"]
    more = ["--modes", "zero", "noise", "--kinds", "deletion", "insertion", "--randomisation-clips", "1"]
    assert module.main(["--out", str(tmp_path / "a"), *base]) == 0
    first = json.loads((tmp_path / "a" / "clip" / "saliency" / "row.json").read_text())
    assert first.get("rand_passes") is None and first.get("stratified_passes_ins") is None
    assert module.main(["--out", str(tmp_path / "a"), *base, *more]) == 0
    assert module.main(["--out", str(tmp_path / "b"), *base, *more]) == 0
    for name in ("saliency", "smoothgrad"):
        added = json.loads((tmp_path / "a" / "clip" / name / "row.json").read_text())
        whole = json.loads((tmp_path / "b" / "clip" / name / "row.json").read_text())
        assert added.pop("seconds") > 0 and whole.pop("seconds") > 0
        for key in ("rand_passes", "stratified_passes_noise", "stratified_passes_ins", "stratified_passes_noise_ins",
                    "rand_ceiling_within"):
            assert added[key] is not None
        assert added == whole
        controls = json.loads((tmp_path / "a" / "clip" / name / "controls.json").read_text())
        assert "randomisation" in controls and "insertion" in controls["stratified"]["modes"]["zero"]
    # saliency is deterministic: its seed-to-seed ceiling is exactly 1
    assert json.loads((tmp_path / "b" / "clip" / "saliency" / "row.json").read_text())["rand_ceiling_within"] == 1.0
    table = (tmp_path / "a" / "table.md").read_text()
    assert "randomisation, within deciles" in table and "| saliency |" in table
    assert "insertion, the rest by the default mode's own noise" in table
    # a row saved before a column existed gets it from its folder's controls.json, not by recomputing
    saved = tmp_path / "a" / "clip" / "saliency" / "row.json"
    old = json.loads(saved.read_text())
    trimmed = {k: v for k, v in old.items() if not k.endswith("_noise_ins")}
    saved.write_text(json.dumps(trimmed))
    assert module.main(["--out", str(tmp_path / "a"), *base, *more]) == 0
    rows = (tmp_path / "a" / "results.csv").read_text().splitlines()
    head, sal = rows[0].split(","), next(r for r in rows if ",saliency," in r).split(",")
    assert float(sal[head.index("most_random_noise_ins")]) == pytest.approx(old["most_random_noise_ins"], rel=1e-5)

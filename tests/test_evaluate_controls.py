"""The controls on models whose answer is known: energy-stratified deletion, ties, blind models, plausibility, sanity."""

from pathlib import Path

import numpy as np
import pytest

from afmask.evaluate.controls import (
    energy_strata,
    stratified_deletion,
    tie_broken_order,
    ties,
)
from afmask.features import features
from afmask.fl import Variable, nn
from afmask.io import load_audio
from afmask.model.blind import FrameMask, blind_to_band, blind_to_frames

DEMO = Path(__file__).resolve().parents[1] / "afmask" / "data" / "audio" / "demo.wav"
K = 257
BAND = slice(10, 31)
WINDOW = slice(10, 35)  # frames the window model listens to (of 88)


def band_linear(seed=0):
    """Linear (K -> 31), zero-sum rows on BAND only, no bias: the decoding depends on the band's magnitudes only."""
    rng = np.random.default_rng(seed)
    w = np.zeros((31, K), np.float32)
    band = rng.standard_normal((31, BAND.stop - BAND.start)).astype(np.float32)
    w[:, BAND] = band - band.mean(axis=1, keepdims=True)
    lin = nn.Linear(K, 31, bias=False)
    lin.setParams(Variable(np.asfortranarray(w * 3), False), 0)
    return lin


def window_model(T):
    """Listens to BAND inside WINDOW only: the frames outside are zeroed at the input."""
    keep = np.zeros(T, np.float32)
    keep[WINDOW] = 1
    model = nn.Sequential([FrameMask(keep), nn.View((-1, 1, K, 0)), nn.Reorder(2, 0, 3, 1), band_linear()])
    model.eval()
    return model


@pytest.fixture(scope="module")
def utterance():
    x = load_audio(DEMO)[: int(0.9 * 16000)]
    f = features(x)
    return {"fft": f["fft"], "magnitude": f["magnitude"], "samples": x}


def truth_map(T, seed=0):
    """Importance (K, T): high on BAND x WINDOW (what the window model uses), low and varied elsewhere."""
    rng = np.random.default_rng(seed)
    imp = rng.random((K, T))
    imp[BAND, WINDOW] += 10.0
    return imp


# -- energy-stratified deletion ---------------------------------------------------------------------------
def test_energy_strata_have_equal_counts_and_follow_loudness():
    mag = np.random.default_rng(0).random((K, 40)).astype(np.float32)
    s = energy_strata(mag, 10)
    assert np.bincount(s).tolist() == [K * 40 // 10 + (1 if i < 0 else 0) for i in range(10)] or \
        max(np.bincount(s)) - min(np.bincount(s)) <= 1
    e = mag.ravel(order="F") ** 2
    assert e[s == 9].min() >= e[s == 0].max()
    with pytest.raises(ValueError, match="deciles"):
        energy_strata(mag, 0)


def test_the_true_map_beats_random_and_its_time_shifted_copies_within_energy_deciles(utterance):
    T = utterance["fft"].shape[1]
    model = window_model(T)
    # small shares: the truth's 2.3 % of points fill them; relative noise x10 on a few of them already
    # destroys the decoding, so larger shares saturate the CER for every condition
    res = stratified_deletion(utterance["fft"], model, truth_map(T), fractions=(0.02, 0.05), seeds=(0, 1),
                              kinds=("deletion", "insertion"))
    assert res["clean_text"].strip(), "the window model must decode something for the test to mean anything"
    assert res["shift_frames"] == [29, 59]
    for mode in ("zero", "noise"):
        d = res["modes"][mode]["deletion"]
        p = d["passes"]["cer_clean"]
        assert p["beats_random"] and p["beats_shifted"] and p["least_no_worse_than_random"], (mode, d["diff"])
        assert d["diff"]["most-random"]["cer_clean"] > 0 and d["diff"]["most-shifted_min"]["cer_clean"] > 0
        # the f-term also sees the global normalisation (deleting loud points anywhere rescales the input), the
        # CER does not (the band model's decoding is scale-free); the truth still beats random on it
        assert d["diff"]["most-random"]["f"] > 0
        # nothing deleted at x = 0: the clean decoding, f = 0
        assert d["curves"]["most"]["cer_clean"][0] == 0.0 and d["curves"]["most"]["f"][0] == pytest.approx(0, abs=1e-9)
        ins = res["modes"][mode]["insertion"]
        assert ins["passes"]["cer_clean"]["beats_random"] and ins["diff"]["most-random"]["cer_clean"] < 0
    assert res["verdict"].startswith("passes: within energy deciles (zeroing")
    assert res["passes"]["beats_shifted"] is True
    # the same map rolled in time by a third is a wrong map: it must fail where the truth passes
    wrong = stratified_deletion(utterance["fft"], model, np.roll(truth_map(T), T // 3, axis=1), fractions=(0.02, 0.05),
                                seeds=(0, 1), modes=("zero",), kinds=("deletion",))
    assert not wrong["passes"]["beats_shifted"] and wrong["verdict"].startswith("WARNING: fails")


def test_the_true_map_passes_deletion_by_drop_noise_and_the_control_says_which_noise(utterance):
    T = utterance["fft"].shape[1]
    res = stratified_deletion(utterance["fft"], window_model(T), truth_map(T), fractions=(0.02, 0.05), seeds=(0, 1),
                              modes=("noise",), kinds=("deletion",), noise_kind="drop", noise_level=1.0)
    assert res["noise"].startswith("drop:")
    assert "drop noise at level 1, each point scaled by 0 or 1 at random" in res["modes"]["noise"]["deletion"]["verdict"]["cer_clean"]
    d = res["modes"]["noise"]["deletion"]
    assert d["passes"]["cer_clean"]["beats_random"] and d["diff"]["most-random"]["cer_clean"] > 0, d["diff"]


def test_stratified_deletion_refuses_a_map_of_the_wrong_shape(utterance):
    T = utterance["fft"].shape[1]
    with pytest.raises(ValueError, match="importance map must be"):
        stratified_deletion(utterance["fft"], window_model(T), np.zeros((K, T + 1)))
    with pytest.raises(ValueError, match="fractions"):
        stratified_deletion(utterance["fft"], window_model(T), np.zeros((K, T)), fractions=(0.0, 0.5))


# -- ties ------------------------------------------------------------------------------------------------------
def test_an_all_equal_map_is_all_ties_and_is_ordered_at_random():
    flat = np.full((K, 20), 3.0)
    t = ties(flat, bound=3.0)
    assert t["most_common_share"] == 1.0 and t["at_bound_share"] == 1.0 and t["tied_share"] == 1.0
    assert t["distinct"] == 1
    a, b = tie_broken_order(flat, 0), tie_broken_order(flat, 1)
    assert sorted(a) == list(range(flat.size)) and not np.array_equal(a, b)
    assert not np.array_equal(a, np.arange(flat.size))  # not by position
    varied = np.arange(12.0).reshape(3, 4)
    assert ties(varied)["tied_share"] == 0.0
    assert tie_broken_order(varied, 0)[0] == 11  # largest first (flat column-major index of (2, 3))


# -- blind models -------------------------------------------------------------------------------------------------
def conv_model(seed=0):
    rng = np.random.default_rng(seed)
    model = nn.Sequential([
        nn.View((-1, 1, K, 0)),
        nn.Conv2D(K, 6, 3, 1, 1, 1, nn.SAME, 0, rng=rng), nn.ReLU(),
        nn.Reorder(2, 0, 3, 1),
        nn.Linear(6, 31, rng=rng),
    ])
    model.eval()
    return model


def test_a_band_blind_model_ignores_the_band_and_leaves_the_original_alone():
    model = conv_model()
    w0 = model.params()[0].host().copy()
    blind = blind_to_band(model, 20, 60)
    assert np.array_equal(model.params()[0].host(), w0)
    x = np.random.default_rng(1).standard_normal((30, K)).astype(np.float32)
    y = x.copy()
    y[:, 20:60] = 100.0
    out = lambda m, v: m(Variable(v, False)).host()  # noqa: E731
    assert np.array_equal(out(blind, x), out(blind, y))
    assert not np.allclose(out(model, x), out(model, y))
    with pytest.raises(ValueError, match="band 60:300"):
        blind_to_band(model, 60, 300)


def standardise(mag):
    """The network input (T, K) of magnitudes (K, T), as the mask run normalises it."""
    from afmask.evaluate.scoring import normalise

    return normalise(mag)


@pytest.mark.parametrize("form", ["band", "frames"])
def test_an_exactly_blind_model_reads_the_clean_input_unchanged_and_ignores_the_region_normalisation_included(
        form, utterance):
    mag = utterance["magnitude"]
    T = mag.shape[1]
    model = conv_model()
    if form == "band":
        exact, leaky = blind_to_band(model, 20, 60, magnitude=mag), blind_to_band(model, 20, 60)
        deleted = mag.copy()
        deleted[20:60] = 0
    else:
        exact, leaky = blind_to_frames(model, 10, 30, T, magnitude=mag), blind_to_frames(model, 10, 30, T)
        deleted = mag.copy()
        deleted[:, 10:30] = 0
    out = lambda m, v: m(Variable(np.asfortranarray(v), False)).host()  # noqa: E731
    clean, gone = standardise(mag), standardise(deleted)
    scale = np.abs(out(leaky, clean)).max()
    # on the clean utterance both forms read the same input
    np.testing.assert_allclose(out(exact, clean), out(leaky, clean), atol=1e-5 * scale)
    # deleting the region moves the leaky form (through the normalisation) and not the exact one
    assert np.abs(out(leaky, gone) - out(leaky, clean)).max() > 1e-3 * scale
    np.testing.assert_allclose(out(exact, gone), out(exact, clean), atol=1e-5 * scale)
    # batched samples are standardised one by one
    both = out(exact, np.stack([clean, gone], axis=-1)[:, :, None, :])
    np.testing.assert_allclose(both[..., 0].reshape(-1), out(exact, clean).reshape(-1), atol=1e-5 * scale)
    np.testing.assert_allclose(both[..., 1].reshape(-1), out(exact, gone).reshape(-1), atol=1e-5 * scale)


def test_an_exactly_blind_model_passes_gradients_and_refuses_a_constant_outside():
    from afmask.model.blind import Restandardise

    rng = np.random.default_rng(3)
    mag = rng.random((K, 12)).astype(np.float32) + 0.1
    region = np.zeros_like(mag, dtype=bool)
    region[5:9] = True
    mod = Restandardise.outside(mag, region)
    x = Variable(np.asfortranarray(rng.standard_normal((12, K)).astype(np.float32)), True)
    y = mod(x)
    w = rng.standard_normal((12, K)).astype(np.float32)
    from afmask.fl import functions as F

    loss = F.sum(F.mul(y, Variable(np.asfortranarray(w), False)), [0, 1])
    loss.backward()
    g = x.grad().host()
    assert np.all(g[:, 5:9] == 0) and np.abs(g).max() > 0  # the region's input gets no gradient
    # finite differences at one kept point, in float64 arithmetic of the same map
    def f(v):
        keep = ~region.T
        c = np.where(keep, v - v[keep].mean(), 0.0)
        return float((np.where(keep, c / np.sqrt((c[keep] ** 2).mean()) * mod.scale + mod.shift, 0.0) * w).sum())
    v = x.host().astype(np.float64)
    h = 1e-4
    e = np.zeros_like(v)
    e[3, 2] = h
    assert g[3, 2] == pytest.approx((f(v + e) - f(v - e)) / (2 * h), rel=2e-3, abs=1e-4)
    const = np.ones_like(mag)
    with pytest.raises(ValueError, match="constant"):
        Restandardise.outside(const, region)
    with pytest.raises(ValueError, match="same shape"):
        Restandardise.outside(mag, region[:, :5])


def test_a_frame_blind_model_ignores_the_window_batched_too():
    model = conv_model()
    blind = blind_to_frames(model, 5, 12, 30)
    x = np.random.default_rng(1).standard_normal((30, K, 1, 2)).astype(np.float32)
    y = x.copy()
    y[5:12] = 50.0
    out = lambda m, v: m(Variable(np.asfortranarray(v), False)).host()  # noqa: E731
    assert np.array_equal(out(blind, x), out(blind, y))
    assert not np.allclose(out(model, x), out(model, y))
    with pytest.raises(ValueError, match="frames 5:40"):
        blind_to_frames(model, 5, 40, 30)


def weight_oracle(model, seed):
    """Importance per bin from the first layer's weights (how much the model can read a bin), the same every frame."""
    w = np.abs(model.params()[0].host())
    per_bin = w.sum(axis=tuple(i for i in range(w.ndim) if w.shape[i] != K))
    T = 88
    return np.repeat(per_bin[:, None], T, axis=1) + 1e-3 * np.random.default_rng(seed).random((K, T))


def test_a_band_blind_model_gets_no_importance_in_the_band_and_the_leak_is_measured(utterance):
    from afmask.evaluate.controls import blind_test

    model = conv_model()
    res = blind_test(utterance["fft"], model, weight_oracle, band=(20, 60))
    assert res["map_top_share"] == 0.0 and res["passes"] and res["verdict"].startswith("passes")
    assert res["energy_top_share"] > 0.05  # the band is loud: energy would put much of its top there
    assert res["region_share"] == pytest.approx(40 / K)
    # the exactly blind model does not see the band at all; its leaky form does, through the global normalisation
    assert res["form"] == "exact" and "exactly blind" in res["verdict"]
    assert res["leak"]["leaky_f"] > 1e3 * max(res["leak"]["blind_f"], 1e-12)
    leaky = blind_test(utterance["fft"], model, weight_oracle, band=(20, 60), leaky=True)
    assert leaky["form"] == "leaky" and leaky["leak"]["blind_f"] == leaky["leak"]["leaky_f"] > 0
    # a map that puts the band first fails
    bad = blind_test(utterance["fft"], model, None, band=(20, 60), importance=-weight_oracle(model, 0))
    assert not bad["passes"] and bad["verdict"].startswith("WARNING")
    frames = blind_test(utterance["fft"], model, lambda m, s: np.random.default_rng(s).random((K, 88)), frames=(10, 30))
    assert frames["region_share"] == pytest.approx(20 / 88) and 0.1 < frames["map_top_share"] < 0.35
    with pytest.raises(ValueError, match="exactly one"):
        blind_test(utterance["fft"], model, weight_oracle)


# -- plausibility ------------------------------------------------------------------------------------------------
def test_plausibility_counts_mass_inside_words_against_energy_and_uniform(utterance):
    from afmask.evaluate.controls import plausibility, word_frames

    mag = utterance["magnitude"]
    T = mag.shape[1]
    words = [{"t": "a", "b": 0.2, "d": 0.3}, {"t": "b", "b": 0.6, "d": 0.1}]
    inside = word_frames(words, T)
    assert inside.sum() == 40 and inside[20] and not inside[18] and not inside[49] and inside[59]  # centre 0.01 t + 0.0125
    words_only = np.where(inside[None, :], 1.0, 0.0) + 1e-3 * np.random.default_rng(0).random(mag.shape)
    res = plausibility(words_only, words, mag)
    assert res["map"]["top10_in_words"] == 1.0 and res["uniform"]["mass_in_words"] == pytest.approx(40 / T)
    assert res["map"]["mass_in_words"] > res["uniform"]["mass_in_words"]
    assert res["beats_uniform"] and res["verdict"].count("%") >= 6
    silence_only = plausibility(-words_only, words, mag)
    assert silence_only["map"]["top10_in_words"] == 0.0 and not silence_only["beats_uniform"]
    with pytest.raises(ValueError, match="no frame"):
        plausibility(words_only, [{"b": 50.0, "d": 1.0}], mag)


# -- randomisation with energy taken out ------------------------------------------------------------------------
def test_he_normal_redraw_keeps_the_output_input_dependent_and_is_restored():
    from afmask.evaluate.sanity import output_dependence, parameter_layers, randomised

    model = conv_model()
    before = [p.host().copy() for p in model.params()]
    x = np.random.default_rng(2).standard_normal((30, K)).astype(np.float32)
    with randomised(model, 2, seed=3, init="he_normal"):
        w = parameter_layers(model)[0].params()[0].host()
        assert np.std(w) == pytest.approx(np.sqrt(2 / (3 * K)), rel=0.1)
        assert not parameter_layers(model)[0].params()[1].host().any()  # biases 0
        assert output_dependence(model, x)["output_std_over_frames"] > 0
    assert all(np.array_equal(a, p.host()) for a, p in zip(before, model.params()))
    with pytest.raises(ValueError, match="init"):
        with randomised(model, 1, init="xavier"):
            pass


def test_energy_controlled_correlations_take_energy_out(utterance):
    from afmask.evaluate.sanity import energy_controlled_correlations

    mag = utterance["magnitude"].astype(np.float64)
    loud = np.log(mag ** 2 + 1e-9)
    rng = np.random.default_rng(0)
    # two maps that share only energy (noise larger than energy's spread inside one decile)
    a = loud + 2 * rng.standard_normal(mag.shape)
    b = loud + 2 * rng.standard_normal(mag.shape)
    c = energy_controlled_correlations(a, b, mag)
    assert c["raw"] > 0.5 and abs(c["log_energy_fit"]) < 0.1 and abs(c["within_deciles"]) < 0.1
    shared = rng.standard_normal(mag.shape)  # and two that share something besides energy
    d = energy_controlled_correlations(loud + shared, loud + shared + 0.1 * rng.standard_normal(mag.shape), mag)
    assert d["log_energy_fit"] > 0.9 and d["within_deciles"] > 0.9


def test_randomisation_check_against_its_seed_ceiling(utterance):
    from afmask.evaluate.sanity import randomisation_check

    model = conv_model()
    T = utterance["fft"].shape[1]
    clean = (utterance["magnitude"].T - utterance["magnitude"].mean()) / utterance["magnitude"].std()

    def explain(m, seed):  # the first layer's weights decide: a map that moves with the model, not with the seed
        return weight_oracle(m, seed)[:, :T]

    res = randomisation_check(model, explain, explain(model, 0), utterance["magnitude"], clean)
    assert [lv["randomised_layers"] for lv in res["levels"]] == [0, 1, 2]
    assert res["levels"][0]["within_deciles"] > 0.9  # the same model, another seed
    assert abs(res["levels"][-1]["within_deciles"]) < 0.3 and res["passes"] is True
    assert res["verdict"].startswith("passes: model randomisation (he_normal")
    assert res["levels"][-1]["output"]["distinct_tokens"] > 1


# -- afmask validate ----------------------------------------------------------------------------------------------
def test_validate_explains_the_blind_model_and_writes_its_verdict(tmp_path, utterance):
    import json

    from afmask.api import validate
    from afmask.cli import main
    from afmask.io import write_audio
    from afmask.mask import MaskConfig

    audio = tmp_path / "utt.wav"
    write_audio(audio, utterance["samples"])
    cfg = MaskConfig.preset("default", iterations=3, samples=1)
    res = validate(audio, tmp_path / "run", model=conv_model(), config=cfg, band=(0, 21), progress=False)
    doc = json.loads((tmp_path / "run" / "validation.json").read_text())
    assert doc["verdict"] == res["verdict"] and doc["band"] == [0, 21] and doc["iterations"] == 3
    assert 0 <= doc["map_top_share"] <= 1 and doc["energy_top_share"] > 0 and (tmp_path / "run" / "m.npy").exists()
    with pytest.raises(SystemExit):
        main(["validate", str(audio), "--out", str(tmp_path / "x")])  # neither --blind-band nor --blind-frames
    with pytest.raises(ValueError, match="exactly one"):
        validate(audio, tmp_path / "run3", model=conv_model(), config=cfg, progress=False)


def test_attenuation_deletion_noise_only_attenuates_each_bin():
    from afmask.evaluate.controls import noisy_magnitude

    rng = np.random.default_rng(5)
    fft = rng.standard_normal((2 * 7, 9)).astype(np.float32)
    mag = np.hypot(fft[0::2], fft[1::2])
    got = noisy_magnitude(fft, level=1.0, seed=2, kind="attenuate")
    ratio = got / mag
    assert ratio.min() >= 0 and ratio.max() <= 1 and ratio.std() > 0.1  # random scaling between deleted and intact
    assert np.array_equal(got, noisy_magnitude(fft, level=1.0, seed=2, kind="attenuate"))
    dropped = noisy_magnitude(fft, level=0.8, seed=2, kind="drop") / mag
    kept = np.isclose(dropped, 1.0, atol=1e-5)
    assert np.all(kept | np.isclose(dropped, 0.2, atol=1e-5)) and 0.2 < kept.mean() < 0.8  # intact or scaled by 1 - level
    with pytest.raises(ValueError, match="attenuate"):
        noisy_magnitude(fft, kind="loud")

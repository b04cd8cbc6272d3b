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

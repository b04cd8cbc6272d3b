"""Renditions, deletion/insertion curves, verdicts and the sanity check on models whose answer is known."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from afmask.evaluate import (
    EvaluationSettings,
    auc,
    cascade,
    evaluate,
    evaluate_into,
    find_transcript,
    half_verdict,
    normalise,
    parameter_layers,
    percent_grid,
    randomised,
    ranking,
    removal_mask,
    spearman,
)
from afmask.evaluate.curves import apply_mask
from afmask.features import features, magnitude
from afmask.fl import Variable, nn
from afmask.io import load_audio
from afmask.mask import MaskConfig

DEMO = Path(__file__).resolve().parents[1] / "afmask" / "data" / "audio" / "demo.wav"
K = 257
BAND = slice(10, 31)  # 312-937 Hz: the only bins the band model listens to


def band_model(seed=0):
    """A linear model that reads only the bins in BAND, with zero-sum rows and no bias.

    The global normalisation maps magnitudes x to a*x + b (a > 0) for the whole input; with zero-sum rows
    and no bias the output is a * W x, so its greedy decoding depends on the band's magnitudes only:
    keeping the band keeps the decoding exactly, zeroing the band leaves all-equal outputs.
    """
    rng = np.random.default_rng(seed)
    w = np.zeros((31, K), np.float32)
    band = rng.standard_normal((31, BAND.stop - BAND.start)).astype(np.float32)
    w[:, BAND] = band - band.mean(axis=1, keepdims=True)
    lin = nn.Linear(K, 31, bias=False)
    lin.setParams(Variable(np.asfortranarray(w * 3), False), 0)
    model = nn.Sequential([nn.View((-1, 1, K, 0)), nn.Reorder(2, 0, 3, 1), lin])
    model.eval()
    return model


@pytest.fixture(scope="module")
def utterance():
    """The first 0.9 s of the bundled utterance: features and samples."""
    x = load_audio(DEMO)[: int(0.9 * 16000)]
    f = features(x)
    return {"fft": f["fft"], "magnitude": f["magnitude"], "samples": x}


def band_m(T, important_band=True):
    """m (2K, T): small on the band (important) and large elsewhere, or the reverse."""
    rng = np.random.default_rng(5)
    m = 0.5 + 0.1 * rng.random((2 * K, T))
    rows = np.zeros(2 * K, bool)
    rows[2 * BAND.start : 2 * BAND.stop] = True
    if important_band:
        m[rows] = 0.01 + 0.001 * rng.random((rows.sum(), T))
    else:
        m[~rows] = 0.01 + 0.001 * rng.random(((~rows).sum(), T))
    return m.astype(np.float32)


QUICK = dict(random_seeds=2, sanity=False, batch=16)


# -- pieces ---------------------------------------------------------------------------------------------
def test_removal_mask_takes_the_named_end_in_column_major_order():
    order = np.array([5, 0, 3, 1, 4, 2])  # a (2, 3) map, most important first
    most = removal_mask(order, 2, (2, 3), "most")
    least = removal_mask(order, 2, (2, 3), "least")
    flat_most = most.ravel(order="F")
    assert flat_most.sum() == 2 and flat_most[5] and flat_most[0]
    assert most[1, 2] and most[0, 0]  # flat index 5 = (k=1, t=2) column-major
    assert least.ravel(order="F")[[4, 2]].all() and least.sum() == 2
    assert not removal_mask(order, 0, (2, 3)).any() and removal_mask(order, 6, (2, 3)).all()
    with pytest.raises(ValueError, match="count"):
        removal_mask(order, 7, (2, 3))


def test_ranking_of_importance_puts_small_m_first():
    m = np.full((4, 3), 1.0, np.float32)
    m[2:4, 1] = 0.001  # bin 1 at frame 1: the smallest noise scale
    from afmask.evaluate import importance

    order = ranking(importance(m))
    assert order[0] == 1 * 2 + 1  # (k=1, t=1) column-major in a (2, 3) map


def test_auc_is_the_trapezoid_over_fractions_and_skips_undefined_points():
    assert auc([0, 50, 100], [0.0, 1.0, 1.0]) == pytest.approx(0.25 + 0.5)
    assert auc([0, 50, 100], [1.0, None, 1.0]) == pytest.approx(1.0)
    assert auc([0, 100], [None, 1.0]) is None
    assert percent_grid(25) == [0, 25, 50, 75, 100]
    with pytest.raises(ValueError, match="divide 100"):
        percent_grid(30)


def test_normalise_of_an_empty_spectrogram_is_zero():
    assert not normalise(np.zeros((K, 4), np.float32)).any()
    x = np.arange(K * 4, dtype=np.float32).reshape(K, 4)
    y = normalise(x)
    assert y.shape == (4, K) and abs(y.mean()) < 1e-5 and y.std() == pytest.approx(1, rel=1e-5)


def test_half_verdict_names_the_winner_and_breaks_cer_ties_with_f():
    line, rev = half_verdict({"cer_clean": 0.1, "f": 1.0}, {"cer_clean": 0.8, "f": 2.0}, "cer_clean")
    assert rev is False and "0.100 vs 0.800" in line and line.startswith("keeping the important half")
    line, rev = half_verdict({"cer_clean": 0.9, "f": 1.0}, {"cer_clean": 0.2, "f": 2.0}, "cer_clean")
    assert rev is True and line.startswith("REVERSED") and "0.200 vs 0.900" in line
    line, rev = half_verdict({"cer_clean": 1.0, "f": 3.0}, {"cer_clean": 1.0, "f": 2.0}, "cer_clean")
    assert rev is True and "1.000 for both halves" in line and "f-term 2.000 vs 3.000" in line
    line, rev = half_verdict({"cer_clean": 1.0, "f": 2.0}, {"cer_clean": 1.0, "f": 2.0}, "cer_clean")
    assert rev is None and line.startswith("no difference")


def test_find_transcript_beside_the_audio(tmp_path):
    audio = tmp_path / "utt.wav"
    audio.write_bytes(b"")
    assert find_transcript(audio) == (None, None)
    (tmp_path / "utt.txt").write_text("hello world\n")
    assert find_transcript(audio) == ("hello world", tmp_path / "utt.txt")
    (tmp_path / "utt.wav.txt").write_text("first choice")
    assert find_transcript(audio)[0] == "first choice"
    explicit = tmp_path / "other.txt"
    explicit.write_text("explicit")
    assert find_transcript(audio, explicit)[0] == "explicit"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        find_transcript(audio, tmp_path / "nope.txt")


# -- the whole evaluation on a model with a known answer ----------------------------------------------------
@pytest.fixture(scope="module")
def band_evaluations(utterance, tmp_path_factory):
    model = band_model()
    cfg = MaskConfig.preset("default")
    T = utterance["fft"].shape[1]
    folder = tmp_path_factory.mktemp("band")
    good = evaluate(cfg, band_m(T, True), utterance, model, EvaluationSettings(percents=(50.0, 80.0), soft_db=20.0, **QUICK),
                    transcript="hello", rendition_dir=folder / "renditions", progress=False)
    bad = evaluate(cfg, band_m(T, False), utterance, model, EvaluationSettings(**QUICK), progress=False)
    return good, bad, folder


def test_keeping_the_important_half_keeps_the_decoding_and_the_reverse_is_reported(band_evaluations):
    good, bad, _ = band_evaluations
    assert good.clean_text.strip(), "the band model must decode something for the test to mean anything"
    assert good.metric == "cer_clean"
    # the important half holds the whole band: the decoding is kept exactly; the other half loses it
    assert good.keep_important["cer_clean"] == 0.0
    # all-equal outputs decode to nothing; float32 rounding (each backend's own) leaves near-ties a few frames win
    assert good.keep_other["cer_clean"] >= 0.9
    assert good.reversed is False and good.verdict.startswith("keeping the important half")
    assert bad.reversed is True and bad.verdict.startswith("REVERSED")


def test_curves_start_and_end_where_they_must(band_evaluations):
    good, _, _ = band_evaluations
    for pair in good.curves.values():
        d, i = pair["deletion"], pair["insertion"]
        assert d["x"] == percent_grid(5)
        assert d["cer_clean"][0] == 0.0 and d["f"][0] == pytest.approx(0.0, abs=1e-9)  # nothing removed
        assert i["cer_clean"][-1] == 0.0  # everything kept
        assert d["text"][-1] == i["text"][0]  # everything removed, either way
        assert d["cer_clean"][-1] == pytest.approx(1.0)


def test_the_band_explanation_beats_energy_and_random_and_its_reverse_does_not(band_evaluations):
    good, bad, _ = band_evaluations
    assert good.beats_energy is True and good.beats_random is True
    assert "beats signal energy" in good.energy_note
    a = good.areas
    assert a["explanation"]["gap"]["cer_clean"] > a["energy"]["gap"]["cer_clean"]
    assert bad.beats_energy is False
    assert bad.energy_note.startswith("WARNING: the explanation does not beat plain signal energy")


def test_renditions_are_written_named_and_decoded(band_evaluations, utterance):
    good, _, folder = band_evaluations
    names = [r["name"] for r in good.renditions]
    assert names == [
        "clean",
        "zero50pct_most-important_small-m", "zero50pct_least-important_large-m",
        "atten20dB-50pct_most-important_small-m", "atten20dB-50pct_least-important_large-m",
        "zero80pct_most-important_small-m", "zero80pct_least-important_large-m",
        "atten20dB-80pct_most-important_small-m", "atten20dB-80pct_least-important_large-m",
    ]
    assert sorted(os.listdir(folder / "renditions")) == sorted(f"{n}.flac" for n in names)
    x = utterance["samples"]
    clean, sr = sf.read(folder / "renditions" / "clean.flac", dtype="float32")
    assert sr == 16000 and clean.shape == x.shape
    covered = 400 + 160 * (utterance["fft"].shape[1] - 1)
    assert np.corrcoef(clean[:covered], x[:covered])[0, 1] > 0.999  # the inverse STFT of the clean FFT
    rows = {r["name"]: r for r in good.renditions}
    assert rows["clean"]["cer_clean"] == 0.0 and rows["clean"]["cer_transcript"] is not None
    # the 80 % most important zeroed removes the band: what is left has (nearly) no band energy
    gone, _ = sf.read(folder / "renditions" / "zero80pct_most-important_small-m.flac", dtype="float32")
    band_energy = lambda s: float(np.sum(magnitude(features(s)["fft"])[BAND] ** 2))  # noqa: E731
    assert band_energy(gone) < 0.05 * band_energy(clean)
    assert rows["zero50pct_least-important_large-m"]["spectrum_cer_clean"] == 0.0  # keeps the band
    assert rows["zero50pct_most-important_small-m"]["spectrum_cer_clean"] >= 0.9  # near-ties, as above


# -- files ------------------------------------------------------------------------------------------------
def test_evaluate_into_writes_everything_or_nothing(utterance, tmp_path, monkeypatch):
    model = band_model()
    cfg = MaskConfig.preset("default")
    m = band_m(utterance["fft"].shape[1])
    settings = EvaluationSettings(percents=(50.0,), **QUICK)
    first = evaluate_into(tmp_path, cfg, m, utterance, model, settings, progress=False)
    doc = json.loads((tmp_path / "evaluation.json").read_text())
    assert doc["verdict"] == first.verdict and doc["format"] == 2 and set(doc["inputs"]) == {"m", "features", "settings"}
    assert sorted(os.listdir(tmp_path / "renditions")) == sorted(
        ["clean.flac", "zero50pct_most-important_small-m.flac", "zero50pct_least-important_large-m.flac"])
    csv_lines = (tmp_path / "curves.csv").read_text().splitlines()
    assert csv_lines[0].startswith("ranking,kind,x_percent") and len(csv_lines) == 1 + 4 * 2 * 21
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    import afmask.evaluate.renditions as rmod

    calls = {"n": 0}
    real = rmod.write_audio

    def failing(path, samples, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device (simulated)")
        return real(path, samples, *a, **k)

    monkeypatch.setattr(rmod, "write_audio", failing)
    with pytest.raises(OSError, match="simulated"):
        evaluate_into(tmp_path, cfg, band_m(utterance["fft"].shape[1], False), utterance, model,
                      EvaluationSettings(percents=(20.0, 50.0), **QUICK), progress=False)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # the first evaluation is intact, no temporary folder is left


# -- sanity check ---------------------------------------------------------------------------------------------
def three_layer_model(seed=0):
    rng = np.random.default_rng(seed)
    model = nn.Sequential([
        nn.View((-1, 1, K, 0)),
        nn.Conv2D(K, 6, 3, 1, 1, 1, nn.SAME, 0, rng=rng), nn.ReLU(),
        nn.Conv2D(6, 6, 3, 1, 1, 1, nn.SAME, 0, rng=rng), nn.ReLU(),
        nn.Reorder(2, 0, 3, 1),
        nn.Linear(6, 31, rng=rng),
    ])
    model.eval()
    return model


def test_cascade_levels_run_from_the_top_layer_to_all():
    assert cascade(10) == [1, 4, 7, 10]
    assert cascade(3) == [1, 2, 3]
    assert cascade(1) == [1]
    assert cascade(10, levels=1) == [10]


def test_randomised_replaces_only_the_top_layers_and_restores_them():
    model = three_layer_model()
    layers = parameter_layers(model)
    assert [type(l).__name__ for l in layers] == ["Conv2D", "Conv2D", "Linear"]
    before = [[p.host().copy() for p in l.params()] for l in layers]
    with randomised(model, 2, seed=1) as names:
        assert names == [layers[2].prettyString(), layers[1].prettyString()]
        now = [[p.host() for p in l.params()] for l in layers]
        assert all(np.array_equal(a, b) for a, b in zip(before[0], now[0]))  # bottom layer untouched
        for i in (1, 2):
            for a, b in zip(before[i], now[i]):
                assert not np.array_equal(a, b) and b.dtype == a.dtype
                assert np.std(b) == pytest.approx(np.std(a), rel=0.5)
    after = [[p.host() for p in l.params()] for l in layers]
    assert all(np.array_equal(a, b) for la, lb in zip(before, after) for a, b in zip(la, lb))


def test_sanity_check_reports_every_level(utterance):
    model = three_layer_model()
    cfg = MaskConfig.preset("default")
    settings = EvaluationSettings(percents=(50.0,), random_seeds=1, sanity=True, sanity_iterations=3, sanity_levels=3)
    T = utterance["fft"].shape[1]
    rng = np.random.default_rng(0)
    m = (0.05 + rng.random((2 * K, T))).astype(np.float32)
    res = evaluate(cfg, m, utterance, model, settings, progress=False)
    levels = res.sanity["levels"]
    assert [lv["randomised_layers"] for lv in levels] == [0, 1, 2, 3]
    assert levels[-1]["label"] == "all layers random"
    assert all(-1.0 <= lv["spearman"] <= 1.0 for lv in levels)
    assert levels[0]["spearman_short"] is None and levels[1]["spearman_short"] is not None
    assert res.sanity["decorrelates"] in (True, False)
    assert "Spearman" in res.sanity["note"]
    assert spearman(m, m) == pytest.approx(1.0) and spearman(m, -m) == pytest.approx(-1.0)


def test_apply_mask_attenuates_by_the_gain():
    mag = np.full((3, 2), 2.0, np.float32)
    removed = np.array([[True, False], [False, False], [False, True]])
    out = apply_mask(mag, removed, 0.1)
    assert out[0, 0] == pytest.approx(0.2) and out[2, 1] == pytest.approx(0.2) and out[1, 0] == 2.0


def test_an_empty_clean_decoding_falls_back_to_the_f_term(utterance, tmp_path):
    from afmask.report import render_report

    model = band_model()
    lin = model.modules()[-1]
    blank = nn.Linear(K, 31, bias=True)
    bias = np.zeros(31, np.float32)
    bias[30] = 1e4  # the blank wins every frame: the clean decoding is empty
    blank.setParams(lin.param(0), 0)
    blank.setParams(Variable(bias, False), 1)
    model = nn.Sequential([nn.View((-1, 1, K, 0)), nn.Reorder(2, 0, 3, 1), blank])
    model.eval()
    cfg = MaskConfig.preset("default")
    T = utterance["fft"].shape[1]
    res = evaluate(cfg, band_m(T), utterance, model, EvaluationSettings(percents=(50.0,), **QUICK),
                   rendition_dir=tmp_path / "renditions", progress=False)
    assert res.clean_text == "" and res.metric == "f"
    assert res.keep_important["cer_clean"] is None and res.keep_important["f"] is not None
    assert "f-term" in res.verdict and "CER" not in res.verdict
    assert res.areas["explanation"]["gap"]["cer_clean"] is None
    page = render_report(tmp_path, cfg, band_m(T), utterance, [], res.to_dict(), {})
    assert "(empty)" in page and page.count("<audio controls") == 3


def test_sanity_statistics_for_constant_maps_and_stuck_levels():
    from afmask.evaluate.evaluation import _sanity_note
    from afmask.evaluate.sanity import SanityLevel, decorrelates, spearman

    a = np.arange(12.0).reshape(3, 4)
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, np.ones_like(a)) is None  # a constant map has no ranking
    lv = lambda n, rho: SanityLevel(f"{n}", n, [], rho, None, 0.0)  # noqa: E731
    levels = [lv(0, 0.8), lv(1, 0.82), lv(7, 0.79), lv(10, None)]
    assert decorrelates(levels) is True
    note = _sanity_note(levels, True)
    assert "undefined (a constant map)" in note and "top 7 layers random it still correlates 0.790" in note
    assert decorrelates([lv(0, 0.8), lv(10, 0.6)]) is False
    assert decorrelates([lv(0, 0.8), lv(10, 0.1)]) is True

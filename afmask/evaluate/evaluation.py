"""The evaluation of one finished run with the model it explained: renditions, curves, verdicts, sanity check.

:func:`evaluate` computes everything from the run's settings, m and features;
:func:`evaluate_into` does it for a run folder and writes, whole or not at
all, ``evaluation.json`` (every number the report shows), ``curves.csv``
(one row per curve point) and ``renditions/`` (the audio files).

Importance per time-frequency point (:mod:`afmask.evaluate.importance`): the
noise scale of a bin is the RMS of its (Re, Im) pair of m,
``s = sqrt((m_re^2 + m_im^2) / 2)``, and importance is ``-log s``: small
noise scale = important. Rankings order the points by importance, equal
importances (points at the bound m_max) in random order.

The controls (:mod:`afmask.evaluate.controls`, ``evaluation.json["controls"]``)
ask what the map shows beyond loudness: energy-stratified deletion and
insertion, ties, plausibility against a word alignment, and (optional, it
re-explains three times) the randomisation check with He-normal re-draws and
energy taken out (:func:`afmask.evaluate.sanity.randomisation_check`).
"""

from __future__ import annotations

import csv
import hashlib
import io as _io
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from afmask.evaluate.curves import KINDS, METRICS, compute_curves, percent_grid, score_at
from afmask.evaluate.controls import tie_broken_order, ties_verdict
from afmask.evaluate.importance import importance
from afmask.evaluate.renditions import (
    render,
    rendition_magnitudes,
    rendition_plan,
    write_rendition,
)
from afmask.evaluate.sanity import decorrelates, sanity_check, spearman
from afmask.evaluate.scoring import Scorer, normalise
from afmask.fl.nn import Module
from afmask.io.files import in_stage, json_safe
from afmask.mask import MaskConfig
from afmask.mask.config import ATTENUATIONS
from afmask.mask.importance import at_bound

EVALUATION_FILE = "evaluation.json"
#: how each tie-break orders the points at the bound, in the ties control's words.
TIE_BREAK_WORDS = {"path": "path (mean -log m over the run)", "gradient": "gradient (mean m * df/dm over the run)"}
CURVES_FILE = "curves.csv"
RENDITIONS_DIR = "renditions"
#: Version of evaluation.json's layout (2: "inputs", the digests of what was evaluated).
FORMAT = 2
#: Arrays of features.npz that the evaluation reads.
FEATURE_KEYS = ("fft", "magnitude", "samples")


class StaleEvaluation(ValueError):
    """evaluation.json was made from another m, features or settings than the run folder holds now."""


def array_digest(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and values (C order): the same for the same numbers, whatever the layout."""
    a = np.asarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def run_digests(config: MaskConfig, m: np.ndarray, feats: dict) -> dict:
    """What an evaluation is made from, as sha256 digests: m (2K, T), the features (fft, magnitude, samples) and
    the resolved settings (config.json's, keys sorted)."""
    f = hashlib.sha256()
    for k in FEATURE_KEYS:
        if k in feats:
            f.update(f"{k}:{array_digest(feats[k])};".encode())
    settings = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
    m_digest = array_digest(m)
    if feats.get("tiebreak") is not None:  # the ranking is m's and its tie-break's (tiebreak.npy)
        m_digest = hashlib.sha256(f"{m_digest};tiebreak:{array_digest(feats['tiebreak'])}".encode()).hexdigest()
    if feats.get("importance") is not None:  # the ranking is the restarts' mean (importance.npy)
        m_digest = hashlib.sha256(f"{m_digest};importance:{array_digest(feats['importance'])}".encode()).hexdigest()
    return {"m": m_digest, "features": f.hexdigest(), "settings": hashlib.sha256(settings.encode()).hexdigest()}


#: The run files each digest stands for, for messages.
_DIGEST_FILES = {"m": "m.npy", "features": "features.npz", "settings": "settings (config.json)"}


@dataclass
class EvaluationSettings:
    """What the evaluation computes; every number is a setting."""

    #: rendition percentages: the p % most / least important points removed.
    percents: tuple = (20.0, 50.0, 80.0)
    #: also attenuated (not zeroed) renditions, by this many dB; None: none.
    soft_db: Optional[float] = None
    #: also write WAV beside each FLAC.
    wav: bool = False
    #: curve grid step in per cent (0, step, ..., 100).
    step: float = 5.0
    #: random rankings to compare with (seeds seed, seed+1, ...).
    random_seeds: int = 3
    #: run the model-randomisation sanity check.
    sanity: bool = True
    #: iterations of each short re-run in the sanity check.
    sanity_iterations: int = 25
    #: noise samples per step in the sanity re-runs (None: the run's own).
    sanity_samples: Optional[int] = 1
    #: cascade levels of the sanity check (ending with every layer random).
    sanity_levels: int = 4
    #: inputs per forward pass when scoring.
    batch: int = 8
    seed: int = 0
    #: the controls (afmask.evaluate.controls): energy-stratified deletion and insertion, ties, plausibility.
    controls: bool = True
    #: shares of every energy decile the stratified control deletes.
    control_fractions: tuple = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
    #: random selections of the stratified control.
    control_seeds: int = 3
    #: relative noise level of the "noise" deletion; None: the run's m_max (10 if unbounded).
    control_noise_level: Optional[float] = None
    #: the randomisation check with He-normal re-draws and energy taken out (several explanations: minutes).
    randomisation: bool = False
    #: iterations of each of its explanations (no early stop).
    randomisation_iterations: int = 100
    #: noise samples per step in them (None: the run's own).
    randomisation_samples: Optional[int] = None
    #: ground truth: bands (LO, HI) of input bins; for each, a model exactly blind to bins LO..HI-1 is explained
    #: with the run's settings and the share of its map's top 20 % inside the band reported (one explanation each).
    blind_bands: tuple = ()
    #: iterations of each blind model's explanation (no early stop).
    blind_iterations: int = 400

    def validate(self) -> None:
        """Raise ValueError naming the first setting out of range."""
        for p in self.percents:
            if not 0 < float(p) < 100:
                raise ValueError(f"percents must be in (0, 100), got {p}")
        if self.soft_db is not None and not self.soft_db > 0:
            raise ValueError(f"soft_db must be > 0 dB or None, got {self.soft_db}")
        percent_grid(self.step)
        for name in ("random_seeds", "sanity_iterations", "sanity_levels", "batch", "control_seeds",
                     "randomisation_iterations", "blind_iterations"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sanity_samples is not None and self.sanity_samples < 1:
            raise ValueError(f"sanity_samples must be >= 1 or None, got {self.sanity_samples}")
        if self.randomisation_samples is not None and self.randomisation_samples < 1:
            raise ValueError(f"randomisation_samples must be >= 1 or None, got {self.randomisation_samples}")
        if not self.control_fractions or not all(0 < float(x) <= 1 for x in self.control_fractions):
            raise ValueError(f"control_fractions must be in (0, 1], got {self.control_fractions}")
        for band in self.blind_bands:
            if len(band) != 2 or not 0 <= int(band[0]) < int(band[1]):
                raise ValueError(f"blind_bands must be (LO, HI) pairs with 0 <= LO < HI, got {band}")
        if self.control_noise_level is not None and not self.control_noise_level > 0:
            raise ValueError(f"control_noise_level must be > 0 or None, got {self.control_noise_level}")

    def to_dict(self) -> dict:
        """JSON-able settings."""
        d = asdict(self)
        d["percents"] = [float(p) for p in self.percents]
        d["control_fractions"] = [float(p) for p in self.control_fractions]
        d["blind_bands"] = [[int(lo), int(hi)] for lo, hi in self.blind_bands]
        return d


@dataclass
class EvaluationResult:
    """Everything the evaluation found (see ``to_dict`` for the JSON layout)."""

    clean_text: str
    transcript: Optional[str]
    metric: str  # the metric verdicts use: "cer_clean", or "f" when the clean decoding is empty
    verdict: str
    keep_important: dict  # Score of keeping the most important half (insertion at 50 %)
    keep_other: dict  # Score of keeping the other half (deletion at 50 %)
    reversed: Optional[bool]  # True: the other half does better; None: a tie
    areas: dict  # {ranking: {kind: {metric: area}}}, plus "gap" per metric
    beats_energy: Optional[bool]
    beats_random: Optional[bool]
    energy_note: str
    curves: dict  # {ranking: {kind: {"x": [...], "cer_clean": [...], "cer_transcript": [...], "f": [...]}}}
    renditions: list
    sanity: Optional[dict]
    importance_vs_energy: float
    forwards: int
    seconds: dict
    settings: dict
    words: list = field(default_factory=list)
    #: the controls: {"stratified", "ties", "plausibility"?, "randomisation"?}, each with a "verdict" line.
    controls: Optional[dict] = None
    format: int = FORMAT
    #: why the model hears nothing in this input (then the verdicts are "not meaningful"); None: it hears it
    hears_nothing: Optional[str] = None

    def to_dict(self) -> dict:
        """The JSON layout of evaluation.json."""
        return json_safe(asdict(self))


# -- transcripts and word timings ---------------------------------------------------------------------
def find_transcript(audio: os.PathLike | str, explicit: Optional[os.PathLike | str] = None) -> tuple[Optional[str], Optional[Path]]:
    """The reference transcript: ``explicit`` if given, else ``AUDIO.txt`` or ``STEM.txt`` beside the audio; (text, path)."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such transcript file")
        return path.read_text(encoding="utf-8").strip(), path
    if not audio:
        return None, None
    audio = Path(audio)
    for cand in (audio.with_name(audio.name + ".txt"), audio.with_suffix(".txt")):
        if cand.is_file():
            return cand.read_text(encoding="utf-8").strip(), cand
    return None, None


def find_words(audio: os.PathLike | str, offset_s: float = 0.0, duration_s: Optional[float] = None) -> list:
    """Word timings ``[{"t", "b", "d"}]`` (seconds, relative to ``offset_s``) from ``STEM.words.json`` beside the audio."""
    if not audio:
        return []
    path = Path(audio).with_suffix(".words.json")
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        words = []
        for w in data.get("w", []):
            text = str(w["t"]).split("(")[0]
            b, d = float(w["b"]) - offset_s, float(w["d"])
            if text.startswith("<") or b + d <= 0 or (duration_s is not None and b >= duration_s):
                continue
            words.append({"t": text, "b": round(b, 3), "d": round(d, 3)})
        return words
    except (ValueError, KeyError, TypeError):
        return []  # a malformed alignment only costs the word labels


def _frames_cover_whole(config: MaskConfig, T: int) -> bool:
    """Whether the run explained the whole utterance (so a transcript of the file applies)."""
    frames = config.extra.get("frames")
    if not frames:
        return True
    start, stop = int(frames[0]), int(frames[1])
    if start != 0:
        return False
    try:
        import soundfile as sf

        from afmask.features.stft import num_frames

        info = sf.info(config.audio)
        n16 = int(info.frames * 16000 / info.samplerate)  # the file may be resampled (--resample)
        return abs(num_frames(n16) - stop) <= 1
    except Exception:  # the audio is not here any more: trust the frame count only
        return stop == T


# -- the verdicts -------------------------------------------------------------------------------------
def _metric(clean_text: str) -> str:
    from afmask.model.tokens import normalize_text

    return "cer_clean" if normalize_text(clean_text) else "f"


def _fmt(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _metric_order(metric: str) -> list[str]:
    """The verdict metric first, then the f-term to break its ties (a CER is coarse: whole characters)."""
    return [metric] if metric == "f" else [metric, "f"]


def _name(metric: str) -> str:
    return {"cer_clean": "CER against the clean decoding", "cer_transcript": "CER against the transcript"}.get(metric, "f-term")


def half_verdict(keep_important: dict, keep_other: dict, metric: str) -> tuple[str, Optional[bool]]:
    """One line: does keeping the important half preserve the transcript better than keeping the other half?

    Decided by ``metric`` (CER against the clean decoding, or the f-term when the clean decoding is empty),
    ties broken by the f-term. Returns (the line, reversed: True / False / None for undecided).
    """
    parts = []
    for mt in _metric_order(metric):
        a, b = keep_important.get(mt), keep_other.get(mt)
        if a is None or b is None:
            parts.append(f"{_name(mt)} undefined")
            continue
        if a < b:
            return ("keeping the important half (small m) preserves the transcript better than keeping the other "
                    f"half (large m): {'; '.join(parts + [f'{_name(mt)} {a:.3f} vs {b:.3f}'])}"), False
        if a > b:
            return ("REVERSED: keeping the other half (large m) preserves the transcript better than keeping the "
                    f"important half (small m): {'; '.join(parts + [f'{_name(mt)} {b:.3f} vs {a:.3f}'])}"), True
        parts.append(f"{_name(mt)} {a:.3f} for both halves")
    return "no difference between keeping the important half and keeping the other half: " + "; ".join(parts), None


def _gap(areas: dict, metric: str) -> Optional[float]:
    d, i = areas["deletion"].get(metric), areas["insertion"].get(metric)
    return None if d is None or i is None else d - i


def _beats(mine: dict, other: dict, metric: str) -> tuple[Optional[bool], str]:
    """Whether gap ``mine`` beats ``other`` on ``metric``, ties broken by f; and the metric that decided."""
    for mt in _metric_order(metric):
        a, b = mine.get(mt), other.get(mt)
        if a is None or b is None:
            continue
        if a != b:
            return bool(a > b), mt
    return None if all(mine.get(mt) is None for mt in _metric_order(metric)) else False, metric


def compare_with_baselines(areas: dict, metric: str) -> tuple[Optional[bool], Optional[bool], str]:
    """Whether the explanation's gap AUC(deletion) - AUC(insertion) beats energy's and every random ranking's; a note.

    A tie counts as not beating. Decided by ``metric``, ties broken by the f-term.
    """
    mine = areas["explanation"]["gap"]
    beats_e, mt = _beats(mine, areas["energy"]["gap"], metric)
    randoms = [v["gap"] for k, v in areas.items() if k.startswith("random")]
    beats_r: Optional[bool] = None
    if randoms:
        results = [_beats(mine, r, metric)[0] for r in randoms]
        beats_r = None if any(r is None for r in results) else all(results)
    short = "CER" if mt.startswith("cer") else "f"
    g, ge = mine.get(mt), areas["energy"]["gap"].get(mt)
    if beats_e is None:
        note = "the comparison with signal energy is undefined"
    elif beats_e:
        note = (f"the explanation beats signal energy as a ranking: AUC(deletion) - AUC(insertion) of {short} "
                f"{g:.3f} vs {ge:.3f} for energy")
    else:
        note = (f"WARNING: the explanation does not beat plain signal energy as a ranking (AUC(deletion) - "
                f"AUC(insertion) of {short} {_fmt(g)} vs {_fmt(ge)} for energy): it is not worth much")
    if beats_r is not None:
        best = max((r.get(mt) for r in randoms if r.get(mt) is not None), default=None)
        note += ("; it beats every random ranking" if beats_r else "; WARNING: it does not beat every random ranking") + \
            f" (best random {_fmt(best)})"
    return beats_e, beats_r, note


# -- does the model hear anything? ---------------------------------------------------------------------
#: The prefix of every verdict, note and sanity line of an evaluation of input the model does not hear.
NOT_MEANINGFUL = "NOT MEANINGFUL: the model hears nothing"


def hears_nothing(samples: np.ndarray, magnitude: np.ndarray, clean_text: str) -> Optional[str]:
    """Why the model hears nothing in this input (near-silence, DC or a steady tone relative to its input
    normalisation, or an empty / one-letter clean decoding), or None when it hears something."""
    from afmask.features.checks import audibility
    from afmask.model.tokens import normalize_text

    why = audibility(samples, magnitude).reason() if np.asarray(samples).size else None
    if why is not None:
        return why
    letters = normalize_text(clean_text).replace(" ", "")
    if len(letters) <= 1:
        return ("its clean decoding is empty" if not letters else
                f"its clean decoding is one letter ({letters!r})") + ", so there is no transcript to keep"
    return None


def _not_meaningful(why: Optional[str], what: str, numbers: str) -> str:
    reason = f": {why}" if why else " (see the verdict)"
    return f"{NOT_MEANINGFUL}{reason}. {what}; for the record, {numbers}"


def _half_numbers(keep_important: dict, keep_other: dict, metric: str) -> str:
    return "; ".join(f"{_name(mt)} {_fmt(keep_important.get(mt))} keeping the important half vs "
                     f"{_fmt(keep_other.get(mt))} keeping the other half" for mt in _metric_order(metric))


def _gap_numbers(areas: dict, metric: str) -> str:
    mt = metric
    randoms = [v["gap"].get(mt) for k, v in areas.items() if k.startswith("random") and v["gap"].get(mt) is not None]
    short = "CER" if mt.startswith("cer") else "f"
    return (f"AUC(deletion) - AUC(insertion) of {short}: {_fmt(areas['explanation']['gap'].get(mt))} for the "
            f"explanation, {_fmt(areas['energy']['gap'].get(mt))} for signal energy, "
            f"{_fmt(max(randoms) if randoms else None)} for the best random ranking")


# -- the evaluation -----------------------------------------------------------------------------------
def _bar(progress: bool, desc: str):
    if not progress:
        return None
    from afmask.io.progress import progress_bar

    return progress_bar(total=0, desc=desc, unit="pass", leave=False)


def evaluate(
    config: MaskConfig,
    m: np.ndarray,
    feats: dict,
    model: Module,
    settings: Optional[EvaluationSettings] = None,
    transcript: Optional[str] = None,
    words: Optional[list] = None,
    rendition_dir: Optional[os.PathLike] = None,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate a run (its config, m (2K, T) and features {fft, magnitude, samples}) with its model.

    Writes the renditions into ``rendition_dir`` (none without it; their
    audio-level scores need the files). Returns every number as an
    :class:`EvaluationResult`.
    """
    settings = settings or EvaluationSettings()
    settings.validate()
    t_all = time.perf_counter()
    seconds: dict = {}
    fft, mag = np.asarray(feats["fft"], np.float32), np.asarray(feats["magnitude"], np.float32)
    samples = np.asarray(feats["samples"], np.float32)
    if m.shape != fft.shape:
        raise ValueError(f"m {m.shape} does not match the run's FFT {fft.shape}")
    for lo, hi in settings.blind_bands:  # before the slow work
        if int(hi) > mag.shape[0]:
            raise ValueError(f"blind band {lo}:{hi} lies outside the run's {mag.shape[0]} bins")
    # the run's ranking: m, and the bins at the bound ordered by its tie-break where it made one (tiebreak.npy)
    tiebreak = feats.get("tiebreak") if config.tie_break != "none" else None
    imp = importance(m, tiebreak, config.m_max)
    if feats.get("importance") is not None:  # several restarts: their mean percentile ranks (importance.npy)
        imp = np.asarray(feats["importance"], np.float64)
        if imp.shape != mag.shape:
            raise ValueError(f"the run's importance {imp.shape} does not match its magnitudes {mag.shape}")
    grid = percent_grid(settings.step)
    if 50.0 not in grid:
        raise ValueError(f"the curve grid must hold 50 % for the half verdict; step {settings.step} does not give it")

    t0 = time.perf_counter()
    scorer = Scorer(fft, mag, model, config.variant, stats=config.stats, noise=config.noise,
                    transcript=transcript, batch=settings.batch)
    metric = _metric(scorer.clean_text)
    # equal importances (e.g. every point at the bound m_max) have no order: broken at random, not by position
    rankings = {"explanation": tie_broken_order(imp, settings.seed), "energy": tie_broken_order(mag, settings.seed)}
    n = mag.size
    for i in range(settings.random_seeds):
        rankings[f"random{i}"] = np.random.default_rng([settings.seed, 7, i]).permutation(n)
    bar = _bar(progress, "afmask evaluate: curves")
    try:
        curves = compute_curves(scorer, rankings, grid, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    seconds["curves"] = time.perf_counter() - t0

    areas: dict = {}
    for name, pair in curves.items():
        areas[name] = {kind: {mt: pair[kind].area(mt) for mt in METRICS} for kind in KINDS}
        areas[name]["gap"] = {mt: _gap(areas[name], mt) for mt in METRICS}
    keep_imp = score_at(curves["explanation"]["insertion"], 50.0).to_dict()
    keep_other = score_at(curves["explanation"]["deletion"], 50.0).to_dict()
    verdict, rev = half_verdict(keep_imp, keep_other, metric)
    beats_e, beats_r, energy_note = compare_with_baselines(areas, metric)
    deaf = hears_nothing(samples, mag, scorer.clean_text)
    if deaf is not None:  # numbers of noise: keep them for the record, claim nothing
        verdict = _not_meaningful(deaf, "No verdict", _half_numbers(keep_imp, keep_other, metric))
        energy_note = _not_meaningful(None, "No comparison with the baselines", _gap_numbers(areas, metric))
        rev, beats_e, beats_r = None, None, None

    # renditions: written, read back from their files and decoded; also scored at the spectrum level
    t0 = time.perf_counter()
    rend_rows = []
    if rendition_dir is not None:
        rend_rows = _renditions(scorer, fft, mag, samples, rankings["explanation"], settings, Path(rendition_dir), progress)
    seconds["renditions"] = time.perf_counter() - t0

    sanity = None
    if settings.sanity:
        t0 = time.perf_counter()
        bar = _bar(progress, "afmask evaluate: sanity check")
        try:
            levels = sanity_check(fft, scorer.clean_input, model, config, imp, iterations=settings.sanity_iterations,
                                  samples=settings.sanity_samples, levels=settings.sanity_levels, seed=settings.seed,
                                  progress=bar)
        finally:
            if bar is not None:
                bar.close()
        dec = decorrelates(levels)
        note = _sanity_note(levels, dec)
        if deaf is not None:
            dec, note = None, _not_meaningful(None, "The sanity check does not apply", _sanity_numbers(levels))
        sanity = {
            "levels": [lv.to_dict() for lv in levels],
            "iterations": settings.sanity_iterations,
            "samples": settings.sanity_samples or config.samples,
            "decorrelates": dec,
            "note": note,
        }
        seconds["sanity"] = time.perf_counter() - t0

    controls = None
    if settings.controls or settings.randomisation or settings.blind_bands:
        t0 = time.perf_counter()
        controls = _controls(config, fft, mag, model, imp, scorer, settings, words, progress)
        if "ties" in controls and tiebreak is not None and config.m_max is not None:
            # the values at the bound were moved below it in the tie-break's order: say how many sit there
            t = controls["ties"]
            t["at_bound_share"] = float(np.mean(at_bound(m, config.m_max)))
            t["tie_break"] = TIE_BREAK_WORDS[config.tie_break]
            t["verdict"] = ties_verdict(t)
        seconds["controls"] = time.perf_counter() - t0
        if deaf is not None:  # as for the verdict: keep the numbers, claim nothing
            for name, control in controls.items():
                if isinstance(control, dict) and "verdict" in control:
                    control["verdict"] = (f"NOT MEANINGFUL: the model hears nothing (see the verdict); the {name} "
                                          "numbers are kept in evaluation.json for the record")

    seconds["total"] = time.perf_counter() - t_all
    return EvaluationResult(
        clean_text=scorer.clean_text, transcript=scorer.transcript, metric=metric, verdict=verdict,
        keep_important=keep_imp, keep_other=keep_other, reversed=rev, areas=areas, beats_energy=beats_e,
        beats_random=beats_r, energy_note=energy_note,
        curves={name: {kind: {"x": c.x, **{mt: c.values(mt) for mt in METRICS},
                              "text": [s.text for s in c.scores]}
                       for kind, c in pair.items()} for name, pair in curves.items()},
        renditions=rend_rows, sanity=sanity, importance_vs_energy=spearman(imp, np.log(np.maximum(mag, 1e-12))),
        forwards=scorer.forwards, seconds={k: round(v, 3) for k, v in seconds.items()},
        settings=settings.to_dict(), words=list(words or []), hears_nothing=deaf, controls=controls,
    )


def _controls(config: MaskConfig, fft, mag, model: Module, imp, scorer: Scorer, settings: EvaluationSettings,
              words, progress: bool) -> dict:
    """The controls of :mod:`afmask.evaluate.controls` on the run's map, and the randomisation check and the
    blind-band tests if asked."""
    from afmask.evaluate.controls import blind_test, evaluate_map
    from afmask.evaluate.sanity import explain_importance, randomisation_check, short_config

    out: dict = {}
    if settings.controls:
        level = settings.control_noise_level or (config.m_max if config.m_max is not None else 10.0)
        # importance -log s of a point whose Re and Im noise scales both sit at the bound
        bound = -math.log(config.m_max) if config.m_max is not None else None
        out = evaluate_map(fft, model, imp, magnitude=mag, words=words, bound=bound, variant=config.variant,
                           stats=config.stats, fractions=settings.control_fractions,
                           seeds=tuple(settings.seed + i for i in range(settings.control_seeds)),
                           noise_level=level, seed=settings.seed, scorer=scorer,
                           # deletion by the run's own perturbation: attenuation for the default mode
                           noise_kind=config.noise if config.noise in ATTENUATIONS else "relative")
    if settings.randomisation:
        cfg = short_config(config, settings.randomisation_iterations, settings.randomisation_samples)

        def explain(net: Module, seed: int) -> np.ndarray:
            return explain_importance(fft, scorer.clean_input, net, cfg.replace(seed=int(seed)))

        bar = _bar(progress, "afmask evaluate: randomisation check")
        try:
            out["randomisation"] = randomisation_check(model, explain, imp, mag, scorer.clean_input,
                                                       seed=config.seed, progress=bar)
        finally:
            if bar is not None:
                bar.close()
        out["randomisation"]["iterations"] = settings.randomisation_iterations
        out["randomisation"]["samples"] = settings.randomisation_samples or config.samples
    if settings.blind_bands:
        cfg = short_config(config, settings.blind_iterations)

        def explain_blind(net: Module, seed: int) -> np.ndarray:
            return explain_importance(fft, scorer.clean_input, net, cfg.replace(seed=int(seed)))

        for lo, hi in settings.blind_bands:
            res = blind_test(fft, model, explain_blind, band=(int(lo), int(hi)), magnitude=mag, variant=config.variant,
                             stats=config.stats, seed=config.seed)
            res["iterations"] = settings.blind_iterations
            out[f"blind {int(lo)}:{int(hi)}"] = res
    return json_safe(out)


def _sanity_numbers(levels) -> str:
    first, last = levels[0], levels[-1]
    rho = lambda v: "undefined (a constant map)" if v is None else f"{v:.3f}"  # noqa: E731
    return (f"Spearman with the trained explanation: {rho(first.spearman)} for the trained model re-run short, "
            f"{rho(last.spearman)} with all layers random")


def _sanity_note(levels, dec: Optional[bool]) -> str:
    base = _sanity_numbers(levels)
    first = levels[0]
    if dec is None:
        return base + " (undecided)"
    if not dec:
        return base + ": WARNING: the explanation does not decorrelate; it may reflect the input more than the model"
    note = base + ": the explanation decorrelates as the model is randomised (passes)"
    ceiling = abs(first.spearman or 0.0)
    stuck = [lv for lv in levels[1:-1] if lv.spearman is not None and abs(lv.spearman) >= 0.5 * ceiling]
    if stuck:
        lv = stuck[-1]
        note += (f"; but with the top {lv.randomised_layers} layers random it still correlates {lv.spearman:.3f}: "
                 "below those layers the map reflects the input's structure more than what the trained layers learned")
    return note


def _renditions(scorer: Scorer, fft, mag, samples, order, settings: EvaluationSettings, folder: Path, progress: bool) -> list:
    from afmask.features import features
    from afmask.io import load_audio

    plan = rendition_plan(settings.percents, settings.soft_db)
    mags = [rendition_magnitudes(mag, order, r) for r in plan]
    spectrum = scorer.score(mags)
    inputs, files = [], []
    bar = None
    if progress:
        from afmask.io.progress import progress_bar

        bar = progress_bar(total=len(plan), desc="afmask evaluate: renditions", unit="file", leave=False)
    for r, mg in zip(plan, mags):
        x = render(fft, mg, samples.size)
        names = write_rendition(folder, r.name, x, wav=settings.wav)
        back = load_audio(folder / names[0], allow_clipping=True)  # decode what was written, as one would hear it
        if not np.any(back):
            inputs.append(np.zeros_like(scorer.clean_input))
        else:
            inputs.append(normalise(features(back)["magnitude"], scorer.stats))
        files.append(names)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    audio = scorer.score_inputs(inputs)
    rows = []
    for r, names, sp, au in zip(plan, files, spectrum, audio):
        rows.append({
            "name": r.name, "files": names, "end": r.end, "percent": r.percent, "gain_db": r.gain_db,
            "description": r.describe(), "kept": r.kept_label(),
            "text": au.text, "cer_clean": au.cer_clean, "cer_transcript": au.cer_transcript, "f_audio": au.f,
            "spectrum_text": sp.text, "spectrum_cer_clean": sp.cer_clean, "spectrum_cer_transcript": sp.cer_transcript,
            "f": sp.f,
        })
    return rows


# -- files --------------------------------------------------------------------------------------------
def curves_csv(result: EvaluationResult) -> str:
    """curves.csv: ranking, kind, x (%), cer_clean, cer_transcript, f, text; one row per curve point."""
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["ranking", "kind", "x_percent", *METRICS, "text"])
    fmt = lambda v: "" if v is None else f"{v:.6g}"  # noqa: E731
    for name, pair in result.curves.items():
        for kind, c in pair.items():
            for i, x in enumerate(c["x"]):
                w.writerow([name, kind, f"{x:g}", *(fmt(c[mt][i]) for mt in METRICS), c["text"][i]])
    return buf.getvalue()


@in_stage("the evaluation", "out")
def evaluate_into(
    out: os.PathLike,
    config: MaskConfig,
    m: np.ndarray,
    feats: dict,
    model: Module,
    settings: Optional[EvaluationSettings] = None,
    transcript: Optional[str] = None,
    transcript_path: Optional[os.PathLike] = None,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate the run in folder ``out`` and write evaluation.json, curves.csv and renditions/ there, whole or not at all.

    Everything is built in a temporary folder inside ``out`` first; only then
    the old evaluation.json is removed, renditions/ and curves.csv are moved
    into place, and evaluation.json is written last (the mark of a finished
    evaluation). A failure before that leaves the folder as it was.
    """
    from afmask.io.files import atomic_write, staging_folder, sweep_stale

    out = Path(out)
    sweep_stale(out)  # staging folders and temporaries of evaluations killed before they could clean up
    if transcript is None and transcript_path is None and not _frames_cover_whole(config, m.shape[1]):
        transcript_note = "the run explains only some frames; the file's transcript does not apply"
    else:
        transcript_note = ""
        if transcript is None:
            transcript, transcript_path = find_transcript(config.audio, transcript_path)
    frames = config.extra.get("frames") or [0, m.shape[1]]
    T = m.shape[1]
    words = find_words(config.audio, offset_s=frames[0] * 0.01, duration_s=T * 0.01 + 0.015)
    stage = staging_folder(out)
    try:
        result = evaluate(config, m, feats, model, settings, transcript=transcript, words=words,
                          rendition_dir=stage / RENDITIONS_DIR, progress=progress)
        doc = result.to_dict()
        doc["inputs"] = run_digests(config, m, feats)
        doc["transcript_file"] = os.fspath(transcript_path) if transcript_path else None
        doc["transcript_note"] = transcript_note
        with open(stage / CURVES_FILE, "w", encoding="utf-8", newline="") as f:
            f.write(curves_csv(result))
        payload = json.dumps(doc, indent=1).encode()
        # commit: from here on the old evaluation is replaced
        if (out / EVALUATION_FILE).exists():
            os.unlink(out / EVALUATION_FILE)
        old = out / RENDITIONS_DIR
        if old.exists():
            trash = stage / "old-renditions"
            os.replace(old, trash)
        if (stage / RENDITIONS_DIR).exists():
            os.replace(stage / RENDITIONS_DIR, out / RENDITIONS_DIR)
        os.replace(stage / CURVES_FILE, out / CURVES_FILE)
        with atomic_write(out / EVALUATION_FILE) as f:
            f.write(payload)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return result


def read_evaluation(out: os.PathLike, expected: Optional[dict] = None) -> dict:
    """evaluation.json of a run folder; FileNotFoundError saying how to make it when it is missing.

    ``expected``: the :func:`run_digests` of the folder's m, features and settings now; an evaluation made from
    others raises StaleEvaluation naming what changed.
    """
    path = Path(out) / EVALUATION_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{out} has no {EVALUATION_FILE}: the evaluation needs the model the run explained; run "
            f"`afmask report {out} --model demo` (or `--arch A.arch --params P.af`) to evaluate it and write the report"
        )
    from afmask.io.runfiles import RunFileError, read_json

    fix = f"evaluate the run again: `afmask report {out} --model demo` (or --arch A.arch --params P.af)"
    doc = read_json(path, fix)
    if not isinstance(doc, dict):
        raise RunFileError(path, f"holds a JSON {type(doc).__name__}, not an evaluation", fix)
    if doc.get("format") != FORMAT:
        raise RunFileError(path, f"evaluation format {doc.get('format')!r}, expected {FORMAT}", fix)
    problem = _layout_problem(doc)
    if problem:
        raise RunFileError(path, f"is damaged or from another version: {problem}", fix)
    if expected is not None:
        made_from = doc.get("inputs") or {}
        changed = [_DIGEST_FILES[k] for k in _DIGEST_FILES if made_from.get(k) != expected.get(k)]
        if changed:
            raise StaleEvaluation(
                f"{path}: made from another {', '.join(changed)} than {out} holds now (the run changed after its "
                f"evaluation); evaluate it again: `afmask report {out} --model demo` (or --arch A.arch --params P.af)"
            )
    return doc


#: What the report reads of evaluation.json: key -> type(s) (a nested dict: the keys inside).
_NUM = (int, float, type(None))
_CURVE = {"x": list, "cer_clean": list, "cer_transcript": list, "f": list, "text": list}
_LAYOUT = {
    "clean_text": str, "metric": str, "verdict": str, "energy_note": str, "reversed": (bool, type(None)),
    "beats_energy": (bool, type(None)), "beats_random": (bool, type(None)), "keep_important": dict, "keep_other": dict,
    "importance_vs_energy": _NUM, "forwards": int, "seconds": dict, "settings": dict, "renditions": list,
    "sanity": (dict, type(None)),
    "areas": {"explanation": {"gap": dict, "deletion": dict, "insertion": dict}, "energy": {"gap": dict}},
    "curves": {"explanation": {"deletion": _CURVE, "insertion": _CURVE}, "energy": {"deletion": _CURVE, "insertion": _CURVE}},
}
_RENDITION = {"name": str, "files": list, "percent": _NUM, "description": str, "kept": str, "text": str,
              "cer_clean": _NUM, "cer_transcript": _NUM, "f": _NUM, "spectrum_cer_clean": _NUM}
_SANITY = {"levels": list, "note": str, "decorrelates": (bool, type(None)), "iterations": int, "samples": int}
_LEVEL = {"label": str, "randomised_layers": int, "layers": list, "spearman": _NUM, "spearman_short": _NUM, "seconds": _NUM}


def _layout_problem(doc: Any, layout: Optional[dict] = None, where: str = "") -> Optional[str]:
    """The first way ``doc`` differs from the evaluation layout the report reads, or None."""
    if layout is None:
        problem = _layout_problem(doc, _LAYOUT)
        if problem:
            return problem
        for i, r in enumerate(doc["renditions"]):
            problem = _layout_problem(r, _RENDITION, f"renditions[{i}].") if isinstance(r, dict) else f"renditions[{i}] is not an object"
            if problem:
                return problem
        if doc["sanity"] is not None:
            problem = _layout_problem(doc["sanity"], _SANITY, "sanity.")
            for i, lv in enumerate(doc["sanity"].get("levels") or []):
                problem = problem or (_layout_problem(lv, _LEVEL, f"sanity.levels[{i}].") if isinstance(lv, dict)
                                      else f"sanity.levels[{i}] is not an object")
            if problem:
                return problem
            if not doc["sanity"]["levels"]:
                return "sanity.levels is empty"
        return None
    for key, want in layout.items():
        if key not in doc:
            return f"it lacks '{where}{key}'"
        value = doc[key]
        if isinstance(want, dict):
            if not isinstance(value, dict):
                return f"{where}{key} is a {type(value).__name__}, expected an object"
            problem = _layout_problem(value, want, f"{where}{key}.")
            if problem:
                return problem
        elif not isinstance(value, want) or (isinstance(value, bool) and bool not in (want if isinstance(want, tuple) else (want,))):
            return f"{where}{key} is {type(value).__name__}, expected {_type_names(want)}"
    return None


def _type_names(want: Any) -> str:
    names = {str: "text", int: "an integer", float: "a number", bool: "true/false", list: "a list", dict: "an object",
             type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in (want if isinstance(want, tuple) else (want,)))

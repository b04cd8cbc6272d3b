"""afmask's verbs, each one job across the layers: ``explain`` an utterance, ``regress`` against a C++ dump.

``evaluate`` and ``report`` (the faithfulness measures and the HTML page) live
in :mod:`afmask.evaluate` and :mod:`afmask.report`; ``explain`` calls them at
the end of a run unless told not to.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from afmask.features import features
from afmask.features.checks import check_audible, features_of
from afmask.fl.nn import Module
from afmask.io import load_audio, read_arrays, save_arrays
from afmask.io.files import in_stage, removes_new_folder_on_failure, stage, sweep_stale
from afmask.mask import MaskConfig, MaskObjective, MaskResult, MaskRun
from afmask.mask.regress import RTOL, TensorCheck, format_report, replay

#: Files of a run folder that the evaluation and the report read back.
FEATURES_FILE = "features.npz"
#: What a run leaves besides its checkpoint and config.json: removed when a new run starts in the folder, so
#: that no file of an older run (an evaluation, a verdict, renditions) can be shown beside the new m.
#: A run with restarts: the map (their mean percentile ranks) beside m.npy, and the other seeds' run folders.
IMPORTANCE_FILE = "importance.npy"
RESTARTS_DIR = "restarts"
RUN_OUTPUTS = ("m.npy", "m.af", "m_last.npy", "tiebreak.npy", "summary.json", "heatmap.png", "training.png", FEATURES_FILE,
               IMPORTANCE_FILE)


def _remove_stale(out: Path, fresh: bool) -> None:
    """Remove the evaluation (its mark evaluation.json first), the report and the outputs of an earlier run in ``out``."""
    import shutil

    from afmask.evaluate.evaluation import CURVES_FILE, EVALUATION_FILE, RENDITIONS_DIR

    names = [EVALUATION_FILE, CURVES_FILE, "report.html", *RUN_OUTPUTS] + (["log.csv"] if fresh else [])
    for name in names:
        try:
            os.unlink(out / name)
        except FileNotFoundError:
            pass
    if (out / RENDITIONS_DIR).is_dir():
        shutil.rmtree(out / RENDITIONS_DIR)
    if fresh and (out / RESTARTS_DIR).is_dir():
        shutil.rmtree(out / RESTARTS_DIR)


@dataclass
class Explanation:
    """A finished explain run: its folder, the mask result and the features it explained."""

    out: Path
    result: MaskResult
    fft: np.ndarray
    magnitude: np.ndarray
    samples: np.ndarray


def _frames(spec: Optional[Sequence[int]], T: int) -> slice:
    if spec is None:
        return slice(0, T)
    start, stop = int(spec[0]), int(spec[1])
    if not 0 <= start < stop <= T:
        raise ValueError(f"frames {start}:{stop} do not fit the utterance's {T} frames")
    return slice(start, stop)


def _check_frames(model: Module, variant: str, sel: slice, num_samples: int, audio: os.PathLike, given: bool) -> None:
    """Refuse fewer frames than the model and the mask loop need; warn below the model's receptive field."""
    import warnings

    from afmask.features.stft import covered_samples
    from afmask.io.audio import AudioError, AudioWarning
    from afmask.model.network import min_frames, receptive_field

    T = sel.stop - sel.start
    # one frame is no 2K x T array in ArrayFire's orientation, and the letters variants divide by a stdev over time
    need = min_frames(model, output_frames_needed=1 if variant == "posteriors" else 2)
    rf = receptive_field(model)
    what = (f"--frames {sel.start}:{sel.stop} selects {T} frame{'s' if T != 1 else ''}" if given else
            f"has {T} frame{'s' if T != 1 else ''} ({num_samples} samples, {1000 * num_samples / 16000:.1f} ms)")
    if T < need:
        fix = (f"select at least {need} frames, e.g. --frames {sel.start}:{sel.start + max(need, rf)}" if given else
               f"use a recording of at least {covered_samples(need)} samples ({1000 * covered_samples(need) / 16000:.0f} ms; "
               f"{covered_samples(rf) / 16000:.2f} s for the whole receptive field)")
        raise AudioError(audio, f"{what}: too few for the model, which needs at least {need} (its receptive field "
                                f"spans {rf} frames = {covered_samples(rf) / 16000:.2f} s); {fix}")
    if T < rf:
        warnings.warn(f"{os.fspath(audio)}: {what}, fewer than the model's receptive field of {rf} frames "
                      f"({covered_samples(rf) / 16000:.2f} s): every output also sees the zero padding beyond its ends", AudioWarning,
                      stacklevel=3)


@removes_new_folder_on_failure("out")
@in_stage("the explanation", "out")
def explain(
    audio: os.PathLike,
    out: os.PathLike,
    model: Optional[Module] = None,
    config: Optional[MaskConfig] = None,
    resume: bool = False,
    progress: bool = True,
    frames: Optional[Sequence[int]] = None,
    resample: bool = False,
    channel: Optional[int] = None,
    allow_clipping: bool = False,
    model_name: str = "demo",
) -> Explanation:
    """Learn the noise scale m for one utterance and write the run folder (m, log, config, checkpoints, plots)."""
    from afmask.model import demo_model
    from afmask.model.network import expected_features
    from afmask.report import plot_mask, plot_training

    config = config or MaskConfig.preset("default")
    model = model if model is not None else demo_model()
    samples = load_audio(audio, resample=resample, channel=channel, allow_clipping=allow_clipping)
    feats = features_of(os.fspath(audio), samples, stats=config.stats)
    sel = _frames(frames, feats["fft"].shape[1])
    fft, mag, clean_input = feats["fft"][:, sel], feats["magnitude"][:, sel], feats["input"][sel]
    check_audible(os.fspath(audio), samples, mag)
    _check_frames(model, config.variant, sel, samples.size, audio, frames is not None)
    if sel != slice(0, feats["fft"].shape[1]):
        clean_input = None  # normalise the selected frames on their own, as the C++ does for its input
    k = expected_features(model)
    if k is not None and k != fft.shape[0] // 2:
        raise ValueError(f"the model expects {k} features per frame (its View), the audio gives {fft.shape[0] // 2}")
    config = config.replace(audio=os.fspath(audio), model=model_name, extra={**config.extra, "frames": [sel.start, sel.stop]})
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: is a file, not a run folder (--out): choose a folder")
    # before anything is allocated or written: refuse a run the machine cannot hold
    from afmask.mask.resources import check_resources

    check_resources(fft, model, config, out, audio_samples=samples.size)
    objective = MaskObjective(fft, model, config.variant, noise=config.noise, stats=config.stats,
                              clean_input=clean_input, kernel_path=config.kernel_path)
    out.mkdir(parents=True, exist_ok=True)
    sweep_stale(out)  # temporaries of runs killed before they could remove them
    run = MaskRun(objective, config, out)
    run.start(resume)  # refuses to overwrite a run, or checks a resumed one's settings; writes config.json
    _remove_stale(out, fresh=run.iteration == 0)
    result = run.run(progress=progress)
    if config.restarts > 1:
        _restarts(objective, config, out, resume, progress, result)
    seg = samples[sel.start * 160 : (sel.stop - 1) * 160 + 400]
    with stage("saving the explained features"):
        save_arrays(out / FEATURES_FILE, {"fft": fft, "magnitude": mag, "samples": seg})
    title = f"{Path(audio).name}, {config.mode} mode"
    plot_mask(mag, result.m, out / "heatmap.png", title=title)
    plot_training(result.history, out / "training.png", title=title)
    return Explanation(out, result, fft, mag, seg)


def _restarts(objective: MaskObjective, config: MaskConfig, out: Path, resume: bool, progress: bool,
              first: MaskResult) -> None:
    """The other seeds' runs of a run with restarts, each a run folder of its own under DIR/restarts (resumable
    like the main one), then DIR/importance.npy: the mean of the runs' percentile ranks."""
    from afmask.io.files import atomic_write
    from afmask.mask.importance import mean_rank

    maps = [first.importance()]
    for cfg in config.restart_configs()[1:]:
        sub = out / RESTARTS_DIR / f"seed-{cfg.seed}"
        sub.mkdir(parents=True, exist_ok=True)
        run = MaskRun(objective, cfg, sub)
        run.notify = lambda _: None  # the first run's estimate of the time left covered this one
        run.start(resume)
        maps.append(run.run(progress=progress).importance())
    with atomic_write(out / IMPORTANCE_FILE) as f:
        np.save(f, mean_rank(maps))


def load_run(out: os.PathLike) -> tuple[MaskConfig, np.ndarray, dict, list]:
    """A finished run folder: its settings, m (2K, T), the features it explained and the per-iteration log."""
    from afmask.io.runfiles import RunFileError, read_csv_rows, read_json, read_npy, read_npz
    from afmask.mask.run import CHECKPOINT, LOG_COLUMNS

    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"{out}: no such run folder" if not out.exists() else f"{out}: is a file, not a run folder")
    missing = [f for f in ("config.json", "m.npy", FEATURES_FILE, "log.csv") if not (out / f).exists()]
    if missing and (out / "checkpoint.npz").exists() and (out / "config.json").exists():
        raise FileNotFoundError(
            f"{out} holds an unfinished run (checkpoint.npz, no {', '.join(missing)}): it was stopped before its end; "
            f"continue it with `afmask explain AUDIO --out {out} --resume` and the options it was started with"
        )
    if missing:
        raise FileNotFoundError(f"{out} is not a finished afmask run: missing {', '.join(missing)}")
    fix = (f"re-run `afmask explain AUDIO --out {out} --resume` with the run's settings to write it again" if (out / CHECKPOINT).exists()
           else "its checkpoint is gone too: explain the audio again (afmask explain AUDIO --out NEW_DIR)")
    doc = read_json(out / "config.json", fix)
    try:
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object of settings, got {type(doc).__name__}")
        doc.setdefault("restarts", 1)  # a run from before the setting: one run
        config = MaskConfig.from_dict(doc, source=os.fspath(out / "config.json"))
    except (ValueError, TypeError, KeyError) as e:
        raise RunFileError(out / "config.json", f"holds settings afmask cannot use ({e})", fix) from None
    feats = read_npz(out / FEATURES_FILE, fix)
    lacking = [k for k in ("fft", "magnitude", "samples") if k not in feats]
    if lacking:
        raise RunFileError(out / FEATURES_FILE, f"lacks the array(s) {', '.join(lacking)}", fix)
    history = read_csv_rows(out / "log.csv", fix, lambda k: int if k == "iteration" else float, LOG_COLUMNS)
    m = read_npy(out / "m.npy", fix)
    _check_m(out, m, feats, config)
    from afmask.mask.run import TIEBREAK_FILE

    if (out / TIEBREAK_FILE).exists():  # the order of the bins at the bound (runs with tie_break = "path")
        tb = read_npy(out / TIEBREAK_FILE, fix)
        if tb.shape != (m.shape[0] // 2, m.shape[1]) or not np.all(np.isfinite(tb)):
            raise RunFileError(out / TIEBREAK_FILE, f"does not fit m.npy (shape {tb.shape}, expected "
                               f"{(m.shape[0] // 2, m.shape[1])}, finite)", "run `afmask explain` into the folder again")
        feats = {**feats, "tiebreak": tb}
    if config.restarts > 1:  # the map is the restarts' mean
        if not (out / IMPORTANCE_FILE).exists():
            raise RunFileError(out / IMPORTANCE_FILE, f"is missing: the run has {config.restarts} restarts and its map "
                               "is their mean", fix)
        imp = read_npy(out / IMPORTANCE_FILE, fix)
        if imp.shape != (m.shape[0] // 2, m.shape[1]) or not np.all(np.isfinite(imp)):
            raise RunFileError(out / IMPORTANCE_FILE, f"does not fit m.npy (shape {imp.shape}, expected "
                               f"{(m.shape[0] // 2, m.shape[1])}, finite)", fix)
        feats = {**feats, "importance": imp}
    return config, m, feats, history


def _check_m(out: Path, m: np.ndarray, feats: dict, config: MaskConfig) -> None:
    """m.npy must be the run's: (2K, T) like its FFT, over the frames config.json names, finite numbers."""
    fft = feats.get("fft")
    want = None if fft is None else tuple(np.shape(fft))
    frames = config.extra.get("frames")
    if want is None and frames:
        want = (m.shape[0] if m.ndim else 0, frames[1] - frames[0])
    if m.ndim != 2 or (want is not None and tuple(m.shape) != want):
        raise ValueError(
            f"{out / 'm.npy'}: shape {tuple(m.shape)} does not fit the run (features.npz's FFT is {want}, "
            "interleaved Re/Im rows x frames); the folder mixes two runs: run `afmask explain` into it again"
        )
    if frames and m.shape[1] != frames[1] - frames[0]:
        raise ValueError(
            f"{out / 'm.npy'}: {m.shape[1]} frames, but config.json names frames {frames[0]}:{frames[1]}; "
            "the folder mixes two runs: run `afmask explain` into it again"
        )
    if not np.issubdtype(m.dtype, np.floating) or not np.all(np.isfinite(m)):
        raise ValueError(f"{out / 'm.npy'}: holds {'non-numbers' if not np.issubdtype(m.dtype, np.floating) else 'NaN or Inf'}; "
                         "run `afmask explain` into the folder again")


def regress(
    dump: os.PathLike,
    model: Module,
    rtol: float = RTOL,
    stats: str = "arrayfire_cpu",
    norm_accumulation: str = "float32",
    stagewise: bool = True,
) -> tuple[bool, list[TensorCheck], str]:
    """Replay one C++ iteration from an af::saveArray dump; returns (all passed, per-tensor checks, printable table)."""
    arrays = read_arrays(dump)
    try:
        checks, _ = replay(arrays, model, rtol=rtol, stats=stats, norm_accumulation=norm_accumulation, stagewise=stagewise)
    except ValueError as e:
        raise ValueError(f"{os.fspath(dump)}: {e}") from None
    if not checks:
        raise ValueError(f"{dump}: the dump holds none of the tensors to compare")
    return all(c.passed for c in checks), checks, format_report(checks, rtol)


# -- evaluation, report and comparison ------------------------------------------------------------------
def evaluate_run(
    out: os.PathLike,
    model: Optional[Module] = None,
    settings=None,
    transcript: Optional[os.PathLike] = None,
    progress: bool = True,
):
    """Evaluate a finished run folder with the model it explained (default: the demo model); writes
    evaluation.json, curves.csv and renditions/ there whole or not at all; returns the EvaluationResult.

    ``transcript``: a text file with the reference transcript (default: AUDIO.txt or STEM.txt beside the
    run's audio, if there is one); ``settings``: an :class:`afmask.evaluate.EvaluationSettings`.
    """
    from afmask.evaluate import evaluate_into
    from afmask.model import demo_model

    config, m, feats, _ = load_run(out)
    model = model if model is not None else demo_model()
    return evaluate_into(out, config, m, feats, model, settings, transcript_path=transcript, progress=progress)


def write_report(out: os.PathLike, embed_audio: bool = True, require_evaluation: bool = True) -> Path:
    """Build DIR/report.html from the files of a run folder (no model needed once evaluation.json exists); returns its path.

    ``embed_audio``: renditions inlined as data URIs (a single self-contained file) or linked beside it
    (renditions/); ``require_evaluation=False`` writes a report of the training only when the run has
    not been evaluated.
    """
    from afmask.evaluate import read_evaluation
    from afmask.evaluate.evaluation import StaleEvaluation, run_digests
    from afmask.io.files import atomic_write
    from afmask.report import render_report

    out = Path(out)
    config, m, feats, history = load_run(out)
    try:
        evaluation = read_evaluation(out, expected=run_digests(config, m, feats))
    except (FileNotFoundError, StaleEvaluation):
        if require_evaluation:
            raise
        evaluation = None  # a report of the training only: an old evaluation never shows beside another m
    summary = _read_json(out / "summary.json")
    html = render_report(out, config, m, feats, history, evaluation, summary, embed_audio=embed_audio)
    path = out / "report.html"
    with atomic_write(path) as f:
        f.write(html.encode("utf-8"))
    return path


def evaluate_and_report(
    out: os.PathLike,
    model: Optional[Module] = None,
    progress: bool = True,
    settings=None,
    transcript: Optional[os.PathLike] = None,
    embed_audio: bool = True,
):
    """Evaluate a finished run folder with its model, then write its HTML report; returns (EvaluationResult, report path)."""
    result = evaluate_run(out, model=model, settings=settings, transcript=transcript, progress=progress)
    return result, write_report(out, embed_audio=embed_audio)


def compare_runs(
    dirs: Sequence[os.PathLike],
    out_html: os.PathLike,
    labels: Optional[Sequence[str]] = None,
) -> tuple[Path, Path]:
    """Curves and verdicts of several evaluated runs side by side: one HTML page and a CSV beside it (same stem)."""
    from afmask.evaluate import read_evaluation
    from afmask.evaluate.evaluation import run_digests
    from afmask.io.files import atomic_write
    from afmask.report import render_comparison

    if len(dirs) < 1:
        raise ValueError("compare needs at least one run folder")
    if labels is not None and len(labels) != len(dirs):
        raise ValueError(f"{len(labels)} labels for {len(dirs)} run folders: give one label per folder")
    runs = []
    for i, d in enumerate(dirs):
        d = Path(d)
        if is_attribution_folder(d):  # afmask attribute's folders: ranked per control (below)
            runs.append(_attribution_entry(d, labels[i] if labels else None))
            continue
        config, m, feats, _ = load_run(d)
        runs.append({"dir": d, "label": labels[i] if labels else None, "config": config,
                     "evaluation": read_evaluation(d, expected=run_digests(config, m, feats)), "summary": _read_json(d / "summary.json")})
    if any("controls" in r for r in runs):
        from afmask.report.compare import render_method_ranking

        html, table = render_method_ranking([r if "controls" in r else _run_as_method(r) for r in runs])
    else:
        html, table = render_comparison(runs)
    out_html = Path(out_html)
    if out_html.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"{out_html}: the comparison page must end in .html")
    csv_path = out_html.with_suffix(".csv")
    out_html.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(csv_path) as f:
        f.write(table.encode("utf-8"))
    with atomic_write(out_html) as f:
        f.write(html.encode("utf-8"))
    return out_html, csv_path


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


# -- ground truth: a model blind to a band or a time window ---------------------------------------------------
VALIDATION_FILE = "validation.json"


def validate(
    audio: os.PathLike,
    out: os.PathLike,
    model: Optional[Module] = None,
    config: Optional[MaskConfig] = None,
    band: Optional[Sequence[int]] = None,
    frames: Optional[Sequence[int]] = None,
    progress: bool = True,
    resample: bool = False,
    channel: Optional[int] = None,
    allow_clipping: bool = False,
    model_name: str = "demo",
    leaky: bool = False,
) -> dict:
    """Explain ``audio`` with ``model`` made blind to bins ``band`` = (LO, HI) or frames ``frames`` = (A, B) and
    write the run folder ``out`` and ``out/validation.json``: where the blind region falls in the map's top 20 %
    against energy's, and how much the region still changes the blind model's output (exactly blind unless
    ``leaky``: see :func:`afmask.evaluate.controls.blind_test`)."""
    from afmask.evaluate.controls import blind_test
    from afmask.io.files import atomic_write
    from afmask.model import demo_model
    from afmask.model.blind import blind_to_band, blind_to_frames

    if (band is None) == (frames is None):
        raise ValueError("validate needs exactly one of --blind-band LO:HI and --blind-frames A:B")
    config = config or MaskConfig.preset("default")
    model = model if model is not None else demo_model()
    samples = load_audio(audio, resample=resample, channel=channel, allow_clipping=allow_clipping)
    feats = features(samples, stats=config.stats)
    T = feats["fft"].shape[1]
    clean = None if leaky else feats["magnitude"]
    form = "leaky" if leaky else "exactly"
    if band is not None:
        blind = blind_to_band(model, int(band[0]), int(band[1]), magnitude=clean)
        what = f"{form} blind to bins {band[0]}:{band[1]}"
    else:
        blind = blind_to_frames(model, int(frames[0]), int(frames[1]), T, magnitude=clean)
        what = f"{form} blind to frames {frames[0]}:{frames[1]}"
    expl = explain(audio, out, model=blind, config=config, progress=progress, resample=resample, channel=channel,
                   allow_clipping=allow_clipping, model_name=f"{model_name}, {what}")
    res = blind_test(expl.fft, model, None, band=tuple(band) if band is not None else None,
                     frames=tuple(frames) if frames is not None else None, magnitude=expl.magnitude,
                     variant=config.variant, stats=config.stats, seed=config.seed, importance=expl.result.importance(),
                     leaky=leaky)
    res.update(audio=os.fspath(audio), mode=config.mode, iterations=expl.result.iterations, model=model_name)
    with atomic_write(Path(out) / VALIDATION_FILE) as f:
        f.write(json.dumps(res, indent=1).encode())
    return res


# -- the other attribution methods (afmask.attribute) ------------------------------------------------------
#: The controls of an attribution folder, written by :func:`evaluate_attribution`.
CONTROLS_FILE = "controls.json"


def is_attribution_folder(out: os.PathLike) -> bool:
    """Whether DIR was written by :func:`attribute` (``afmask attribute``)."""
    from afmask.attribute import ATTRIBUTION_FILE

    return (Path(out) / ATTRIBUTION_FILE).is_file()


def attribute(
    audio: os.PathLike,
    out: os.PathLike,
    method: str = "saliency",
    model: Optional[Module] = None,
    options: Optional[dict] = None,
    progress: bool = True,
    resample: bool = False,
    channel: Optional[int] = None,
    allow_clipping: bool = False,
    model_name: str = "demo",
):
    """Explain one utterance with an afmask.attribute method (``options``: its constructor arguments) and write DIR:
    importance.npy (K, T), attribution.json, config.json, features.npz, heatmap.png (and m.npy for the mask)."""
    from afmask.attribute import make_method
    from afmask.io.files import atomic_write
    from afmask.model import demo_model
    from afmask.report.plots import plot_importance

    model = model if model is not None else demo_model()
    samples = load_audio(audio, resample=resample, channel=channel, allow_clipping=allow_clipping)
    feats = features(samples)
    explainer = make_method(method, model, **(options or {}))
    result = explainer.attribute(feats, progress=progress)
    out = Path(out)
    result.save(out)
    save_arrays(out / FEATURES_FILE, {"fft": feats["fft"], "magnitude": feats["magnitude"], "samples": samples})
    config = {"method": method, "audio": os.fspath(audio), "model": model_name, "settings": result.settings}
    with atomic_write(out / "config.json") as f:
        f.write(json.dumps(config, indent=2, default=str).encode())
    if method == "mask" and getattr(explainer, "last_result", None) is not None:
        with atomic_write(out / "m.npy") as f:
            np.save(f, explainer.last_result.m.astype(np.float32))
    plot_importance(feats["magnitude"], result.importance, out / "heatmap.png", title=f"{Path(audio).name}, {method}")
    return result


def evaluate_attribution(
    out: os.PathLike,
    model: Optional[Module] = None,
    modes: Sequence[str] = ("zero",),
    kinds: Sequence[str] = ("deletion", "insertion"),
    progress: bool = True,
    noise_kind: Optional[str] = None,
    noise_level: Optional[float] = None,
) -> dict:
    """The controls of an attribution folder's map with its model (default: the demo model): energy-stratified
    deletion, ties, plausibility (with a .words.json beside the audio) and the global deletion/insertion gap
    against energy and random orders; written to DIR/controls.json whole, and returned.

    ``noise_kind``, ``noise_level``: the perturbation of ``modes`` "noise" ("relative", "attenuate" or "drop");
    by default the default mode's own (its noise at its bound), the same for every method so that their rows
    compare.
    """
    from afmask.attribute import Attribution
    from afmask.evaluate.controls import NOISE_KINDS, evaluate_map, tie_broken_order
    from afmask.evaluate.curves import compute_curves, percent_grid
    from afmask.evaluate.evaluation import find_transcript, find_words
    from afmask.evaluate.scoring import Scorer
    from afmask.io.files import atomic_write
    from afmask.io.progress import progress_bar
    from afmask.model import demo_model

    default = MaskConfig()
    noise_kind = default.noise if noise_kind is None else noise_kind
    noise_level = float(default.m_max) if noise_level is None else float(noise_level)
    if noise_kind not in NOISE_KINDS:
        raise ValueError(f"noise_kind must be one of {', '.join(NOISE_KINDS)}, got {noise_kind!r}")
    if not (np.isfinite(noise_level) and noise_level > 0):
        raise ValueError(f"noise_level must be a finite number > 0, got {noise_level:g}")

    out = Path(out)
    result = Attribution.load(out)
    config = _read_json(out / "config.json")
    if not (out / FEATURES_FILE).is_file():
        raise FileNotFoundError(f"{out} has no {FEATURES_FILE}: write it with afmask attribute AUDIO --out {out}")
    with np.load(out / FEATURES_FILE) as z:
        fft, mag = z["fft"], z["magnitude"]
    if result.importance.shape != mag.shape:
        raise ValueError(f"{out}: the map {result.importance.shape} does not fit the features {mag.shape}")
    model = model if model is not None else demo_model()
    audio = config.get("audio", "")
    transcript, _ = find_transcript(audio) if audio else (None, None)
    words = find_words(audio, 0.0, mag.shape[1] * 0.01 + 0.015) if audio else []
    scorer = Scorer(fft, mag, model, "posteriors", noise="relative", transcript=transcript, batch=16)
    bound = None
    if result.method == "mask":
        m_max = result.settings.get("config", {}).get("m_max")
        bound = -float(np.log(m_max)) if m_max else None
    doc = evaluate_map(fft, model, result.importance, magnitude=mag, words=words, bound=bound, transcript=transcript,
                       modes=modes, kinds=kinds, scorer=scorer, noise_kind=noise_kind, noise_level=noise_level)
    rankings = {"map": tie_broken_order(result.importance, 0), "energy": tie_broken_order(mag, 0)}
    for i in range(3):
        rankings[f"random{i}"] = np.random.default_rng([0, 7, i]).permutation(mag.size)
    bar = progress_bar(total=0, desc="afmask attribute: global curves", unit="pass", leave=False) if progress else None
    try:
        curves = compute_curves(scorer, rankings, percent_grid(5.0), progress=bar)
    finally:
        if bar is not None:
            bar.close()
    metric = doc["stratified"]["metric"]
    gaps = {name: pair["deletion"].area(metric) - pair["insertion"].area(metric) for name, pair in curves.items()}
    best_random = max(v for k, v in gaps.items() if k.startswith("random"))
    doc["global"] = {"metric": metric, "gap": gaps, "beats_energy": bool(gaps["map"] > gaps["energy"]),
                     "beats_random": bool(gaps["map"] > best_random),
                     "verdict": (f"global deletion/insertion gap AUC(del) - AUC(ins) {gaps['map']:.3f}, energy {gaps['energy']:.3f}, "
                                 f"best random {best_random:.3f}: {'beats' if gaps['map'] > gaps['energy'] else 'does NOT beat'} energy")}
    doc["method"], doc["seconds"], doc["audio"] = result.method, result.seconds, audio
    with atomic_write(out / CONTROLS_FILE) as f:
        f.write(json.dumps(doc, indent=1).encode())
    return doc


def _attribution_entry(d: Path, label: Optional[str]) -> dict:
    """An attribution folder as an entry of the method ranking (its controls.json is needed)."""
    doc = _read_json(d / "attribution.json")
    if not (d / CONTROLS_FILE).is_file():
        raise FileNotFoundError(f"{d} has no {CONTROLS_FILE}: run `afmask attribute AUDIO --method {doc.get('method', 'M')} "
                                f"--out {d}` without --no-evaluation")
    return {"dir": d, "label": label, "method": doc.get("method"), "audio": _read_json(d / "config.json").get("audio"),
            "seconds": doc.get("seconds"), "controls": _read_json(d / CONTROLS_FILE)}


def _run_as_method(run: dict) -> dict:
    """An evaluated mask run folder as an entry of the method ranking: its global gaps (and its controls, if evaluated)."""
    ev, cfg = run["evaluation"], run["config"]
    mt = ev["metric"]
    gaps = {("map" if k == "explanation" else k): v["gap"].get(mt) for k, v in ev["areas"].items()}
    controls = dict(ev.get("controls") or {})
    controls["global"] = {"metric": mt, "gap": gaps, "beats_energy": ev.get("beats_energy")}
    return {"dir": run["dir"], "label": run["label"], "method": f"mask ({cfg.mode})", "audio": cfg.audio,
            "seconds": (run.get("summary") or {}).get("seconds"), "controls": controls}


def write_attribution_report(out: os.PathLike) -> Path:
    """Build DIR/report.html of an attribution folder from its files (the controls from controls.json, if there)."""
    from afmask.io.files import atomic_write
    from afmask.report.attribution import render_attribution_report

    out = Path(out)
    controls = _read_json(out / CONTROLS_FILE) or None
    html = render_attribution_report(out, _read_json(out / "attribution.json"), _read_json(out / "config.json"), controls)
    path = out / "report.html"
    with atomic_write(path) as f:
        f.write(html.encode("utf-8"))
    return path

"""Answers at the corpus level, from the finished run folders: CSV tables, PNG plots and the corpus page.

Every utterance's importance map (K, T) is turned into percentile ranks within the utterance
(1 = its most important point, 0 = its least, 0.5 = the middle), so utterances whose m live on
different scales weigh alike. Then, over the corpus:

- ``bands.csv``/``.png``: the mean rank of each frequency bin (over the utterance's frames, then over
  utterances) with a 95 % bootstrap confidence band over utterances;
- ``tokens.csv``/``.png``: the mean rank per bin over the frames where the clean decoding's greedy CTC
  path emits each token (which bins matter while the model emits each letter);
- ``words.csv``/``.png``: the same over each word's frames, where ``.words.json`` alignments exist;
- ``controls.csv``/``.png``: every number of the runs' evaluation.json (read generically, so new
  controls flow in), averaged over utterances with its spread;
- ``utterances.csv`` and ``report.html``: one row / one link per utterance.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from afmask.corpus.manifest import Utterance, read_words
from afmask.corpus.run import FAILURE_COLUMNS, FAILURES_FILE, read_corpus
from afmask.corpus.worker import ALIGNMENT_FILE
from afmask.evaluate.importance import importance
from afmask.features.stft import FFT_SIZE, FRAME_SHIFT, SAMPLE_RATE
from afmask.mask.run import TIEBREAK_FILE
from afmask.io.files import atomic_write

#: Coarse bands of the token and word tables, in Hz (the plots show every bin).
BANDS_HZ = (0, 500, 1000, 2000, 3000, 4000, 5000, 6000, 8001)
#: Bootstrap resamples of the per-band confidence band.
BOOTSTRAP = 2000
#: Keys of evaluation.json that are settings or bookkeeping, not measurements.
NOT_CONTROLS = ("settings", "format", "curves", "words")
#: The most words the word plot shows (those with the most occurrences).
MAX_WORDS_PLOTTED = 30


@dataclass
class RunData:
    """One finished utterance's material for the aggregates."""

    id: str
    rank: np.ndarray  # (K, T) percentile rank of importance within the utterance
    alignment: Optional[dict] = None
    words: list = field(default_factory=list)
    evaluation: Optional[dict] = None
    summary: dict = field(default_factory=dict)


def percentile_rank(scores: np.ndarray) -> np.ndarray:
    """Ranks of ``scores`` (any shape) scaled to [0, 1] within the array: 1 = largest; ties share their mean rank."""
    from scipy.stats import rankdata

    flat = np.asarray(scores, dtype=np.float64).ravel()
    if flat.size < 2:
        return np.full(np.shape(scores), 0.5)
    r = rankdata(flat, method="average")
    return ((r - 1.0) / (flat.size - 1.0)).reshape(np.shape(scores))


def bin_hz(K: int) -> np.ndarray:
    """Centre frequency (Hz) of each of the K bins."""
    return np.arange(K) * SAMPLE_RATE / FFT_SIZE


def bootstrap_ci(samples: np.ndarray, n: int = BOOTSTRAP, seed: int = 0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over axis 0 of ``samples`` (n_utterances, ...), resampling utterances."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.shape[0] < 2:
        return samples.mean(0), samples.mean(0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, samples.shape[0], size=(n, samples.shape[0]))
    means = samples[idx].mean(axis=1)
    a = (1.0 - level) / 2.0
    return np.quantile(means, a, axis=0), np.quantile(means, 1.0 - a, axis=0)


def _read_json(path: Path) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_runs(out: Path, utts: list[Utterance]) -> list[RunData]:
    """The finished run folders of the corpus's utterances, in the corpus's order."""
    runs = []
    for u in utts:
        d = out / u.id
        if not (d / "m.npy").is_file():
            continue
        config = _read_json(d / "config.json") or {}
        tb = d / TIEBREAK_FILE  # the bins at the bound ordered as the run ordered them, where it made a tie-break
        tiebreak = np.load(tb) if tb.is_file() and config.get("tie_break", "path") != "none" else None
        imp_file = d / "importance.npy"  # a run with restarts: their mean percentile ranks
        imp = np.load(imp_file) if imp_file.is_file() and config.get("restarts", 1) > 1 else \
            importance(np.load(d / "m.npy"), tiebreak, config.get("m_max"))
        rank = percentile_rank(imp)
        start = ((config.get("extra") or {}).get("frames") or [0])[0]
        words = []
        wf = u.words_file()
        if wf is not None and wf.is_file():
            try:
                words = read_words(wf, offset_s=start * FRAME_SHIFT / SAMPLE_RATE)
            except (ValueError, KeyError, TypeError):
                words = []  # a malformed alignment costs this utterance's word rows only
        runs.append(RunData(u.id, rank, _read_json(d / ALIGNMENT_FILE), words, _read_json(d / "evaluation.json"),
                            _read_json(d / "summary.json") or {}))
    return runs


# -- frequency bands --------------------------------------------------------------------------------------
def band_table(runs: list[RunData]) -> dict:
    """Per bin: mean rank over utterances (each utterance's mean over its frames), 95 % bootstrap band, SE."""
    profiles = np.stack([r.rank.mean(axis=1) for r in runs])  # (U, K)
    lo, hi = bootstrap_ci(profiles)
    n = profiles.shape[0]
    se = profiles.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.full(profiles.shape[1], np.nan)
    return {"hz": bin_hz(profiles.shape[1]), "mean": profiles.mean(0), "lo": lo, "hi": hi, "se": se, "n": n}


def _band_columns(K: int) -> list[tuple[str, np.ndarray]]:
    hz = bin_hz(K)
    cols = []
    for a, b in zip(BANDS_HZ[:-1], BANDS_HZ[1:]):
        sel = (hz >= a) & (hz < b)
        if sel.any():
            cols.append((f"rank_{a}_{min(b, SAMPLE_RATE // 2)}hz", sel))
    return cols


# -- tokens -----------------------------------------------------------------------------------------------
def token_profiles(runs: list[RunData]) -> dict:
    """Per token of the clean decoding's greedy path: {"sum": (K,) summed frame profiles, "frames", "utterances"}."""
    from afmask.model.tokens import TOKENS

    acc: dict = {}
    for r in runs:
        al = r.alignment
        if not al or not al.get("path"):
            continue
        T = r.rank.shape[1]
        path = np.asarray(al["path"], dtype=np.int64)
        Tout = path.size
        # output frame j covers the input frames [j T / T', (j + 1) T / T'): the network's stride, evenly spread
        edges = np.round(np.arange(Tout + 1) * T / Tout).astype(int)
        seen = set()
        for j, tok in enumerate(path):
            a, b = edges[j], max(edges[j + 1], edges[j] + 1)
            prof = r.rank[:, a:min(b, T)]
            if prof.shape[1] == 0:
                continue
            name = TOKENS[int(tok)]
            e = acc.setdefault(name, {"sum": np.zeros(r.rank.shape[0]), "frames": 0, "utterances": 0})
            e["sum"] += prof.sum(axis=1)
            e["frames"] += prof.shape[1]
            if name not in seen:
                e["utterances"] += 1
                seen.add(name)
    return acc


# -- words ------------------------------------------------------------------------------------------------
def word_profiles(runs: list[RunData]) -> dict:
    """Per word of the alignments: {"occ": [per-occurrence (K,) profiles], "utterances": set of ids}."""
    acc: dict = {}
    for r in runs:
        T = r.rank.shape[1]
        for w in r.words:
            a = int(round(w["b"] * SAMPLE_RATE / FRAME_SHIFT))
            b = int(round((w["b"] + w["d"]) * SAMPLE_RATE / FRAME_SHIFT))
            a, b = max(a, 0), min(b, T)
            if b <= a:
                continue
            e = acc.setdefault(w["t"], {"occ": [], "utterances": set()})
            e["occ"].append(r.rank[:, a:b].mean(axis=1))
            e["utterances"].add(r.id)
    return acc


# -- controls ---------------------------------------------------------------------------------------------
def flatten_numbers(doc, prefix: str = "") -> dict:
    """Every number (and boolean, as 0/1) of a JSON document under a dotted key; lists of named dicts by name,
    other lists of dicts by index; lists of plain numbers (curves) are left out."""
    out: dict = {}
    if isinstance(doc, bool):
        out[prefix] = float(doc)
    elif isinstance(doc, (int, float)):
        if math.isfinite(float(doc)):
            out[prefix] = float(doc)
    elif isinstance(doc, dict):
        for k, v in doc.items():
            if not prefix and k in NOT_CONTROLS:
                continue
            out.update(flatten_numbers(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(doc, list) and doc and all(isinstance(v, dict) for v in doc):
        for i, v in enumerate(doc):
            key = str(v.get("name", i))
            out.update(flatten_numbers({k: x for k, x in v.items() if k != "name"}, f"{prefix}.{key}"))
    return out


def control_table(runs: list[RunData]) -> list[dict]:
    """Per number of evaluation.json: how many utterances have it, mean, SD, SE, mean +- 1.96 SE, min, median, max."""
    values: dict = {}
    for r in runs:
        if r.evaluation:
            for k, v in flatten_numbers(r.evaluation).items():
                values.setdefault(k, []).append(v)
    rows = []
    for k in values:
        x = np.asarray(values[k])
        n = x.size
        sd = float(x.std(ddof=1)) if n > 1 else None
        se = sd / math.sqrt(n) if sd is not None else None
        mean = float(x.mean())
        rows.append({"metric": k, "n": n, "mean": mean, "sd": sd, "se": se,
                     "ci_low": mean - 1.96 * se if se is not None else None,
                     "ci_high": mean + 1.96 * se if se is not None else None,
                     "min": float(x.min()), "median": float(np.median(x)), "max": float(x.max())})
    return rows


def plotted_controls(rows: list[dict]) -> list[dict]:
    """The controls worth a plot: the top-level scores and verdicts and each ranking's gap on the scale of a CER,
    a rate or a correlation (|value| <= 1.5; timings, counts, f-terms and single curve areas stay in the CSV)."""
    keep = []
    for r in rows:
        k = r["metric"]
        if max(abs(r["min"]), abs(r["max"])) > 1.5:
            continue
        if k.startswith(("seconds", "forwards")) or (k.startswith("areas.") and ".gap." not in k):
            continue
        if k.startswith("renditions.") and not k.endswith(".cer_clean"):
            continue
        if k.startswith("sanity.levels.") and not k.endswith(".spearman"):
            continue
        keep.append(r)
    return keep


# -- files ------------------------------------------------------------------------------------------------
def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


def _csv(header: list[str], rows: list[list]) -> bytes:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([_fmt(v) for v in row])
    return buf.getvalue().encode("utf-8")


def _write(path: Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, path: Path) -> None:
    plt = _pyplot()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    _write(path, buf.getvalue())


def plot_bands(table: dict, path: Path, title: str = "") -> None:
    """Mean rank per frequency bin with its confidence band; 0.5 is what a random map gives."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    khz = table["hz"] / 1000.0
    ax.fill_between(khz, table["lo"], table["hi"], alpha=0.3, color="C0", lw=0,
                    label="95% bootstrap interval over utterances")
    ax.plot(khz, table["mean"], color="C0", lw=1.4, label="mean rank")
    ax.axhline(0.5, color="0.4", lw=0.8, ls="--", label="no preference (0.5)")
    ax.set_xlabel("frequency (kHz)")
    ax.set_ylabel("importance rank (1 = most important)")
    ax.set_xlim(0, khz[-1])
    ax.set_title(title or f"importance by frequency over {table['n']} utterances")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _save_png(fig, path)


def plot_tokens(names: list[str], profiles: np.ndarray, frames: list[int], K: int, path: Path) -> None:
    """Heat map: mean rank per frequency bin (x) while the model emits each token (y)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.22 * len(names) + 1.2)))
    im = ax.imshow(profiles, aspect="auto", origin="upper", cmap="magma", vmin=0.0, vmax=1.0,
                   extent=[0, bin_hz(K)[-1] / 1000.0, len(names) - 0.5, -0.5], interpolation="nearest")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([f"{'space' if n == '|' else n} ({f})" for n, f in zip(names, frames)], fontsize=7)
    ax.set_xlabel("frequency (kHz)")
    ax.set_title("importance rank by frequency while the model emits each token (frames)")
    fig.colorbar(im, ax=ax, label="rank (1 = most important)")
    _save_png(fig, path)


def plot_words(rows: list[list], path: Path) -> None:
    """Mean rank of each word's points with mean +- 1.96 SE over its occurrences (the most frequent words)."""
    plt = _pyplot()
    rows = sorted(rows, key=lambda r: (-r[1], r[0]))[:MAX_WORDS_PLOTTED]
    fig, ax = plt.subplots(figsize=(6.5, max(2.5, 0.25 * len(rows) + 1.2)))
    y = np.arange(len(rows))
    mean = np.array([r[3] for r in rows])
    err = np.array([1.96 * r[4] if r[4] is not None else 0.0 for r in rows])
    ax.errorbar(mean, y, xerr=err, fmt="o", ms=4, capsize=2)
    ax.axvline(0.5, color="0.4", lw=0.8, ls="--")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r[0]} ({r[1]})" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("mean importance rank of the word's points (0.5 = the utterance's middle)")
    ax.set_title("importance by word (occurrences)")
    ax.grid(alpha=0.3)
    _save_png(fig, path)


def plot_controls(rows: list[dict], path: Path) -> None:
    """Each control's mean over utterances with mean +- 1.96 SE and the range (min to max)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.24 * len(rows) + 1.2)))
    y = np.arange(len(rows))
    for i, r in enumerate(rows):
        ax.plot([r["min"], r["max"]], [i, i], color="0.8", lw=3, solid_capstyle="butt")
        err = 1.96 * r["se"] if r["se"] is not None else 0.0
        ax.errorbar(r["mean"], i, xerr=err, fmt="o", ms=4, capsize=2, color="C0")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['metric']} (n={r['n']})" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("value: mean +- 1.96 SE over utterances (grey: min to max)")
    ax.set_title("controls of the evaluation over the corpus (CERs, rates, correlations; all in controls.csv)")
    ax.grid(alpha=0.3)
    _save_png(fig, path)


def utterance_rows(out: Path, utts: list[Utterance], runs: list[RunData], failures: dict) -> list[dict]:
    """One row per utterance of the corpus: status, its run's main numbers, its page."""
    by_id = {r.id: r for r in runs}
    rows = []
    for u in utts:
        r = by_id.get(u.id)
        ev = (r.evaluation if r else None) or {}
        s = r.summary if r else {}
        status = "done" if r else ("failed" if u.id in failures else
                                   ("in progress" if (out / ".partial" / u.id).is_dir() else "not run"))
        page = out / u.id / "report.html"
        rows.append({
            "id": u.id, "path": u.path, "status": status, "iterations": s.get("iterations"), "converged": s.get("converged"),
            "seconds": s.get("seconds"), "clean_text": ev.get("clean_text") or ((r.alignment or {}).get("text") if r else None),
            "keep_important_cer": (ev.get("keep_important") or {}).get("cer_clean"),
            "keep_other_cer": (ev.get("keep_other") or {}).get("cer_clean"), "reversed": ev.get("reversed"),
            "beats_energy": ev.get("beats_energy"), "beats_random": ev.get("beats_random"),
            "importance_vs_energy": ev.get("importance_vs_energy"), "verdict": ev.get("verdict"),
            "error": " ".join(failures.get(u.id, ())) or None,
            "page": f"{u.id}/report.html" if page.is_file() else None,
        })
    return rows


UTTERANCE_COLUMNS = ("id", "path", "status", "iterations", "converged", "seconds", "clean_text", "keep_important_cer",
                     "keep_other_cer", "reversed", "beats_energy", "beats_random", "importance_vs_energy", "verdict",
                     "error", "page")


def read_failures(out: Path) -> dict:
    """failures.csv of a corpus folder as {id: (error type, message)} (empty when there is none)."""
    path = out / FAILURES_FILE
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["id"]: (row["error"], row["message"]) for row in csv.DictReader(f) if set(FAILURE_COLUMNS) <= set(row)}


def write_corpus(out: os.PathLike) -> Path:
    """Write every aggregate (CSV + PNG) and the corpus page of corpus folder ``out``; returns the page's path."""
    from afmask.report.corpus_page import render_corpus_page

    out = Path(out)
    doc, utts = read_corpus(out)
    runs = load_runs(out, utts)
    failures = read_failures(out)
    figures: dict = {}
    urows = utterance_rows(out, utts, runs, failures)
    _write(out / "utterances.csv", _csv(list(UTTERANCE_COLUMNS), [[r[c] for c in UTTERANCE_COLUMNS] for r in urows]))
    notes: list[str] = []
    if runs:
        K = runs[0].rank.shape[0]
        same_k = [r for r in runs if r.rank.shape[0] == K]
        bt = band_table(same_k)
        _write(out / "bands.csv", _csv(["bin", "freq_hz", "mean_rank", "ci_low", "ci_high", "se", "utterances"],
                                       [[k, bt["hz"][k], bt["mean"][k], bt["lo"][k], bt["hi"][k], bt["se"][k], bt["n"]]
                                        for k in range(K)]))
        plot_bands(bt, out / "bands.png")
        figures["bands"] = out / "bands.png"
        bands = _band_columns(K)
        tp = token_profiles(same_k)
        if tp:
            from afmask.model.tokens import TOKENS

            names = [t for t in TOKENS if t in tp]
            prof = np.stack([tp[t]["sum"] / tp[t]["frames"] for t in names])
            _write(out / "tokens.csv", _csv(
                ["token", "frames", "utterances", "mean_rank", *[c for c, _ in bands]],
                [[t, tp[t]["frames"], tp[t]["utterances"], float(p.mean()), *[float(p[sel].mean()) for _, sel in bands]]
                 for t, p in zip(names, prof)]))
            plot_tokens(names, prof, [tp[t]["frames"] for t in names], K, out / "tokens.png")
            figures["tokens"] = out / "tokens.png"
        wp = word_profiles(same_k)
        if wp:
            wrows = []
            for word in sorted(wp):
                occ = np.stack(wp[word]["occ"])
                overall = occ.mean(axis=1)
                se = float(overall.std(ddof=1) / math.sqrt(overall.size)) if overall.size > 1 else None
                wrows.append([word, overall.size, len(wp[word]["utterances"]), float(overall.mean()), se,
                              *[float(occ[:, sel].mean()) for _, sel in bands]])
            _write(out / "words.csv", _csv(["word", "occurrences", "utterances", "mean_rank", "se",
                                            *[c for c, _ in bands]], wrows))
            plot_words(wrows, out / "words.png")
            figures["words"] = out / "words.png"
        else:
            notes.append("no word alignments (.words.json) for the finished utterances: no word table")
        crows = control_table(runs)
        if crows:
            cols = ["metric", "n", "mean", "sd", "se", "ci_low", "ci_high", "min", "median", "max"]
            _write(out / "controls.csv", _csv(cols, [[r[c] for c in cols] for r in crows]))
            shown = plotted_controls(crows)
            if shown:
                plot_controls(shown, out / "controls.png")
                figures["controls"] = out / "controls.png"
        else:
            notes.append("no finished utterance has an evaluation (explain-corpus --no-report): no controls table")
    html = render_corpus_page(out, doc, urows, figures, notes)
    page = out / "report.html"
    _write(page, html.encode("utf-8"))
    return page

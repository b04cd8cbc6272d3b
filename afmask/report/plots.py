"""Plots of a run (PNG, matplotlib): importance map, training curves, deletion/insertion curves, sanity check, comparisons."""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np

from afmask.evaluate.curves import METRICS
from afmask.evaluate.importance import bin_scale
from afmask.features.stft import FFT_SIZE, FRAME_SHIFT, SAMPLE_RATE
from afmask.io.files import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def extent(K: int, T: int) -> list[float]:
    """imshow extent in seconds and Hz for a (K, T) map (frame t at t * 10 ms, bin k at k * 16000/512 Hz)."""
    return [0.0, T * FRAME_SHIFT / SAMPLE_RATE, 0.0, (K - 1) * SAMPLE_RATE / FFT_SIZE]


def _save(fig, path: os.PathLike) -> None:
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")


#: Image columns a map is drawn with at most: the figure is about 1100 pixels wide, so more columns only cost
#: matplotlib's full-resolution RGBA copies (hundreds of MB for an hour of audio).
MAX_COLUMNS = 2048


def display_columns(a: np.ndarray, limit: int = MAX_COLUMNS) -> np.ndarray:
    """``a`` (K, T) with its columns averaged in equal blocks to at most ``limit`` (unchanged if T <= limit)."""
    T = a.shape[1]
    if T <= limit:
        return a
    edges = np.linspace(0, T, limit + 1).round().astype(np.intp)
    return np.add.reduceat(a, edges[:-1], axis=1) / np.diff(edges)


def plot_mask(magnitude: np.ndarray, m: np.ndarray, path: os.PathLike, title: str = "") -> None:
    """Spectrogram (dB) above the noise scale per bin (log10), both in seconds x Hz; small m = important."""
    plt = _pyplot()
    K, T = magnitude.shape
    scale = bin_scale(m)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, constrained_layout=True)
    db = display_columns(20 * np.log10(np.maximum(magnitude, 1e-3)))
    im0 = axes[0].imshow(db, origin="lower", aspect="auto", extent=extent(K, T), cmap="magma",
                         vmin=db.max() - 80, vmax=db.max())
    axes[0].set_ylabel("frequency (Hz)")
    axes[0].set_title("spectrogram |X| (dB)" + (f" - {title}" if title else ""))
    fig.colorbar(im0, ax=axes[0], label="dB")
    logs = display_columns(np.log10(np.maximum(scale, 1e-12)))
    lo, hi = np.percentile(logs, [1, 99])
    im1 = axes[1].imshow(logs, origin="lower", aspect="auto", extent=extent(K, T), cmap="viridis_r", vmin=lo, vmax=hi)
    axes[1].set_ylabel("frequency (Hz)")
    axes[1].set_xlabel("time (s)")
    axes[1].set_title("noise scale per point, log10 (bright = small m = important to the model)")
    fig.colorbar(im1, ax=axes[1], label="log10 m")
    _save(fig, path)
    plt.close(fig)


def figure_png(fig) -> bytes:
    """The figure as PNG bytes (for embedding), closed afterwards."""
    import io

    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def training_figure(history: Sequence[dict], title: str = ""):
    """Figure of the loss terms, gradient norms, and m's mean and variance over iterations."""
    plt = _pyplot()
    it = np.array([r["iteration"] for r in history])
    col = lambda k: np.array([r[k] for r in history], dtype=np.float64)  # noqa: E731
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), constrained_layout=True)
    ax = axes[0, 0]
    for key, label in (("total", "total"), ("f_term", "f: ||pre - cur||^2"), ("reg_term", "regulariser")):
        ax.plot(it, col(key), label=label, lw=0.8)
    ax.set_title("loss terms")
    ax.legend()
    ax = axes[0, 1]
    ax.semilogy(it, col("grad_f_norm"), label="||grad f||", lw=0.8)
    ax.semilogy(it, col("grad_reg_norm"), label="||grad regulariser||", lw=0.8)
    ax.set_title("gradient norms (w.r.t. m)")
    ax.legend()
    ax = axes[1, 0]
    ax.plot(it, col("m_mean"), lw=0.8)
    ax.set_title("mean of m")
    ax.set_xlabel("iteration")
    ax = axes[1, 1]
    ax.plot(it, col("m_var"), lw=0.8)
    ax.set_title("variance of m")
    ax.set_xlabel("iteration")
    if title:
        fig.suptitle(title)
    return fig


def plot_training(history: Sequence[dict], path: os.PathLike, title: str = "") -> None:
    """Loss terms, gradient norms, and m's mean and variance over iterations."""
    plt = _pyplot()
    fig = training_figure(history, title)
    _save(fig, path)
    plt.close(fig)


#: How each ranking is drawn in the curve plots.
_STYLE = {"explanation": dict(color="C0", lw=2.0, ls="-"), "energy": dict(color="C3", lw=1.4, ls="--")}
_METRIC_LABEL = {"cer_clean": "CER vs clean decoding", "cer_transcript": "CER vs transcript", "f": "f = ||pre - cur||^2"}


def _series(curve: dict, metric: str) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in curve[metric]], dtype=np.float64)


def curve_metrics(evaluation: dict) -> list[str]:
    """The metrics an evaluation has values for, in display order."""
    expl = evaluation["curves"]["explanation"]["deletion"]
    return [mt for mt in METRICS if any(v is not None for v in expl[mt])]


def curves_figure(evaluation: dict, title: str = ""):
    """Deletion and insertion curves (one row per metric) of the explanation, energy and the random rankings."""
    plt = _pyplot()
    metrics = curve_metrics(evaluation)
    curves, areas = evaluation["curves"], evaluation["areas"]
    fig, axes = plt.subplots(len(metrics), 2, figsize=(11, 3.0 * len(metrics) + 0.6), squeeze=False, constrained_layout=True)
    randoms = [k for k in curves if k.startswith("random")]
    for row, mt in enumerate(metrics):
        for col, kind in enumerate(("deletion", "insertion")):
            ax = axes[row, col]
            x = np.array(curves["explanation"][kind]["x"], dtype=np.float64)
            if randoms:
                ys = np.array([_series(curves[r][kind], mt) for r in randoms])
                found = [areas[r][kind][mt] for r in randoms if areas[r][kind][mt] is not None]
                with warnings.catch_warnings():  # a point undefined for every seed stays a gap
                    warnings.simplefilter("ignore", RuntimeWarning)
                    lo, hi, mean = np.nanmin(ys, axis=0), np.nanmax(ys, axis=0), np.nanmean(ys, axis=0)
                ax.fill_between(x, lo, hi, color="0.8", lw=0, label=f"random, {len(randoms)} seeds (range)")
                area = f"{np.mean(found):.3f}" if found else "n/a"
                ax.plot(x, mean, color="0.45", lw=1.0, label=f"random mean (AUC {area})")
            for name in ("energy", "explanation"):
                a = areas[name][kind][mt]
                label = ("explanation (importance from m)" if name == "explanation" else "signal energy")
                ax.plot(x, _series(curves[name][kind], mt), label=f"{label} (AUC {'n/a' if a is None else f'{a:.3f}'})",
                        **_STYLE[name])
            what = "removed: the x% most important" if kind == "deletion" else "kept: only the x% most important"
            ax.set_title(f"{kind} - {_METRIC_LABEL[mt]}", fontsize=10)
            ax.set_xlabel(f"x (% of points; {what})")
            ax.set_xlim(0, 100)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def sanity_figure(evaluation: dict):
    """Spearman correlation of each sanity-check level's map with the trained explanation."""
    plt = _pyplot()
    levels = evaluation["sanity"]["levels"]
    fig, ax = plt.subplots(figsize=(7.5, 3.2), constrained_layout=True)
    x = np.arange(len(levels))
    # None: that level's map was constant, so it has no rank correlation (drawn as a gap)
    value = lambda v: np.nan if v is None else v  # noqa: E731
    rho = [value(lv["spearman"]) for lv in levels]
    ax.plot(x, rho, "o-", color="C0", label="vs the run's explanation")
    short = [value(lv["spearman_short"]) for lv in levels]
    ax.plot(x, short, "s--", color="C2", label="vs the trained short re-run")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([lv["label"].replace(" layers random", "\nlayers random") for lv in levels], fontsize=8)
    ax.set_ylabel("Spearman rank correlation")
    finite = [v for v in rho + short if np.isfinite(v)]
    ax.set_ylim(min([-0.1] + [v - 0.05 for v in finite]), 1.0)
    ax.set_title("model randomisation, cascading from the top layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def comparison_figure(runs: Sequence[tuple[str, dict]], metric: str = "cer_clean"):
    """Deletion and insertion curves of several runs' explanations (solid), with each run's energy curve (dotted)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    for i, (label, ev) in enumerate(runs):
        color = f"C{i % 10}"
        for ax, kind in zip(axes, ("deletion", "insertion")):
            c = ev["curves"]["explanation"][kind]
            x = np.array(c["x"], dtype=np.float64)
            ax.plot(x, _series(c, metric), color=color, lw=1.8, label=label)
            ax.plot(x, _series(ev["curves"]["energy"][kind], metric), color=color, lw=0.9, ls=":")
    for ax, kind in zip(axes, ("deletion", "insertion")):
        what = "the x% most important removed" if kind == "deletion" else "only the x% most important kept"
        ax.set_title(f"{kind} - {_METRIC_LABEL[metric]} (dotted: energy ranking)", fontsize=10)
        ax.set_xlabel(f"x (%; {what})")
        ax.set_xlim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


_CONTROL_STYLE = {"most": dict(color="C0", lw=2.0, ls="-", label="most important in every decile"),
                  "least": dict(color="C2", lw=1.6, ls="-", label="least important in every decile")}


def stratified_figure(stratified: dict, metric: str = ""):
    """Energy-stratified deletion/insertion curves (rows: zeroing, noise; columns: deletion, insertion)."""
    plt = _pyplot()
    metric = metric or stratified["metric"]
    modes = list(stratified["modes"])
    kinds = list(stratified["modes"][modes[0]])
    fig, axes = plt.subplots(len(modes), len(kinds), figsize=(5.5 * len(kinds), 3.0 * len(modes) + 0.5), squeeze=False,
                             constrained_layout=True)
    x = 100 * np.array(stratified["x"], dtype=np.float64)
    for r, mode in enumerate(modes):
        for c, kind in enumerate(kinds):
            ax = axes[r, c]
            part = stratified["modes"][mode][kind]
            curves, aucs = part["curves"], part["auc"]
            randoms = [k for k in curves if k.startswith("random")]
            if randoms:
                ys = np.array([_series(curves[k], metric) for k in randoms])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    ax.fill_between(x, np.nanmin(ys, 0), np.nanmax(ys, 0), color="0.85", lw=0)
                    ax.plot(x, np.nanmean(ys, 0), color="0.45", lw=1.0,
                            label=f"random in every decile, {len(randoms)} seeds (AUC {_fmt_auc(part['random_auc'][metric])})")
            for k in curves:
                if k.startswith("shift"):
                    ax.plot(x, _series(curves[k], metric), color="C3", lw=1.0, ls="--",
                            label=f"map rolled by {k[5:]} frames (AUC {_fmt_auc(aucs[k][metric])})")
            for k, style in _CONTROL_STYLE.items():
                style = dict(style)
                label = style.pop("label")
                ax.plot(x, _series(curves[k], metric), label=f"{label} (AUC {_fmt_auc(aucs[k][metric])})", **style)
            how = "zeroed" if mode == "zero" else f"relative noise x{stratified['noise_level']:g}"
            what = "deleted" if kind == "deletion" else "kept (the rest deleted)"
            ax.set_title(f"{kind}, {how} - {_METRIC_LABEL.get(metric, metric)}", fontsize=10)
            ax.set_xlabel(f"x (% of every energy decile {what})")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return fig


def _fmt_auc(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def plausibility_figure(p: dict):
    """Share of rank mass and of the top points inside words: the map, energy, uniform."""
    plt = _pyplot()
    key = next(k for k in p["map"] if k.startswith("top"))
    fig, ax = plt.subplots(figsize=(6.5, 3.0), constrained_layout=True)
    names = ["map", "energy", "uniform"]
    w = 0.38
    xs = np.arange(2)
    for i, n in enumerate(names):
        vals = [p[n]["mass_in_words"], p[n][key]]
        ax.bar(xs + (i - 1) * w / 1.5, vals, width=w / 1.5, label=n, color=["C0", "C3", "0.6"][i])
    ax.set_xticks(xs)
    ax.set_xticklabels(["rank mass inside words", f"top {key[3:]}% points inside words"])
    lo = min(min(p[n]["mass_in_words"], p[n][key]) for n in names)
    ax.set_ylim(max(0.0, lo - 0.1), 1.0)
    ax.set_title("plausibility against the word alignment", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def randomisation_figure(r: dict):
    """Correlation with the trained map per level: raw, after a log-energy fit, within energy deciles."""
    plt = _pyplot()
    levels = r["levels"]
    fig, ax = plt.subplots(figsize=(7.5, 3.2), constrained_layout=True)
    xs = np.arange(len(levels))
    keys = [("raw", "raw"), ("log_energy_fit", "after a log-energy fit"), ("within_deciles", "within energy deciles")]
    for i, (k, label) in enumerate(keys):
        vals = [np.nan if lv[k] is None else lv[k] for lv in levels]
        ax.bar(xs + (i - 1) * 0.27, vals, width=0.27, label=label, color=f"C{i}")
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels([lv["label"].replace(" (ceiling)", "\n(ceiling)").replace(" layers random", "\nlayers random")
                        for lv in levels], fontsize=8)
    ax.set_ylabel("Spearman with the trained map")
    ax.set_title(f"model randomisation ({r['init']} re-draw)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def blind_figure(b: dict):
    """A blind-model test: per bin (or frame), the share of its points in the map's top points, and energy's."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.0), constrained_layout=True)
    prof = b["profile"]
    lo, hi = b["band"] if b.get("band") else b["frames"]
    ax.axvspan(lo - 0.5, hi - 0.5, color="0.88", lw=0, label="blind region")
    ax.plot(prof["map"], color="C0", lw=1.2, label=f"map of the blind model ({100 * b['map_top_share']:.1f}% "
                                                   "of its top points in the region)")
    ax.plot(prof["energy"], color="C3", lw=1.0, ls="--", label=f"energy ({100 * b['energy_top_share']:.1f}%)")
    ax.set_xlabel("input bin" if prof["axis"] == "bin" else "frame")
    ax.set_ylabel(f"share in the top {100 * b['top']:g}%")
    ax.set_xlim(0, len(prof["map"]) - 1)
    how = "exactly blind" if b.get("form", "exact") == "exact" else "blind in its first layer (leaky)"
    ax.set_title(f"ground truth: a model {how} to {b['region']}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_importance(magnitude: np.ndarray, importance: np.ndarray, path: os.PathLike, title: str = "") -> None:
    """Spectrogram (dB) above an importance map (K, T) of any method, drawn by rank (bright = important)."""
    plt = _pyplot()
    K, T = magnitude.shape
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, constrained_layout=True)
    db = 20 * np.log10(np.maximum(magnitude, 1e-3))
    im0 = axes[0].imshow(db, origin="lower", aspect="auto", extent=extent(K, T), cmap="magma", vmin=db.max() - 80, vmax=db.max())
    axes[0].set_ylabel("frequency (Hz)")
    axes[0].set_title("spectrogram |X| (dB)" + (f" - {title}" if title else ""))
    fig.colorbar(im0, ax=axes[0], label="dB")
    # ranks, not values: gradient maps span many decades, and only the order enters the controls
    flat = np.asarray(importance, np.float64).ravel()
    ranks = np.empty(flat.size)
    ranks[np.argsort(flat, kind="stable")] = np.arange(flat.size) / max(flat.size - 1, 1)
    im1 = axes[1].imshow(ranks.reshape(K, T), origin="lower", aspect="auto", extent=extent(K, T), cmap="viridis", vmin=0, vmax=1)
    axes[1].set_ylabel("frequency (Hz)")
    axes[1].set_xlabel("time (s)")
    axes[1].set_title("importance per point, as a rank (bright = important to the model)")
    fig.colorbar(im1, ax=axes[1], label="rank (0 least, 1 most important)")
    _save(fig, path)
    plt.close(fig)

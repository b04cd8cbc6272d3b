"""Several evaluated runs side by side: their curves and verdicts as one HTML page and a CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from afmask.report.html import asset, esc, num, png_img
from afmask.report.plots import comparison_figure, figure_png

#: Columns of the comparison CSV, one row per run.
COLUMNS = (
    "label", "dir", "audio", "mode", "noise", "variant", "regularizer", "lam", "lambda_used", "iterations",
    "metric", "keep_important_cer", "keep_other_cer", "keep_important_f", "keep_other_f", "reversed",
    "gap_explanation", "gap_energy", "gap_random_best", "beats_energy", "beats_random",
    "auc_deletion", "auc_insertion", "auc_deletion_energy", "auc_insertion_energy",
    "sanity_trained_short", "sanity_all_random", "sanity_decorrelates", "verdict",
)


def _labels(runs: Sequence[dict]) -> list[str]:
    labels = []
    for r in runs:
        label = r.get("label") or Path(r["dir"]).name or str(r["dir"])
        base, i = label, 2
        while label in labels:
            label, i = f"{base} ({i})", i + 1
        labels.append(label)
    return labels


def comparison_rows(runs: Sequence[dict]) -> list[dict]:
    """One dict per run with the COLUMNS."""
    rows = []
    for label, r in zip(_labels(runs), runs):
        ev, cfg, summ = r["evaluation"], r["config"], r.get("summary") or {}
        mt = ev["metric"]
        areas = ev["areas"]
        randoms = [v["gap"].get(mt) for k, v in areas.items() if k.startswith("random") and v["gap"].get(mt) is not None]
        levels = (ev.get("sanity") or {}).get("levels") or []
        rows.append({
            "label": label, "dir": str(r["dir"]), "audio": cfg.audio, "mode": cfg.mode, "noise": cfg.noise,
            "variant": cfg.variant, "regularizer": cfg.regularizer, "lam": cfg.lam, "lambda_used": summ.get("lambda"),
            "iterations": summ.get("iterations"), "metric": mt,
            "keep_important_cer": ev["keep_important"].get("cer_clean"), "keep_other_cer": ev["keep_other"].get("cer_clean"),
            "keep_important_f": ev["keep_important"].get("f"), "keep_other_f": ev["keep_other"].get("f"),
            "reversed": ev["reversed"],
            "gap_explanation": areas["explanation"]["gap"].get(mt), "gap_energy": areas["energy"]["gap"].get(mt),
            "gap_random_best": max(randoms) if randoms else None,
            "beats_energy": ev["beats_energy"], "beats_random": ev["beats_random"],
            "auc_deletion": areas["explanation"]["deletion"].get(mt), "auc_insertion": areas["explanation"]["insertion"].get(mt),
            "auc_deletion_energy": areas["energy"]["deletion"].get(mt), "auc_insertion_energy": areas["energy"]["insertion"].get(mt),
            "sanity_trained_short": levels[0]["spearman"] if levels else None,
            "sanity_all_random": levels[-1]["spearman"] if levels else None,
            "sanity_decorrelates": (ev.get("sanity") or {}).get("decorrelates"),
            "verdict": ev["verdict"],
        })
    return rows


def comparison_csv(rows: Sequence[dict]) -> str:
    """The rows as CSV text (empty cells for undefined values)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row[k] is None else (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])) for k in COLUMNS})
    return buf.getvalue()


def render_comparison(runs: Sequence[dict]) -> tuple[str, str]:
    """(HTML page, CSV text) comparing runs, each ``{"dir", "label", "config", "evaluation", "summary"}``."""
    rows = comparison_rows(runs)
    labels = [r["label"] for r in rows]
    evals = [r["evaluation"] for r in runs]
    metrics = ["cer_clean", "f"] if all(e["metric"] == "cer_clean" for e in evals) else ["f"]
    figs = "".join(png_img(figure_png(comparison_figure(list(zip(labels, evals)), mt)), f"curves ({mt})") for mt in metrics)
    yes = lambda v: "n/a" if v is None else ("yes" if v else "<b>no</b>")  # noqa: E731
    trs = []
    for r in rows:
        trs.append(
            f"<tr><td>{esc(r['label'])}</td><td>{esc(r['mode'])}</td><td>{esc(r['noise'])}</td><td>{esc(r['variant'])}</td>"
            f"<td class='num'>{num(r['lambda_used'], 4)}</td><td class='num'>{num(r['iterations'])}</td>"
            f"<td class='num'>{num(r['keep_important_cer'])}</td><td class='num'>{num(r['keep_other_cer'])}</td>"
            f"<td>{'n/a' if r['reversed'] is None else ('<b>REVERSED</b>' if r['reversed'] else 'no')}</td>"
            f"<td class='num'>{num(r['gap_explanation'])}</td><td class='num'>{num(r['gap_energy'])}</td>"
            f"<td class='num'>{num(r['gap_random_best'])}</td><td>{yes(r['beats_energy'])}</td><td>{yes(r['beats_random'])}</td>"
            f"<td class='num'>{num(r['sanity_trained_short'])} &rarr; {num(r['sanity_all_random'])}</td>"
            f"<td class='small'>{esc(r['verdict'])}</td></tr>")
    table = ("<table><tr><th>run</th><th>mode</th><th>noise</th><th>variant</th><th>lambda</th><th>iterations</th>"
             "<th>CER keeping the important half</th><th>CER keeping the other half</th><th>reversed?</th>"
             "<th>gap (del - ins), explanation</th><th>gap, energy</th><th>gap, best random</th><th>beats energy</th>"
             "<th>beats random</th><th>sanity: Spearman trained short &rarr; all random</th><th>verdict</th></tr>"
             + "".join(trs) + "</table>")
    notes = "".join(f"<li><b>{esc(r['label'])}</b>: {esc(ev['energy_note'])}</li>" for r, ev in zip(rows, evals))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>afmask comparison of {len(rows)} runs</title>
<link rel="icon" href="data:,">
<style>
{asset("report.css")}
</style>
</head>
<body>
<h1>afmask comparison of {len(rows)} runs</h1>
<p class="sub">Important = small noise scale m. Gap = AUC(deletion) - AUC(insertion) of the verdict metric
(CER against the clean decoding, or the f-term where the clean decoding is empty); larger is better.</p>
<h2>Verdicts</h2>
{table}
<ul class="small">{notes}</ul>
<h2>Curves</h2>
{figs}
<h2>Runs</h2>
<ul>{''.join(f"<li>{esc(r['label'])}: <code>{esc(r['dir'])}</code> (audio {esc(r['audio'])})</li>" for r in rows)}</ul>
</body>
</html>
"""
    return page, comparison_csv(rows)

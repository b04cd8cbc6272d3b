"""Several evaluated runs side by side: their curves and verdicts as one HTML page and a CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from afmask.report.html import esc, num, page, png_img
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
    doc = page(f"afmask comparison of {len(rows)} runs", f"""<h1>afmask comparison of {len(rows)} runs</h1>
<p class="sub">Important = small noise scale m. Gap = AUC(deletion) - AUC(insertion) of the verdict metric
(CER against the clean decoding, or the f-term where the clean decoding is empty); larger is better.</p>
<h2>Verdicts</h2>
{table}
<ul class="small">{notes}</ul>
<h2>Curves</h2>
{figs}
<h2>Runs</h2>
<ul>{''.join(f"<li>{esc(r['label'])}: <code>{esc(r['dir'])}</code> (audio {esc(r['audio'])})</li>" for r in rows)}</ul>
""")
    return doc, comparison_csv(rows)


# -- attribution methods ranked per control ---------------------------------------------------------------
#: Columns of the method-ranking CSV, one row per folder.
METHOD_COLUMNS = (
    "label", "dir", "method", "audio", "seconds", "metric", "most_random", "least_random", "most_shifted",
    "most_shifted_worst", "random_sd", "stratified_passes", "gap", "gap_energy", "gap_random_best", "beats_energy",
    "tied_share", "top10_in_words", "top10_in_words_energy",
)
#: The controls methods are ranked by: (column, title, larger is better).
RANKED_CONTROLS = (
    ("most_random", "within energy deciles: most-important deletion - random (AUC, larger is better)", True),
    ("least_random", "within energy deciles: least-important deletion - random (AUC, smaller is better)", False),
    ("most_shifted", "within energy deciles: most-important deletion - the map shifted in time (AUC, larger is better)", True),
    ("gap", "global AUC(deletion) - AUC(insertion) (larger is better)", True),
    ("top10_in_words", "share of the top 10% points inside words (larger is better)", True),
    ("tied_share", "share of points at the most common value (smaller is better)", False),
)


def _stratified_row(controls: dict) -> dict:
    """The numbers of evaluate_map's stratified deletion (deletion by zeroing, the verdict metric)."""
    st = controls.get("stratified") or {}
    mt = st.get("metric", "cer_clean")
    dele = ((st.get("modes") or {}).get("zero") or {}).get("deletion")
    if not dele:
        return {"metric": mt}
    p = dele["passes"][mt]
    return {
        "metric": mt, "most_random": dele["diff"]["most-random"][mt], "least_random": dele["diff"]["least-random"][mt],
        "most_shifted": dele["diff"]["most-shifted"][mt], "most_shifted_worst": dele["diff"]["most-shifted_min"][mt],
        "random_sd": dele["random_sd"][mt],
        "stratified_passes": bool(p["beats_random_clearly"] and p["beats_shifted"] and p["least_no_worse_than_random"]),
    }


def method_rows(entries: Sequence[dict]) -> list[dict]:
    """One dict per folder with METHOD_COLUMNS: ``{"dir", "label", "method", "audio", "seconds", "controls"}`` each,
    ``controls`` in the layout of afmask.evaluate.controls.evaluate_map plus ``"global"`` (the gaps)."""
    rows = []
    for label, e in zip(_labels(entries), entries):
        c = e.get("controls") or {}
        row = {k: None for k in METHOD_COLUMNS}
        row.update({"label": label, "dir": str(e["dir"]), "method": e.get("method"), "audio": e.get("audio"),
                    "seconds": e.get("seconds")})
        row.update(_stratified_row(c))
        g = c.get("global") or {}
        gaps = g.get("gap") or {}
        randoms = [v for k, v in gaps.items() if k.startswith("random") and v is not None]
        row.update({"gap": gaps.get("map"), "gap_energy": gaps.get("energy"), "gap_random_best": max(randoms) if randoms else None,
                    "beats_energy": g.get("beats_energy")})
        row["tied_share"] = (c.get("ties") or {}).get("most_common_share")
        pl = (c.get("plausibility") or {})
        row["top10_in_words"] = (pl.get("map") or {}).get("top10_in_words")
        row["top10_in_words_energy"] = (pl.get("energy") or {}).get("top10_in_words")
        rows.append(row)
    return rows


def rank_methods(rows: Sequence[dict]) -> dict:
    """Per control of RANKED_CONTROLS: the labels from best to worst with their values (folders without it left out)."""
    out = {}
    for col, _title, larger in RANKED_CONTROLS:
        have = [(r["label"], r[col]) for r in rows if r.get(col) is not None]
        out[col] = sorted(have, key=lambda lv: -lv[1] if larger else lv[1])
    return out


def render_method_ranking(entries: Sequence[dict]) -> tuple[str, str]:
    """(HTML page, CSV text): attribution methods (and mask runs) side by side, ranked per control."""
    rows = method_rows(entries)
    ranks = rank_methods(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METHOD_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row[k] is None else (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])) for k in METHOD_COLUMNS})
    yes = lambda v: "n/a" if v is None else ("yes" if v else "<b>no</b>")  # noqa: E731
    trs = "".join(
        f"<tr><td>{esc(r['label'])}</td><td>{esc(r['method'])}</td><td class='num'>{num(r['most_random'])}</td>"
        f"<td class='num'>{num(r['least_random'])}</td><td class='num'>{num(r['most_shifted'])}</td>"
        f"<td>{yes(r['stratified_passes'])}</td><td class='num'>{num(r['gap'])}</td><td class='num'>{num(r['gap_energy'])}</td>"
        f"<td>{yes(r['beats_energy'])}</td><td class='num'>{num(r['top10_in_words'])}</td><td class='num'>{num(r['tied_share'])}</td>"
        f"<td class='num'>{num(r['seconds'], 1)}</td></tr>" for r in rows)
    table = ("<table><tr><th>folder</th><th>method</th><th>most - random</th><th>least - random</th><th>most - shifted</th>"
             "<th>stratified control passes</th><th>global gap</th><th>gap, energy</th><th>beats energy</th>"
             "<th>top 10% in words</th><th>tied share</th><th>seconds</th></tr>" + trs + "</table>")
    rank_rows = []
    for col, title, _ in RANKED_CONTROLS:
        order = ranks[col]
        cells = " &gt; ".join(f"{esc(lab)} ({num(v)})" for lab, v in order) if order else "n/a"
        rank_rows.append(f"<tr><td>{esc(title)}</td><td>{cells}</td></tr>")
    ranking = "<table><tr><th>control</th><th>methods, best first</th></tr>" + "".join(rank_rows) + "</table>"
    doc = page(f"afmask: {len(rows)} attributions ranked per control", f"""<h1>afmask: {len(rows)} attributions ranked per control</h1>
<p class="sub">Importance per time-frequency point, larger = more important, from each method. AUC differences are of
the CER against the clean decoding (or the f-term where it is empty), deletion by zeroing inside energy deciles.</p>
<h2>Ranking per control</h2>
{ranking}
<h2>Numbers</h2>
{table}
<h2>Folders</h2>
<ul>{''.join(f"<li>{esc(r['label'])}: <code>{esc(r['dir'])}</code> (audio {esc(r['audio'])})</li>" for r in rows)}</ul>
""")
    return doc, buf.getvalue()

"""The HTML report of one run: one self-contained page, no network (no CDN), assets inlined.

What is inlined: the stylesheet and the viewer script (``afmask/report/assets``),
the spectrogram and importance map as 8-bit base64 arrays for the viewer, the
plots as base64 PNG, and the renditions as ``data:audio/flac`` URIs (or, with
``embed_audio=False``, linked as ``renditions/NAME.flac`` beside report.html).
"""

from __future__ import annotations

import base64
import html
import json
import os
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from afmask.evaluate.curves import METRICS
from afmask.evaluate.importance import importance
from afmask.features.stft import FFT_SIZE, FRAME_SHIFT, SAMPLE_RATE
from afmask.report.plots import (
    blind_figure,
    curves_figure,
    figure_png,
    plausibility_figure,
    randomisation_figure,
    sanity_figure,
    stratified_figure,
    training_figure,
)

#: Level range of the spectrogram in the viewer (dB below the loudest point).
DB_RANGE = 80.0


def asset(name: str) -> str:
    """Text of a file in afmask/report/assets."""
    path = resources.files("afmask.report").joinpath("assets", name)
    if not path.is_file():
        raise FileNotFoundError(f"report asset {name} is missing from afmask/report/assets; reinstall afmask")
    return path.read_text(encoding="utf-8")


def page(title_html: str, body_html: str, script: str = "") -> str:
    """A whole self-contained HTML page: afmask's stylesheet inline, the (escaped) title, the body and a script."""
    tail = f"<script>\n{script}\n</script>\n" if script else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title_html}</title>
<link rel="icon" href="data:,">
<style>
{asset("report.css")}
</style>
</head>
<body>
{body_html}{tail}</body>
</html>
"""


def esc(x) -> str:
    """HTML-escaped text of x."""
    return html.escape("" if x is None else str(x))


def num(v, digits: int = 3) -> str:
    """A number for a table cell ("n/a" for None)."""
    if v is None:
        return "n/a"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(v)
    try:
        return f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return esc(v)


def png_img(png: bytes, alt: str, cls: str = "plot") -> str:
    """An <img> with the PNG inlined."""
    return f'<img class="{cls}" alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _lut(name: str) -> bytes:
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return (np.round(cmap(np.linspace(0, 1, 256))[:, :3] * 255)).astype(np.uint8).tobytes()


def _gradient(name: str, stops: int = 12) -> str:
    import matplotlib

    cmap = matplotlib.colormaps[name]
    cols = [cmap(i / (stops - 1)) for i in range(stops)]
    return "linear-gradient(to right, " + ", ".join(
        f"rgb({int(c[0] * 255)},{int(c[1] * 255)},{int(c[2] * 255)})" for c in cols) + ")"


def viewer_data(magnitude: np.ndarray, m: np.ndarray, words: Sequence[dict] = ()) -> dict:
    """The viewer's data: level (dB, 8 bit) and importance rank percentile (8 bit, 255 = most important), K x T."""
    K, T = magnitude.shape
    db = 20.0 * np.log10(np.maximum(magnitude.astype(np.float64), 1e-3))
    hi = float(db.max())
    lo = hi - DB_RANGE
    spec = np.clip(np.round((db - lo) / DB_RANGE * 255), 0, 255).astype(np.uint8)
    imp = importance(m)
    flat = imp.ravel()
    order = np.argsort(flat, kind="stable")
    pct = np.empty(flat.size)
    pct[order] = np.arange(flat.size) / max(flat.size - 1, 1)  # 0 = least important, 1 = most
    impq = np.round(pct.reshape(imp.shape) * 255).astype(np.uint8)
    b64 = lambda a: base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()  # noqa: E731
    return {
        "K": int(K), "T": int(T), "frame_s": FRAME_SHIFT / SAMPLE_RATE, "bin_hz": SAMPLE_RATE / FFT_SIZE,
        "db_lo": lo, "db_hi": hi, "spec": b64(spec), "imp": b64(impq),
        "lut_spec": base64.b64encode(_lut("magma")).decode(), "lut_imp": base64.b64encode(_lut("viridis")).decode(),
        "words": list(words),
    }


def viewer_html(data: dict) -> str:
    """The viewer element: canvas, controls, colour bar, and its data as an inline JSON script."""
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return f"""
<div class="afmask-viewer" id="viewer">
  <div class="afmask-controls">
    <label>show <select class="afmask-mode">
      <option value="overlay" selected>importance over the spectrogram</option>
      <option value="imp">importance only</option>
      <option value="spec">spectrogram only</option>
      <option value="top">only the top p% most important points</option>
    </select></label>
    <label>importance opacity <input class="afmask-alpha" type="range" min="0" max="100" value="65"></label>
    <label>top p <input class="afmask-topp" type="range" min="1" max="100" value="20"> <span class="afmask-topp-value">20%</span></label>
    <button type="button" class="afmask-zoom-in">zoom in</button>
    <button type="button" class="afmask-zoom-out">zoom out</button>
    <button type="button" class="afmask-reset">reset</button>
  </div>
  <canvas class="afmask-plot" width="1100" height="440"></canvas>
  <div class="afmask-readout">&nbsp;</div>
  <div class="colorbar">importance: <span>least (large m)</span><span class="bar" style="background: {_gradient('viridis')}"></span>
    <span>most (small m)</span> &nbsp; level: <span>{-DB_RANGE:.0f} dB</span><span class="bar" style="background: {_gradient('magma')}"></span><span>0 dB (loudest)</span></div>
  <p class="small">Wheel: zoom time around the pointer (shift + wheel: frequency); drag: pan; double click: reset.
  Colour of the importance map: rank percentile of a point's importance among all points.</p>
  <script type="application/json">{payload}</script>
</div>"""


def _audio_tag(out: Path, fname: str, embed: bool) -> str:
    path = out / "renditions" / fname
    if not path.is_file():
        return f'<span class="small">missing: renditions/{esc(fname)}</span>'
    if embed:
        src = "data:audio/flac;base64," + base64.b64encode(path.read_bytes()).decode()
    else:
        src = "renditions/" + html.escape(fname, quote=True)
    return f'<audio controls preload="metadata" src="{src}"></audio>'


def renditions_html(out: Path, evaluation: dict, embed_audio: bool) -> str:
    """The table of renditions: player, what was removed, decoded text, CERs."""
    rows = []
    has_tr = evaluation.get("transcript") is not None
    for r in evaluation["renditions"]:
        cer_tr = f'<td class="num">{num(r["cer_transcript"])}</td>' if has_tr else ""
        links = " ".join(f'<a href="renditions/{esc(f)}">{esc(f)}</a>' for f in r["files"])
        rows.append(
            f'<tr><td>{_audio_tag(out, r["files"][0], embed_audio)}<div class="small">{links}</div></td>'
            f'<td>{esc(r["description"])}</td><td>{esc(r["kept"])}</td>'
            f'<td class="text">{esc(r["text"])}</td><td class="num">{num(r["cer_clean"])}</td>{cer_tr}'
            f'<td class="num">{num(r["spectrum_cer_clean"])}</td><td class="num">{num(r["f"], 4)}</td></tr>'
        )
    tr_head = "<th>CER vs transcript</th>" if has_tr else ""
    return f"""
<table class="renditions">
<tr><th>listen</th><th>what was removed</th><th>kept</th><th>decoded (from the audio file)</th><th>CER vs clean decoding</th>{tr_head}
<th>CER, spectrum level</th><th>f, spectrum level</th></tr>
{''.join(rows)}
</table>
<p class="small">Decoded: the FLAC as written, read back and run through the features and the model (greedy CTC).
"Spectrum level": the modified magnitudes scored directly, as the curves below (the inverse STFT of a modified
spectrum is not exactly that spectrum when analysed again, so the two can differ). Important = small noise scale m.</p>"""


def areas_html(evaluation: dict) -> str:
    """Table of the areas under the curves per ranking."""
    metrics = [mt for mt in METRICS
               if evaluation["areas"]["explanation"]["deletion"].get(mt) is not None]
    label = {"cer_clean": "CER vs clean", "cer_transcript": "CER vs transcript", "f": "f-term"}
    head = "".join(f"<th>{label[mt]}: AUC deletion</th><th>AUC insertion</th><th>gap (del - ins)</th>" for mt in metrics)
    rows = []
    for name, a in evaluation["areas"].items():
        cells = "".join(f'<td class="num">{num(a["deletion"][mt])}</td><td class="num">{num(a["insertion"][mt])}</td>'
                        f'<td class="num"><b>{num(a["gap"][mt])}</b></td>' for mt in metrics)
        shown = {"explanation": "explanation (importance from m)", "energy": "signal energy (loudest first)"}.get(name, name.replace("random", "random, seed "))
        rows.append(f"<tr><td>{esc(shown)}</td>{cells}</tr>")
    return f"<table class='areas'><tr><th>ranking</th>{head}</tr>{''.join(rows)}</table>"


def _layers_cell(layers: Sequence[str]) -> str:
    if not layers:
        return "none"
    if len(layers) == 1:
        return esc(layers[0])
    return (f"<details><summary>{len(layers)} layers, down to {esc(layers[-1])}</summary>"
            + "<br>".join(esc(x) for x in layers) + "</details>")


def sanity_html(evaluation: dict) -> str:
    """The sanity check's table and plot."""
    s = evaluation.get("sanity")
    if not s:
        return "<p>The sanity check was not run (turned off in the evaluation settings).</p>"
    rows = "".join(
        f"<tr><td>{esc(lv['label'])}</td><td class='num'>{lv['randomised_layers']}</td>"
        f"<td class='num'>{num(lv['spearman'])}</td><td class='num'>{num(lv['spearman_short'])}</td>"
        f"<td class='small'>{_layers_cell(lv['layers'])}</td><td class='num'>{num(lv['seconds'], 1)} s</td></tr>"
        for lv in s["levels"])
    cls = "ok" if s["decorrelates"] else ("neutral" if s["decorrelates"] is None else "bad")
    return f"""
<div class="box {cls}">{esc(s['note'])}</div>
<table><tr><th>level</th><th>layers random</th><th>Spearman vs the run's explanation</th><th>Spearman vs trained short re-run</th>
<th>randomised layers (top first)</th><th>time</th></tr>{rows}</table>
{png_img(figure_png(sanity_figure(evaluation)), "sanity check")}
<p class="small">Each level re-runs the explanation ({s['iterations']} iterations, {s['samples']} noise sample(s) per step, no early stop)
with the top layers' parameters replaced by Gaussian noise of the trained parameters' mean and standard deviation
(Adebayo et al., 2018). A faithful explanation decorrelates from the trained model's as more layers are random.</p>"""


def _passed(verdict: str) -> Optional[bool]:
    return True if verdict.startswith("passes") else (None if verdict.startswith("undecided") else False)


def controls_html(controls: dict) -> str:
    """The controls' verdict lines, tables and plots (energy-stratified deletion, ties, plausibility, randomisation,
    blind-band models)."""
    parts = []
    st = controls.get("stratified")
    if st:
        parts.append("<h3>Energy-stratified deletion and insertion</h3>")
        parts.append("<p>The points are split into 10 deciles of energy |X|&sup2;. Inside every decile the x% the map calls "
                     "most important are deleted, against a random x% of every decile, the x% it calls least important "
                     "and the x% the same map rolled in time by T/3 and 2T/3 calls most important (a wrong map with the "
                     "same structure). Loudness is the same in the compared sets, so a difference is what the map knows "
                     "beyond energy. Deletion by zeroing, and by the method's own perturbation where asked ("
                     f"{esc(st['noise'])}, level {st['noise_level']:g}). AUC: mean score over x in [0, "
                     f"{100 * st['x'][-1]:g}%]; differences are paired (same x, same noise).</p>")
        for mode, kinds in st["modes"].items():
            for kind, part in kinds.items():
                for mt, line in part["verdict"].items():
                    if part["diff"]["most-random"][mt] is not None:
                        parts.append(verdict_box(f"{kind}: {line}", _passed(line)))
        rows = []
        for mode, kinds in st["modes"].items():
            for kind, part in kinds.items():
                for mt in ("cer_clean", "f"):
                    d = part["diff"]
                    if d["most-random"][mt] is None:
                        continue
                    rows.append(f"<tr><td>{esc(mode)}</td><td>{esc(kind)}</td><td>{esc(mt)}</td>"
                                f"<td class='num'>{num(part['auc']['most'][mt])}</td><td class='num'>{num(part['random_auc'][mt])}</td>"
                                f"<td class='num'>{num(part['random_sd'][mt])}</td><td class='num'>{num(part['auc']['least'][mt])}</td>"
                                f"<td class='num'><b>{num(d['most-random'][mt])}</b></td><td class='num'><b>{num(d['least-random'][mt])}</b></td>"
                                f"<td class='num'><b>{num(d['most-shifted'][mt])}</b></td><td class='num'>{num(d['most-shifted_min'][mt])}</td></tr>")
        parts.append("<table><tr><th>deletion by</th><th>kind</th><th>metric</th><th>AUC most</th><th>AUC random (mean)</th>"
                     "<th>random sd</th><th>AUC least</th><th>most - random</th><th>least - random</th>"
                     "<th>most - shifted (mean)</th><th>most - shifted (worst)</th></tr>" + "".join(rows) + "</table>")
        parts.append(png_img(figure_png(stratified_figure(st)), "energy-stratified deletion and insertion"))
    t = controls.get("ties")
    if t:
        parts.append("<h3>Ties</h3>")
        parts.append(verdict_box(t["verdict"], not t["verdict"].startswith("WARNING")))
        parts.append("<table>" + "".join(f"<tr><th>{esc(k)}</th><td class='num'>{esc(num(v) if isinstance(v, float) else v)}</td></tr>"
                                         for k, v in t.items() if k != "verdict") + "</table>")
    p = controls.get("plausibility")
    if p:
        key = next(k for k in p["map"] if k.startswith("top"))
        parts.append("<h3>Plausibility against the word alignment</h3>")
        parts.append(verdict_box(p["verdict"], _passed(p["verdict"])))
        parts.append("<table><tr><th>map</th><th>rank mass inside words</th><th>top points inside words</th>"
                     "<th>mean rank in words</th><th>mean rank in silence</th></tr>" + "".join(
                         f"<tr><td>{n}</td><td class='num'>{num(p[n]['mass_in_words'])}</td><td class='num'>{num(p[n][key])}</td>"
                         f"<td class='num'>{num(p[n]['mean_rank_words'])}</td><td class='num'>{num(p[n]['mean_rank_silence'])}</td></tr>"
                         for n in ("map", "energy", "uniform")) + "</table>")
        parts.append(png_img(figure_png(plausibility_figure(p)), "plausibility"))
    r = controls.get("randomisation")
    if r:
        parts.append("<h3>Model randomisation with energy taken out</h3>")
        parts.append(verdict_box(r["verdict"], r["passes"]))
        parts.append("<table><tr><th>level</th><th>raw</th><th>after log-energy fit</th><th>within deciles</th>"
                     "<th>distinct tokens (clean input)</th><th>time</th></tr>" + "".join(
                         f"<tr><td>{esc(lv['label'])}</td><td class='num'>{num(lv['raw'])}</td>"
                         f"<td class='num'>{num(lv['log_energy_fit'])}</td><td class='num'>{num(lv['within_deciles'])}</td>"
                         f"<td class='num'>{lv['output']['distinct_tokens']}</td><td class='num'>{num(lv['seconds'], 1)} s</td></tr>"
                         for lv in r["levels"]) + "</table>")
        parts.append(png_img(figure_png(randomisation_figure(r)), "randomisation check"))
        parts.append(f"<p class='small'>Each map: {r.get('iterations', '?')} iterations, {r.get('samples', '?')} noise "
                     f"sample(s) per step, no early stop. Layers re-drawn by {esc(r['init'])} (Conv2D and Linear weights "
                     "N(0, 2/fan_in), biases 0), which keeps the random network's output input-dependent. "
                     f"{esc(r['correlation'])}.</p>")
    blinds = [c for k, c in controls.items() if k.startswith("blind ")]
    if blinds:
        parts.append("<h3>Ground truth: models blind to a band</h3>")
        parts.append("<p>Each model is the explained one with its first-layer weights zeroed for the band and its input "
                     "standardised over the other bins only, so that nothing in the band reaches it, not even through "
                     "the global normalisation. It is explained with the run's settings; a right map puts none of its "
                     "most important points in the band.</p>")
        for b in blinds:
            parts.append(verdict_box(b["verdict"], b["passes"]))
            if b.get("profile"):
                parts.append(png_img(figure_png(blind_figure(b)), f"blind model, {b['region']}"))
    return "\n".join(parts)


def settings_html(config, summary: dict, evaluation: Optional[dict]) -> str:
    """The run's settings, its summary and the evaluation's settings."""
    def table(d: dict) -> str:
        return "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(json.dumps(v) if isinstance(v, (dict, list)) else v)}</td></tr>"
                                   for k, v in d.items()) + "</table>"

    parts = ["<h3>run settings (config.json)</h3>", table(config.to_dict())]
    if summary:
        parts += ["<h3>run summary (summary.json)</h3>", table(summary)]
    if evaluation:
        ev = dict(evaluation["settings"])
        ev["forward passes"] = evaluation["forwards"]
        ev["seconds"] = evaluation["seconds"]
        ev["transcript file"] = evaluation.get("transcript_file")
        ev["made from (sha256 of m, features, settings)"] = evaluation.get("inputs")
        parts += ["<h3>evaluation settings</h3>", table(ev)]
    return "\n".join(parts)


def verdict_box(text: str, good: Optional[bool]) -> str:
    """A verdict line in a box coloured by whether it passed (None: neither)."""
    cls = "neutral" if good is None else ("ok" if good else "bad")
    return f'<div class="box {cls}">{esc(text)}</div>'


def render_report(
    out: os.PathLike,
    config,
    m: np.ndarray,
    feats: dict,
    history: Sequence[dict],
    evaluation: Optional[dict],
    summary: Optional[dict] = None,
    embed_audio: bool = True,
) -> str:
    """The whole report page of the run in ``out`` as HTML text."""
    out = Path(out)
    summary = summary or {}
    audio_name = Path(config.audio).name if config.audio else "(unknown audio)"
    title = f"afmask report: {audio_name}, {config.mode} mode"
    words = evaluation.get("words", []) if evaluation else []
    body = [f"<h1>{esc(title)}</h1>"]
    lam = format(summary["lambda"], ".4g") if summary.get("lambda") is not None else esc(config.lam)
    body.append(f"<p class='sub'>model: {esc(config.model or 'n/a')} &middot; noise: {esc(config.noise)} &middot; "
                f"variant: {esc(config.variant)} &middot; regulariser: {esc(config.regularizer)} &middot; "
                f"lambda: {lam} &middot; {len(history)} iterations &middot; "
                f"run folder: <code>{esc(out.resolve())}</code></p>")
    if evaluation:
        body.append("<h2>Verdict</h2>")
        deaf = evaluation.get("hears_nothing")  # a red box: the numbers below are of noise
        body.append(verdict_box(evaluation["verdict"], False if deaf else None if evaluation["reversed"] is None else not evaluation["reversed"]))
        body.append(verdict_box(evaluation["energy_note"], evaluation["beats_energy"]))
        if evaluation.get("sanity"):
            body.append(verdict_box(evaluation["sanity"]["note"], evaluation["sanity"]["decorrelates"]))
        for c in (evaluation.get("controls") or {}).values():
            body.append(verdict_box(c["verdict"], _passed(c["verdict"])))
        tr = evaluation.get("transcript")
        clean_vs_tr = evaluation["curves"]["explanation"]["deletion"]["cer_transcript"][0]
        body.append("<table>"
                    f"<tr><th>clean decoding</th><td class='text'>{esc(evaluation['clean_text']) or '<i>(empty)</i>'}</td></tr>"
                    f"<tr><th>transcript</th><td class='text'>{esc(tr) if tr else '<i>none given</i> ' + esc(evaluation.get('transcript_note', ''))}</td></tr>"
                    + (f"<tr><th>CER of the clean decoding vs the transcript</th><td class='num'>{num(clean_vs_tr)}</td></tr>" if tr else "")
                    + f"<tr><th>importance vs energy (Spearman)</th><td class='num'>{num(evaluation['importance_vs_energy'])}</td></tr>"
                    "</table>")
    else:
        body.append(verdict_box(f"This run has not been evaluated: run `afmask report {out} --model demo` (or --arch A --params P, "
                         "the model the run explained) to compute the renditions, curves and sanity check.", None))
    body.append("<h2>Spectrogram and importance</h2>")
    body.append("<p>Importance of a time-frequency point comes from the learned noise scale m over its (Re, Im) pair: "
                "the bin's noise scale is <code>sqrt((m_re&sup2; + m_im&sup2;) / 2)</code> and importance is minus its log. "
                "<b>Small noise scale m = important</b>: the model's output changes when that point is perturbed.</p>")
    body.append(viewer_html(viewer_data(np.asarray(feats["magnitude"]), m, words)))
    if evaluation:
        body.append("<h2>Renditions</h2>")
        body.append(renditions_html(out, evaluation, embed_audio))
        body.append("<h2>Faithfulness: deletion and insertion curves</h2>")
        body.append("<p>Deletion: the x% most important points are removed (magnitude 0) and the result is scored by the "
                    "model; a good ranking makes the errors rise early (large area). Insertion: only the x% most important "
                    "points are kept; a good ranking keeps the errors low early (small area). The gap AUC(deletion) - "
                    "AUC(insertion) summarises a ranking: larger is better. Baselines: signal energy (loudest points "
                    "first) and random orderings.</p>")
        body.append(png_img(figure_png(curves_figure(evaluation)), "deletion and insertion curves"))
        body.append(areas_html(evaluation))
        body.append("<h2>Sanity check: model randomisation</h2>")
        body.append(sanity_html(evaluation))
        if evaluation.get("controls"):
            body.append("<h2>Controls: what the map shows beyond loudness</h2>")
            body.append(controls_html(evaluation["controls"]))
    body.append("<h2>Training</h2>")
    if history:
        body.append(png_img(figure_png(training_figure(history)), "loss terms, gradient norms, mean and variance of m"))
    else:
        body.append("<p>No iterations logged.</p>")
    body.append("<h2>Settings</h2>")
    body.append(settings_html(config, summary, evaluation))
    return page(f"{esc(title)}", f"""{chr(10).join(body)}
""", script=asset("viewer.js"))

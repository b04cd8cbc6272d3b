"""The report of an attribution folder (``afmask attribute``): its heat map, settings and the controls' verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from afmask.report.html import controls_html, esc, num, page, png_img, verdict_box


def render_attribution_report(out: Path, attribution: dict, config: dict, controls: Optional[dict]) -> str:
    """One self-contained page for an attribution folder: heat map, every control with its verdict and plot, settings."""
    out = Path(out)
    heat = (out / "heatmap.png").read_bytes() if (out / "heatmap.png").is_file() else None
    if controls:
        g = controls.get("global") or {}
        head = verdict_box(f"global deletion/insertion: {g['verdict']}", g.get("beats_energy")) if g.get("verdict") else ""
        verdicts = head + controls_html(controls)
    else:
        verdicts = "<p>No controls yet: <code>afmask report DIR --model demo</code> (or --arch/--params) computes them.</p>"
    settings = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in (attribution.get("settings") or {}).items())
    extras = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in (attribution.get("extras") or {}).items())
    method = attribution.get("method", "?")
    title = f"afmask attribution: {esc(method)} on {esc(Path(config.get('audio') or '?').name)}"
    return page(title, f"""<h1>afmask attribution: {esc(method)}</h1>
<p class="sub">{esc(config.get('audio'))}, model {esc(config.get('model'))}; {num(attribution.get('seconds'), 1)} s.
Importance per time-frequency point, larger = more important to the model.</p>
<h2>Controls</h2>
{verdicts}
<h2>Map</h2>
{png_img(heat, "importance map") if heat else "<p>heatmap.png is missing.</p>"}
<h2>Settings</h2>
<table>{settings}</table>
<h2>Findings</h2>
<table>{extras}</table>
""")

"""The corpus page: one offline HTML page with the corpus's aggregate plots and a link to every utterance's page.

It takes plain data (the corpus record, one row per utterance, the PNG files of the aggregates), so
the report layer knows nothing of how a corpus is run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from afmask.report.html import esc, num, page, png_img

#: The aggregate figures in page order, with their headings and what they show.
FIGURES = (
    ("bands", "Importance by frequency",
     "Each utterance's importance map is ranked within the utterance (1 = its most important point, 0.5 = its "
     "middle); the line is the mean rank of each frequency bin over the utterances, the band a 95% bootstrap "
     "interval over utterances. Table: <a href='bands.csv'>bands.csv</a>."),
    ("tokens", "Importance by output token",
     "Mean rank of each frequency bin over the frames where the clean decoding's greedy CTC path emits each token "
     "(frames in brackets): which bins matter while the model emits each letter. Table: <a href='tokens.csv'>tokens.csv</a>."),
    ("words", "Importance by word",
     "Mean rank of the points of each aligned word (.words.json), with mean &plusmn; 1.96 SE over its occurrences; "
     "above 0.5 the word's region matters more than the utterance's average. Table: <a href='words.csv'>words.csv</a>."),
    ("controls", "Controls of the evaluation",
     "Every number of the utterances' evaluation.json averaged over the corpus: mean &plusmn; 1.96 SE, the grey bar "
     "from the smallest to the largest value. All of them: <a href='controls.csv'>controls.csv</a>."),
)


def _yes(v) -> str:
    return "n/a" if v is None else ("yes" if v else "<b>no</b>")


def render_corpus_page(out: os.PathLike, corpus: Mapping, rows: Sequence[Mapping], figures: Mapping[str, os.PathLike],
                       notes: Sequence[str] = ()) -> str:
    """The corpus page's HTML: ``corpus`` is corpus.json, ``rows`` one dict per utterance (id, status, page, ...),
    ``figures`` the PNG files by name (bands, tokens, words, controls)."""
    out = Path(out)
    done = sum(r["status"] == "done" for r in rows)
    failed = [r for r in rows if r["status"] == "failed"]
    cfg = corpus.get("config") or {}
    title = f"afmask corpus: {out.resolve().name}"
    body = [f"<h1>{esc(title)}</h1>",
            f"<p class='sub'>{len(rows)} utterances: {done} explained, {len(failed)} failed, "
            f"{len(rows) - done - len(failed)} not finished &middot; mode {esc(cfg.get('mode'))}, "
            f"{esc(cfg.get('iterations'))} iterations at most, noise {esc(cfg.get('noise'))} &middot; "
            f"source: <code>{esc(corpus.get('source') or '(a list)')}</code></p>"]
    for note in notes:
        body.append(f"<div class='box neutral'>{esc(note)}</div>")
    for name, heading, text in FIGURES:
        if name in figures and Path(figures[name]).is_file():
            body.append(f"<h2>{esc(heading)}</h2><p>{text}</p>")
            body.append(png_img(Path(figures[name]).read_bytes(), heading))
    body.append("<h2>Utterances</h2><p>Table: <a href='utterances.csv'>utterances.csv</a>.</p>")
    head = ("<tr><th>id</th><th>status</th><th>iterations</th><th>seconds</th><th>clean decoding</th>"
            "<th>CER keeping the important half</th><th>CER keeping the other half</th><th>beats energy</th>"
            "<th>beats random</th></tr>")
    cells = []
    for r in rows:
        label = f"<a href='{esc(r['page'])}'>{esc(r['id'])}</a>" if r.get("page") else esc(r["id"])
        cells.append(f"<tr><td>{label}</td><td>{esc(r['status'])}</td><td class='num'>{num(r.get('iterations'))}</td>"
                     f"<td class='num'>{num(r.get('seconds'), 1)}</td><td class='text'>{esc(r.get('clean_text'))}</td>"
                     f"<td class='num'>{num(r.get('keep_important_cer'))}</td><td class='num'>{num(r.get('keep_other_cer'))}</td>"
                     f"<td>{_yes(r.get('beats_energy'))}</td><td>{_yes(r.get('beats_random'))}</td></tr>")
    body.append(f"<table>{head}{''.join(cells)}</table>")
    if failed:
        body.append("<h2>Failures</h2><p>Also in <a href='failures.csv'>failures.csv</a>; a re-run tries them again.</p>")
        body.append("<table><tr><th>id</th><th>audio</th><th>error</th></tr>" + "".join(
            f"<tr><td>{esc(r['id'])}</td><td><code>{esc(r['path'])}</code></td><td class='text'>{esc(r.get('error'))}</td></tr>"
            for r in failed) + "</table>")
    return page(f"{esc(title)}", f"""{chr(10).join(body)}
""")

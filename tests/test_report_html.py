"""The HTML report and the comparison page: built from a tiny evaluated run, checked as text and in headless Chromium."""

import csv
import html
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from afmask.api import (
    compare_runs,
    evaluate_and_report,
    evaluate_run,
    explain,
    load_run,
    write_report,
)
from afmask.cli import main
from afmask.evaluate import EvaluationSettings
from afmask.io import load_audio, write_audio
from afmask.mask import MaskConfig
from afmask.model import build_network, parse_arch_text, save_params

DEMO = Path(__file__).resolve().parents[1] / "afmask" / "data" / "audio" / "demo.wav"
ARCH = "V -1 1 NFEAT 0\nC2 NFEAT 8 4 1 2 1 -1 -1\nR\nRO 2 0 3 1\nL 8 NLABEL\n"
SETTINGS = dict(percents=(50.0,), random_seeds=1, sanity_iterations=2, sanity_levels=2, batch=16)


def tiny_model(seed=0):
    net = build_network(parse_arch_text(ARCH, 257, 31), np.random.default_rng(seed))
    for i, p in enumerate(net.params()):  # larger weights: a decoding that changes from frame to frame
        from afmask.fl import Variable

        net.setParams(Variable(np.asfortranarray(p.host() * 4), False), i)
    net.eval()
    return net


def make_run(folder: Path, audio: Path, model, **over) -> Path:
    cfg = MaskConfig.preset("default", iterations=6, samples=1, **over)
    explain(audio, folder, model=model, config=cfg, progress=False, model_name="tiny test model")
    return folder


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """1 s of the bundled utterance, with its transcript's first words beside it (utt.txt)."""
    d = tmp_path_factory.mktemp("audio")
    path = d / "utt.wav"
    write_audio(path, load_audio(DEMO)[:16000])
    (d / "utt.txt").write_text("unless to be\n")
    words = json.loads(DEMO.with_suffix(".words.json").read_text())
    words["w"] = [w for w in words["w"] if w["b"] < 1.0]
    (d / "utt.words.json").write_text(json.dumps(words))
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, audio):
    """A tiny explained and evaluated run with its report."""
    model = tiny_model()
    out = make_run(tmp_path_factory.mktemp("run") / "run", audio, model)
    settings = EvaluationSettings(**SETTINGS, control_fractions=(0.05, 0.2), control_seeds=2, randomisation=True,
                                  randomisation_iterations=2, blind_bands=((0, 21),), blind_iterations=3)
    _, path = evaluate_and_report(out, model=model, settings=settings, progress=False)
    assert path == out / "report.html"
    return out


def test_report_is_one_offline_page_with_every_part(run_dir):
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    ev = json.loads((run_dir / "evaluation.json").read_text())
    # offline: nothing fetched from anywhere but the page itself
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.IGNORECASE)
    assert "@import" not in page and "url(http" not in page
    # every rendition has a player with its FLAC inlined, and its decoded text
    assert page.count("<audio controls") == len(ev["renditions"]) == 3
    assert page.count('src="data:audio/flac;base64,') == 3
    for r in ev["renditions"]:
        assert r["name"] in page
    assert "<b>Small noise scale m = important</b>" in page
    # the viewer and its data
    m = re.search(r'<script type="application/json">(.*?)</script>', page, re.DOTALL)
    data = json.loads(m.group(1))
    feats = load_run(run_dir)[2]
    assert (data["K"], data["T"]) == feats["magnitude"].shape
    assert data["frame_s"] == 0.01 and data["bin_hz"] == 31.25
    assert len(data["words"]) >= 1 and data["words"][0]["t"] == "unless"
    # plots: curves, sanity check, training; the controls' stratified curves, plausibility, randomisation, blind band
    assert page.count('src="data:image/png;base64,') == 7
    assert sorted(ev["controls"]) == ["blind 0:21", "plausibility", "randomisation", "stratified", "ties"]
    blind = ev["controls"]["blind 0:21"]
    assert blind["form"] == "exact" and blind["iterations"] == 3 and len(blind["profile"]["map"]) == 257
    assert ev["settings"]["blind_bands"] == [[0, 21]]
    for c in ev["controls"].values():  # every control's verdict line is on the page
        assert html.escape(c["verdict"]) in page
    # verdict, energy comparison, sanity note and settings
    assert ev["verdict"].split(":")[0] in page
    assert "signal energy" in page and "Spearman" in page
    assert "<th>lam</th>" in page and "<th>sanity_iterations</th>" in page
    assert ev["transcript"] == "unless to be"


def test_report_links_audio_beside_it_when_asked(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    path = write_report(copy, embed_audio=False)
    page = path.read_text(encoding="utf-8")
    assert "data:audio/flac" not in page
    srcs = re.findall(r'<audio controls preload="metadata" src="([^"]+)"', page)
    assert len(srcs) == 3 and all((copy / s).is_file() for s in srcs)
    assert path.stat().st_size < (run_dir / "report.html").stat().st_size


def test_report_without_evaluation_says_how_to_get_it(tmp_path, audio, capsys):
    out = make_run(tmp_path / "plain", audio, tiny_model())
    with pytest.raises(FileNotFoundError, match="--model demo"):
        write_report(out)
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no evaluation.json" in err and "--model demo" in err and "--arch" in err
    assert not (out / "report.html").exists()
    assert main(["report", str(out), "--no-evaluation"]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "has not been evaluated" in page and "<audio" not in page


def test_report_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a finished afmask run" in capsys.readouterr().err


def test_cli_report_evaluates_with_the_model_given(tmp_path, audio, capsys):
    model = tiny_model()
    out = make_run(tmp_path / "run", audio, model)
    arch, params = tmp_path / "tiny.arch", tmp_path / "tiny.af"
    arch.write_text(ARCH)
    save_params(model, params)
    rc = main(["report", str(out), "--arch", str(arch), "--params", str(params), "--percent", "30", "--soft-db", "12",
               "--wav", "--no-sanity", "--random-seeds", "1", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "report.html" in text
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["sanity"] is None and ev["settings"]["percents"] == [30.0] and ev["settings"]["soft_db"] == 12.0
    names = sorted(os.listdir(out / "renditions"))
    assert "atten12dB-30pct_most-important_small-m.flac" in names and "zero30pct_least-important_large-m.wav" in names
    assert len(names) == 2 * 5  # clean + 2 zeroed + 2 attenuated, FLAC and WAV
    # the page can be rebuilt later without the model
    os.unlink(out / "report.html")
    assert main(["report", str(out)]) == 0 and (out / "report.html").exists()


def test_compare_runs_side_by_side(run_dir, tmp_path, audio, capsys):
    model = tiny_model()
    other = make_run(tmp_path / "absolute", audio, model, noise="absolute")
    evaluate_run(other, model=model, settings=EvaluationSettings(**{**SETTINGS, "sanity": False}), progress=False)
    html_path, csv_path = compare_runs([run_dir, other], tmp_path / "cmp" / "compare.html", labels=["drop", "absolute"])
    assert csv_path == tmp_path / "cmp" / "compare.csv"
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert [r["label"] for r in rows] == ["drop", "absolute"]
    assert [r["noise"] for r in rows] == ["drop", "absolute"]
    ev = json.loads((run_dir / "evaluation.json").read_text())
    assert float(rows[0]["gap_explanation"]) == pytest.approx(ev["areas"]["explanation"]["gap"][ev["metric"]], rel=1e-5)
    assert rows[0]["verdict"] == ev["verdict"] and rows[1]["sanity_all_random"] == ""
    page = html_path.read_text(encoding="utf-8")
    assert "drop" in page and "absolute" in page and page.count("data:image/png;base64,") >= 1
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.IGNORECASE)
    # the command line; a folder without evaluation is refused by name
    unevaluated = make_run(tmp_path / "raw", audio, model)
    assert main(["compare", str(run_dir), str(unevaluated), "-o", str(tmp_path / "x.html")]) == 2
    assert "raw has no evaluation.json" in capsys.readouterr().err
    assert main(["compare", str(run_dir), str(other), "-o", str(tmp_path / "y.html")]) == 0
    assert (tmp_path / "y.html").exists() and (tmp_path / "y.csv").exists()


# -- in a real browser ---------------------------------------------------------------------------------------
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path():
    path = os.environ.get("AFMASK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; or set AFMASK_CHROMIUM)")
    return path


def test_report_in_headless_chromium(run_dir, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    exe = chromium_path()
    ev = json.loads((run_dir / "evaluation.json").read_text())
    shot = tmp_path / "report.png"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
            problems, requests = [], []
            page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("request", lambda req: requests.append(req.url))
            page.goto((run_dir / "report.html").as_uri())
            page.wait_for_function("window.afmaskViewersReady === true", timeout=15000)
            page.wait_for_function(
                "Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 1 || a.error)", timeout=20000)
            audio = page.evaluate("Array.from(document.querySelectorAll('audio')).map(a => "
                                  "({ready: a.readyState, duration: a.duration, error: a.error && a.error.code}))")
            assert len(audio) == len(ev["renditions"])
            for a in audio:
                assert a["error"] is None and a["ready"] >= 1 and a["duration"] == pytest.approx(1.0, abs=0.02)
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
            assert len(images) == 7 and all(c and w > 0 for c, w, _ in images), images  # 3 + the controls
            # the viewer: drawn, with a real picture (many colours) in the plot area
            drawn = int(page.get_attribute("canvas.afmask-plot", "data-drawn"))
            assert drawn >= 1
            colours = page.evaluate("""() => {
                const c = document.querySelector('canvas.afmask-plot'), ctx = c.getContext('2d');
                const d = ctx.getImageData(80, 40, c.width - 100, c.height - 90).data, seen = new Set();
                for (let i = 0; i < d.length; i += 4 * 7) seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]);
                return seen.size; }""")
            assert colours > 50, colours
            # zoom with the wheel over the plot: the time range shrinks and the canvas is drawn again
            page.locator("canvas.afmask-plot").scroll_into_view_if_needed()  # below the verdict lines of the controls
            box = page.locator("canvas.afmask-plot").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.wheel(0, -400)
            page.wait_for_function(f"Number(document.querySelector('canvas.afmask-plot').dataset.drawn) > {drawn}")
            span = page.evaluate("(() => { const v = document.querySelector('.afmask-viewer').afmaskViewer; return [v.t1 - v.t0, v.T]; })()")
            assert span[0] < span[1]
            assert "t = " in page.inner_text(".afmask-readout") and " Hz" in page.inner_text(".afmask-readout")
            page.dblclick("canvas.afmask-plot")
            assert not problems, problems
            assert all(u.startswith(("file:", "data:")) for u in requests), [u for u in requests if not u.startswith(("file:", "data:"))]
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"report screenshot: {shot}")


def test_sanity_figure_draws_levels_without_a_correlation():
    from afmask.report.plots import sanity_figure

    levels = [{"label": "trained (short re-run)", "spearman": 0.8, "spearman_short": None},
              {"label": "top 1 of 2 layers random", "spearman": 0.7, "spearman_short": 0.75},
              {"label": "all layers random", "spearman": None, "spearman_short": None}]
    fig = sanity_figure({"sanity": {"levels": levels}})
    line = fig.axes[0].lines[0]
    assert np.isnan(line.get_ydata()[2]) and line.get_ydata()[0] == 0.8


def test_report_options_name_the_blind_bands(tmp_path, capsys):
    from afmask.cli import build_parser
    from afmask.cli.report import settings_from_args

    args = build_parser().parse_args(["report", str(tmp_path), "--blind-band", "0:21", "--blind-band", "60:121",
                                      "--blind-iterations", "50"])
    s = settings_from_args(args)
    assert s.blind_bands == ((0, 21), (60, 121)) and s.blind_iterations == 50
    args = build_parser().parse_args(["report", str(tmp_path), "--blind-band", "30:20"])
    with pytest.raises(ValueError, match="blind_bands"):
        settings_from_args(args)


def test_attribution_page_shows_every_control_with_its_verdict_and_plot(run_dir, tmp_path):
    from afmask.report.attribution import render_attribution_report

    controls = json.loads((run_dir / "evaluation.json").read_text())["controls"]
    controls["global"] = {"beats_energy": False,
                          "verdict": "global deletion/insertion gap 0.100, energy 0.200, best random 0.010: does NOT beat energy"}
    page = render_attribution_report(tmp_path, {"method": "saliency", "seconds": 0.1}, {"audio": "a.wav"}, controls)
    for c in controls.values():
        assert html.escape(c["verdict"]) in page
    modes = controls["stratified"]["modes"]
    for kinds in modes.values():  # every mode and kind of the stratified control, not only the main one
        for part in kinds.values():
            assert html.escape(part["verdict"]["cer_clean"]) in page
    # the stratified curves, plausibility, randomisation and blind-band plots (no heat map in this folder)
    assert page.count('src="data:image/png;base64,') == 4
    assert '<div class="box bad">global deletion/insertion' in page

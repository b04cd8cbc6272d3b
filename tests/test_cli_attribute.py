"""`afmask attribute` and `afmask compare` of attribution folders, end to end on a real network and real speech."""

import json

import numpy as np
import pytest

from afmask.cli import main
from afmask.io import demo_audio, load_audio, write_audio


@pytest.fixture()
def linear(shared):
    d = shared / "fixtures" / "cpp_dump"
    return ["--arch", str(d / "linear.arch"), "--params", str(d / "linear_params.af")]


@pytest.fixture()
def clip(tmp_path):
    """The first 1.2 s of the bundled utterance (118 frames), with its word alignment beside it."""
    path = tmp_path / "clip.wav"
    write_audio(path, load_audio(demo_audio())[:19200])
    words = json.loads(demo_audio().with_suffix(".words.json").read_text())
    path.with_suffix(".words.json").write_text(json.dumps(words))
    return path


def test_attribute_writes_the_folder_and_compare_ranks_the_methods(tmp_path, linear, clip, capsys):
    dirs = []
    for method, extra in (("saliency", []), ("ig", ["--n-steps", "4"]), ("rise", ["--n-masks", "8", "--cell", "16,8"])):
        out = tmp_path / method
        rc = main(["attribute", str(clip), "--method", method, "--out", str(out), *linear, "--no-progress", *extra])
        assert rc == 0, capsys.readouterr().err
        printed = capsys.readouterr().out
        assert f"afmask attribute: {method}" in printed and "within energy deciles" in printed
        for name in ("importance.npy", "attribution.json", "config.json", "features.npz", "heatmap.png", "controls.json"):
            assert (out / name).stat().st_size > 0, name
        imp = np.load(out / "importance.npy")
        assert imp.shape == (257, 118) and np.all(np.isfinite(imp))
        controls = json.loads((out / "controls.json").read_text())
        assert controls["method"] == method
        assert {"stratified", "ties", "global", "plausibility"} <= set(controls)
        assert set(controls["global"]["gap"]) >= {"map", "energy", "random0"}
        dirs.append(str(out))
        assert main(["report", str(out)]) == 0  # the page from the folder's files, no model needed
        page = (out / "report.html").read_text()
        assert f"afmask attribution: {method}" in page and "energy-stratified deletion" in page
        if method == "ig":
            assert "completeness" in printed
    page = tmp_path / "cmp.html"
    assert main(["compare", *dirs, "-o", str(page)]) == 0
    html = page.read_text()
    assert "ranked per control" in html and "least-important deletion" in html
    rows = page.with_suffix(".csv").read_text().strip().splitlines()
    assert rows[0].startswith("label,dir,method") and len(rows) == 4
    assert [r.split(",")[2] for r in rows[1:]] == ["saliency", "ig", "rise"]


def test_attribute_refuses_an_option_of_another_method(tmp_path, linear, clip, capsys):
    rc = main(["attribute", str(clip), "--method", "saliency", "--n-masks", "5", "--out", str(tmp_path / "x"), *linear])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--n-masks does not apply to --method saliency" in err and len(err.strip().splitlines()) == 1


def test_report_of_an_attribution_folder_without_controls_says_how_to_make_them(tmp_path, linear, clip, capsys):
    out = tmp_path / "s"
    assert main(["attribute", str(clip), "--method", "saliency", "--out", str(out), *linear, "--no-evaluation"]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    assert "--model demo" in capsys.readouterr().err
    assert main(["report", str(out), "--no-evaluation"]) == 0
    assert "No controls yet" in (out / "report.html").read_text()


def test_attribute_takes_the_extremal_masks_and_their_areas(tmp_path, linear, clip, capsys):
    out = tmp_path / "extremal"
    rc = main(["attribute", str(clip), "--method", "extremal", "--areas", "0.1,0.5", "--iterations", "5", "--out", str(out),
               *linear, "--no-progress", "--no-evaluation"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "attribution.json").read_text())
    assert doc["settings"]["areas"] == [0.1, 0.5] and doc["settings"]["iterations"] == 5
    with pytest.raises(SystemExit) as stop:  # argparse's own one-line usage error
        main(["attribute", str(clip), "--method", "extremal", "--areas", "0.1,2", "--out", str(tmp_path / "y"), *linear])
    assert stop.value.code == 2 and "--areas takes shares in (0, 1)" in capsys.readouterr().err


def test_attribute_averages_mask_restarts(tmp_path, clip, capsys):
    out = tmp_path / "mask2"
    rc = main(["attribute", str(clip), "--method", "mask", "--restarts", "2", "--iterations", "3", "--out", str(out),
               "--model", "demo", "--no-progress", "--no-evaluation"])
    assert rc == 0, capsys.readouterr().err
    att = json.loads((out / "attribution.json").read_text())
    assert att["settings"]["restarts"] == 2 and att["extras"]["restarts"]["seeds"] == [0, 1]
    imp = np.load(out / "importance.npy")
    assert 0 < imp.min() and imp.max() <= 1  # mean percentile ranks
    rc = main(["attribute", str(clip), "--method", "saliency", "--restarts", "2", "--out", str(tmp_path / "s"),
               "--model", "demo"])
    assert rc == 2 and "--restarts does not apply to --method saliency" in capsys.readouterr().err


def test_attribute_deletes_by_the_default_modes_noise_unless_told_another(tmp_path, linear, clip, capsys):
    from afmask.api import evaluate_attribution
    from afmask.model import load_model

    out = tmp_path / "s"
    rc = main(["attribute", str(clip), "--method", "saliency", "--out", str(out), *linear, "--no-progress",
               "--modes", "zero", "noise"])
    assert rc == 0, capsys.readouterr().err
    st = json.loads((out / "controls.json").read_text())["stratified"]
    assert st["noise"].startswith("drop:") and st["noise_level"] == 1.0  # the default mode's noise at its bound
    assert set(st["modes"]) == {"zero", "noise"}
    model = load_model(linear[1], linear[3])
    doc = evaluate_attribution(out, model, modes=("noise",), kinds=("deletion",), progress=False,
                               noise_kind="relative", noise_level=10.0)
    assert doc["stratified"]["noise"].startswith("relative:") and doc["stratified"]["noise_level"] == 10.0
    assert doc["stratified"]["modes"]["noise"]["deletion"] != st["modes"]["noise"]["deletion"]
    with pytest.raises(ValueError, match="noise_kind must be one of relative, attenuate, drop"):
        evaluate_attribution(out, model, noise_kind="absolute", progress=False)
    with pytest.raises(SystemExit) as stop:
        main(["attribute", str(clip), "--method", "saliency", "--out", str(tmp_path / "y"), *linear, "--noise-level", "-1"])
    assert stop.value.code == 2 and "--noise-level takes a finite number > 0" in capsys.readouterr().err

"""`afmask explain` end to end on real speech: the bundled utterance with the bundled demo model (no ../shared needed),
and once on a real flashlight network (the C++ dump's linear model, from ../shared)."""

import json

import numpy as np
import pytest

from afmask.cli import main
from afmask.io import demo_audio


@pytest.fixture()
def linear(shared):
    d = shared / "fixtures" / "cpp_dump"
    return ["--arch", str(d / "linear.arch"), "--params", str(d / "linear_params.af")]


@pytest.fixture()
def demo():
    """The bundled demo model: these tests need nothing beyond the package."""
    return ["--model", "demo"]


def test_explain_writes_the_run_folder_and_resumes(tmp_path, demo, capsys):
    out = tmp_path / "run"
    args = ["explain", str(demo_audio()), "--out", str(out), *demo, "--frames", "100:160", "--samples", "1", "--no-report",
            "--no-progress"]
    assert main(args + ["--iterations", "6"]) == 0
    printed = capsys.readouterr().out
    assert "6 iterations" in printed and "not converged" in printed and "ms/iteration" in printed
    for name in ("m.npy", "m.af", "log.csv", "config.json", "summary.json", "checkpoint.npz", "heatmap.png",
                 "training.png", "features.npz"):
        assert (out / name).stat().st_size > 0, name
    m = np.load(out / "m.npy")
    assert m.shape == (514, 60) and np.all(m > 0)
    config = json.loads((out / "config.json").read_text())
    assert config["mode"] == "default" and config["extra"]["frames"] == [100, 160]
    # the folder holds a run: a second start must say how to continue it
    assert main(args + ["--iterations", "6"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--iterations", "9", "--resume"]) == 0
    assert "9 iterations" in capsys.readouterr().out
    assert len((out / "log.csv").read_text().strip().splitlines()) == 1 + 9


def test_explain_faithful_mode_from_a_config_file(tmp_path, demo, capsys):
    cfg = tmp_path / "settings.toml"
    cfg.write_text('mode = "faithful"\niterations = 4\nlam = 5.0\n')
    out = tmp_path / "faithful"
    rc = main(["explain", str(demo_audio()), "--out", str(out), *demo, "--config", str(cfg), "--frames", "0:80",
               "--lr", "0.002", "--no-report", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert (config["mode"], config["iterations"], config["lam"], config["lr"], config["variant"]) == ("faithful", 4, 5.0, 0.002, "letters")


@pytest.mark.parametrize("extra,message", [
    (["--frames", "10:5"], "frames"),
    (["--lambda", "-3"], "lam"),
    (["--samples", "0"], "samples"),
])
def test_bad_options_are_one_line_errors(tmp_path, demo, capsys, extra, message):
    rc = main(["explain", str(demo_audio()), "--out", str(tmp_path / "x"), *demo, "--no-report", "--no-progress", *extra])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_audio_names_the_file(tmp_path, demo, capsys):
    rc = main(["explain", str(tmp_path / "nope.wav"), "--out", str(tmp_path / "x"), *demo, "--no-report"])
    assert rc == 2 and "nope.wav" in capsys.readouterr().err


def test_explain_ends_with_the_verdict_and_the_report(tmp_path, demo, capsys, monkeypatch):
    import afmask.api
    from afmask.evaluate import EvaluationSettings

    # the evaluation's default settings cost a minute on the demo model; the plumbing is the same with fewer points
    quick = EvaluationSettings(step=25.0, random_seeds=1, sanity_iterations=2, sanity_levels=1)
    full = afmask.api.evaluate_and_report
    monkeypatch.setattr(afmask.api, "evaluate_and_report", lambda out, **kw: full(out, **{**kw, "settings": quick}))
    out = tmp_path / "reported"
    rc = main(["explain", str(demo_audio()), "--out", str(out), *demo, "--frames", "100:160", "--iterations", "5",
               "--samples", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "keeping the" in printed and "signal energy" in printed and "sanity check:" in printed
    assert f"afmask report: wrote {out / 'report.html'}" in printed
    assert (out / "report.html").stat().st_size > 10_000


def test_explain_runs_a_real_flashlight_network(tmp_path, linear, capsys):
    out = tmp_path / "linear"
    rc = main(["explain", str(demo_audio()), "--out", str(out), *linear, "--frames", "100:160", "--iterations", "3",
               "--no-report", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert np.load(out / "m.npy").shape == (514, 60)


def test_validate_explains_an_exactly_blind_model_and_measures_the_leaky_form(tmp_path, demo, capsys):
    common = [str(demo_audio()), *demo, "--blind-band", "60:121", "--iterations", "3", "--samples", "1", "--no-progress"]
    assert main(["validate", "--out", str(tmp_path / "exact"), *common]) == 0
    assert "exactly blind to bins 60..120" in capsys.readouterr().out
    res = json.loads((tmp_path / "exact" / "validation.json").read_text())
    assert res["form"] == "exact" and res["band"] == [60, 121]
    # deleting the band: nothing reaches the exact form (float32 rounding), the leaky form changes its decoding
    assert res["leak"]["blind_f"] < 1e-6 * res["leak"]["leaky_f"] and res["leak"]["leaky_cer_clean"] > 0
    assert main(["validate", "--out", str(tmp_path / "leaky"), *common, "--leaky"]) == 0
    leaky = json.loads((tmp_path / "leaky" / "validation.json").read_text())
    assert leaky["form"] == "leaky" and leaky["leak"]["blind_f"] == leaky["leak"]["leaky_f"]
    assert "leaky blind" in json.loads((tmp_path / "leaky" / "config.json").read_text())["model"]


def test_demo_reports_every_control_unless_quick(tmp_path, monkeypatch, capsys):
    import afmask.cli.report as report

    seen = []
    monkeypatch.setattr(report, "evaluate_and_print", lambda out, model, progress, settings=None: seen.append(settings))
    assert main(["demo", "--out", str(tmp_path / "full"), "--iterations", "2", "--no-progress"]) == 0
    full = seen[-1]
    assert full.randomisation and full.blind_bands == ((0, 21), (60, 121)) and full.blind_iterations == 2
    assert main(["demo", "--out", str(tmp_path / "quick"), "--iterations", "2", "--no-progress", "--quick"]) == 0
    assert not seen[-1].randomisation and seen[-1].blind_bands == ()
    assert "2 iterations" in capsys.readouterr().out

"""Issue 15, points 1-5: bad settings, options, signals, resources and stale evaluations, one case a line.

Every error case must end in one line ``afmask CMD: error: WHAT: why; what to do`` (rc 2) naming the key or
option, with no traceback and no run folder left; the behaviour cases check the correct behaviour. Everything
runs on the demo model and the bundled utterance (no ../shared), on a few frames and iterations.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from afmask.cli import main as _main
from afmask.io import demo_audio
from afmask.mask import MaskConfig, MaskRun
from afmask.mask.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--frames", "0:24", "--iterations", "2", "--no-report", "--no-progress"]

# -- point 4: settings files, one bad value a line: (case id, settings, words the error must hold) ----------------
CONFIG_CASES = [
    ("early_stop-no", {"early_stop": "no"}, ["early_stop", "true or false", "without quotes"]),
    ("early_stop-int", {"early_stop": 1}, ["early_stop", "true or false"]),
    ("early_stop-string-false", {"early_stop": "false"}, ["early_stop", "write false without quotes"]),
    ("iterations-true", {"iterations": True}, ["iterations", "whole number", "got true"]),
    ("iterations-string", {"iterations": "3"}, ["iterations", "write 3 without quotes"]),
    ("iterations-zero", {"iterations": 0}, ["iterations", ">= 1"]),
    ("iterations-negative", {"iterations": -5}, ["iterations", ">= 1"]),
    ("iterations-fraction", {"iterations": 2.5}, ["iterations", "whole number"]),
    ("lr-true", {"lr": True}, ["lr", "got true"]),
    ("lr-fast", {"lr": "fast"}, ["lr", "the string 'fast'"]),
    ("lr-inf", {"lr": float("inf")}, ["lr", "got inf", "finite"]),
    ("lr-nan", {"lr": float("nan")}, ["lr", "got nan"]),
    ("lr-zero", {"lr": 0}, ["lr", "> 0"]),
    ("lr-negative", {"lr": -0.1}, ["lr", "> 0"]),
    ("window-fraction", {"window": 2.5}, ["window", "whole number"]),
    ("window-zero", {"window": 0}, ["window", ">= 1"]),
    ("samples-fraction", {"samples": 2.5}, ["samples", "whole number"]),
    ("samples-zero", {"samples": 0}, ["samples", ">= 1"]),
    ("samples-string", {"samples": "4"}, ["samples", "without quotes"]),
    ("checkpoint_every-fraction", {"checkpoint_every": 1.5}, ["checkpoint_every", "whole number"]),
    ("checkpoint_every-zero", {"checkpoint_every": 0}, ["checkpoint_every", ">= 1"]),
    ("checkpoint_seconds-negative", {"checkpoint_seconds": -1}, ["checkpoint_seconds", ">= 0"]),
    ("checkpoint_seconds-string", {"checkpoint_seconds": "60"}, ["checkpoint_seconds", "without quotes"]),
    ("rtol-negative", {"rtol": -1}, ["rtol", ">= 0"]),
    ("rtol-string", {"rtol": "small"}, ["rtol", "the string 'small'"]),
    ("adam_eps-negative", {"adam_eps": -1}, ["adam_eps", "> 0"]),
    ("adam_eps-zero", {"adam_eps": 0}, ["adam_eps", "> 0"]),
    ("seed-fraction", {"seed": 1.5}, ["seed", "whole number"]),
    ("seed-abc", {"seed": "abc"}, ["seed", "the string 'abc'"]),
    ("seed-negative", {"seed": -1}, ["seed", ">= 0"]),
    ("betas-one", {"betas": [0.9]}, ["betas", "two numbers"]),
    ("betas-one-is-1", {"betas": [0.9, 1.0]}, ["betas[1]", "[0, 1)"]),
    ("betas-string", {"betas": "0.9,0.999"}, ["betas", "two numbers"]),
    ("betas-item-string", {"betas": [0.9, "x"]}, ["betas[1]", "the string 'x'"]),
    ("m_max-big", {"m_max": "big"}, ["m_max", "the string 'big'"]),
    ("m_max-below-m_init", {"m_max": 0.05}, ["m_max", "m_init"]),
    ("m_max-negative", {"m_max": -1}, ["m_max", "> m_init"]),
    ("m_init-zero", {"m_init": 0}, ["m_init", "> 0"]),
    ("m_init-negative", {"m_init": -0.1}, ["m_init", "> 0"]),
    ("lam-inf", {"lam": float("inf")}, ["lam", "got inf"]),
    ("lam-nan", {"lam": float("nan")}, ["lam", "got nan"]),
    ("lam-negative", {"lam": -3}, ["lam", ">= 0"]),
    ("lam-Auto", {"lam": "Auto"}, ["lam", "lower case"]),
    ("lam-ten", {"lam": "ten"}, ["lam", "'auto'"]),
    ("lam-string-number", {"lam": "10"}, ["lam", "write 10 without quotes"]),
    ("lambda_scale-zero", {"lambda_scale": 0}, ["lambda_scale", "> 0"]),
    ("variant-softmax", {"variant": "softmax"}, ["variant", "one of letters, pitfall, posteriors"]),
    ("regularizer-l2", {"regularizer": "l2"}, ["regularizer", "log_norm"]),
    ("parametrization-log", {"parametrization": "log"}, ["parametrization", "exp"]),
    ("optimizer-rmsprop", {"optimizer": "rmsprop"}, ["optimizer", "sgd"]),
    ("noise-gaussian", {"noise": "gaussian"}, ["noise", "absolute"]),
    ("noise-capitalised", {"noise": "Relative"}, ["noise", "did you mean 'relative'"]),
    ("gradient-numeric", {"gradient": "numeric"}, ["gradient", "hand"]),
    ("kernel_path-gpu", {"kernel_path": "gpu"}, ["kernel_path", "cuda"]),
    ("stats-float32", {"stats": "float32"}, ["stats", "arrayfire_cpu"]),
    ("norm_accumulation-float16", {"norm_accumulation": "float16"}, ["norm_accumulation", "float64"]),
    ("mode-fast", {"mode": "fast"}, ["mode", "faithful"]),
    ("mode-number", {"mode": 1}, ["mode", "got 1"]),
    ("patience-zero", {"patience": 0}, ["patience", ">= 1"]),
    ("patience-fraction", {"patience": 1.5}, ["patience", "whole number"]),
    ("extra-number", {"extra": 5}, ["extra", "table"]),
    ("extra-frames-reversed", {"extra": {"frames": [5, 2]}}, ["extra.frames", "start < stop"]),
    ("extra-frames-string", {"extra": {"frames": "0:10"}}, ["extra.frames", "[start, stop]"]),
    ("unknown-colour", {"colour": "red"}, ["colour", "unknown setting"]),
    ("unknown-lambda", {"lambda": 3}, ["lambda", "did you mean 'lam'"]),
    ("unknown-of-wrong-type", {"iteratoins": [1, 2]}, ["iteratoins", "did you mean 'iterations'"]),
    ("audio-number", {"audio": 5}, ["audio", "a string"]),
    ("model-list", {"model": ["demo"]}, ["model", "a string"]),
    ("stats-arrayfire-with-samples", {"stats": "arrayfire_cpu", "samples": 4}, ["stats", "samples=1"]),
]

# -- point 4: settings files that are not settings: (case id, file name, its text, words the error must hold) ------
FILE_CASES = [
    ("json-duplicate-key", "dup.json", '{"lr": 0.1, "lr": 0.2}', ["lr", "given twice"]),
    ("json-list", "list.json", "[1, 2]", ["settings", "table of settings"]),
    ("json-broken", "broken.json", "{not json", ["cannot read config", "not valid JSON"]),
    ("json-empty", "empty.json", "", ["cannot read config", "not valid JSON"]),
    ("toml-broken", "broken.toml", "lr = = 3\n", ["cannot read config", "not valid TOML"]),
    ("toml-early_stop-no", "s.toml", 'early_stop = "no"\n', ["s.toml", "early_stop", "without quotes"]),
    ("toml-iterations-string", "i.toml", 'iterations = "3"\n', ["i.toml", "iterations", "without quotes"]),
    ("toml-m_max-none", "m.toml", 'm_max = "huge"\n', ["m.toml", "m_max", "'none'"]),
    ("yaml", "s.yaml", "lr: 0.1\n", ["s.yaml", "YAML", ".json", ".toml"]),
    ("yml", "s.yml", "lr: 0.1\n", ["s.yml", "YAML"]),
    ("ini", "s.ini", "[run]\nlr=0.1\n", ["s.ini", "unknown settings format", ".json"]),
    ("no-extension", "settings", '{"lr": 0.1}', ["settings", "(no extension)"]),
    ("not-utf8", "latin.json", b'{"audio": "\xe9"}', ["latin.json", "UTF-8"]),
]

# -- points 2, 4, 5: command-line options: (case id, options, words the error must hold) ----------------------------
CLI_CASES = [
    ("opt-iterations-fraction", ["--iterations", "2.5"], ["--iterations", "whole number"]),
    ("opt-iterations-zero", ["--iterations", "0"], ["--iterations", ">= 1"]),
    ("opt-iterations-word", ["--iterations", "abc"], ["--iterations", "the string 'abc'"]),
    ("opt-samples-zero", ["--samples", "0"], ["--samples", ">= 1"]),
    ("opt-samples-fraction", ["--samples", "2.5"], ["--samples", "whole number"]),
    ("opt-lr-inf", ["--lr", "inf"], ["--lr", "got inf"]),
    ("opt-lr-zero", ["--lr", "0"], ["--lr", "> 0"]),
    ("opt-lr-word", ["--lr", "fast"], ["--lr", "the string 'fast'"]),
    ("opt-lambda-inf", ["--lambda", "inf"], ["--lambda", "got inf"]),
    ("opt-lambda-nan", ["--lambda", "nan"], ["--lambda", "got nan"]),
    ("opt-lambda-negative", ["--lambda", "-3"], ["--lambda", ">= 0"]),
    ("opt-lambda-word", ["--lambda", "big"], ["--lambda", "'auto'"]),
    ("opt-seed-fraction", ["--seed", "1.5"], ["--seed", "whole number"]),
    ("opt-seed-word", ["--seed", "abc"], ["--seed", "the string 'abc'"]),
    ("opt-seed-negative", ["--seed", "-1"], ["--seed", ">= 0"]),
    ("opt-checkpoint-seconds-negative", ["--checkpoint-seconds", "-1"], ["--checkpoint-seconds", ">= 0"]),
    ("opt-stats-needs-one-sample", ["--stats", "arrayfire_cpu"], ["--stats", "samples=1", "--samples 1"]),
    ("opt-stats-unknown", ["--stats", "float32"], ["--stats", "invalid choice"]),
    ("opt-mode-unknown", ["--mode", "fast"], ["--mode", "invalid choice"]),
    ("opt-variant-unknown", ["--variant", "softmax"], ["--variant", "invalid choice"]),
    ("opt-frames-reversed", ["--frames", "10:5"], ["frames 10:5", "frames"]),
    ("opt-frames-word", ["--frames", "abc"], ["--frames", "START:STOP"]),
    ("opt-frames-beyond", ["--frames", "0:100000"], ["frames 0:100000", "528 frames"]),
    ("opt-samples-beyond-memory", ["--samples", "1000000"], ["samples 10000", "of memory", "lower --samples", "--frames"]),
    ("opt-arch-without-params", ["--arch", "x.arch"], ["--arch and --params go together"]),
    ("opt-config-missing", ["--config", "nope.json"], ["nope.json", "cannot read config"]),
]


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    """The run's two PNG plots take most of a tiny run's time; test_report_html tests them."""
    import afmask.report as report

    monkeypatch.setattr(report, "plot_mask", lambda *a, **k: None)
    monkeypatch.setattr(report, "plot_training", lambda *a, **k: None)


def main(argv: list) -> int:
    """The command line's exit status, for option errors too (argparse exits with 2)."""
    try:
        return _main(argv)
    except SystemExit as exc:
        return int(exc.code)


def one_line_error(err: str, command: str = "explain") -> str:
    """The single stderr line of a refused command (no traceback)."""
    # warnings about the input (e.g. fewer frames than the receptive field) may come first: one line each
    lines = [line for line in err.strip().splitlines() if line.strip() and not line.startswith(f"afmask {command}: warning: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"afmask {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def explain_argv(out: Path, *extra: str) -> list:
    return ["explain", str(demo_audio()), "--out", str(out), *extra]


def test_the_tables_list_each_case_once():
    ids = [c[0] for c in CONFIG_CASES + FILE_CASES + CLI_CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case,settings,words", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_setting_in_a_config_file(tmp_path, capsys, case, settings, words):
    cfg = tmp_path / "settings.json"
    cfg.write_text(json.dumps(settings))  # inf and nan as JSON's Infinity and NaN, which Python's reader takes
    out = tmp_path / "run"
    assert main(explain_argv(out, "--config", str(cfg), *QUICK)) == 2
    line = one_line_error(capsys.readouterr().err)
    assert str(cfg) in line and "; " in line
    for w in words:
        assert w in line, (w, line)
    assert not out.exists()  # refused before anything was written
    # the same schema refuses the same value from the Python API
    with pytest.raises(ConfigError):
        MaskConfig.from_dict(settings)


@pytest.mark.parametrize("case,name,text,words", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_config_file(tmp_path, capsys, case, name, text, words):
    cfg = tmp_path / name
    cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "run"
    assert main(explain_argv(out, "--config", str(cfg), *QUICK)) == 2
    line = one_line_error(capsys.readouterr().err)
    for w in words:
        assert w in line, (w, line)
    assert not out.exists()


@pytest.mark.parametrize("case,options,words", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_option(tmp_path, capsys, monkeypatch, case, options, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("afmask.mask.resources.available_memory", lambda: 8 * 10**9)  # a machine with 8 GB free
    out = tmp_path / "run"
    argv = explain_argv(out, *QUICK, *options)  # the options given last win over QUICK's
    assert main(argv) == 2
    line = one_line_error(capsys.readouterr().err)
    for w in words:
        assert w in line, (w, line)
    assert not out.exists()


# -- point 4: the schema is the Python API's too --------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,key", [
    ({"iterations": "3"}, "iterations"), ({"lr": True}, "lr"), ({"betas": [0.9]}, "betas"), ({"seed": 1.5}, "seed"),
    ({"early_stop": "no"}, "early_stop"), ({"extra": 5}, "extra"),
])
def test_the_python_api_checks_the_same_schema(kwargs, key):
    with pytest.raises(ConfigError) as err:
        MaskConfig(**kwargs)
    assert err.value.key == key and str(err.value).startswith(f"{key}: ")
    with pytest.raises(ConfigError):
        MaskConfig.preset("faithful", **kwargs)


def test_good_values_are_normalised():
    c = MaskConfig.from_dict({"iterations": 300.0, "lr": 1, "betas": [0.8, 0.9], "m_max": "none", "mode": "default"})
    assert (c.iterations, type(c.iterations), c.lr, type(c.lr), c.betas, c.m_max) == (300, int, 1.0, float, (0.8, 0.9), None)


def test_toml_through_tomli_where_tomllib_is_missing(tmp_path, monkeypatch):
    pytest.importorskip("tomli")
    cfg = tmp_path / "s.toml"
    cfg.write_text('mode = "faithful"\niterations = 4\n')
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as on Python 3.9 and 3.10
    c = MaskConfig.load(cfg)
    assert (c.mode, c.iterations) == ("faithful", 4)
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(ValueError, match="tomli"):
        MaskConfig.load(cfg)


def test_setup_declares_tomli_for_old_pythons():
    assert "tomli" in (ROOT / "setup.py").read_text() and "python_version<'3.11'" in (ROOT / "setup.py").read_text()


# -- point 5: --stats reaches the settings and the features -----------------------------------------------------------
def test_stats_option_takes_effect(tmp_path, capsys, monkeypatch):
    import afmask.api as api

    seen = []
    real = api.features_of
    monkeypatch.setattr(api, "features_of", lambda name, samples, stats="float64": seen.append(stats) or real(name, samples, stats=stats))
    out = tmp_path / "run"
    assert main(explain_argv(out, *QUICK, "--stats", "arrayfire_cpu", "--samples", "1")) == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["stats"] == "arrayfire_cpu"
    assert seen == ["arrayfire_cpu"]


def test_stats_of_a_config_file_stands_without_the_option(tmp_path, capsys):
    cfg = tmp_path / "s.json"
    cfg.write_text(json.dumps({"stats": "arrayfire_cpu", "samples": 1}))
    out = tmp_path / "run"
    assert main(explain_argv(out, "--config", str(cfg), *QUICK)) == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["stats"] == "arrayfire_cpu"


# -- point 3: config.json at the start, checkpoints by time, signals ----------------------------------------------------
def test_config_json_is_written_when_the_run_starts(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    seen = []
    real = MaskRun.step

    def step(self):
        seen.append((out / "config.json").is_file())
        return real(self)

    monkeypatch.setattr(MaskRun, "step", step)
    assert main(explain_argv(out, *QUICK)) == 0, capsys.readouterr().err
    assert seen and all(seen)


@pytest.mark.parametrize("seconds,saves", [(1e-9, 2 + 1), (0, 1)])
def test_checkpoints_every_n_seconds(tmp_path, capsys, monkeypatch, seconds, saves):
    calls = []
    real = MaskRun.save_checkpoint
    monkeypatch.setattr(MaskRun, "save_checkpoint", lambda self: calls.append(self.iteration) or real(self))
    cfg = tmp_path / "s.json"
    cfg.write_text(json.dumps({"checkpoint_seconds": seconds, "checkpoint_every": 1000}))
    assert main(explain_argv(tmp_path / "run", "--config", str(cfg), "--restarts", "1", *QUICK)) == 0, \
        capsys.readouterr().err
    assert len(calls) == saves  # one per iteration (time) or none, plus the final one


def _interrupt_at(monkeypatch, call: int, signum: int, where: str = "data_gradient"):
    """Send ``signum`` to this process during the ``call``-th call of MaskRun.<where> (as Ctrl-C or kill would)."""
    real = getattr(MaskRun, where)
    count = {"n": 0}

    def patched(self, *a, **k):
        count["n"] += self.out is not None  # the run's own steps, not the memory estimate's probes
        if count["n"] == call and self.out is not None:
            signal.raise_signal(signum)
        return real(self, *a, **k)

    monkeypatch.setattr(MaskRun, where, patched)
    return real


SIGNAL_ARGS = ["--frames", "0:24", "--iterations", "6", "--lambda", "0.05", "--no-report", "--no-progress"]


@pytest.fixture()
def whole(tmp_path):
    """A run of SIGNAL_ARGS that was never stopped."""
    out = tmp_path / "whole"
    assert main(explain_argv(out, *SIGNAL_ARGS)) == 0
    return out


@pytest.mark.parametrize("signum,rc,where", [
    (signal.SIGINT, 130, "data_gradient"), (signal.SIGTERM, 143, "data_gradient"), (signal.SIGINT, 130, "_update"),
])
def test_a_signal_writes_a_checkpoint_and_says_how_to_resume(tmp_path, capsys, monkeypatch, whole, signum, rc, where):
    """Stopped mid-step (in the gradient, or in the update that the handler lets finish), the resumed run is
    bit-identical to one that was never stopped."""
    args = SIGNAL_ARGS
    out = tmp_path / "stopped"
    real = _interrupt_at(monkeypatch, 4, signum, where)
    assert main(explain_argv(out, *args)) == rc
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"interrupted by {signal.Signals(signum).name}" in line and "checkpoint written to" in line
    assert line.endswith("--resume") and str(out) in line
    assert (out / "checkpoint.npz").is_file() and (out / "config.json").is_file() and not (out / "m.npy").exists()
    stopped_at = 3 if where == "data_gradient" else 4  # the update in progress is finished before stopping
    assert len((out / "log.csv").read_text().splitlines()) == 1 + stopped_at
    # the report of an unfinished run says how to continue it
    assert main(["report", str(out)]) == 2
    assert "--resume" in one_line_error(capsys.readouterr().err, "report")
    monkeypatch.setattr(MaskRun, where, real)
    assert main(explain_argv(out, *args, "--resume")) == 0
    np.testing.assert_array_equal(np.load(out / "m.npy"), np.load(whole / "m.npy"))


def test_a_signal_before_the_first_iteration_says_there_is_nothing_to_resume(tmp_path, capsys, monkeypatch):
    _interrupt_at(monkeypatch, 1, signal.SIGINT, "choose_lambda")
    assert main(explain_argv(tmp_path / "run", *QUICK)) == 130
    assert "nothing to resume from" in capsys.readouterr().err


def test_ctrl_c_of_a_real_process(tmp_path):
    """The whole path in a child process: SIGINT while it iterates, rc 130, one line, a checkpoint."""
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "afmask", *explain_argv(out, "--frames", "0:24", "--iterations",
                                                                          "1000000", "--checkpoint-seconds", "0.2",
                                                                          "--no-report", "--no-progress")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.monotonic() + 120
        while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert (out / "checkpoint.npz").exists(), proc.communicate(timeout=5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith("--resume")


# -- point 2: the resource estimate ----------------------------------------------------------------------------------------
def test_memory_estimate_refuses_before_allocating_and_says_what_to_lower(tmp_path):
    from afmask.features import features
    from afmask.io import load_audio
    from afmask.mask.resources import ResourceError, available_memory, check_resources, estimate_memory
    from afmask.model import demo_model

    fft = features(load_audio(demo_audio()))["fft"][:, :100]
    model = demo_model()
    cfg = MaskConfig.preset("default", samples=8)
    est = estimate_memory(fft, model, cfg)
    assert est is not None and est.for_shape(100, 16) > est.for_shape(100, 8) > est.for_shape(50, 8) > 0
    free = available_memory()
    assert free is None or free > 0
    info = check_resources(fft, model, cfg, tmp_path / "run", available=est.bytes * 2)
    assert info["memory_bytes"] == pytest.approx(est.bytes, rel=0.05)  # traced peaks vary a little
    with pytest.raises(ResourceError, match=r"samples 8 over 100 frames.*lower --samples \(at most about [1-7] fit\)"):
        check_resources(fft, model, cfg, tmp_path / "run", available=est.bytes // 2)
    assert not (tmp_path / "run").exists()


def test_a_long_run_says_how_long_it_will_take(tmp_path, capsys, monkeypatch):
    import afmask.mask.run as run_module

    monkeypatch.setattr(run_module, "LONG_RUN_SECONDS", 1e-6)
    assert main(explain_argv(tmp_path / "run", "--frames", "0:24", "--iterations", "5", "--no-report",
                             "--no-progress")) == 0
    err = capsys.readouterr().err
    assert "this run will take about" in err and "--iterations" in err and "--frames" in err
    summary_seen = [line for line in err.splitlines() if "will take" in line]
    assert len(summary_seen) == 1  # said once


# -- point 1: no report mixes two runs -----------------------------------------------------------------------------------
EVAL_OPTIONS = ["--percent", "50", "--step", "50", "--random-seeds", "1", "--no-sanity", "--no-progress"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny run of the demo model, evaluated, with its report."""
    out = tmp_path_factory.mktemp("evaluated") / "run"
    assert main(explain_argv(out, "--frames", "0:24", "--iterations", "3", "--no-report", "--no-progress")) == 0
    assert main(["report", str(out), "--model", "demo", *EVAL_OPTIONS]) == 0
    assert (out / "evaluation.json").is_file() and (out / "renditions").is_dir() and (out / "report.html").is_file()
    return out


@pytest.fixture()
def run_copy(evaluated, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(evaluated, dst)
    return dst


def test_the_evaluation_records_what_it_was_made_from(run_copy):
    from afmask.api import load_run
    from afmask.evaluate.evaluation import run_digests

    doc = json.loads((run_copy / "evaluation.json").read_text())
    config, m, feats, _ = load_run(run_copy)
    assert doc["format"] == 2 and doc["inputs"] == run_digests(config, m, feats)
    assert doc["inputs"]["m"] in (run_copy / "report.html").read_text()


def test_explain_again_removes_the_old_evaluation(run_copy, capsys):
    os.unlink(run_copy / "checkpoint.npz")
    assert main(explain_argv(run_copy, "--frames", "0:24", "--iterations", "2", "--seed", "5", *QUICK[4:])) == 0
    for name in ("evaluation.json", "curves.csv", "renditions", "report.html"):
        assert not (run_copy / name).exists(), name
    capsys.readouterr()
    assert main(["report", str(run_copy)]) == 2
    assert "no evaluation.json" in one_line_error(capsys.readouterr().err, "report")


def test_resume_removes_the_old_evaluation(run_copy, capsys):
    assert main(explain_argv(run_copy, "--frames", "0:24", "--iterations", "4", "--resume", *QUICK[4:])) == 0
    assert not (run_copy / "evaluation.json").exists() and not (run_copy / "renditions").exists()


@pytest.mark.parametrize("change,named", [
    ("m", "m.npy"), ("features", "features.npz"), ("settings", "settings (config.json)"),
])
def test_report_refuses_an_evaluation_of_another_run(run_copy, capsys, change, named):
    if change == "m":
        m = np.load(run_copy / "m.npy")
        np.save(run_copy / "m.npy", m[:, ::-1].copy())
    elif change == "features":
        with np.load(run_copy / "features.npz") as z:
            feats = {k: z[k] for k in z.files}
        feats["magnitude"] = feats["magnitude"] * 2
        np.savez(run_copy / "features.npz", **feats)
    else:
        cfg = json.loads((run_copy / "config.json").read_text())
        cfg["seed"] = 7
        (run_copy / "config.json").write_text(json.dumps(cfg))
    assert main(["report", str(run_copy)]) == 2
    line = one_line_error(capsys.readouterr().err, "report")
    assert f"made from another {named}" in line and "--model demo" in line
    assert main(["compare", str(run_copy), "-o", str(run_copy.parent / "c.html")]) == 2
    assert named in one_line_error(capsys.readouterr().err, "compare")
    if change == "m":  # with the model, the report evaluates again and then shows the new verdict
        assert main(["report", str(run_copy), "--model", "demo", *EVAL_OPTIONS]) == 0
        assert main(["report", str(run_copy)]) == 0


def test_a_training_only_report_drops_a_stale_evaluation(run_copy, capsys):
    np.save(run_copy / "m.npy", np.load(run_copy / "m.npy") * 2)
    assert main(["report", str(run_copy), "--no-evaluation"]) == 0
    page = (run_copy / "report.html").read_text()
    assert json.loads((run_copy / "evaluation.json").read_text())["verdict"] not in page


@pytest.mark.parametrize("shape", [(514, 10), (10, 24), (514,), (514, 24, 1)])
def test_m_of_the_wrong_shape_names_the_file(run_copy, capsys, shape):
    np.save(run_copy / "m.npy", np.ones(shape, np.float32))
    for argv in (["report", str(run_copy)], ["report", str(run_copy), "--model", "demo", *EVAL_OPTIONS]):
        assert main(argv) == 2
        line = one_line_error(capsys.readouterr().err, "report")
        assert "m.npy" in line and "shape" in line


def test_m_with_nan_names_the_file(run_copy, capsys):
    m = np.load(run_copy / "m.npy")
    m[0, 0] = np.nan
    np.save(run_copy / "m.npy", m)
    assert main(["report", str(run_copy)]) == 2
    assert "m.npy: holds NaN" in one_line_error(capsys.readouterr().err, "report")


def test_an_evaluation_of_the_old_format_is_refused(run_copy, capsys):
    doc = json.loads((run_copy / "evaluation.json").read_text())
    doc["format"] = 1
    del doc["inputs"]
    (run_copy / "evaluation.json").write_text(json.dumps(doc))
    assert main(["report", str(run_copy)]) == 2
    assert "evaluate the run again" in one_line_error(capsys.readouterr().err, "report")


# -- point 4 (lr 1e6): a too large step says so, not "use a positive parametrisation" --------------------------------------
def test_a_huge_learning_rate_says_to_lower_it(tmp_path, capsys):
    rc = main(explain_argv(tmp_path / "run", "--frames", "0:24", "--iterations", "5", "--lr", "1e6", "--no-report",
                           "--no-progress"))
    line = one_line_error(capsys.readouterr().err)
    assert rc == 2 and "lower the learning rate" in line and "positive parametrisation" not in line and "lr 1e+06" in line


def test_a_run_folder_beyond_the_free_disk_is_refused(tmp_path, capsys, monkeypatch):
    import collections

    import afmask.mask.resources as res

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(res.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    out = tmp_path / "run"
    assert main(explain_argv(out, *QUICK)) == 2
    line = one_line_error(capsys.readouterr().err)
    assert str(out) in line and "of disk" in line and "--frames" in line and not out.exists()


def test_resume_with_other_settings_is_refused_and_keeps_the_results(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(explain_argv(out, *QUICK)) == 0
    before = (out / "m.npy").read_bytes()
    assert main(explain_argv(out, *QUICK, "--lr", "0.5", "--resume")) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "settings differ" in line and "lr" in line
    assert (out / "m.npy").read_bytes() == before  # a refused resume removes nothing

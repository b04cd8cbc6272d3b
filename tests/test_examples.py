"""The examples run: the note's loop ported line by line agrees with faithful mode."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_experiment_agrees_with_faithful_mode(shared, capsys):
    d = shared / "fixtures" / "cpp_dump"
    rc = load("seed_experiment").main(["--arch", str(d / "linear.arch"), "--params", str(d / "linear_params.af"), "--iterations", "8"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "agree" in out and "DISAGREE" not in out

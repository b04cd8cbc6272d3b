"""A run with restarts: the other seeds' runs in DIR/restarts, the map (their mean percentile ranks) in
DIR/importance.npy, used by the evaluation and resumable like a single run."""

import json

import numpy as np
import pytest

from afmask.api import IMPORTANCE_FILE, RESTARTS_DIR, load_run
from afmask.cli import main
from afmask.io import demo_audio
from afmask.mask import MaskConfig
from afmask.mask.importance import importance, mean_rank

ARGS = ["--frames", "0:40", "--iterations", "4", "--restarts", "2", "--no-progress"]


def _explain(out, *extra):
    return main(["explain", str(demo_audio()), "--out", str(out), *ARGS, *extra])


def _map_of(folder, m_max=1.0):
    tb = folder / "tiebreak.npy"
    return importance(np.load(folder / "m.npy"), np.load(tb) if tb.exists() else None, m_max)


def test_restarts_write_each_seed_and_their_mean_map(tmp_path, capsys):
    out = tmp_path / "run"
    assert _explain(out, "--no-report") == 0, capsys.readouterr().err
    sub = out / RESTARTS_DIR / "seed-1"
    assert (sub / "m.npy").is_file() and json.loads((sub / "config.json").read_text())["seed"] == 1
    assert json.loads((out / "config.json").read_text())["restarts"] == 2
    want = mean_rank([_map_of(out), _map_of(sub)])
    np.testing.assert_array_equal(np.load(out / IMPORTANCE_FILE), want)
    assert not np.array_equal(np.load(out / "m.npy"), np.load(sub / "m.npy"))  # two seeds, two runs
    config, m, feats, _ = load_run(out)
    np.testing.assert_array_equal(feats["importance"], want)
    # the evaluation ranks by the mean map: another map in importance.npy changes what it measures
    from afmask.evaluate.evaluation import EvaluationSettings, evaluate, run_digests
    from afmask.model import demo_model

    quick = EvaluationSettings(random_seeds=1, sanity=False, controls=False, step=25.0)
    mine = evaluate(config, m, feats, demo_model(), quick, progress=False)
    flipped = evaluate(config, m, {**feats, "importance": -want}, demo_model(), quick, progress=False)
    assert mine.areas != flipped.areas
    assert run_digests(config, m, feats)["m"] != run_digests(config, m, {**feats, "importance": -want})["m"]
    # resumed, the finished runs are read back, not run again, and give the same map
    assert _explain(out, "--no-report", "--resume") == 0, capsys.readouterr().err
    np.testing.assert_array_equal(np.load(out / IMPORTANCE_FILE), want)


def test_a_run_with_restarts_without_its_map_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert _explain(out, "--no-report") == 0, capsys.readouterr().err
    (out / IMPORTANCE_FILE).unlink()
    with pytest.raises(Exception, match="importance.npy"):
        load_run(out)


def test_restarts_is_a_checked_setting():
    assert MaskConfig.preset("faithful").restarts == 1
    with pytest.raises(ValueError, match="restarts"):
        MaskConfig.preset("default", restarts=0)

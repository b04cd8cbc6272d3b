"""What runs on a Dask worker: the model, loaded once per worker (a WorkerPlugin), and one utterance's task.

The task builds the utterance's run folder in ``DIR/.partial/<id>/`` with :func:`afmask.api.explain`
(resumable from its checkpoints), evaluates and reports it, then moves it to ``DIR/<id>/`` in one
rename: a run folder under its id is always finished. The workers must see DIR at the same path
(one machine, or a shared file system).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Optional

from distributed.diagnostics.plugin import WorkerPlugin

from afmask.backend import threads

#: Where unfinished run folders are built, inside the corpus folder.
PARTIAL = ".partial"
#: The mark, inside a partial run folder, that its explanation finished (what remains is evaluation and report).
EXPLAINED = ".explained"
#: The clean decoding's greedy CTC path, per output frame, in each run folder.
ALIGNMENT_FILE = "alignment.json"


def model_spec(arch: Optional[str] = None, params: Optional[str] = None) -> dict:
    """The JSON-able description of a model that workers load: the demo model, or an arch and its weights."""
    if bool(arch) != bool(params):
        raise ValueError("--arch and --params go together: give both, or neither for the demo model")
    if arch:
        for flag, p in (("--arch", arch), ("--params", params)):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{p}: no such file ({flag})")
        return {"arch": os.path.abspath(arch), "params": os.path.abspath(params)}
    return {"demo": True}


def load_model_spec(spec: dict):
    """The network a model spec names."""
    from afmask.model import demo_model, load_model

    if spec.get("arch"):
        return load_model(spec["arch"], spec["params"])
    return demo_model()


def model_name(spec: dict) -> str:
    """The model's name as run folders record it (as ``afmask explain`` does)."""
    return f"{spec['arch']} + {spec['params']}" if spec.get("arch") else "demo"


class ModelPlugin(WorkerPlugin):
    """Loads the model once when a worker starts (or joins later); tasks take it from the worker's plugins."""

    def __init__(self, spec: dict):
        self.spec = dict(spec)
        digest = hashlib.sha1(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()[:12]
        self.name = f"afmask-model-{digest}"
        self.model = None

    def setup(self, worker) -> None:
        """Load the model on ``worker``."""
        self.model = load_model_spec(self.spec)

    def teardown(self, worker) -> None:
        """Drop the model."""
        self.model = None


def worker_model(plugin_name: str, spec: dict):
    """The model of this worker's plugin ``plugin_name`` (loaded here once if the plugin is missing, as without Dask)."""
    try:
        from distributed import get_worker

        plugin = get_worker().plugins.get(plugin_name)
    except ValueError:  # not on a worker
        plugin = None
    if plugin is None:
        plugin = _LOCAL.get(plugin_name)
        if plugin is None:
            plugin = _LOCAL[plugin_name] = ModelPlugin(spec)
            plugin.setup(None)
    if plugin.model is None:
        plugin.setup(None)
    return plugin.model


_LOCAL: dict = {}


def write_alignment(run_dir: Path, model) -> dict:
    """The greedy CTC path of the clean decoding, per output frame, with the frame counts; written to ALIGNMENT_FILE."""
    import numpy as np

    from afmask.api import FEATURES_FILE
    from afmask.evaluate import normalise
    from afmask.io.files import atomic_write
    from afmask.mask import MaskConfig
    from afmask.model import forward
    from afmask.model.decode import greedy_decode, greedy_path

    with open(run_dir / "config.json", encoding="utf-8") as f:
        config = MaskConfig.from_dict(json.load(f))
    with np.load(run_dir / FEATURES_FILE) as z:
        mag = z["magnitude"]
    emissions = forward(model, normalise(mag, config.stats))
    if emissions.ndim == 1:
        emissions = emissions[:, None]
    doc = {"path": [int(t) for t in greedy_path(emissions)], "text": greedy_decode(emissions),
           "input_frames": int(mag.shape[1]), "output_frames": int(emissions.shape[1])}
    with atomic_write(run_dir / ALIGNMENT_FILE) as f:
        f.write(json.dumps(doc).encode())
    return doc


def explain_utterance(
    utt: dict,
    out: str,
    config: dict,
    spec: dict,
    plugin_name: str,
    evaluation: Optional[dict] = None,
    frames: Optional[tuple] = None,
    blas_threads: int = 1,
) -> dict:
    """One utterance's whole run folder (explain, alignment, evaluation and report) in DIR/<id>/; returns its summary.

    ``utt``: an Utterance's dict; ``config``: MaskConfig settings (the utterance's seed overrides them);
    ``evaluation``: EvaluationSettings fields, or None for no evaluation and report.
    """
    try:
        return _explain_utterance(utt, out, config, spec, plugin_name, evaluation, frames, blas_threads)
    except Exception as exc:
        # afmask's own errors take more than a message to build, so they do not unpickle on the client
        raise UtteranceError(f"{type(exc).__name__}: {exc}") from None


class UtteranceError(RuntimeError):
    """An utterance that could not be explained; the message names the original error's type."""


def _explain_utterance(utt, out, config, spec, plugin_name, evaluation, frames, blas_threads) -> dict:
    from afmask.api import evaluate_and_report, explain
    from afmask.evaluate import EvaluationSettings
    from afmask.io.files import atomic_write
    from afmask.mask import MaskConfig

    t0 = time.perf_counter()
    out_dir = Path(out)
    final = out_dir / utt["id"]
    if final.is_dir():
        return {"id": utt["id"], "status": "skipped", "seconds": 0.0}
    stage = out_dir / PARTIAL / utt["id"]
    stage.mkdir(parents=True, exist_ok=True)
    cfg = MaskConfig.from_dict(config)
    if utt.get("seed") is not None:
        cfg = cfg.replace(seed=int(utt["seed"]))
    model = worker_model(plugin_name, spec)
    resumed = (stage / "checkpoint.npz").exists()
    # afmask's own thread control (afmask.backend.threads), fixed for the task: no measuring, so workers x
    # threads stay within the cores the cluster was sized for
    threads.configure(blas_threads)
    if not (stage / EXPLAINED).exists():
        explain(utt["path"], stage, model=model, config=cfg, resume=True, progress=False, frames=frames,
                model_name=model_name(spec))
        write_alignment(stage, model)
        (stage / EXPLAINED).touch()
    if evaluation is not None:
        for leftover in stage.glob(".evaluation.*"):  # an evaluation killed half-way leaves its staging folder
            shutil.rmtree(leftover, ignore_errors=True)
        transcript = None
        if utt.get("transcript"):
            transcript = stage / "transcript.txt"
            with atomic_write(transcript) as f:
                f.write(utt["transcript"].strip().encode("utf-8"))
        settings = EvaluationSettings(**{k: (tuple(v) if k == "percents" else v) for k, v in evaluation.items()})
        evaluate_and_report(stage, model=model, progress=False, settings=settings, transcript=transcript)
    (stage / EXPLAINED).unlink()
    with open(stage / "summary.json", encoding="utf-8") as f:
        summary = json.load(f)
    try:
        os.replace(stage, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(stage, ignore_errors=True)  # another run of the same corpus finished it first
    return {"id": utt["id"], "status": "done", "seconds": time.perf_counter() - t0, "resumed": resumed,
            "iterations": summary.get("iterations"), "converged": summary.get("converged")}

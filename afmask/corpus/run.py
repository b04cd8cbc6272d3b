"""Explain a corpus on Dask: one task per utterance, a LocalCluster by default, failures recorded, resumable.

Dask does the scheduling, the retries (``retries=``), the re-scheduling of tasks whose worker died and
the dashboard; afmask only decides the cluster's shape, submits one task per unfinished utterance and
follows them with one progress bar.
"""

from __future__ import annotations

import csv
import io as _io
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from afmask.corpus.manifest import Utterance, read_list
from afmask.corpus.worker import PARTIAL, ModelPlugin, explain_utterance, model_spec
from afmask.io.files import atomic_write
from afmask.mask import MaskConfig

#: The corpus folder's record of its utterances and settings.
CORPUS_FILE = "corpus.json"
FAILURES_FILE = "failures.csv"
FAILURE_COLUMNS = ("id", "path", "error", "message")


@dataclass
class ClusterShape:
    """Workers x threads per worker x BLAS threads per task: their product stays within the cores."""

    workers: int
    threads: int
    blas: int
    cores: int


@dataclass
class CorpusRun:
    """What a corpus run did: utterances finished now, skipped as finished before, and failed (id -> message)."""

    out: Path
    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    resumed: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)
    seconds: float = 0.0
    #: seconds from the call to the cluster being ready with the model loaded on it
    startup: float = 0.0
    #: seconds from then to the last utterance's result
    work: float = 0.0
    per_utterance: dict = field(default_factory=dict)
    dashboard: str = ""


def available_cores() -> int:
    """CPU cores this process may use (its affinity where the system says, else the count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def cluster_shape(tasks: int, workers: Optional[int] = None, cores: Optional[int] = None) -> ClusterShape:
    """The LocalCluster for ``tasks`` utterances: one single-threaded worker per core (at most one per task),
    one BLAS thread per task, so workers x threads x BLAS threads <= cores.

    One BLAS thread even where cores are left over (fewer utterances or --workers than cores): on the
    shared 2-core machine, 1 worker with 2 OpenBLAS threads explained the bench workload 4-5x slower than
    with 1 (`afmask bench corpus --quick --workers 1 [--blas-threads 1]`): threads that wait for each other
    lose whenever another process takes a core. ``--blas-threads`` asks for more.
    """
    cores = cores or available_cores()
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    n = workers if workers is not None else max(1, min(cores, tasks))
    return ClusterShape(workers=n, threads=1, blas=1, cores=cores)


def _failures_csv(failures: dict, utts: dict) -> bytes:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FAILURE_COLUMNS)
    for uid, (kind, message) in failures.items():
        w.writerow([uid, utts[uid].path if uid in utts else "", kind, message])
    return buf.getvalue().encode("utf-8")


def _split_error(exc: BaseException) -> tuple[str, str]:
    """(the original error's type, its message) of a task's exception."""
    text = str(exc)
    head, sep, rest = text.partition(": ")
    if type(exc).__name__ == "UtteranceError" and sep and head.isidentifier():
        return head, rest
    return type(exc).__name__, text


class _Progress:
    """One bar over the corpus (tqdm on a terminal; plain lines otherwise), with per-utterance time and the rest's estimate."""

    def __init__(self, total: int, initial: int, enabled: bool, stream=None):
        self.total, self.n, self.enabled = total, initial, enabled
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.finished_here = 0
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, file=self.stream, unit="utt", dynamic_ncols=True,
                            desc="afmask explain-corpus")

    def update(self, uid: str, status: str, seconds: Optional[float]) -> None:
        """One utterance finished (or failed) after ``seconds`` on its worker."""
        self.n += 1
        self.finished_here += 1
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        left = self.total - self.n
        eta = elapsed / self.finished_here * left
        took = "" if seconds is None else f" in {seconds:.1f} s"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"{uid} {status}{took}")
        else:
            print(f"afmask explain-corpus: [{self.n}/{self.total}] {uid} {status}{took}; "
                  f"{left} left, about {eta:.0f} s to go", file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar."""
        if self.bar is not None:
            self.bar.close()


def _client(scheduler: Optional[str], shape: ClusterShape, dashboard: Optional[str], timeout: float):
    """A Dask client: to ``scheduler``, or to a new LocalCluster of ``shape``; (client, cluster or None)."""
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout=timeout), None
    # no dashboard: the scheduler's own switch (dashboard_address=None means Dask's default address)
    web = {"dashboard_address": dashboard} if dashboard else {"dashboard_address": ":0", "scheduler_kwargs": {"dashboard": False}}
    cluster = LocalCluster(n_workers=shape.workers, threads_per_worker=shape.threads, processes=True,
                           silence_logs=logging.CRITICAL, **web)
    try:
        return Client(cluster, timeout=timeout), cluster
    except BaseException:
        cluster.close()
        raise


def explain_corpus(
    source: os.PathLike | Sequence[Utterance],
    out: os.PathLike,
    config: Optional[MaskConfig] = None,
    arch: Optional[str] = None,
    params: Optional[str] = None,
    evaluation=None,
    frames: Optional[Sequence[int]] = None,
    scheduler: Optional[str] = None,
    workers: Optional[int] = None,
    blas_threads: Optional[int] = None,
    retries: int = 1,
    dashboard: Optional[str] = ":8787",
    progress: bool = True,
    aggregate: bool = True,
    timeout: float = 60.0,
    log: Callable[[str], None] = print,
) -> CorpusRun:
    """Explain every utterance of ``source`` (folder, manifest or Utterances) into ``out``/<id>/ on Dask.

    ``config``: the MaskConfig of every run (an utterance's own seed overrides its seed); ``evaluation``:
    an EvaluationSettings, or None for runs without evaluation and report; ``scheduler``: address of an
    existing cluster (else a LocalCluster of ``workers`` processes); ``dashboard``: the LocalCluster's
    dashboard address (None: none). Finished utterances are skipped, interrupted ones resume from their
    checkpoints, failures go to ``out``/failures.csv. Returns what was done.
    """
    from distributed import as_completed

    t_start = time.perf_counter()
    config = config or MaskConfig.preset("default")
    utts = list(source) if not isinstance(source, (str, os.PathLike)) else read_list(source)
    spec = model_spec(arch, params)
    if retries < 0:
        raise ValueError(f"--retries must be >= 0, got {retries}")
    if evaluation is not None:
        evaluation.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "source": os.fspath(source) if isinstance(source, (str, os.PathLike)) else None,
        "utterances": [u.to_dict() for u in utts], "config": config.to_dict(), "model": spec,
        "evaluation": evaluation.to_dict() if evaluation is not None else None,
        "frames": list(frames) if frames else None,
    }
    with atomic_write(out / CORPUS_FILE) as f:
        f.write(json.dumps(doc, indent=1).encode("utf-8"))
    by_id = {u.id: u for u in utts}
    result = CorpusRun(out=out)
    result.skipped = [u.id for u in utts if (out / u.id).is_dir()]
    todo = [u for u in utts if not (out / u.id).is_dir()]
    resuming = [u.id for u in todo if (out / PARTIAL / u.id / "checkpoint.npz").exists()]
    log(f"afmask explain-corpus: {len(utts)} utterances; {len(result.skipped)} finished before (skipped), "
        f"{len(resuming)} to resume from their checkpoints, {len(todo) - len(resuming)} to start")
    if todo:
        shape = cluster_shape(len(todo), workers)
        blas = blas_threads if blas_threads is not None else shape.blas
        client, cluster = _client(scheduler, shape, dashboard, timeout)
        bar = None
        try:
            result.dashboard = client.dashboard_link if (scheduler or dashboard) else ""
            where = f"scheduler {scheduler}" if scheduler else \
                f"LocalCluster of {shape.workers} workers x {shape.threads} thread, {blas} BLAS thread(s) per task, {shape.cores} cores"
            log(f"afmask explain-corpus: {where}; dashboard: {result.dashboard or 'off'}")
            plugin = ModelPlugin(spec)
            client.register_plugin(plugin, name=plugin.name)
            result.startup = time.perf_counter() - t_start
            cfg = config.to_dict()
            ev = evaluation.to_dict() if evaluation is not None else None
            futures = {
                client.submit(explain_utterance, u.to_dict(), os.fspath(out.resolve()), cfg, spec, plugin.name, ev,
                              tuple(frames) if frames else None, blas, key=f"afmask-explain-{u.id}-{os.getpid()}-{id(result)}",
                              retries=retries, pure=False): u.id
                for u in todo
            }
            bar = _Progress(len(utts), len(result.skipped), progress)
            for fut in as_completed(futures):
                uid = futures[fut]
                if fut.status == "error":
                    result.failed[uid] = _split_error(fut.exception())
                    bar.update(uid, "FAILED", None)
                    continue
                summary = fut.result()
                result.per_utterance[uid] = summary["seconds"]
                (result.skipped if summary["status"] == "skipped" else result.done).append(uid)
                if summary.get("resumed"):
                    result.resumed.append(uid)
                bar.update(uid, "resumed, done" if summary.get("resumed") else "done", summary["seconds"])
                fut.release()
            result.work = time.perf_counter() - t_start - result.startup
        finally:
            if bar is not None:
                bar.close()
            with atomic_write(out / FAILURES_FILE) as f:
                f.write(_failures_csv(result.failed, by_id))
            client.close()
            if cluster is not None:
                cluster.close()
    else:
        with atomic_write(out / FAILURES_FILE) as f:
            f.write(_failures_csv({}, by_id))
    try:
        (out / PARTIAL).rmdir()  # only when empty: interrupted runs stay for the next one
    except OSError:
        pass
    result.seconds = time.perf_counter() - t_start
    if result.failed:
        log(f"afmask explain-corpus: {len(result.failed)} utterance(s) failed, listed in {out / FAILURES_FILE}:")
        for uid, (kind, message) in result.failed.items():
            log(f"  {uid}: {kind}: {message}")
    if aggregate:
        from afmask.corpus.aggregate import write_corpus

        page = write_corpus(out)
        log(f"afmask explain-corpus: aggregates and the corpus page written: {page}")
    return result


def read_corpus(out: os.PathLike) -> tuple[dict, list[Utterance]]:
    """A corpus folder's record (corpus.json) and its utterances; ValueError if ``out`` is not a corpus folder."""
    path = Path(out) / CORPUS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{out} is not a corpus folder (no {CORPUS_FILE}); make one with afmask explain-corpus")
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    return doc, [Utterance(**u) for u in doc["utterances"]]


def is_corpus(out: os.PathLike) -> bool:
    """Whether ``out`` is a corpus folder (written by explain-corpus)."""
    return (Path(out) / CORPUS_FILE).is_file()

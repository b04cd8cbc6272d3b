"""explain-corpus on Dask: the same m as single runs, an external scheduler, resume after a kill, failures, aggregates."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from threadpoolctl import threadpool_limits

from afmask.api import explain
from afmask.corpus import cluster_shape, explain_corpus, read_list, write_corpus
from afmask.corpus.aggregate import flatten_numbers, percentile_rank
from afmask.io import demo_audio
from afmask.mask import MaskConfig

ROOT = Path(__file__).resolve().parents[1]
#: Few iterations on short clips, lambda fixed (no start-up draws): the tests check the corpus machinery, not the explanations.
CONFIG = dict(iterations=3, samples=1, checkpoint_every=1, lam=0.05)
CLIP = 4800  # 0.3 s at 16 kHz: 28 frames


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _demo_clips(folder: Path, n: int, length: int = CLIP) -> list[Path]:
    """n pieces of the bundled utterance (afmask/data/audio/demo.wav), so these tests need nothing outside."""
    x, sr = sf.read(demo_audio(), dtype="float32")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        start = 4000 + i * length
        p = folder / f"piece{i}.wav"
        sf.write(p, x[start:start + length], sr)
        paths.append(p)
    return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_manifests_of_every_form(tmp_path):
    clips = _demo_clips(tmp_path / "audio", 2)
    (tmp_path / "a.tsv").write_text(f"id\tpath\ttranscript\nu1\taudio/{clips[0].name}\thello there\nu2\t{clips[1]}\t\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"id": "u1", "path": f"audio/{clips[0].name}", "seed": 3}) + "\n")
    (tmp_path / "c.lst").write_text(f"u1 {clips[0]} 300.0 hello there\n")
    tsv = read_list(tmp_path / "a.tsv")
    assert [(u.id, u.transcript) for u in tsv] == [("u1", "hello there"), ("u2", None)]
    assert tsv[0].path == str(clips[0].resolve())
    assert read_list(tmp_path / "b.jsonl")[0].seed == 3
    assert read_list(tmp_path / "c.lst")[0].transcript == "hello there"
    assert [u.id for u in read_list(tmp_path / "audio")] == ["piece0", "piece1"]
    (tmp_path / "dup.tsv").write_text(f"u1\t{clips[0]}\nu1\t{clips[1]}\n")
    with pytest.raises(ValueError, match="appears twice"):
        read_list(tmp_path / "dup.tsv")
    (tmp_path / "bad.lst").write_text(f"u1 {clips[0]} long hello\n")
    with pytest.raises(ValueError, match="duration"):
        read_list(tmp_path / "bad.lst")


def test_cluster_shape_does_not_oversubscribe():
    for cores in (1, 2, 8):
        for tasks in (1, 3, 20):
            s = cluster_shape(tasks, cores=cores)
            assert s.workers * s.threads * s.blas <= cores and s.workers <= tasks
    assert (cluster_shape(6, cores=2).workers, cluster_shape(6, cores=2).blas) == (2, 1)
    assert cluster_shape(1, cores=2).workers == 1 and cluster_shape(3, workers=1, cores=8).blas == 1


def test_flatten_reads_new_controls_generically():
    doc = {"verdict": "x", "beats_energy": True, "new_control": {"score": 0.25, "curve": [1, 2]},
           "renditions": [{"name": "keep50", "cer_clean": 0.5}], "settings": {"seed": 0}, "format": 1}
    assert flatten_numbers(doc) == {"beats_energy": 1.0, "new_control.score": 0.25, "renditions.keep50.cer_clean": 0.5}
    r = percentile_rank(np.array([[3.0, 1.0], [2.0, 0.0]]))
    assert r.max() == 1.0 and r.min() == 0.0 and r[0, 0] == 1.0


def test_corpus_on_two_workers_gives_the_single_runs_m(tmp_path, shared):
    # 6 clips from the shared recordings, 2 per LibriVox file, each with its own seed
    files = sorted((shared / "data" / "librivox").glob("*.wav"))[:3]
    lines = ["id\tpath\tseed"]
    for i, f in enumerate(files):
        x, sr = sf.read(f, dtype="float32")
        for j in range(2):
            p = tmp_path / "clips" / f"{f.stem[-4:]}_{j}.wav"
            p.parent.mkdir(exist_ok=True)
            sf.write(p, x[16000 + j * 16000:16000 + j * 16000 + CLIP], sr)
            lines.append(f"c{i}{j}\t{p}\t{10 * i + j}")
    (tmp_path / "list.tsv").write_text("\n".join(lines) + "\n")
    config = MaskConfig.preset("default", **CONFIG)
    run = explain_corpus(tmp_path / "list.tsv", tmp_path / "corpus", config=config, workers=2, blas_threads=1, dashboard=None,
                         progress=False, evaluation=None, log=lambda s: None)
    assert sorted(run.done) == sorted(u.id for u in read_list(tmp_path / "list.tsv")) and not run.failed
    for u in read_list(tmp_path / "list.tsv"):
        # bit for bit at the workers' BLAS thread count (blas_threads=1); on 2 threads OpenBLAS sums in another order
        with threadpool_limits(1):
            single = explain(u.path, tmp_path / "single" / u.id, config=config.replace(seed=u.seed), progress=False)
        m = np.load(tmp_path / "corpus" / u.id / "m.npy")
        np.testing.assert_array_equal(m, single.result.m.astype(np.float32), err_msg=u.id)
        cfg = json.loads((tmp_path / "corpus" / u.id / "config.json").read_text())
        assert cfg["seed"] == u.seed
        names = {p.name for p in (tmp_path / "single" / u.id).iterdir()}
        assert names <= {p.name for p in (tmp_path / "corpus" / u.id).iterdir()}  # the same files as a single run
    with open(tmp_path / "corpus" / "bands.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 257 and all(0 <= float(r["ci_low"]) <= float(r["mean_rank"]) <= float(r["ci_high"]) <= 1 for r in rows)
    tokens = (tmp_path / "corpus" / "tokens.csv").read_text()
    assert tokens.startswith("token,frames,utterances,mean_rank")


@pytest.fixture
def dask_cluster(tmp_path):
    """A real `dask scheduler` and one `dask worker`, as processes on 127.0.0.1; killed afterwards."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    logs = []
    try:
        for cmd in (["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                    ["worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"]):
            log = open(tmp_path / f"dask-{cmd[0]}.log", "w")
            logs.append(log)
            procs.append(subprocess.Popen([sys.executable, "-m", "dask", *cmd], stdout=log, stderr=subprocess.STDOUT,
                                          env=_env(), start_new_session=True))
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=30)
        for log in logs:
            log.close()


def test_existing_scheduler_runs_two_utterances_with_evaluation(tmp_path, dask_cluster):
    from afmask.cli import main

    clips = _demo_clips(tmp_path / "audio", 2)
    words = {"w": [{"t": "<sil>", "b": 0.0, "d": 0.05}, {"t": "unless", "b": 0.05, "d": 0.15}, {"t": "to(2)", "b": 0.2, "d": 0.1}]}
    (tmp_path / "w.words.json").write_text(json.dumps(words))
    (tmp_path / "list.jsonl").write_text("".join(json.dumps({"id": f"u{i}", "path": str(p), "transcript": "unless to",
                                                             "words": "w.words.json"}) + "\n" for i, p in enumerate(clips)))
    out = tmp_path / "corpus"
    rc = main(["explain-corpus", str(tmp_path / "list.jsonl"), "--out", str(out), "--scheduler", dask_cluster,
               "--iterations", "3", "--samples", "1", "--lambda", "0.05", "--no-sanity", "--step", "50", "--random-seeds", "1",
               "--percent", "50", "--no-progress"])
    assert rc == 0
    for uid in ("u0", "u1"):
        assert (out / uid / "evaluation.json").is_file() and (out / uid / "report.html").is_file()
        assert (out / uid / "transcript.txt").read_text() == "unless to"
    with open(out / "controls.csv", newline="") as f:
        controls = {r["metric"]: r for r in csv.DictReader(f)}
    assert controls["importance_vs_energy"]["n"] == "2" and "keep_important.cer_clean" in controls
    with open(out / "words.csv", newline="") as f:
        by_word = {r["word"]: r for r in csv.DictReader(f)}
    assert set(by_word) == {"unless", "to"} and by_word["to"]["occurrences"] == "2"
    page = (out / "report.html").read_text()
    assert "u0/report.html" in page and "u1/report.html" in page and "data:image/png;base64" in page
    assert "http" not in page.replace("http-equiv", "")  # offline: nothing fetched
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.html").is_file()


def test_a_killed_corpus_run_resumes_and_skips_the_finished(tmp_path):
    clips = _demo_clips(tmp_path / "audio", 3)
    out = tmp_path / "corpus"
    (tmp_path / "config.json").write_text(json.dumps({"iterations": 6, "samples": 1, "checkpoint_every": 1, "lam": 0.05}))
    cmd = [sys.executable, "-m", "afmask", "explain-corpus", str(tmp_path / "audio"), "--out", str(out), "--workers", "1",
           "--blas-threads", "1", "--config", str(tmp_path / "config.json"), "--no-report", "--no-progress", "--dashboard", "none"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            finished = [c.stem for c in clips if (out / c.stem).is_dir()]
            if finished and any((out / ".partial" / c.stem / "checkpoint.npz").exists() for c in clips):
                break
            time.sleep(0.05)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole session: the command, its cluster and its worker
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    finished = {c.stem for c in clips if (out / c.stem).is_dir()}
    interrupted = {c.stem for c in clips if (out / ".partial" / c.stem / "checkpoint.npz").exists()}
    assert finished and interrupted, "the run was not caught between two utterances"
    stamps = {u: (out / u / "m.npy").stat().st_mtime_ns for u in finished}
    config = MaskConfig.preset("default", iterations=6, samples=1, checkpoint_every=1, lam=0.05)
    run = explain_corpus(tmp_path / "audio", out, config=config, workers=1, blas_threads=1, dashboard=None, progress=False,
                         log=lambda s: None)
    assert set(run.skipped) == finished and set(run.resumed) == interrupted
    assert set(run.done) == {c.stem for c in clips} - finished and not run.failed
    assert {u: (out / u / "m.npy").stat().st_mtime_ns for u in finished} == stamps
    assert not (out / ".partial").exists()
    u = sorted(interrupted)[0]
    with threadpool_limits(1):
        single = explain(tmp_path / "audio" / f"{u}.wav", tmp_path / "single", config=config, progress=False)
    np.testing.assert_array_equal(np.load(out / u / "m.npy"), single.result.m.astype(np.float32))


def test_bad_files_land_in_failures_csv_and_the_others_finish(tmp_path):
    from afmask.cli import main

    good = _demo_clips(tmp_path / "audio", 1)[0]
    (tmp_path / "audio" / "garbage.wav").write_bytes(b"RIFF, but not really audio")
    sf.write(tmp_path / "audio" / "short.wav", np.zeros(200, np.float32), 16000)  # under one 400-sample frame
    out = tmp_path / "corpus"
    rc = main(["explain-corpus", str(tmp_path / "audio"), "--out", str(out), "--workers", "2", "--retries", "0",
               "--iterations", "2", "--samples", "1", "--lambda", "0.05", "--no-report", "--no-progress", "--dashboard", "none"])
    assert rc == 1
    with open(out / "failures.csv", newline="") as f:
        failures = {r["id"]: r for r in csv.DictReader(f)}
    assert set(failures) == {"garbage", "short"}
    assert failures["garbage"]["error"] == "AudioError" and "garbage.wav" in failures["garbage"]["message"]
    assert failures["short"]["path"].endswith("short.wav") and failures["short"]["message"]
    assert (out / good.stem / "m.npy").is_file()
    assert "garbage" in (out / "report.html").read_text()
    write_corpus(out)  # the aggregates rebuild from the folder alone

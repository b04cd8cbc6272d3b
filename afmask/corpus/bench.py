"""``afmask bench corpus``: utterances per minute of explain-corpus on a LocalCluster of 1 and of 2 workers.

A small fixed workload (pieces of the bundled utterance, a few iterations, no evaluation), run once per
worker count and repeat, interleaved (1, 2, 1, 2, ...) so that the machine's load hits both alike;
the figures are medians. Throughput counts from the cluster being ready (model loaded on every worker)
to the last utterance; the cluster's start is printed beside it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

#: (pieces, seconds per piece, iterations) of the full and the --quick workload.
WORKLOADS = {"full": (8, 1.0, 20), "quick": (4, 0.5, 5)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``afmask bench corpus``."""
    p.add_argument("--quick", action="store_true", help="the small workload (%d pieces of %.1f s, %d iterations)" % WORKLOADS["quick"])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], metavar="N", help="worker counts to compare (default 1 2)")
    p.add_argument("--repeats", type=int, default=1, metavar="R", help="runs per worker count, interleaved (median)")
    p.add_argument("--blas-threads", type=int, default=None, metavar="N",
                   help="BLAS threads per task (default: explain-corpus's, 1)")


def _pieces(folder: Path, n: int, seconds: float) -> None:
    import soundfile as sf

    from afmask.io import demo_audio

    x, sr = sf.read(demo_audio(), dtype="float32")
    length = int(seconds * sr)
    if n * length > x.size:
        raise ValueError(f"{n} pieces of {seconds} s do not fit the bundled utterance ({x.size / sr:.1f} s)")
    for i in range(n):
        sf.write(folder / f"piece{i:02d}.wav", x[i * length:(i + 1) * length], sr)


def run_bench(quick: bool = False, workers=(1, 2), repeats: int = 1, blas_threads=None, log=print) -> dict:
    """{workers: {"per_minute", "seconds", "startup"}} (medians) for the workload; prints one line per run."""
    from afmask.corpus.run import explain_corpus
    from afmask.mask import MaskConfig

    n, seconds, iterations = WORKLOADS["quick" if quick else "full"]
    if repeats < 1 or any(w < 1 for w in workers):
        raise ValueError(f"--repeats and --workers must be >= 1, got {repeats} and {list(workers)}")
    config = MaskConfig.preset("default", iterations=iterations)
    log(f"afmask bench corpus: {n} pieces of {seconds:.1f} s of the bundled utterance, {iterations} iterations "
        f"(default mode, {config.samples} noise samples), no evaluation; {repeats} run(s) per worker count, interleaved; "
        f"BLAS threads per task: {blas_threads or 1}")
    runs: dict = {w: [] for w in workers}
    with tempfile.TemporaryDirectory(prefix="afmask-bench-corpus-") as tmp:
        audio = Path(tmp) / "audio"
        audio.mkdir()
        _pieces(audio, n, seconds)
        for r in range(repeats):
            for w in workers:
                res = explain_corpus(audio, Path(tmp) / f"out-{w}-{r}", config=config, workers=w, blas_threads=blas_threads,
                                     dashboard=None,
                                     progress=False, aggregate=False, log=lambda s: None)
                if res.failed:
                    raise RuntimeError(f"bench corpus: utterances failed: {res.failed}")
                work = res.work
                runs[w].append((60.0 * n / work, work, res.startup))
                log(f"  {w} worker(s), run {r + 1}: {n} utterances in {work:.1f} s after a {res.startup:.1f} s cluster "
                    f"start: {60.0 * n / work:.2f} utterances/minute")
    figures = {w: {"per_minute": statistics.median(x[0] for x in v), "seconds": statistics.median(x[1] for x in v),
                   "startup": statistics.median(x[2] for x in v)} for w, v in runs.items()}
    for w, f in figures.items():
        log(f"workers={w}: {f['per_minute']:.2f} utterances/minute (median {f['seconds']:.1f} s for {n}; "
            f"cluster start {f['startup']:.1f} s)")
    if 1 in figures and len(figures) > 1:
        for w, f in figures.items():
            if w != 1:
                log(f"speedup of {w} workers over 1: {f['per_minute'] / figures[1]['per_minute']:.2f}x")
    return figures


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark the options describe."""
    run_bench(quick=args.quick, workers=args.workers, repeats=args.repeats, blas_threads=args.blas_threads)
    return 0

"""``afmask bench backends``: one default explain iteration on every backend that loads, interleaved, in one run.

For each backend (numpy, arrayfire, cupy) that loads here: the demo model on the
bundled utterance (or its first ``--frames`` frames), default settings, lambda
fixed (no start-up cost), warm-up steps (those that choose the loop's threads among
them); then the backends take turns, one
iteration each, ``--repeats`` rounds, so that the load of a shared machine falls
on all of them alike. Reported: the median seconds per iteration and its ratio
to NumPy's, and the cost of the noise: the host draw (numpy.random.Generator,
the default), its copy to the device (the difference between drawing and
copying and drawing alone), and the backend's own generator
(``noise_generator="device"``) for comparison. Backends that do not load are
listed with the reason. The last line is ``arrayfire_vs_numpy=X cupy_vs_numpy=Y``
(``nan`` where the backend is absent).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from afmask.backend import NAMES, get_backend, probe, use_backend

#: The issue's goal for ArrayFire's CPU backend: at most 1.5x NumPy per default iteration.
TARGET_ARRAYFIRE_RATIO = 1.5


def _setup(frames: int | None, samples: int) -> tuple[Any, Any, Any]:
    from afmask.features import features
    from afmask.io import demo_audio, load_audio
    from afmask.mask import MaskConfig

    feats = features(load_audio(demo_audio()))
    T = feats["fft"].shape[1] if frames is None else min(frames, feats["fft"].shape[1])
    clean_input = feats["input"] if T == feats["fft"].shape[1] else None
    cfg = MaskConfig.preset("default", samples=samples)
    return feats["fft"][:, :T], clean_input, cfg


def _timed(fn, sync) -> float:
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def run(frames: int | None = None, repeats: int = 10, samples: int = 4) -> dict:
    """Seconds per default iteration per backend (interleaved rounds) and the noise's costs; unloadable backends with why."""
    from afmask.backend import threads
    from afmask.mask import MaskObjective, MaskRun
    from afmask.mask.noise import host_standard_normal, standard_normal
    from afmask.model import demo_model

    fft, clean_input, cfg = _setup(frames, samples)
    K2, T = fft.shape
    runs: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for name in NAMES:
        found = probe(name)
        if not found.available:
            missing[name] = found.reason
            continue
        B = get_backend(name)
        with use_backend(name):
            obj = MaskObjective(fft, demo_model(), cfg.variant, noise=cfg.noise, stats=cfg.stats,
                                clean_input=clean_input, backend=B, kernel_path=cfg.kernel_path)
            r = MaskRun(obj, cfg)
            r.lam = 1.0
            # warm-up: kernel compilation, caches, first-touch pages, and the steps a loop times to choose its
            # threads (afmask.backend.threads.StepThreads), so that every timed step runs on the chosen count
            for _ in range(threads.WARMUP_STEPS + 2 * threads.STEP_BLOCK):
                r.step()
            B.sync()
        runs[name] = r
    times: dict[str, list[float]] = {n: [] for n in runs}
    noise: dict[str, dict[str, list[float]]] = {n: {"host": [], "host_copy": [], "device": []} for n in runs}
    for i in range(repeats):
        for name, r in runs.items():  # interleaved: one iteration of each backend per round
            B = r.B
            with use_backend(name):
                times[name].append(_timed(r.step, B.sync))
                # the noise this run draws ahead belongs to its own next step: left running, its thread took a core
                # from the other backend's step (ArrayFire 50.5 ms interleaved against 42.4 alone)
                r.settle()
                seed = 1000 + i
                # drawn as the backend's host path draws (NumPy: into a reused buffer), so "copy" is the copy alone
                reuse = name == "numpy"
                noise[name]["host"].append(_timed(lambda: host_standard_normal(K2, T, samples, seed, reuse=reuse), B.sync))
                noise[name]["host_copy"].append(_timed(lambda: standard_normal(B, K2, T, samples, seed), B.sync))
                noise[name]["device"].append(
                    _timed(lambda: standard_normal(B, K2, T, samples, seed, generator="device"), B.sync))
    rows = []
    for name in runs:
        med = statistics.median(times[name])
        n = {k: statistics.median(v) for k, v in noise[name].items()}
        spread = (max(times[name]) - min(times[name])) / med if med > 0 else float("nan")
        rows.append({
            "backend": name, "device": runs[name].B.device_info().device, "kernel_path": runs[name].obj.kernel_path,
            "seconds": med, "spread": spread, "threads": runs[name].thread_count(), "noise_host_s": n["host"],
            # NumPy's arrays are the host's: there is no copy to time (a difference of two equal timings is noise)
            "noise_copy_s": None if name == "numpy" else max(n["host_copy"] - n["host"], 0.0),
            "noise_device_s": n["device"],
        })
    base = next((r["seconds"] for r in rows if r["backend"] == "numpy"), None)
    for r in rows:
        r["vs_numpy"] = r["seconds"] / base if base else float("nan")
    if "arrayfire" in runs:
        for r in rows:
            if r["backend"] == "arrayfire":
                r["af_backend"] = runs["arrayfire"].B.active_backend()
    return {"rows": rows, "missing": missing, "K": K2 // 2, "T": T, "samples": samples, "repeats": repeats}


def format_report(result: dict) -> str:
    """The table, the backends not run and why, the target, and the summary line last."""
    lines = [
        f"default explain iteration (demo model, K = {result['K']}, T = {result['T']}, {result['samples']} noise samples), "
        f"median of {result['repeats']} interleaved rounds",
        f"{'backend':10} {'ms/iter':>9} {'vs numpy':>9} {'spread':>7} {'threads':>7} {'noise: host draw':>17} {'copy to device':>15} "
        f"{'device draw':>12}  path / device",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['backend']:10} {r['seconds'] * 1e3:9.1f} {r['vs_numpy']:8.2f}x {r['spread']:6.0%} {r['threads']:7d} "
            f"{r['noise_host_s'] * 1e3:14.2f} ms "
            + (f"{'none (host)':>15}" if r["noise_copy_s"] is None else f"{r['noise_copy_s'] * 1e3:12.2f} ms")
            + f" {r['noise_device_s'] * 1e3:9.2f} ms"
            f"  {r['kernel_path']} / {r['device']}"
        )
    for name, why in result["missing"].items():
        lines.append(f"not run: {name}: {why.splitlines()[0]}")
    ratios = {r["backend"]: r["vs_numpy"] for r in result["rows"]}
    af = next((r for r in result["rows"] if r["backend"] == "arrayfire"), None)
    if af is not None and af.get("af_backend") == "cpu":
        ok = af["vs_numpy"] <= TARGET_ARRAYFIRE_RATIO
        lines.append(f"target: ArrayFire CPU backend <= {TARGET_ARRAYFIRE_RATIO}x NumPy: {af['vs_numpy']:.2f}x "
                     f"{'met' if ok else 'MISSED'}")
    lines.append(" ".join(f"{n}_vs_numpy={ratios.get(n, float('nan')):.2f}" for n in ("arrayfire", "cupy")))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The benchmark's options."""
    parser.add_argument("--frames", type=int, default=None, metavar="T",
                        help="the first T frames of the bundled utterance (default: all 528)")
    parser.add_argument("--repeats", type=int, default=10, metavar="N", help="interleaved rounds (default 10)")
    parser.add_argument("--samples", type=int, default=4, metavar="S", help="noise samples per step (default 4)")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run with parsed options and print the report."""
    for name in ("repeats", "samples"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name}: expected >= 1, got {getattr(args, name)}")
    if args.frames is not None and args.frames < 2:
        raise ValueError(f"--frames: expected >= 2, got {args.frames}")
    print(format_report(run(args.frames, args.repeats, args.samples)))
    return 0

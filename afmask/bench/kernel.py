"""Benchmark of the mask step (forward + backward + SGD update) on every path that runs here.

Per iteration, median of repeated runs, for T = 1593 frames (the real
utterance) and 4x longer, K = 257 bins, S = 1 noise sample by default:

- CPU: the per-bin loop of the C++ (the baseline), the vectorised NumPy
  expression and the C++ extension; the extension's achieved bytes/s against a
  plain copy (``np.copyto``) moving the same number of bytes, in the same run.
- OpenCL, where pyopencl finds a device: the OpenCL kernel on NumPy arrays (the
  copies to the device and back included), in the CPU rows.
- GPU, where CuPy runs: the per-bin loop on CuPy arrays against the CUDA kernel,
  and the kernel's bytes/s against ``cupy.copyto``.

Bytes of one step (float32): forward reads x, eps, m and writes mag; backward
reads xgrad, x, eps, m and writes mgrad and m: ``4 * (12*K*T + 6*K*T*S)`` bytes.
The copy moves an array of half that size (read once, written once).

The copy is single-threaded, so the extension runs on 1 thread unless
``--threads`` says otherwise. The last line printed is
``speedup_vs_loop=X bandwidth_fraction=Y`` for the default size: the
extension's speedup over the per-bin loop and its fraction of copy bandwidth.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from afmask import kernels

#: Bins of the 512-point FFT and frames of the real utterance (15.9 s).
K_DEFAULT = 257
T_DEFAULT = 1593
LAM, LR = 10.0, 1e-3

#: Targets the report is read against.
TARGET_BANDWIDTH_FRACTION = 0.5
TARGET_CUDA_SPEEDUP = 100.0
TARGET_CUDA_COPY_FRACTION = 0.5


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux's MemAvailable, else free pages), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def step_bytes(K: int, T: int, S: int) -> int:
    """Bytes one forward + backward + update must read and write (float32)."""
    return 4 * (12 * K * T + 6 * K * T * S)


def _median_seconds(fn: Callable[[], Any], budget_s: float, sync: Callable[[], None], repeats: int | None) -> float:
    """Median wall time of fn() over repeats (enough to fill budget_s, 5 to 200 when not given)."""
    fn()  # warm-up: first-touch pages, kernel compilation, caches
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    estimate = max(time.perf_counter() - t0, 1e-7)
    n = repeats if repeats else int(min(200, max(5, budget_s / estimate)))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _inputs(xp, K: int, T: int, S: int, seed: int):
    """x, eps, m (F-order float32 on xp) and xgrad, as in an iteration of the experiment."""
    rng = np.random.default_rng(seed)
    noise_shape = (2 * K, T) if S == 1 else (2 * K, T, S)
    k_shape = (K, T) if S == 1 else (K, T, S)
    host = (
        rng.standard_normal((2 * K, T)).astype(np.float32) * 1000.0,
        rng.standard_normal(noise_shape).astype(np.float32),
        rng.random((2 * K, T)).astype(np.float32),
        rng.standard_normal(k_shape).astype(np.float32),
    )
    if xp is np:
        return tuple(np.asfortranarray(a) for a in host)
    return tuple(xp.asfortranarray(xp.asarray(a)) for a in host)


def _step_fn(path: str, xp, x, eps, m, xgrad, preallocate: bool) -> Callable[[], None]:
    """One iteration on path: forward, backward with the SGD update, m_sqnorm carried over."""
    m = m.copy(order="F")
    mag = xp.empty(xgrad.shape, dtype=xp.float32, order="F") if preallocate else None
    mgrad = xp.empty(m.shape, dtype=xp.float32, order="F") if preallocate else None
    state = {"sq": float((m.astype(xp.float64) ** 2).sum())}

    def step() -> None:
        kernels.forward(x, eps, m, out=mag, path=path)
        res = kernels.backward(xgrad, x, eps, m, lam=LAM, m_sqnorm=state["sq"], lr=LR, out=mgrad, path=path)
        state["sq"] = res.m_sqnorm

    return step


def run(
    frames: Sequence[int] = (T_DEFAULT, 4 * T_DEFAULT),
    K: int = K_DEFAULT,
    S: int = 1,
    threads: int = 1,
    repeats: int | None = None,
    budget_s: float = 1.0,
    seed: int = 0,
) -> dict:
    """Time every available path; returns {'rows': [...], 'copy': {...}, 'summary': {...}} (seconds, bytes/s)."""
    rows: list[dict] = []
    copies: dict = {}
    status = kernels.path_status()
    if status["ext"] == "available":
        kernels.set_num_threads(threads)
    try:
        for T in frames:
            nbytes = step_bytes(K, T, S)
            x, eps, m, xgrad = _inputs(np, K, T, S, seed)
            for path in ("loop", "expr", "ext", "opencl"):
                if status[path] != "available":
                    continue
                fn = _step_fn(path, np, x, eps, m, xgrad, preallocate=path in ("ext", "opencl"))
                t = _median_seconds(fn, budget_s, lambda: None, repeats)
                rows.append({"device": "cpu", "K": K, "T": T, "S": S, "path": path, "seconds": t, "bytes": nbytes})
            src = np.ones(nbytes // 8, dtype=np.float32)  # half the step's bytes: read once, written once
            dst = np.empty_like(src)
            t = _median_seconds(lambda dst=dst, src=src: np.copyto(dst, src), budget_s, lambda: None, repeats)
            copies[("cpu", T)] = 2 * src.nbytes / t
            if status["cuda"] == "available":
                _run_cuda(rows, copies, K, T, S, nbytes, budget_s, repeats, seed)
    finally:
        if status["ext"] == "available":
            kernels.set_num_threads(0)
    for r in rows:
        r["bytes_per_s"] = r["bytes"] / r["seconds"]
        r["copy_fraction"] = r["bytes_per_s"] / copies[(r["device"], r["T"])]
        base = [b for b in rows if b["device"] == r["device"] and b["T"] == r["T"] and b["path"] == "loop"]
        r["speedup_vs_loop"] = base[0]["seconds"] / r["seconds"] if base else float("nan")
    return {"rows": rows, "copy": copies, "summary": _summary(rows, frames[0]), "threads": threads, "status": status,
            "opencl": kernels.opencl_info()}


def _run_cuda(rows, copies, K, T, S, nbytes, budget_s, repeats, seed) -> None:
    import cupy

    def sync() -> None:
        cupy.cuda.get_current_stream().synchronize()

    x, eps, m, xgrad = _inputs(cupy, K, T, S, seed)
    for path in ("loop", "expr", "cuda"):
        fn = _step_fn(path, cupy, x, eps, m, xgrad, preallocate=path == "cuda")
        t = _median_seconds(fn, budget_s, sync, repeats)
        rows.append({"device": "gpu", "K": K, "T": T, "S": S, "path": path, "seconds": t, "bytes": nbytes})
    src = cupy.ones(nbytes // 8, dtype=cupy.float32)
    dst = cupy.empty_like(src)
    t = _median_seconds(lambda: cupy.copyto(dst, src), budget_s, sync, repeats)
    copies[("gpu", T)] = 2 * src.nbytes / t


def _summary(rows: list[dict], T: int) -> dict:
    """The figures of the last line and the targets, for the default size."""

    def get(device, path):
        found = [r for r in rows if r["device"] == device and r["T"] == T and r["path"] == path]
        return found[0] if found else None

    ext, expr, cuda = get("cpu", "ext"), get("cpu", "expr"), get("gpu", "cuda")
    out = {
        "T": T,
        "speedup_vs_loop": ext["speedup_vs_loop"] if ext else float("nan"),
        "bandwidth_fraction": ext["copy_fraction"] if ext else float("nan"),
        "ext_faster_than_expr": bool(ext and expr and ext["seconds"] < expr["seconds"]),
        "cuda_speedup_vs_loop": cuda["speedup_vs_loop"] if cuda else None,
        "cuda_copy_fraction": cuda["copy_fraction"] if cuda else None,
    }
    return out


def format_report(result: dict) -> str:
    """The table, the targets and, last, the summary line."""
    lines = [
        f"mask step per iteration (forward + backward + SGD update), median; extension threads: {result['threads']}",
        f"{'device':6} {'K x T x S':>16} {'path':6} {'ms/iter':>10} {'vs loop':>9} {'GB/s':>8} {'of copy':>8}",
    ]
    for r in result["rows"]:
        size = f"{r['K']} x {r['T']} x {r['S']}"
        lines.append(
            f"{r['device']:6} {size:>16} {r['path']:6} {r['seconds'] * 1e3:10.3f} {r['speedup_vs_loop']:8.1f}x "
            f"{r['bytes_per_s'] / 1e9:8.2f} {r['copy_fraction']:8.2f}"
        )
    for (device, T), bw in sorted(result["copy"].items()):
        moved = step_bytes(result["rows"][0]["K"], T, result["rows"][0]["S"]) / 1e6
        lines.append(f"{device:6} copy moving the step's {moved:.1f} MB (T = {T}): {bw / 1e9:.2f} GB/s")
    for path in ("ext", "opencl", "cuda"):
        why = result["status"][path]
        if why != "available":
            lines.append(f"not run: {path}: {why.splitlines()[0]}")
    if result.get("opencl"):
        cl = result["opencl"]
        lines.append(f"opencl: {cl['device']} ({cl['platform']}); NumPy arrays in and out, the copies to the device and back included")
    s = result["summary"]
    frac_ok = s["bandwidth_fraction"] >= TARGET_BANDWIDTH_FRACTION
    lines.append(
        f"target: extension >= {TARGET_BANDWIDTH_FRACTION:.0%} of copy bandwidth: "
        f"{s['bandwidth_fraction']:.2f} {'met' if frac_ok else 'MISSED'}; faster than the NumPy expression: "
        f"{'met' if s['ext_faster_than_expr'] else 'MISSED'}"
    )
    if s["cuda_speedup_vs_loop"] is not None:
        ok = s["cuda_speedup_vs_loop"] >= TARGET_CUDA_SPEEDUP
        lines.append(
            f"target: CUDA kernel >= {TARGET_CUDA_SPEEDUP:.0f}x the per-bin loop on CuPy: "
            f"{s['cuda_speedup_vs_loop']:.0f}x {'met' if ok else 'MISSED'}"
        )
        ok = s["cuda_copy_fraction"] >= TARGET_CUDA_COPY_FRACTION
        lines.append(
            f"target: CUDA kernel within 2x of a plain device copy of the same bytes (>= "
            f"{TARGET_CUDA_COPY_FRACTION:.0%} of its bandwidth): {s['cuda_copy_fraction']:.2f} {'met' if ok else 'MISSED'}"
        )
    else:
        lines.append("target: CUDA kernel >= 100x the per-bin loop on CuPy: not measured (no CuPy GPU here)")
    lines.append(f"speedup_vs_loop={s['speedup_vs_loop']:.1f} bandwidth_fraction={s['bandwidth_fraction']:.2f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The benchmark's options, for ``afmask bench kernel`` and this module's main."""
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="threads for the extension (default 1, as the copy it is compared with; 0 = all)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        nargs="+",
        default=[T_DEFAULT, 4 * T_DEFAULT],
        metavar="T",
        help="utterance lengths in frames; the first is the default size (default: 1593 6372)",
    )
    parser.add_argument("--bins", type=int, default=K_DEFAULT, metavar="K", help="frequency bins (default 257)")
    parser.add_argument("--samples", type=int, default=1, metavar="S", help="noise samples per step (default 1)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        metavar="N",
        help="timed runs per figure (default: enough for about --budget seconds, 5 to 200)",
    )
    parser.add_argument(
        "--budget", type=float, default=1.0, metavar="SECONDS", help="time to spend on each figure (default 1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run with parsed options and print the report; returns the exit status."""
    for name in ("bins", "samples"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name}: expected >= 1, got {getattr(args, name)}")
    if any(T < 1 for T in args.frames):
        raise ValueError(f"--frames: expected values >= 1, got {args.frames}")
    if args.threads < 0:
        raise ValueError(f"--threads: expected >= 0, got {args.threads}")
    if not (math.isfinite(args.budget) and 0 < args.budget <= 3600):
        raise ValueError(f"--budget {args.budget:g}: expected seconds per figure, a finite number in (0, 3600]")
    if args.repeats is not None and args.repeats < 1:
        raise ValueError(f"--repeats {args.repeats}: expected >= 1 timed runs per figure (or leave it out)")
    # the inputs (x, eps, m, xgrad; float64 on the way) and the paths' temporaries: about 3x one step's traffic
    need = 3 * step_bytes(args.bins, max(args.frames), args.samples)
    free = _available_memory()
    if free is not None and need > free:
        raise ValueError(f"--frames {max(args.frames)} --bins {args.bins} --samples {args.samples}: the benchmark needs "
                         f"about {need / 1e9:.1f} GB, {free / 1e9:.1f} GB are free; lower --frames or --samples")
    result = run(
        frames=args.frames,
        K=args.bins,
        S=args.samples,
        threads=args.threads,
        repeats=args.repeats,
        budget_s=args.budget,
        seed=args.seed,
    )
    print(format_report(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``afmask bench kernel``: time the mask step on every path and print the table."""
    parser = add_arguments(
        argparse.ArgumentParser(
            prog="afmask bench kernel",
            description="Time the mask step (forward + backward + SGD update) on every path that runs here.",
        )
    )
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

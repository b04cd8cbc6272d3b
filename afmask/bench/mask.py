"""Benchmark of the experiment on the demo model and the bundled utterance (prints figures, asserts nothing).

1. Seconds per iteration of faithful mode (the original loop: one noise sample, the
   hand gradient through the fused kernel) and of default mode (its preset's noise
   samples), median over repeated iterations.
2. Convergence: default mode run until its convergence test fires (or the cap), and
   the optimiser question on the original's own objective (letters, absolute noise,
   -lambda log||m||^2 with lambda = 10): Adam on log m until the test fires, then the
   original SGD on m at the note's learning rates for the same number of iterations,
   each reported by the smoothed loss (mean of the last window) and how far m moved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

#: The learning rates the note tried with plain SGD.
NOTE_LRS = (0.001, 0.01, 0.1, 0.5, 1.0)


def _setup(frames: int | None):
    from afmask.io import demo_audio
    from afmask.features import features
    from afmask.io import load_audio
    from afmask.model import demo_model

    feats = features(load_audio(demo_audio()))
    model = demo_model()
    T = feats["fft"].shape[1] if frames is None else min(frames, feats["fft"].shape[1])
    return model, feats["fft"][:, :T], feats["input"][:T] if frames is None else None


def _objective(model, fft, clean_input, cfg):
    from afmask.mask import MaskObjective

    return MaskObjective(fft, model, cfg.variant, noise=cfg.noise, stats=cfg.stats, clean_input=clean_input)


def seconds_per_iteration(model, fft, clean_input, cfg, repeats: int) -> float:
    """Median wall time of one iteration with settings ``cfg`` (lambda fixed, so no start-up cost)."""
    from afmask.mask import MaskRun

    run = MaskRun(_objective(model, fft, clean_input, cfg), cfg)
    run.lam = 1.0 if cfg.lam == "auto" else float(cfg.lam)
    run.step()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def converge(model, fft, clean_input, cfg) -> dict:
    """Run ``cfg`` to its convergence test (or its iteration cap); the figures of the run."""
    from afmask.mask import run_mask

    t0 = time.perf_counter()
    r = run_mask(_objective(model, fft, clean_input, cfg), cfg, progress=False)
    w = cfg.window
    totals = [row["total"] for row in r.history]
    return {
        "iterations": r.iterations, "converged_at": r.converged_at, "seconds": time.perf_counter() - t0,
        "smoothed_loss": float(np.mean(totals[-w:])), "first_window_loss": float(np.mean(totals[:w])),
        "m_moved": float(np.max(np.abs(r.m_last - cfg.m_init))), "lam": r.lam,
    }


def run(frames: int | None = None, repeats: int = 10, cap: int = 1500) -> dict:
    """All figures, as a dict."""
    from afmask.mask import MaskConfig

    model, fft, clean_input = _setup(frames)
    out: dict = {"frames": fft.shape[1]}
    faithful = MaskConfig.preset("faithful")
    default = MaskConfig.preset("default")
    out["faithful_s_per_it"] = seconds_per_iteration(model, fft, clean_input, faithful, repeats)
    out["default_s_per_it"] = seconds_per_iteration(model, fft, clean_input, default, repeats)
    out["default_samples"] = default.samples
    out["default_run"] = converge(model, fft, clean_input, default.replace(iterations=cap))
    # the optimiser alone, on the original objective
    original = dict(variant="letters", noise="absolute", regularizer="log_norm", lam=10.0, samples=1)
    adam = MaskConfig.preset("default", **original, iterations=cap)
    out["adam_on_original"] = converge(model, fft, clean_input, adam)
    n = max(out["adam_on_original"]["iterations"], adam.window)
    out["sgd_on_original"] = {}
    for lr in NOTE_LRS:
        sgd = MaskConfig.preset("faithful", iterations=n, lr=lr, window=adam.window, rtol=adam.rtol, patience=adam.patience)
        try:
            out["sgd_on_original"][lr] = converge(model, fft, clean_input, sgd)
        except FloatingPointError as exc:  # the note's larger rates may diverge
            out["sgd_on_original"][lr] = {"diverged": str(exc).split(";")[0]}
    return out


def format_report(r: dict) -> str:
    """The figures as text."""
    lines = [f"utterance: bundled LibriVox clip, {r['frames']} frames; model: demo",
             f"faithful mode: {1000 * r['faithful_s_per_it']:.1f} ms/iteration (1 noise sample)",
             f"default mode:  {1000 * r['default_s_per_it']:.1f} ms/iteration ({r['default_samples']} noise samples)"]
    d = r["default_run"]
    fired = f"fired at iteration {d['converged_at']}" if d["converged_at"] >= 0 else f"did not fire in {d['iterations']}"
    lines.append(f"default mode to convergence: test {fired} ({d['seconds']:.0f} s); smoothed loss "
                 f"{d['first_window_loss']:.5g} -> {d['smoothed_loss']:.5g}, lambda {d['lam']:.3g}")
    a = r["adam_on_original"]
    fired = f"fired at iteration {a['converged_at']}" if a["converged_at"] >= 0 else f"did not fire in {a['iterations']}"
    lines.append(f"original objective (letters, absolute noise, lambda 10), Adam on log m: test {fired}; smoothed loss "
                 f"{a['first_window_loss']:.5g} -> {a['smoothed_loss']:.5g}; max |m - 0.1| {a['m_moved']:.3g}")
    lines.append(f"original objective, plain SGD on m for {a['iterations']} iterations at the note's learning rates:")
    for lr, s in r["sgd_on_original"].items():
        if "diverged" in s:
            lines.append(f"  lr {lr:<6g} diverged: {s['diverged']}")
            continue
        state = f"test fired at {s['converged_at']}" if s["converged_at"] >= 0 else "test did not fire"
        lines.append(f"  lr {lr:<6g} smoothed loss {s['first_window_loss']:.5g} -> {s['smoothed_loss']:.5g}; "
                     f"max |m - 0.1| {s['m_moved']:.3g}; {state}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``afmask bench mask``."""
    p.add_argument("--frames", type=int, default=None, help="use only the first N frames (default: all)")
    p.add_argument("--repeats", type=int, default=10, help="iterations timed per mode")
    p.add_argument("--cap", type=int, default=1500, help="most iterations of a convergence run")
    return p


def run_from_args(args: argparse.Namespace) -> int:
    """Run and print."""
    if args.frames is not None and args.frames < 2:
        raise ValueError(f"--frames {args.frames}: expected at least 2 frames (or leave it out for the whole utterance)")
    for flag, v in (("--repeats", args.repeats), ("--cap", args.cap)):
        if v < 1:
            raise ValueError(f"{flag} {v}: expected an integer >= 1")
    print(format_report(run(args.frames, args.repeats, args.cap)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m afmask.bench.mask``."""
    return run_from_args(add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""``afmask bench gpu``: the original architecture on a GPU (issue 14), the figures in one run.

On the 15.9 s LibriSpeech utterance (``shared/data/librispeech/utt-000000000.flac``,
T = 1593 frames) with the original network (DESIGN.md: 8 convolutions of width
256, two linear layers; random weights, seed 0):

1. one default iteration (4 noise samples, the fused kernel of the backend) on the
   backend under test, median of ``--repeats`` after warm-up, against one PyTorch
   fp32 forward + backward (gradient of the input, TF32 off) of the same network
   with the same weights on the same device, for a batch of 1 and a batch of S;
2. a whole default explanation (automatic lambda, at most 1500 iterations, the
   convergence test) with its wall time;
3. 20 seeded default iterations on NumPy and on the backend: m must agree within
   1e-3 of max|m| (the noise comes from the host generator, so it is the same).

Where the audio cannot be read (no soundfile, no file) a synthetic signal of the
same length is used and the report says so. Where a part cannot run (no CuPy,
no torch, no CUDA device) it says why and goes on. ``--tiny`` runs everything on
the first 40 frames with a 20-iteration cap: a check of the code path on a CPU,
not a measurement. Writes ``gpu_bench.json`` to ``--out`` if given; the last
line is ``iteration_vs_torch=X converge_seconds=Y agree_rel=Z``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from afmask.backend import get_backend, probe, use_backend
from afmask.bench.torch import TorchNet, original_model

#: Goals of issue 14.
GOAL_RATIO = 1.3
GOAL_CONVERGE_S = 10.0
GOAL_AGREE = 1e-3
UTTERANCE = Path("data") / "librispeech" / "utt-000000000.flac"
SAMPLES_15_9_S = 255120  # the utterance's length: T = 1593 frames
TINY_FRAMES = 40


def shared_folder() -> Path | None:
    """AFMASK_SHARED, else ./shared or ../shared beside the checkout, if it holds the data."""
    here = Path(__file__).resolve().parents[2]
    env = os.environ.get("AFMASK_SHARED")
    for cand in ([Path(env)] if env else []) + [here / "shared", here.parent / "shared"]:
        if (cand / UTTERANCE).is_file():
            return cand
    return None


def load_utterance(path: str | None) -> tuple[np.ndarray, str]:
    """Samples (N,) float32 of the utterance and where they came from (a synthetic stand-in, labelled, if unreadable)."""
    from afmask.io import load_audio

    if path is None:
        shared = shared_folder()
        path = None if shared is None else str(shared / UTTERANCE)
    why = "no utterance found (set AFMASK_SHARED or --audio)"
    if path is not None:
        try:
            return load_audio(path), path
        except ImportError as exc:  # no soundfile here
            why = str(exc)
            try:
                import torchaudio

                wav, rate = torchaudio.load(path)
                if rate == 16000:
                    return wav.mean(0).numpy().astype(np.float32), f"{path} (read by torchaudio)"
                why += f"; torchaudio read {rate} Hz"
            except Exception as exc2:  # torchaudio missing or without a FLAC decoder
                why += f"; torchaudio: {type(exc2).__name__}: {exc2}"
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLES_15_9_S) / 16000.0
    # speech-like: a few harmonics with a syllable-rate envelope, and a little noise
    sig = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((180, 360, 540, 720, 1100, 2300)))
    sig = sig * (0.55 + 0.45 * np.sin(2 * np.pi * 3.1 * t)) + 0.05 * rng.standard_normal(t.size)
    return (0.3 * sig / np.max(np.abs(sig))).astype(np.float32), f"SYNTHETIC 15.9 s signal ({why})"


def _median_time(fn, sync, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_times(network, clean_input: np.ndarray, samples: int, repeats: int) -> dict:
    """Median fp32 forward + backward (input gradient) in PyTorch for a batch of 1 and of S, and the twin's error."""
    try:
        import torch
    except ImportError as exc:
        return {"skipped": f"torch is not installed ({exc})"}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 proper, as afmask computes
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    twin = TorchNet(network, device)
    x1 = torch.tensor(np.ascontiguousarray(clean_input.T[None]), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu (no CUDA device: not a GPU figure)",
                 "torch": torch.__version__, "tf32": False}
    with torch.no_grad():
        got = twin(x1)[0].T.cpu().numpy()
    from afmask.fl import Variable

    want = network(Variable(clean_input, False)).host()
    out["twin_max_rel_err"] = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    for name, n in (("batch1", 1), (f"batch{samples}", samples)):
        x = x1.repeat(n, 1, 1).requires_grad_(True)

        def step(x=x):
            x.grad = None
            twin(x).square().sum().backward()

        out[name + "_s"] = _median_time(step, sync, repeats, warmup=3)
    return out


def _objective(backend: str, network, fft, clean_input, cfg):
    from afmask.mask import MaskObjective

    return MaskObjective(fft, network, cfg.variant, noise=cfg.noise, stats=cfg.stats, clean_input=clean_input,
                         backend=get_backend(backend), kernel_path=cfg.kernel_path)


def iteration_time(backend: str, samples_: np.ndarray, cfg, repeats: int, frames: int | None) -> dict:
    """Median seconds of one default iteration on ``backend`` (lambda fixed, after warm-up)."""
    from afmask.mask import MaskRun

    fft, clean_input = _features(samples_, cfg, frames)
    with use_backend(backend):
        net = original_model()
        run = MaskRun(_objective(backend, net, fft, clean_input, cfg), cfg)
        run.lam = 1.0
        B = run.B
        seconds = _median_time(run.step, B.sync, repeats)
        return {"seconds": seconds, "kernel_path": run.obj.kernel_path, "device": B.device_info().device,
                "T": int(fft.shape[1]), "network": net, "clean_input": run.obj.clean_input}


def _features(samples_: np.ndarray, cfg, frames: int | None):
    from afmask.features import features

    feats = features(samples_, stats=cfg.stats)
    if frames is None:
        return feats["fft"], feats["input"]
    return feats["fft"][:, :frames], None  # the selected frames normalised on their own, as `explain --frames`


def converge(backend: str, samples_: np.ndarray, cfg, frames: int | None) -> dict:
    """A whole default explanation on ``backend``: wall time (features to m), iterations, whether the test fired."""
    from afmask.mask import run_mask

    t0 = time.perf_counter()
    fft, clean_input = _features(samples_, cfg, frames)
    with use_backend(backend):
        obj = _objective(backend, original_model(), fft, clean_input, cfg)
        t1 = time.perf_counter()
        result = run_mask(obj, cfg, None, progress=False)
        get_backend(backend).sync()
        t2 = time.perf_counter()
    return {"seconds": t2 - t1, "end_to_end_seconds": t2 - t0, "iterations": int(result.iterations),
            "converged": bool(result.converged), "cap": cfg.iterations, "lambda": float(result.lam),
            "loop_seconds": float(result.seconds)}


def agreement(backend: str, samples_: np.ndarray, cfg, frames: int | None) -> dict:
    """max|m_backend - m_numpy| / max|m_numpy| after 20 seeded default iterations (no early stop)."""
    from afmask.mask import run_mask

    if backend == "numpy":
        return {"skipped": "the backend under test is numpy itself: nothing to compare"}
    fft, clean_input = _features(samples_, cfg, frames)
    c = cfg.replace(iterations=20, early_stop=False, seed=11)
    ms = {}
    for name in ("numpy", backend):
        with use_backend(name):
            obj = _objective(name, original_model(), fft, clean_input, c)
            ms[name] = run_mask(obj, c, None, progress=False).m_last
    ref = ms["numpy"]
    return {"rel": float(np.max(np.abs(ms[backend] - ref)) / np.max(np.abs(ref))), "iterations": 20, "seed": 11}


def run(backend: str = "cupy", audio: str | None = None, tiny: bool = False, repeats: int = 10,
        out: str | None = None) -> dict:
    """Every figure of issue 14 that runs here; parts that cannot run say why."""
    from afmask.mask import MaskConfig

    found = probe(backend)
    if not found.available:
        raise RuntimeError(f"--backend {backend}: {found.reason}")
    samples_, source = load_utterance(audio)
    frames = TINY_FRAMES if tiny else None
    cfg = MaskConfig.preset("default")
    if tiny:
        cfg = cfg.replace(iterations=20, window=5, patience=2)
    result: dict = {"backend": backend, "audio": source, "tiny": tiny, "config": cfg.to_dict()}
    it = iteration_time(backend, samples_, cfg, repeats, frames)
    net, clean_input = it.pop("network"), it.pop("clean_input")
    result["iteration"] = it
    with use_backend(backend):
        result["torch"] = torch_times(net, clean_input, cfg.samples, repeats)
    t = result["torch"]
    if "skipped" not in t:
        result["ratio_vs_torch_batch1"] = it["seconds"] / t["batch1_s"]
        result[f"ratio_vs_torch_batch{cfg.samples}"] = it["seconds"] / t[f"batch{cfg.samples}_s"]
    result["converge"] = converge(backend, samples_, cfg, frames)
    result["agreement"] = agreement(backend, samples_, cfg, frames)
    if out is not None:
        from afmask.io.files import atomic_write

        Path(out).mkdir(parents=True, exist_ok=True)
        with atomic_write(Path(out) / "gpu_bench.json") as f:
            f.write(json.dumps(result, indent=2, default=str).encode())
    return result


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def format_report(r: dict) -> str:
    """The figures, each against its goal, and the summary line last."""
    it, t, c, a = r["iteration"], r["torch"], r["converge"], r["agreement"]
    S = r["config"]["samples"]
    lines = [f"afmask bench gpu: backend {r['backend']} ({it['device']}), kernel path {it['kernel_path']}, T = {it['T']}"
             + (" [TINY: a code-path check, not a measurement]" if r["tiny"] else ""),
             f"audio: {r['audio']}",
             f"one default iteration ({S} noise samples): {it['seconds'] * 1e3:.2f} ms (median)"]
    ratio = float("nan")
    if "skipped" in t:
        lines.append(f"PyTorch comparison not run: {t['skipped']}")
    else:
        ratio = r[f"ratio_vs_torch_batch{S}"]
        lines.append(f"PyTorch fp32 fwd+bwd on {t['device']} (torch {t['torch']}, TF32 off; twin max rel err "
                     f"{t['twin_max_rel_err']:.2g}): batch 1 {t['batch1_s'] * 1e3:.2f} ms, batch {S} "
                     f"{t[f'batch{S}_s'] * 1e3:.2f} ms")
        lines.append(f"iteration / torch fwd+bwd: {r['ratio_vs_torch_batch1']:.2f} (batch 1), {ratio:.2f} (batch {S}, "
                     f"the same work); goal <= {GOAL_RATIO}: {_verdict(ratio <= GOAL_RATIO)}")
    lines.append(f"whole default explanation: {c['seconds']:.2f} s ({c['end_to_end_seconds']:.2f} s with features and "
                 f"set-up), {c['iterations']} iterations, {'converged' if c['converged'] else 'NOT converged (cap ' + str(c['cap']) + ')'}, "
                 f"lambda {c['lambda']:.4g}; goal <= {GOAL_CONVERGE_S:.0f} s converged: "
                 f"{_verdict(c['converged'] and c['seconds'] <= GOAL_CONVERGE_S)}")
    if "skipped" in a:
        lines.append(f"numpy agreement not run: {a['skipped']}")
        rel = float("nan")
    else:
        rel = a["rel"]
        lines.append(f"20 seeded iterations, numpy vs {r['backend']}: max|dm|/max|m| = {rel:.3g}; goal <= {GOAL_AGREE:g}: "
                     f"{_verdict(rel <= GOAL_AGREE)}")
    lines.append(f"iteration_vs_torch={ratio:.3f} converge_seconds={c['seconds']:.2f} agree_rel={rel:.3g}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The benchmark's options."""
    parser.add_argument("--backend", default=os.environ.get("AFMASK_BACKEND") or "cupy",
                        help="the backend under test (default: AFMASK_BACKEND, else cupy)")
    parser.add_argument("--audio", default=None, help="utterance (default: shared/data/librispeech/utt-000000000.flac)")
    parser.add_argument("--tiny", action="store_true", help=f"first {TINY_FRAMES} frames, 20-iteration cap: a CPU check of the code path")
    parser.add_argument("--repeats", type=int, default=10, metavar="N", help="timed runs per median (default 10)")
    parser.add_argument("--out", default=None, metavar="DIR", help="write gpu_bench.json there")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run with parsed options and print the report."""
    if args.repeats < 1:
        raise ValueError(f"--repeats: expected >= 1, got {args.repeats}")
    print(format_report(run(args.backend, args.audio, args.tiny, args.repeats, args.out)))
    return 0

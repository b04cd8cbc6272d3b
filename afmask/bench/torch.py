"""``afmask bench torch``: afmask against a native PyTorch implementation of the same work, in one run, interleaved.

PyTorch (a development dependency; this module imports it only when run) runs
the same network with the same weights as direct 1-D convolutions (eager
``conv1d``, ``torch.jit.trace`` of it, and ``torch.compile`` where it works
here), and the same default-mode iteration (S noise samples of relative noise,
the same m and noise, posteriors, Adam) by autograd. Each row times afmask and
every PyTorch variant in turn, round after round, and reports the median of
each and the ratio afmask / fastest PyTorch variant, with the spread of the
per-round ratios. Both sides use the thread count afmask chose.

Also: the iteration against S x (network forward + backward), afmask's cost
per frame at three lengths, the peak RSS of ``afmask explain --no-report`` at
the longest (a subprocess), and the iteration with a bounded busy loop on the
other core against the same on an idle core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

#: Frames of the rows: the bundled utterance (528), 3x and 12x its length.
LENGTHS = (528, 1593, 6372)


class TorchMissing(RuntimeError):
    """PyTorch is not installed here."""


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise TorchMissing(f"PyTorch is not installed ({exc}); `pip install afmask[dev]` (or torch) to compare with it") from None
    return torch


# -- the same network in PyTorch -----------------------------------------------------------------
def torch_layers(net, device: str = "cpu") -> list:
    """afmask's wav2letter Sequential as a list of ("conv", w, b, stride, pad) / ("relu",) / ("linear", w, b) steps,
    the tensors on ``device``."""
    from afmask.fl import nn

    torch = _torch()
    host = lambda v: np.ascontiguousarray(v.host().reshape(v.dims()))  # noqa: E731 - AF dims, 4-D
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    steps, seen_view, seen_reorder = [], False, False
    for m in net.modules():
        if isinstance(m, nn.View) and not seen_view and m.dims[:2] == (-1, 1):
            seen_view = True
        elif isinstance(m, nn.Conv2D) and m.wy == 1 and m.sy == 1 and not seen_reorder:
            w = host(m.param(0))[:, 0].transpose(2, 1, 0)  # [kw, C, cout] -> (cout, C, kw)
            b = host(m.param(1)).reshape(-1) if m.bias else None
            steps.append(("conv", tensor(w), None if b is None else tensor(b), m.sx, m.px, m.wx))
        elif isinstance(m, nn.ReLU):
            steps.append(("relu",))
        elif isinstance(m, nn.Reorder) and m.perm == (2, 0, 3, 1):
            seen_reorder = True
            steps.append(("to_frames",))
        elif isinstance(m, nn.Linear) and seen_reorder:
            b = host(m.param(1)).reshape(-1) if m.bias else None
            steps.append(("linear", tensor(host(m.param(0))[:, :, 0, 0]), None if b is None else tensor(b)))
        else:
            raise NotImplementedError(f"bench torch: layer {m.prettyString()} is not in the wav2letter conv/linear form")
    return steps


def _same_pad(n: int, k: int, s: int, p: int) -> int:
    from afmask.fl.nn import derive_padding

    return derive_padding(n, k, s, p)


def TorchNet(net, device: str = "cpu"):  # noqa: N802 - builds a module, named like one
    """The network as a ``torch.nn.Module`` on (N, K, T) giving (N, T', 31) (direct 1-D convolutions) on ``device``."""
    torch = _torch()
    F = torch.nn.functional
    steps = torch_layers(net, device)

    class W2L(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.steps = steps

        def forward(self, x):
            for st in self.steps:
                if st[0] == "conv":
                    _, w, b, s, p, k = st
                    x = F.conv1d(x, w, b, stride=s, padding=_same_pad(int(x.shape[2]), k, s, p))
                elif st[0] == "relu":
                    x = torch.relu(x)
                elif st[0] == "to_frames":
                    x = x.transpose(1, 2)
                else:
                    x = F.linear(x, st[1], st[2])
            return x

    return W2L().eval()


# -- timing ---------------------------------------------------------------------------------------
@dataclass
class Row:
    """One compared row: afmask's times, each PyTorch variant's, and the per-round ratios."""

    name: str
    afmask_ms: list = field(default_factory=list)
    torch_ms: dict = field(default_factory=dict)
    note: str = ""

    def medians(self) -> tuple[float, str, float]:
        """afmask's median, the fastest PyTorch variant and its median."""
        a = statistics.median(self.afmask_ms)
        best = min(self.torch_ms, key=lambda k: statistics.median(self.torch_ms[k]))
        return a, best, statistics.median(self.torch_ms[best])

    def ratio(self) -> tuple[float, float, float]:
        """Median ratio afmask / fastest PyTorch, and the 25th and 75th percentiles of the per-round ratios."""
        _, best, _ = self.medians()
        r = sorted(a / t for a, t in zip(self.afmask_ms, self.torch_ms[best]))
        q = statistics.quantiles(r, n=4) if len(r) >= 2 else [r[0]] * 3
        return statistics.median(r), q[0], q[2]


def _ms(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def _settled_ms(fn: Callable[[], Any]) -> float:
    """The time of ``fn``'s second call of two in a row: the first absorbs what the previous side left running."""
    fn()
    return _ms(fn)


def interleave(row: Row, afmask_fn: Callable, torch_fns: dict, rounds: int) -> Row:
    """Time afmask and each PyTorch variant in turn, ``rounds`` times, each timed call after an untimed one.

    Right after one side the other's first call competes with the first side's idle threads: OpenBLAS's workers
    and PyTorch's OpenMP threads spin for a while after their work. Timed right after each other, original-width
    fwd+bwd measured 97 ms (afmask) and 158 ms (PyTorch jit.trace) on two threads here, against 80 and 81-85 ms
    for each in a row of its own calls; the untimed call in between takes that cost, for both sides alike."""
    row.torch_ms = {k: [] for k in torch_fns}
    for _ in range(rounds):
        row.afmask_ms.append(_settled_ms(afmask_fn))
        for k, fn in torch_fns.items():
            row.torch_ms[k].append(_settled_ms(fn))
    return row


# -- the work on each side ----------------------------------------------------------------------
def demo_fft(frames: int) -> np.ndarray:
    """The bundled utterance's FFT (2K, T), repeated along time to exactly ``frames`` frames."""
    from afmask.features import features
    from afmask.io import demo_audio, load_audio

    fft = features(load_audio(demo_audio()))["fft"]
    reps = -(-frames // fft.shape[1])
    return np.asfortranarray(np.tile(fft, (1, reps))[:, :frames])


def original_model(width: int = 256, seed: int = 0):
    """The original architecture (DESIGN.md) at ``width`` with random weights."""
    from afmask.model import load_model
    from afmask.model.arch import original_arch

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "original.arch"
        path.write_text(original_arch(width))
        return load_model(path, seed=seed)


def afmask_fwd_bwd(net, x: np.ndarray) -> Callable[[], Any]:
    """afmask: the network forward on (T, K) and back to its input (gradient of the sum of the outputs)."""
    from afmask.fl import Variable

    def run():
        v = Variable(x, True)
        out = net(v)
        out.backward(Variable(out.backend.full(out.dims(), 1.0, out.type()), False))
        return v.grad().array()

    return run


def torch_fwd_bwd(tnet: Callable, x: np.ndarray) -> tuple[Callable, Any]:
    """PyTorch: the same on (1, K, T); the function of the input tensor and an example input."""
    torch = _torch()
    xt = torch.from_numpy(np.ascontiguousarray(x.T[None]))

    def fwd_bwd(inp):
        inp = inp.detach().requires_grad_(True)
        y = tnet(inp)
        y.backward(torch.ones_like(y))
        return inp.grad

    return fwd_bwd, xt


class TorchIteration:
    """The default-mode iteration in PyTorch: relative noise, S samples, posteriors, -lam*mean(log m^2), Adam, m <= m_max."""

    def __init__(self, tnet: Callable, fft: np.ndarray, pre: np.ndarray, cfg, lam: float):
        torch = _torch()
        self.torch, self.tnet, self.cfg, self.lam = torch, tnet, cfg, float(lam)
        self.x = torch.from_numpy(np.ascontiguousarray(fft))  # (2K, T)
        mag = np.sqrt(fft[0::2].astype(np.float64) ** 2 + fft[1::2].astype(np.float64) ** 2).astype(np.float32)
        self.scale = torch.from_numpy(np.repeat(mag, 2, axis=0))  # |x_k| on both rows of bin k
        self.pre = torch.from_numpy(np.ascontiguousarray(pre))  # (S or 1, T', 31)
        import math

        self.theta = torch.full(fft.shape, math.log(cfg.m_init), requires_grad=True)
        self.opt = torch.optim.Adam([self.theta], lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.adam_eps)
        self.theta_max = math.log(cfg.m_max) if cfg.m_max is not None else None

    def loss(self, eps):
        """f + R for noise ``eps`` (S, T, 2K) of N(0, 1)."""
        torch = self.torch
        m = torch.exp(self.theta)
        xt = self.x[None] + eps.transpose(1, 2) * self.scale[None] * m[None]  # (S, 2K, T)
        mag = torch.sqrt(xt[:, 0::2] ** 2 + xt[:, 1::2] ** 2)  # (S, K, T)
        mean = mag.mean(dim=(1, 2), keepdim=True)
        c = mag - mean
        inp = c / torch.sqrt((c * c).mean(dim=(1, 2), keepdim=True))
        post = torch.softmax(self.tnet(inp), dim=2)  # (S, T', 31)
        f = ((self.pre - post) ** 2).sum(dim=(1, 2)).mean()
        return f, -self.lam * torch.log(m * m).mean()

    def step(self, eps=None):
        """One iteration (noise drawn by torch.randn unless given); f."""
        torch = self.torch
        if eps is None:
            eps = torch.randn(self.cfg.samples, self.x.shape[1], self.x.shape[0])
        self.opt.zero_grad(set_to_none=True)
        f, r = self.loss(eps)
        (f + r).backward()
        self.opt.step()
        if self.theta_max is not None:
            with torch.no_grad():
                self.theta.clamp_(max=self.theta_max)
        return float(f.detach())


def afmask_run(net, fft: np.ndarray, cfg):
    """afmask's MaskRun for ``cfg`` on ``fft`` (lambda fixed at 1, as afmask bench mask times it)."""
    from afmask.mask import MaskObjective, MaskRun

    obj = MaskObjective(fft, net, cfg.variant, noise=cfg.noise, stats=cfg.stats)
    run = MaskRun(obj, cfg)
    run.lam = 1.0
    return run


def iteration_agreement(net, tnet, fft: np.ndarray, cfg) -> float:
    """Relative difference of f between afmask and the PyTorch iteration on the same m and the same noise."""
    torch = _torch()
    run = afmask_run(net, fft, cfg)
    obj = run.obj
    eps = obj.draw_noise(123, cfg.samples)  # (2K, T, S), relative: already times |x_k|
    f_af = obj.forward(run.scale(), eps).f.scalar()
    pre = np.ascontiguousarray(obj.pre.host().reshape(31, -1, 1).transpose(2, 1, 0))
    it = TorchIteration(tnet, fft, pre, cfg, 1.0)
    raw = np.asarray(eps) / np.maximum(obj.B.to_numpy(obj.noise_scale)[:, :, None], 1e-30)
    with torch.no_grad():
        f_t, _ = it.loss(torch.from_numpy(np.ascontiguousarray(raw.transpose(2, 1, 0))))
    return abs(f_af - float(f_t)) / abs(float(f_t))


# -- the rows -------------------------------------------------------------------------------------
@dataclass
class Settings:
    """What one run measures."""

    lengths: tuple = LENGTHS
    rounds: int = 15
    long_rounds: int = 3
    compile: bool = False
    busy_seconds: float = 120.0
    memory: bool = True
    original_width: int = 256


QUICK = Settings(lengths=(96, 192, 384), rounds=3, long_rounds=2, compile=False, busy_seconds=8.0, memory=True,
                 original_width=32)


def _set_torch_threads(n: int) -> None:
    torch = _torch()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def network_rows(st: Settings, log: Callable[[str], None]) -> list:
    """fwd+bwd to the input: the demo model at the two shorter lengths, the original architecture at the middle one."""
    from afmask.model import demo_model

    rows = []
    demo = demo_model()
    orig = original_model(st.original_width)
    rng = np.random.default_rng(0)
    cases = [("demo model fwd+bwd", demo, st.lengths[0]), ("demo model fwd+bwd", demo, st.lengths[1]),
             (f"original architecture (width {st.original_width}) fwd+bwd", orig, st.lengths[1])]
    for name, net, T in cases:
        x = rng.standard_normal((T, 257)).astype(np.float32)
        tnet = TorchNet(net)
        fn, xt = torch_fwd_bwd(tnet, x)
        variants, notes = {"eager": lambda fn=fn, xt=xt: fn(xt)}, []
        try:  # the traced forward, autograd's backward
            traced = _torch().jit.trace(tnet, xt, check_trace=False)
            tfn, _ = torch_fwd_bwd(traced, x)
            variants["jit.trace"] = lambda tfn=tfn, xt=xt: tfn(xt)
        except Exception as exc:  # noqa: BLE001 - a variant that does not work here is reported, not fatal
            notes.append(f"jit.trace failed: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}")
        if st.compile:
            try:
                cfn, _ = torch_fwd_bwd(_torch().compile(tnet, dynamic=False), x)
                cfn(xt)
                variants["compile"] = lambda cfn=cfn, xt=xt: cfn(xt)
            except Exception as exc:  # noqa: BLE001 - no compiler here, for instance
                notes.append(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}")
        row = interleave(Row(f"{name}, T = {T}", note="; ".join(notes)), afmask_fwd_bwd(net, x), variants, st.rounds)
        rows.append(row)
        log(format_row(row))
    return rows


def iteration_rows(st: Settings, log: Callable[[str], None]) -> tuple[list, dict]:
    """The default iteration at the two shorter lengths against PyTorch; also the S x fwd+bwd denominator."""
    from afmask.mask import MaskConfig
    from afmask.model import demo_model

    # the PyTorch twin implements relative noise (the default before attenuation): the two draw the same numbers
    # and cost the same per iteration
    cfg = MaskConfig.preset("default", noise="relative", m_max=10.0)
    net = demo_model()
    tnet = TorchNet(net)
    rows, extra = [], {"agreement": {}, "per_sample": {}}
    for T in st.lengths[:2]:
        fft = demo_fft(T)
        run = afmask_run(net, fft, cfg)
        pre = np.ascontiguousarray(run.obj.pre.host().reshape(31, -1, 1).transpose(2, 1, 0))
        variants = {"eager": TorchIteration(tnet, fft, pre, cfg, 1.0).step}
        try:
            traced = _torch().jit.trace(tnet, _torch().zeros(cfg.samples, fft.shape[0] // 2, T), check_trace=False)
            variants["jit.trace"] = TorchIteration(traced, fft, pre, cfg, 1.0).step
        except Exception:  # noqa: BLE001 - eager only
            pass
        if st.compile:
            try:
                c = TorchIteration(_torch().compile(tnet, dynamic=False), fft, pre, cfg, 1.0)
                c.step()
                variants["compile"] = c.step
            except Exception:  # noqa: BLE001
                pass
        xin = np.random.default_rng(1).standard_normal((T, 257)).astype(np.float32)
        fwd = afmask_fwd_bwd(net, xin)
        row = Row(f"default iteration (S = {cfg.samples}, Adam, relative noise), T = {T}")
        interleave(row, run.step, variants, st.rounds)
        # the denominator, interleaved with the iteration itself
        it_ms, fb_ms = [], []
        for _ in range(st.rounds):
            it_ms.append(_ms(run.step))
            fb_ms.append(_ms(fwd))
        extra["per_sample"][T] = (statistics.median(it_ms), statistics.median(fb_ms), cfg.samples)
        extra.setdefault("threads", {})[T] = run.thread_count()  # the iteration's own choice; fwd+bwd ran with it
        extra["agreement"][T] = iteration_agreement(net, tnet, fft, cfg)
        rows.append(row)
        log(format_row(row))
    return rows, extra


def per_frame(st: Settings, log: Callable[[str], None]) -> dict:
    """afmask's default iteration at each length: median ms and ms per frame, interleaved across lengths."""
    from afmask.mask import MaskConfig
    from afmask.model import demo_model

    cfg = MaskConfig.preset("default")
    net = demo_model()
    runs = {T: afmask_run(net, demo_fft(T), cfg) for T in st.lengths}
    times: dict = {T: [] for T in st.lengths}
    for r in runs.values():
        r.step()
    for _ in range(st.long_rounds):
        for T, r in runs.items():
            times[T].append(_ms(r.step))
    out = {T: statistics.median(t) for T, t in times.items()}
    log(f"default iteration at each length ({st.long_rounds} interleaved rounds): "
        + ", ".join(f"T = {T}: {ms:.0f} ms ({ms / T:.3f} ms/frame)" for T, ms in out.items()))
    return out


def _audio_of(frames: int, folder: Path) -> Path:
    from afmask.io import demo_audio, load_audio
    from afmask.io.audio import write_audio

    samples = load_audio(demo_audio())
    need = frames * 160 + 400 + 160
    path = folder / f"long-{frames}.wav"
    write_audio(path, np.resize(samples, need))
    return path


def _child_env() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


#: Runs ``afmask`` with the given arguments, then prints the process's peak RSS (VmHWM, kB): the child's own,
#: not the pre-exec copy of this (large, torch-holding) process that ru_maxrss of a child would include.
_RSS_CHILD = (
    "import sys\n"
    "from afmask.cli import main\n"
    "status = main(sys.argv[1:])\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
    "print('VmHWM', hwm[0].split()[1] if hwm else -1, flush=True)\n"
    "sys.exit(status)\n"
)


def peak_rss_mb(frames: int, iterations: int = 3) -> float:
    """Peak RSS (MB) of ``afmask explain --no-report`` on ``frames`` frames, in a child process of its own."""
    with tempfile.TemporaryDirectory() as d:
        audio = _audio_of(frames, Path(d))
        args = ["explain", str(audio), "--out", str(Path(d) / "run"), "--no-report", "--no-progress",
                "--iterations", str(iterations), "--frames", f"0:{frames}", "--lambda", "1"]
        out = subprocess.run([sys.executable, "-c", _RSS_CHILD, *args], capture_output=True, text=True,
                             env=_child_env(), check=False)
        if out.returncode != 0:
            raise RuntimeError(f"afmask explain failed ({out.returncode}): {out.stderr.strip()[-300:]}")
        kb = [ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("VmHWM")]
        if not kb or int(kb[-1]) < 0:
            raise RuntimeError("could not read the child's peak RSS (/proc/self/status VmHWM)")
        return int(kb[-1]) / 1024.0


def _cpu_now() -> int:
    """The CPU this process's main thread last ran on (/proc/self/stat, field 39); -1 if unknown."""
    try:
        return int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return -1


def _spin(go, stop, cpu, seconds: float) -> None:
    """A busy loop on CPU ``cpu.value`` while ``go`` is set, for at most ``seconds`` in all: the other core busy."""
    end = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < end:
        if go.wait(0.01):
            if cpu.value >= 0 and hasattr(os, "sched_setaffinity"):
                try:
                    os.sched_setaffinity(0, {cpu.value})
                except OSError:
                    pass
            t = time.monotonic() + 0.005
            while time.monotonic() < t:
                pass


def _busy_child(frames: int, rounds: int, seconds: float) -> dict:
    """In a fresh process (which chooses its own threads): the default iteration, alternately with the other core
    idle and with a bounded busy loop on it; the medians and the median of the per-pair ratios."""
    import multiprocessing as mp

    from afmask.backend import threads
    from afmask.mask import MaskConfig
    from afmask.model import demo_model

    choice = threads.configure()
    run = afmask_run(demo_model(), demo_fft(frames), MaskConfig.preset("default"))
    run.step()
    ctx = mp.get_context("fork")
    go, stop, cpu = ctx.Event(), ctx.Event(), ctx.Value("i", -1)
    spinner = ctx.Process(target=_spin, args=(go, stop, cpu, seconds), daemon=True)
    spinner.start()
    idle, busy = [], []
    try:
        for _ in range(rounds):
            idle.append(_ms(run.step))
            here, cores = _cpu_now(), sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
            # the loop goes to another core than the one the iteration runs on (not onto the iteration's own core)
            cpu.value = next((c for c in cores if c != here), -1) if here >= 0 else -1
            go.set()
            time.sleep(0.05)  # the loop is spinning before the iteration starts
            busy.append(_ms(run.step))
            go.clear()
    finally:
        stop.set()
        spinner.join(5)
        if spinner.is_alive():
            spinner.kill()
    ratios = sorted(b / a for a, b in zip(idle, busy))
    return {"idle_ms": statistics.median(idle), "busy_ms": statistics.median(busy), "ratio": statistics.median(ratios),
            "ratio_range": (ratios[0], ratios[-1]), "threads": threads.current().threads,
            "reason": f"chosen at the start: {choice.threads} ({choice.reason}); at the end: {threads.current().reason}"}


def busy_core(st: Settings, frames: int, log: Callable[[str], None]) -> dict:
    """The default iteration in a fresh process, alternately on an idle machine and with the other core busy."""
    code = ("from afmask.bench.torch import _busy_child as c; import json; "
            f"print(json.dumps(c({frames}, {st.rounds}, {st.busy_seconds})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_child_env(), check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the busy-core child failed: {out.stderr.strip()[-300:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    log(f"busy core (T = {frames}, {res['threads']} thread(s): {res['reason']}): {res['busy_ms']:.0f} ms/iteration with a "
        f"busy loop on the other core vs {res['idle_ms']:.0f} ms without, interleaved: ratio {res['ratio']:.2f} "
        f"(range {res['ratio_range'][0]:.2f}-{res['ratio_range'][1]:.2f})")
    return res


# -- report ---------------------------------------------------------------------------------------
def format_row(row: Row) -> str:
    """One row: afmask's median, the fastest PyTorch variant's, their ratio and its spread."""
    a, best, t = row.medians()
    r, lo, hi = row.ratio()
    others = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in row.torch_ms.items() if k != best)
    line = f"{row.name}: afmask {a:.1f} ms, PyTorch {best} {t:.1f} ms -> ratio {r:.3f} (quartiles {lo:.3f}-{hi:.3f})"
    if others:
        line += f"; other PyTorch: {others} ms"
    return line + (f" [{row.note}]" if row.note else "")


def run(st: Settings, log: Callable[[str], None] = print) -> dict:
    """Every figure; each line is logged as soon as it is measured."""
    from afmask.backend import threads

    import warnings

    torch = _torch()
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # the SAME padding is fixed per traced length
    warnings.filterwarnings("ignore", message=".*jit.trace.* is deprecated", category=DeprecationWarning)
    choice = threads.current()
    _set_torch_threads(choice.threads)
    log(f"threads: {choice.threads} ({choice.reason}); PyTorch {torch.__version__} on {torch.get_num_threads()} thread(s)")
    from afmask.backend import blas_kernels

    forced = None if threads.coretype_note else os.environ.get(blas_kernels.ENV)  # not afmask's own hand-on
    log(f"NumPy's OpenBLAS kernels: {threads.numpy_blas_architecture() or 'unknown'}"
        + (f" ({blas_kernels.ENV}={forced})" if forced else " (its own choice)")
        + (f"; warning: {blas_kernels.held_back()}" if blas_kernels.held_back() else ""))
    log(f"rounds: {st.rounds} interleaved per row (afmask, then each PyTorch variant, each timed call after an untimed "
        f"one); ratio = median over rounds"
        + ("" if st.compile else "; torch.compile not timed (--compile)"))
    out: dict = {"threads": choice.threads, "reason": choice.reason}
    out["network"] = network_rows(st, log)
    rows, extra = iteration_rows(st, log)
    out["iteration"] = rows
    for T, (it, fb, S) in extra["per_sample"].items():
        log(f"iteration / (S x fwd+bwd) at T = {T} ({extra['threads'][T]} thread(s), the iteration's choice): "
            f"{it:.1f} / ({S} x {fb:.1f}) = {it / (S * fb):.2f}")
        log(f"f of afmask and PyTorch on the same m and noise, T = {T}: relative difference {extra['agreement'][T]:.1e}")
    out["extra"] = extra
    pf = per_frame(st, log)
    base = pf[st.lengths[0]] / st.lengths[0]
    log("per-frame cost relative to T = {}: ".format(st.lengths[0])
        + " / ".join(f"{(ms / T) / base:.2f}" for T, ms in pf.items()))
    out["per_frame"] = pf
    if st.memory:
        mb = peak_rss_mb(st.lengths[-1])
        log(f"peak RSS of afmask explain --no-report at T = {st.lengths[-1]}: {mb:.0f} MB")
        out["peak_rss_mb"] = mb
    out["busy"] = busy_core(st, st.lengths[0], log)
    return out


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``afmask bench torch``."""
    p.add_argument("--quick", action="store_true", help="small lengths and few rounds: a smoke run of seconds")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per row (default 15)")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile (needs a C++ compiler; each length compiles for minutes on a small machine)")
    return p


def run_from_args(args: argparse.Namespace) -> int:
    """Run and print; a message and status 0 where PyTorch is not installed."""
    import dataclasses

    try:
        _torch()
    except TorchMissing as exc:
        print(f"afmask bench torch: skipped: {exc}")
        return 0
    st = QUICK if args.quick else Settings()
    if args.rounds is not None:
        st = dataclasses.replace(st, rounds=max(args.rounds, 1))
    if args.compile:
        st = dataclasses.replace(st, compile=True)
    run(st, lambda line: print(line, flush=True))
    return 0


def main(argv: Optional[list] = None) -> int:
    """``python -m afmask.bench.torch``."""
    return run_from_args(add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

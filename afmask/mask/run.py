"""The mask loop: noise, forward, gradient, update; diagnostics, convergence, checkpoints and resume."""

from __future__ import annotations

import contextlib
import csv
import io as _io
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from afmask.backend import threads
from afmask.backend.workspace import POOL, return_free_memory
from afmask.fl import Variable
from afmask.io import save_array
from afmask.io.files import atomic_write
from afmask.kernels import mask_step
from afmask.mask import terms
from afmask.mask.config import ATTENUATIONS, MaskConfig
from afmask.mask.monitor import ConvergenceMonitor
from afmask.mask.objective import MaskObjective, fortran
from afmask.mask.optim import Adam, make_optimizer

#: Columns of log.csv, one row per iteration.
LOG_COLUMNS = ("iteration", "total", "f_term", "reg_term", "grad_f_norm", "grad_reg_norm", "m_mean", "m_var", "seconds")
CHECKPOINT = "checkpoint.npz"
#: The run folder's tie-break of the bins at the bound (MaskResult.tiebreak), beside m.npy.
TIEBREAK_FILE = "tiebreak.npy"
#: Run the default configuration's update in one pass of the extension where it applies (tests compare both ways).
FUSED_UPDATE = True
#: Draw the next iteration's noise during this one (NumPy backend; the same numbers either way).
PREFETCH_NOISE = True
CONFIG_FILE = "config.json"
#: Settings a resumed run may change: they decide how long it runs and how often it saves, not what it computes.
RESUMABLE = ("iterations", "checkpoint_every", "checkpoint_seconds")
#: A run whose remaining iterations would take longer than this says so once its first iterations are timed.
LONG_RUN_SECONDS = 3600.0
#: Signals that stop the loop with a checkpoint (SIGINT: Ctrl-C; SIGTERM: kill, a job scheduler's stop).
STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


class RunInterrupted(KeyboardInterrupt):
    """The loop stopped on SIGINT or SIGTERM; the checkpoint it wrote (if any) resumes it. ``exit_code`` is 128 + signal.

    A KeyboardInterrupt, so that code which handles Ctrl-C handles it too (and ``except Exception`` does not).
    """

    def __init__(self, signum: int, iteration: int, iterations: int, checkpoint: Optional[Path]):
        self.signum, self.iteration, self.iterations, self.checkpoint = signum, iteration, iterations, checkpoint
        self.exit_code = 128 + int(signum)
        name = signal.Signals(signum).name
        if checkpoint is not None:
            saved = f"checkpoint written to {checkpoint}"
        else:
            saved = "nothing to resume from (no output folder, or stopped before the first iteration)"
        super().__init__(f"interrupted by {name} after {iteration} of {iterations} iterations; {saved}")


class _Stop(BaseException):
    """Raised by the signal handler inside the loop (a BaseException, so no ``except Exception`` swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class MaskResult:
    """What a run found: the noise scale m (2K, T) and how it got there."""

    m: np.ndarray
    m_last: np.ndarray
    lam: float
    iterations: int
    converged_at: int
    best_iteration: int
    seconds: float
    history: list = field(default_factory=list)
    config: Optional[MaskConfig] = None
    kernel_path: str = ""
    #: the tie-break of the bins at the bound (K, T): the mean over the updates of each bin's -log s (``tie_break = "path"``)
    tiebreak: Optional[np.ndarray] = None

    def importance(self) -> np.ndarray:
        """Importance per bin (K, T) of m, the bins at the bound ordered by the tie-break (afmask.mask.importance)."""
        from afmask.mask.importance import importance

        return importance(self.m, self.tiebreak, self.config.m_max if self.config is not None else None)

    @property
    def converged(self) -> bool:
        """Whether the convergence test fired."""
        return self.converged_at >= 0

    def summary(self) -> dict:
        """A JSON-able summary."""
        last = self.history[-1] if self.history else {}
        return {
            "iterations": self.iterations, "converged": self.converged, "converged_at": self.converged_at,
            "best_iteration": self.best_iteration, "lambda": self.lam, "seconds": round(self.seconds, 3),
            "seconds_per_iteration": round(self.seconds / max(self.iterations, 1), 5),
            "final": {k: last.get(k) for k in ("total", "f_term", "reg_term", "grad_f_norm", "grad_reg_norm", "m_mean", "m_var")},
            "kernel_path": self.kernel_path,
        }


def iteration_seed(seed: int, iteration: int, stream: int = 0) -> int:
    """The noise seed of one iteration (stream 0; stream 1 is the automatic lambda's): resumed runs draw the same noise."""
    return int(np.random.SeedSequence([seed, stream, iteration]).generate_state(1)[0])


class MaskRun:
    """One explanation run: the loop's state, so it can stop, checkpoint and resume."""

    def __init__(self, objective: MaskObjective, config: MaskConfig, out_dir: Optional[os.PathLike] = None):
        config.validate()
        self.obj, self.cfg = objective, config
        self.B = objective.B
        self.out = Path(out_dir) if out_dir is not None else None
        self.optimizer = make_optimizer(self.B, config.optimizer, config.lr, config.betas, config.adam_eps)
        shape = (2 * objective.K, objective.T)
        theta0 = terms.theta_for(config.parametrization, config.m_init)
        self.theta = fortran(self.B, self.B.full(shape, theta0, objective.dtype))
        self.best_theta = self.B.copy(self.theta)
        self.monitor = ConvergenceMonitor(config.window, config.rtol, config.patience)
        self.history: list[dict] = []
        self.iteration = 0
        self.lam: Optional[float] = None if config.lam == "auto" else float(config.lam)
        self.auto_lambda: dict = {}
        self.seconds = 0.0
        self._ahead: Optional[tuple] = None  # (seed, future) of noise drawn ahead
        self._threads = threads.StepThreads(self.B.name)
        self._pool = None
        #: where one-line notes go (the time estimate of a long run); the command line prints them to stderr.
        self.notify: Callable[[str], None] = _say
        self.estimate: dict = {}
        self._signal: Optional[int] = None
        self._critical = False
        # the tie-break's running sum over the updates so far: of each bin's -log s (all but the last one's) for
        # "path", of each bin's m * df/dm for "gradient"
        self.path_sum = (np.zeros((objective.K, objective.T), np.float32)
                         if config.tie_break != "none" and config.m_max is not None else None)
        self.path_n = 0

    # -- one step ---------------------------------------------------------------------------
    def scale(self, theta: Any = None) -> Any:
        """The noise scale m for a parameter (default: the current one)."""
        return terms.scale_from(self.B, self.cfg.parametrization, self.theta if theta is None else theta)

    def _by_pass(self) -> bool:
        """Whether the noise is made pass by pass (:class:`afmask.mask.objective.NoiseParts`): attenuation from the
        host generator on NumPy when the S samples take more than one network pass (a long utterance), so that
        neither the whole noise nor the whole draw is ever held; then it is not drawn ahead either."""
        cfg = self.cfg
        return (self.B.name == "numpy" and cfg.noise in ATTENUATIONS and cfg.noise_generator == "host"
                and cfg.gradient == "hand" and self.obj.samples_per_pass(cfg.samples) < cfg.samples)

    def _fresh_noise(self, seed: int) -> Any:
        """The noise for ``seed``, drawn now (pass by pass where :meth:`_by_pass`)."""
        if self._by_pass():
            return self.obj.noise_parts(seed, self.cfg.samples)
        return self.obj.draw_noise(seed, self.cfg.samples, self.cfg.noise_generator)

    def _noise(self, seed: int) -> Any:
        """The noise for ``seed``: drawn ahead on the NumPy backend (the same numbers, see prefetch_noise)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == seed:
            drawn = ahead[1].result()
            if self.B.name != "numpy":  # drawn on the host ahead: the copy to the device happens here
                return self.obj.noise_from_host(drawn, self.cfg.samples)
            return drawn if not self.obj.attenuates else self.obj.noise_from(drawn, self.cfg.samples)
        return self._fresh_noise(seed)

    def prefetch_noise(self, seed: int) -> None:
        """Start drawing the noise for ``seed`` in a background thread (on the host: NumPy's generator).

        The host generator (numpy.random, which releases the GIL while it fills an array) was 15% of an
        iteration; drawn during the previous iteration's network pass it costs nothing on a machine with a free
        core, and the numbers are those of the same seed drawn in place, so runs stay bit-reproducible. Without
        a free core (BLAS on every core) it is drawn in place: the drawing thread then made every multi-threaded
        GEMM wait (relative noise at T = 1593 on two threads: 139 ms an iteration drawn ahead, 131 in place)."""
        if not PREFETCH_NOISE or (self.B.name != "numpy" and self.cfg.noise_generator != "host") or self._by_pass():
            return
        if not threads.spare_core():
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="afmask-noise")
        # NumPy: only the random numbers for attenuation (u, K x T per sample: half the size of the noise); the
        # other noises are the size of their random numbers, so they are scaled there too. Other backends: only
        # the host draw runs ahead (NumPy's generator), the copy to the device waits for _noise
        if self.B.name == "numpy":
            draw = self.obj.draw_raw if self.obj.attenuates else self.obj.draw_noise
            job = self._pool.submit(draw, seed, self.cfg.samples, self.cfg.noise_generator)
        else:
            job = self._pool.submit(self.obj.draw_raw_host, seed, self.cfg.samples)
        self._ahead = (seed, job)

    def data_gradient(self, m: Any, seed: int, eps: Any = None) -> tuple[float, Any, float]:
        """f, df/dm and ||df/dm||^2 for one batch of noise (that of ``seed``, unless already drawn as ``eps``)."""
        eps = self._fresh_noise(seed) if eps is None else eps
        if self.cfg.gradient == "hand":
            return self.obj.value_and_gradient(m, eps)
        mv = Variable(m, True)
        fv = self.obj.autograd_f(mv, eps)
        fv.backward()
        g = mv.grad().array()
        return fv.scalar(), g, float(self.B.scalar(self.B.sum(self.B.astype(g, np.float64) ** 2, [0, 1])))

    def choose_lambda(self, draws: int = 4) -> float:
        """lambda = lambda_scale * mean ||df/dm|| / ||dR/dm at lambda = 1||, at the initial m."""
        m = self.scale()
        norms = [math.sqrt(self.data_gradient(m, iteration_seed(self.cfg.seed, j, stream=1))[2]) for j in range(draws)]
        m_sq = terms.sqnorm(self.B, m, self.cfg.norm_accumulation)
        _, reg1 = terms.regularizer(self.B, self.cfg.regularizer, m, 1.0, m_sq)
        reg_norm = terms.regularizer_grad_norm(self.B, self.cfg.regularizer, m, 1.0, m_sq, reg1)
        lam = self.cfg.lambda_scale * float(np.mean(norms)) / reg_norm
        self.auto_lambda = {"grad_f_norms": norms, "grad_reg_norm_at_lambda_1": reg_norm, "lambda": lam}
        return lam

    def thread_count(self) -> int:
        """The BLAS/OpenMP threads this run's iterations use (afmask.backend.threads.StepThreads)."""
        return self._threads.count()

    def step(self) -> dict:
        """One iteration: returns its log row."""
        self._threads.before()  # more than one thread only while the steps measure faster with them
        t0 = time.perf_counter()
        B, cfg = self.B, self.cfg
        theta = self.theta
        m = self.scale(theta)
        B.eval(m)  # ArrayFire: m feeds the gradient and every term of the update
        seed = iteration_seed(cfg.seed, self.iteration)
        eps = self._noise(seed)
        if self.iteration + 1 < cfg.iterations:  # none past the last step: it would only hold memory
            self.prefetch_noise(iteration_seed(cfg.seed, self.iteration + 1))
        try:
            f, g_data, g_sq = self.data_gradient(m, seed, eps)
            eps = None  # the update below needs no noise: let this sample's arrays go before it allocates its own
        except mask_step.NonFiniteError as exc:
            raise FloatingPointError(
                f"iteration {self.iteration}: {exc}; the noise scale has left the range of float32 "
                f"(m mean {float(B.scalar(B.mean(B.astype(m, np.float64), [0, 1]))):.3g}): lower the learning rate "
                f"(lr={cfg.lr}) or lambda ({self.lam})"
            ) from None
        # from here the step changes the loop's state (the optimiser's moments first): a stop signal waits for its end
        self._critical = True
        try:
            row = self._update(theta, m, f, g_data, g_sq, t0)
        finally:
            self._critical = False
        self._threads.after(row["seconds"])
        if self._signal is not None:
            raise _Stop(self._signal)
        return row

    def _fused_update(self, theta: Any, m: Any, f: float, g_data: Any) -> Optional[tuple]:
        """The default configuration's update (exp, mean_log, Adam, float64 norms) in one pass of the extension:
        (new theta, reg, m_sq, m_mean, grad_reg_norm), the optimiser advanced; None (nothing changed) where it
        does not apply or met anything unusual (m 0, subnormal or not finite; a non-finite result), for the
        generic update to handle and explain. The float32 values are the generic update's bit for bit."""
        B, cfg, opt = self.B, self.cfg, self.optimizer
        on_af = B.name == "arrayfire" and B.active_backend() == "cpu"  # its buffers are host memory there
        if not (FUSED_UPDATE and (B.name == "numpy" or on_af) and cfg.parametrization == "exp"
                and cfg.regularizer == "mean_log" and cfg.norm_accumulation == "float64" and type(opt) is Adam
                and self.obj.dtype == np.float32 and mask_step.extension() is not None):
            return None
        arrays = (theta, m, g_data) + ((opt.m1, opt.m2) if opt.m1 is not None else ())
        keep = None
        if on_af:
            # the same pass on ArrayFire's own buffers (NumPy views of them), into new ArrayFire arrays
            keep, views = B.host_views(*arrays)
            arrays = tuple(v.reshape(v.shape[:2], order="F") for v in views)
        shape = arrays[0].shape
        if not all(isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.f_contiguous and a.shape == shape
                   for a in arrays):
            return None
        theta_h, m_h, g_h = arrays[:3]
        if opt.m1 is None:
            m1 = m2 = np.zeros(shape, np.float32, order="F")  # Adam's first moments (read only)
        else:
            m1, m2 = arrays[3:]
        if on_af:
            made = [B.empty_host(shape, np.float32) for _ in range(3)]
            results = tuple(a for a, _ in made)
            outs = tuple(v.reshape(shape, order="F") for _, v in made)
        else:
            # the next parameter and moments in reused buffers (column-major views of row-major pooled arrays);
            # the ones they replace are free again once nothing holds them
            outs = results = tuple(POOL.take(np, shape[::-1], np.float32).T for _ in range(3))
        t = opt.t + 1
        c1, c2 = 1 - opt.b1**t, 1 - opt.b2**t
        n = float(np.prod(B.dims(m)))
        bound = math.inf if cfg.m_max is None else terms.theta_for(cfg.parametrization, cfg.m_max)
        r = mask_step.update_exp_mean_log(theta_h, m_h, g_h, m1, m2, outs, -2.0 * self.lam / n, opt.b1, opt.b2,
                                          opt.lr * math.sqrt(c2) / c1, opt.eps * math.sqrt(c2), bound)
        del keep
        reg = -self.lam * (r["sum_log_m"] / n) * 2.0
        if r["special"] or r["nonfinite"] or not math.isfinite(f + reg):
            return None
        opt.t, opt.m1, opt.m2 = t, results[1], results[2]
        return results[0], reg, r["sum_m2"], r["sum_m"] / n, math.sqrt(r["sum_greg2"])

    def _update(self, theta: Any, m: Any, f: float, g_data: Any, g_sq: float, t0: float) -> dict:
        """The regulariser, the optimiser's step, the bound, the log row and the convergence test of one iteration."""
        B, cfg = self.B, self.cfg
        self._track_gradient(m, g_data)
        fused = self._fused_update(theta, m, f, g_data)
        if fused is not None:
            new_theta, reg, m_sq, m_mean, reg_norm = fused
            n = float(np.prod(B.dims(m)))
            return self._finish(theta, new_theta, m, f, reg, g_sq, reg_norm, m_mean, m_sq / n - m_mean * m_mean, t0, True)
        m_sq = terms.sqnorm(B, m, cfg.norm_accumulation)
        try:
            reg, g_reg = terms.regularizer(B, cfg.regularizer, m, self.lam, m_sq)
        except terms.ZeroScaleError:
            if cfg.parametrization in ("exp", "softplus"):
                why = (f"the noise scale m underflowed to 0 at iteration {self.iteration} (the {cfg.parametrization} "
                       "parametrisation is positive, but float32 is not exact): the steps are too large")
            else:
                why = (f"the noise scale m reached 0 at iteration {self.iteration} and the {cfg.regularizer} "
                       f"regulariser needs m != 0 (parametrisation {cfg.parametrization!r} lets it cross 0)")
            raise FloatingPointError(f"lr {cfg.lr:g}: {why}; lower the learning rate (--lr, e.g. {min(cfg.lr / 100, 0.05):g})"
                                     + ("" if cfg.parametrization in ("exp", "softplus") else
                                        " or use parametrization 'exp'")) from None
        grad_theta = terms.scale_grad(B, cfg.parametrization, theta, m, g_data + g_reg)
        new_theta = self.optimizer.step(theta, grad_theta)
        if cfg.m_max is not None:
            new_theta = fortran(B, terms.bound_theta(B, cfg.parametrization, new_theta, cfg.m_max))
        B.eval(new_theta)  # ArrayFire: computed once here, not again by every later use
        n = float(np.prod(B.dims(m)))
        m_mean = B.total64(m) / n
        m_var = m_sq / n - m_mean * m_mean if cfg.norm_accumulation == "float64" else float(B.scalar(B.var(B.astype(m, np.float64), [0, 1], True)))
        reg_norm = terms.regularizer_grad_norm(B, cfg.regularizer, m, self.lam, m_sq, g_reg)
        return self._finish(theta, new_theta, m, f, reg, g_sq, reg_norm, m_mean, m_var, t0)

    def _finish(self, theta: Any, new_theta: Any, m: Any, f: float, reg: float, g_sq: float, reg_norm: float,
                m_mean: float, m_var: float, t0: float, checked: bool = False) -> dict:
        """The log row, the finiteness check (of new_theta too unless ``checked``), the convergence test and the new
        parameter of one iteration."""
        B, cfg = self.B, self.cfg
        row = {
            "iteration": self.iteration, "total": f + reg, "f_term": f, "reg_term": reg,
            "grad_f_norm": math.sqrt(g_sq), "grad_reg_norm": reg_norm,
            "m_mean": m_mean, "m_var": max(m_var, 0.0), "seconds": 0.0,
        }
        if not all(math.isfinite(row[k]) for k in ("total", "grad_f_norm")) or (not checked and not B.isfinite_all(new_theta)):
            raise FloatingPointError(
                f"iteration {self.iteration}: the loss or the update is not finite (loss {row['total']}); "
                f"lower the learning rate (lr={cfg.lr}) or lambda ({self.lam})"
            )
        self._track_path(m)
        summary = self.monitor.update(self.iteration, row["total"])
        if summary is not None and summary.is_best:
            self.best_theta = B.copy(theta)  # the window's losses were measured with the parameters before this update
        self.theta = new_theta
        row["seconds"] = time.perf_counter() - t0
        self.seconds += row["seconds"]
        self.history.append(row)
        self.iteration += 1
        return row

    def _neg_log_scale(self, m: Any) -> np.ndarray:
        """``-log`` of each bin's noise scale (K, T) float32: the importance of m (afmask.mask.importance)."""
        h = self.B.to_numpy(m)
        s2 = h[0::2] * h[0::2]
        s2 += h[1::2] * h[1::2]
        s2 *= np.float32(0.5)
        np.maximum(s2, np.finfo(np.float32).tiny, out=s2)
        np.log(s2, out=s2)
        s2 *= np.float32(-0.5)
        return s2

    def _track_path(self, m: Any) -> None:
        """Add the finished iteration's m (the previous update's result) to the "path" tie-break's sum, from the
        second iteration on; the last update's m is added when the tie-break is read."""
        if self.path_sum is None or self.cfg.tie_break != "path" or self.iteration == 0:
            return
        self.path_sum += self._neg_log_scale(m)
        self.path_n += 1

    def _track_gradient(self, m: Any, g_data: Any) -> None:
        """Add each bin's ``m * df/dm`` (its Re and Im rows summed: the data term's derivative in ``log m``) to the
        "gradient" tie-break's sum: how hard the distance pushes back against more noise there."""
        if self.path_sum is None or self.cfg.tie_break != "gradient":
            return
        pull = self.B.to_numpy(m) * self.B.to_numpy(g_data)
        self.path_sum += pull[0::2]
        self.path_sum += pull[1::2]
        self.path_n += 1

    def tiebreak(self) -> Optional[np.ndarray]:
        """The tie-break key of each bin (K, T), larger = more important; None without a tie-break. "path": the
        mean over the updates of its importance ``-log s``; "gradient": the mean over the iterations of
        ``m * df/dm``."""
        if self.path_sum is None or self.iteration == 0:
            return None
        if self.cfg.tie_break == "gradient":
            return self.path_sum / np.float32(max(self.path_n, 1))
        return (self.path_sum + self._neg_log_scale(self.scale(self.theta))) / np.float32(self.path_n + 1)

    # -- the loop -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _stop_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM stop the loop at the next safe point (between two steps' updates), not mid-update."""
        if self.out is None or threading.current_thread() is not threading.main_thread():
            # without a folder there is no checkpoint to write (the sanity check's short re-runs): Ctrl-C stays a
            # KeyboardInterrupt; and only the main thread may install handlers
            yield
            return

        def handler(signum, frame):
            self._signal = signum
            if not self._critical:
                raise _Stop(signum)

        old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def start(self, resume: bool = False) -> None:
        """Before the loop: resume from DIR's checkpoint (or refuse to overwrite one), then write DIR/config.json."""
        if self.out is None:
            if resume:
                raise ValueError("resume needs an output folder")
            return
        if resume:
            self.load_checkpoint()  # none yet: a fresh start, so that a restarted job may always pass --resume
        elif (self.out / CHECKPOINT).exists():
            raise ValueError(f"{self.out} already holds a run ({CHECKPOINT}); pass --resume to continue it or choose another folder")
        self.write_config()

    def _timed(self, started_at: int) -> None:
        """Once the first iterations are timed: say how long the rest will take when that is beyond an hour."""
        done = self.iteration - started_at
        rows = self.history[started_at:]
        if self.estimate or not rows or (done < 3 and rows[-1]["seconds"] < 5.0 and self.iteration < self.cfg.iterations):
            return
        per = float(np.median([r["seconds"] for r in rows]))
        # with restarts the other seeds' runs follow this one (afmask.api.explain): the estimate covers them too
        left = self.cfg.iterations - self.iteration + (self.cfg.restarts - 1) * self.cfg.iterations
        self.estimate = {"seconds_per_iteration": per, "iterations_left": left, "seconds_left": per * left}
        if per * left > LONG_RUN_SECONDS:
            runs = f" in {self.cfg.restarts} runs" if self.cfg.restarts > 1 else ""
            self.notify(
                f"afmask {self.cfg.mode}: this run will take about {_duration(per * left)} ({per:.3g} s per iteration, "
                f"{left} iterations left{runs}{', fewer if it converges' if self.cfg.early_stop else ''}); to finish "
                "sooner lower --iterations or --restarts or explain fewer --frames; Ctrl-C stops it with a checkpoint "
                "to --resume from"
            )

    def run(self, progress: bool = True) -> MaskResult:
        """Iterate until ``iterations`` or (with early_stop) convergence; checkpoint every ``checkpoint_every``
        iterations and every ``checkpoint_seconds``; on SIGINT/SIGTERM checkpoint and raise RunInterrupted."""
        cfg = self.cfg
        bar = None
        started_at = self.iteration
        last_save = time.monotonic()
        try:
            with self._stop_signals():
                if self.lam is None:
                    self.lam = self.choose_lambda()
                if progress:
                    from afmask.io.progress import progress_bar

                    bar = progress_bar(total=cfg.iterations, initial=self.iteration, unit="it", desc=f"afmask {cfg.mode}")
                while self.iteration < cfg.iterations:
                    if cfg.early_stop and self.monitor.converged:
                        break
                    row = self.step()
                    if bar is not None:
                        bar.update(1)
                        if self.iteration % 10 == 0:
                            bar.set_postfix(loss=f"{row['total']:.4g}", f=f"{row['f_term']:.3g}", m=f"{row['m_mean']:.3g}")
                    self._timed(started_at)
                    due = self.iteration % cfg.checkpoint_every == 0 or (
                        cfg.checkpoint_seconds > 0 and time.monotonic() - last_save >= cfg.checkpoint_seconds)
                    if self.out is not None and due:
                        self._save_deferring_signals()
                        last_save = time.monotonic()
        except _Stop as stop:
            if bar is not None:
                bar.close()
                bar = None
            saved = None
            if self.out is not None and self.lam is not None:
                self.save_checkpoint()  # the state is that of the last finished step
                saved = self.out / CHECKPOINT
            raise RunInterrupted(stop.signum, self.iteration, cfg.iterations, saved) from None
        finally:
            if bar is not None:
                bar.close()
            self.release()
        result = self.result()
        if self.out is not None:
            self.save_checkpoint()
            self.write_outputs(result)
        return result

    def settle(self) -> None:
        """Wait for the noise being drawn ahead, if any (a benchmark: its thread would run into the next timed work)."""
        if self._ahead is not None:
            self._ahead[1].result()

    def release(self) -> None:
        """Drop what only the iterations need (noise drawn ahead, its thread, reused workspaces); a later step redraws it."""
        self._ahead = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        POOL.clear()
        if hasattr(self.B, "clear_host_pool"):
            self.B.clear_host_pool()
        return_free_memory()

    def _save_deferring_signals(self) -> None:
        """A checkpoint that a stop signal does not cut short (the signal takes effect right after it)."""
        self._critical = True
        try:
            self.save_checkpoint()
        finally:
            self._critical = False
        if self._signal is not None:
            raise _Stop(self._signal)

    def result(self) -> MaskResult:
        """The run's result so far: m from the best window by smoothed loss (default mode) or the last m (faithful)."""
        use_best = self.cfg.mode == "default" and self.monitor.best_iteration >= 0
        m = self.B.to_numpy(self.scale(self.best_theta if use_best else self.theta))
        return MaskResult(
            m=m, m_last=self.B.to_numpy(self.scale(self.theta)), lam=float(self.lam), iterations=self.iteration,
            converged_at=self.monitor.converged_at, best_iteration=self.monitor.best_iteration if use_best else self.iteration - 1,
            seconds=self.seconds, history=list(self.history), config=self.cfg, kernel_path=self.obj.kernel_path,
            tiebreak=self.tiebreak(),
        )

    # -- files ------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write the loop's whole state to DIR/checkpoint.npz, whole or not at all."""
        assert self.out is not None
        self.out.mkdir(parents=True, exist_ok=True)
        meta = {
            "iteration": self.iteration, "lam": self.lam, "auto_lambda": self.auto_lambda, "seconds": self.seconds,
            "monitor": self.monitor.state(), "history": self.history, "config": self.cfg.to_dict(),
            "optimizer": {k: v for k, v in self.optimizer.state().items() if not isinstance(v, np.ndarray)},
            "path_n": self.path_n,
        }
        arrays = {"theta": self.B.to_numpy(self.theta), "best_theta": self.B.to_numpy(self.best_theta)}
        if self.path_sum is not None:
            arrays["path_sum"] = self.path_sum
        arrays.update({f"opt_{k}": v for k, v in self.optimizer.state().items() if isinstance(v, np.ndarray)})
        with atomic_write(self.out / CHECKPOINT) as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
        self.write_log()

    def load_checkpoint(self) -> bool:
        """Resume from DIR/checkpoint.npz if there is one; the settings must be the same (iterations may grow)."""
        assert self.out is not None
        path = self.out / CHECKPOINT
        if not path.exists():
            return False
        from afmask.io.runfiles import RunFileError, read_npz

        fix = "it cannot be resumed: delete it (or choose another folder) and run again without --resume"
        arrays = read_npz(path, fix)
        try:
            meta = json.loads(str(arrays.pop("meta")))
            lacking = [k for k in ("config", "iteration", "lam", "seconds", "history", "monitor") if k not in meta]
            if lacking or "theta" not in arrays or "best_theta" not in arrays:
                raise ValueError(f"it lacks {', '.join(lacking) or 'theta'}")
        except (KeyError, ValueError, TypeError) as e:
            raise RunFileError(path, f"is not an afmask checkpoint or is damaged ({e})", fix) from None
        saved = dict(meta["config"])
        now = self.cfg.to_dict()
        # a setting added since the checkpoint was written counts as its default (restarts: one run, as then)
        defaults = {**MaskConfig.preset(saved.get("mode", now["mode"])).to_dict(), "restarts": 1}
        diff = [k for k in now if k not in RESUMABLE and saved.get(k, defaults.get(k)) != now[k]]
        if diff:
            raise ValueError(
                f"cannot resume {path}: settings differ from the checkpoint's ({', '.join(diff)}); "
                "use the same settings or another output folder"
            )
        self.iteration, self.lam, self.seconds = int(meta["iteration"]), float(meta["lam"]), float(meta["seconds"])
        self.auto_lambda = meta.get("auto_lambda", {})
        self.monitor = ConvergenceMonitor.from_state(meta["monitor"])
        self.history = meta["history"]
        self.theta = fortran(self.B, self.B.asarray(arrays["theta"]))
        self.best_theta = fortran(self.B, self.B.asarray(arrays["best_theta"]))
        opt = dict(meta.get("optimizer", {}))
        opt.update({k[4:]: v for k, v in arrays.items() if k.startswith("opt_")})
        self.optimizer.load_state(opt)
        if self.path_sum is not None and "path_sum" in arrays and arrays["path_sum"].shape == self.path_sum.shape:
            self.path_sum, self.path_n = arrays["path_sum"].astype(np.float32), int(meta.get("path_n", 0))
        # (a checkpoint from before the tie-break: its sum starts at the resumed iteration)
        return True

    def write_config(self) -> None:
        """DIR/config.json: the run's resolved settings (written when the run starts, again at its end)."""
        assert self.out is not None
        self.out.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.out / CONFIG_FILE) as f:
            f.write(json.dumps(self.cfg.to_dict(), indent=2).encode())

    def write_log(self) -> None:
        """DIR/log.csv: one row per iteration."""
        assert self.out is not None
        buf = _io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.history:
            writer.writerow({k: (f"{row[k]:.9g}" if isinstance(row[k], float) else row[k]) for k in LOG_COLUMNS})
        with atomic_write(self.out / "log.csv") as f:
            f.write(buf.getvalue().encode())

    def write_outputs(self, result: MaskResult) -> None:
        """DIR/m.npy, m.af, m_last.npy, tiebreak.npy (with a tie-break), config.json, summary.json and log.csv."""
        assert self.out is not None
        outputs = [("m.npy", result.m), ("m_last.npy", result.m_last)]
        if result.tiebreak is not None:
            outputs.append((TIEBREAK_FILE, result.tiebreak))
        for name, arr in outputs:
            with atomic_write(self.out / name) as f:
                np.save(f, arr.astype(np.float32))
        save_array("m", result.m.astype(np.float32), self.out / "m.af")
        self.write_config()
        summary = result.summary()
        summary["auto_lambda"] = self.auto_lambda
        with atomic_write(self.out / "summary.json") as f:
            f.write(json.dumps(summary, indent=2).encode())
        self.write_log()


def run_mask(
    objective: MaskObjective,
    config: MaskConfig,
    out_dir: Optional[os.PathLike] = None,
    resume: bool = False,
    progress: bool = True,
) -> MaskResult:
    """Learn the noise scale m for ``objective`` with ``config``; with ``out_dir``, write checkpoints and outputs there.

    One run, of ``config.seed``: the other seeds of ``config.restarts`` are run by afmask.api.explain, NoiseMask and
    the evaluation's re-explanations, which average the maps."""
    run = MaskRun(objective, config, out_dir)
    run.start(resume)
    return run.run(progress=progress)


def _duration(seconds: float) -> str:
    """``seconds`` in words: "31 h", "2.5 h", "40 min"."""
    if seconds >= 10 * 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"

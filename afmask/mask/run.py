"""The mask loop: noise, forward, gradient, update; diagnostics, convergence, checkpoints and resume."""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from afmask.backend import threads
from afmask.fl import Variable
from afmask.io import save_array
from afmask.io.files import atomic_write
from afmask.kernels import mask_step
from afmask.mask import terms
from afmask.mask.config import MaskConfig
from afmask.mask.monitor import ConvergenceMonitor
from afmask.mask.objective import MaskObjective, fortran
from afmask.mask.optim import make_optimizer

#: Columns of log.csv, one row per iteration.
LOG_COLUMNS = ("iteration", "total", "f_term", "reg_term", "grad_f_norm", "grad_reg_norm", "m_mean", "m_var", "seconds")
CHECKPOINT = "checkpoint.npz"
#: Draw the next iteration's noise during this one (NumPy backend; the same numbers either way).
PREFETCH_NOISE = True


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
        self._pool = None

    # -- one step ---------------------------------------------------------------------------
    def scale(self, theta: Any = None) -> Any:
        """The noise scale m for a parameter (default: the current one)."""
        return terms.scale_from(self.B, self.cfg.parametrization, self.theta if theta is None else theta)

    def _noise(self, seed: int) -> Any:
        """The noise for ``seed``: drawn ahead on the NumPy backend (the same numbers, see prefetch_noise)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == seed:
            return ahead[1].result()
        return self.obj.draw_noise(seed, self.cfg.samples)

    def prefetch_noise(self, seed: int) -> None:
        """Start drawing the noise for ``seed`` in a background thread (NumPy backend only).

        The host generator (numpy.random, which releases the GIL while it fills an array) was 15% of an
        iteration; drawn during the previous iteration's network pass it costs nothing on a machine with a free
        core, and the numbers are those of the same seed drawn in place, so runs stay bit-reproducible."""
        if self.B.name != "numpy" or not PREFETCH_NOISE:
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="afmask-noise")
        self._ahead = (seed, self._pool.submit(self.obj.draw_noise, seed, self.cfg.samples))

    def data_gradient(self, m: Any, seed: int, eps: Any = None) -> tuple[float, Any, float]:
        """f, df/dm and ||df/dm||^2 for one batch of noise (that of ``seed``, unless already drawn as ``eps``)."""
        eps = self.obj.draw_noise(seed, self.cfg.samples) if eps is None else eps
        if self.cfg.gradient == "hand":
            fw = self.obj.forward(m, eps)
            f = fw.f.scalar()
            g, g_sq = self.obj.data_gradient(fw)
            return f, g, g_sq
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

    def step(self) -> dict:
        """One iteration: returns its log row."""
        threads.recheck()  # more than one thread only while it measures faster
        t0 = time.perf_counter()
        B, cfg = self.B, self.cfg
        theta = self.theta
        m = self.scale(theta)
        seed = iteration_seed(cfg.seed, self.iteration)
        eps = self._noise(seed)
        self.prefetch_noise(iteration_seed(cfg.seed, self.iteration + 1))
        try:
            f, g_data, g_sq = self.data_gradient(m, seed, eps)
        except mask_step.NonFiniteError as exc:
            raise FloatingPointError(
                f"iteration {self.iteration}: {exc}; the noise scale has left the range of float32 "
                f"(m mean {float(B.scalar(B.mean(B.astype(m, np.float64), [0, 1]))):.3g}): lower the learning rate "
                f"(lr={cfg.lr}) or lambda ({self.lam})"
            ) from None
        m_sq = terms.sqnorm(B, m, cfg.norm_accumulation)
        reg, g_reg = terms.regularizer(B, cfg.regularizer, m, self.lam, m_sq)
        grad_theta = terms.scale_grad(B, cfg.parametrization, theta, m, g_data + g_reg)
        new_theta = self.optimizer.step(theta, grad_theta)
        if cfg.m_max is not None:
            new_theta = fortran(B, terms.bound_theta(B, cfg.parametrization, new_theta, cfg.m_max))
        n = float(np.prod(B.dims(m)))
        m_mean = float(B.scalar(B.sum(B.astype(m, np.float64), [0, 1]))) / n
        m_var = m_sq / n - m_mean * m_mean if cfg.norm_accumulation == "float64" else float(B.scalar(B.var(B.astype(m, np.float64), [0, 1], True)))
        row = {
            "iteration": self.iteration, "total": f + reg, "f_term": f, "reg_term": reg,
            "grad_f_norm": math.sqrt(g_sq), "grad_reg_norm": terms.regularizer_grad_norm(B, cfg.regularizer, m, self.lam, m_sq, g_reg),
            "m_mean": m_mean, "m_var": max(m_var, 0.0), "seconds": 0.0,
        }
        if not all(math.isfinite(row[k]) for k in ("total", "grad_f_norm")) or not B.isfinite_all(new_theta):
            raise FloatingPointError(
                f"iteration {self.iteration}: the loss or the update is not finite (loss {row['total']}); "
                f"lower the learning rate (lr={cfg.lr}) or lambda ({self.lam})"
            )
        summary = self.monitor.update(self.iteration, row["total"])
        if summary is not None and summary.is_best:
            self.best_theta = B.copy(theta)  # the window's losses were measured with the parameters before this update
        self.theta = new_theta
        row["seconds"] = time.perf_counter() - t0
        self.seconds += row["seconds"]
        self.history.append(row)
        self.iteration += 1
        return row

    # -- the loop -------------------------------------------------------------------------------
    def run(self, progress: bool = True) -> MaskResult:
        """Iterate until ``iterations`` or (with early_stop) convergence; checkpoint every ``checkpoint_every``."""
        cfg = self.cfg
        if self.lam is None:
            self.lam = self.choose_lambda()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.iterations, initial=self.iteration, file=sys.stderr, unit="it", dynamic_ncols=True,
                       desc=f"afmask {cfg.mode}")
        try:
            while self.iteration < cfg.iterations:
                row = self.step()
                if bar is not None:
                    bar.update(1)
                    if self.iteration % 10 == 0:
                        bar.set_postfix(loss=f"{row['total']:.4g}", f=f"{row['f_term']:.3g}", m=f"{row['m_mean']:.3g}")
                if self.out is not None and self.iteration % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if cfg.early_stop and self.monitor.converged:
                    break
        finally:
            if bar is not None:
                bar.close()
        result = self.result()
        if self.out is not None:
            self.save_checkpoint()
            self.write_outputs(result)
        return result

    def result(self) -> MaskResult:
        """The run's result so far: m from the best window by smoothed loss (default mode) or the last m (faithful)."""
        use_best = self.cfg.mode == "default" and self.monitor.best_iteration >= 0
        m = self.B.to_numpy(self.scale(self.best_theta if use_best else self.theta))
        return MaskResult(
            m=m, m_last=self.B.to_numpy(self.scale(self.theta)), lam=float(self.lam), iterations=self.iteration,
            converged_at=self.monitor.converged_at, best_iteration=self.monitor.best_iteration if use_best else self.iteration - 1,
            seconds=self.seconds, history=list(self.history), config=self.cfg, kernel_path=self.obj.kernel_path,
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
        }
        arrays = {"theta": self.B.to_numpy(self.theta), "best_theta": self.B.to_numpy(self.best_theta)}
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
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
        saved = dict(meta["config"])
        now = self.cfg.to_dict()
        diff = [k for k in now if k not in ("iterations", "checkpoint_every") and saved.get(k) != now[k]]
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
        return True

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
        """DIR/m.npy, m.af, m_last.npy, config.json, summary.json and log.csv."""
        assert self.out is not None
        for name, arr in (("m.npy", result.m), ("m_last.npy", result.m_last)):
            with atomic_write(self.out / name) as f:
                np.save(f, arr.astype(np.float32))
        save_array("m", result.m.astype(np.float32), self.out / "m.af")
        with atomic_write(self.out / "config.json") as f:
            f.write(json.dumps(self.cfg.to_dict(), indent=2).encode())
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
    """Learn the noise scale m for ``objective`` with ``config``; with ``out_dir``, write checkpoints and outputs there."""
    run = MaskRun(objective, config, out_dir)
    if resume:
        if out_dir is None:
            raise ValueError("resume needs an output folder")
        run.load_checkpoint()
    elif out_dir is not None and (Path(out_dir) / CHECKPOINT).exists():
        raise ValueError(f"{out_dir} already holds a run ({CHECKPOINT}); pass --resume to continue it or choose another folder")
    return run.run(progress=progress)

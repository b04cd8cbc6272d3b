"""A convergence test on a smoothed loss: mean losses of consecutive windows, never one noisy sample."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class WindowSummary:
    """One finished window."""

    end_iteration: int
    mean: float
    sem: float
    improved: bool
    is_best: bool
    converged: bool


@dataclass
class ConvergenceMonitor:
    """Fires after ``patience`` consecutive windows whose mean loss fell by less than ``max(rtol*|mean|, 2 SE)``."""

    window: int = 50
    rtol: float = 1e-3
    patience: int = 3
    buffer: list = field(default_factory=list)
    means: list = field(default_factory=list)
    sems: list = field(default_factory=list)
    ends: list = field(default_factory=list)
    stale: int = 0
    best_mean: float = math.inf
    best_iteration: int = -1
    converged_at: int = -1

    def update(self, iteration: int, loss: float) -> WindowSummary | None:
        """Add one iteration's loss; returns a summary when a window is complete."""
        self.buffer.append(float(loss))
        if len(self.buffer) < self.window:
            return None
        n = len(self.buffer)
        mean = sum(self.buffer) / n
        var = sum((v - mean) ** 2 for v in self.buffer) / max(n - 1, 1)
        sem = math.sqrt(var / n)
        self.buffer = []
        improved = True
        if self.means:
            drop = self.means[-1] - mean
            noise = 2.0 * math.sqrt(self.sems[-1] ** 2 + sem**2)
            improved = drop > max(self.rtol * abs(mean), noise)
        self.stale = 0 if improved else self.stale + 1
        self.means.append(mean)
        self.sems.append(sem)
        self.ends.append(iteration)
        is_best = mean < self.best_mean
        if is_best:
            self.best_mean, self.best_iteration = mean, iteration
        newly = self.stale >= self.patience and self.converged_at < 0
        if newly:
            self.converged_at = iteration
        return WindowSummary(iteration, mean, sem, improved, is_best, self.converged_at >= 0)

    @property
    def converged(self) -> bool:
        """Whether the test has fired."""
        return self.converged_at >= 0

    def state(self) -> dict:
        """JSON-able state for a checkpoint."""
        return {k: getattr(self, k) for k in ("window", "rtol", "patience", "buffer", "means", "sems", "ends", "stale",
                                              "best_mean", "best_iteration", "converged_at")}

    @classmethod
    def from_state(cls, state: dict) -> "ConvergenceMonitor":
        """Restore from a checkpoint."""
        return cls(**state)

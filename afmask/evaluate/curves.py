"""Deletion and insertion curves of a ranking of time-frequency points, scored by the model, and their areas.

A ranking orders the K*T points from most to least important (flat
column-major indices, :func:`afmask.evaluate.importance.ranking`).

- deletion at x %: the x % most important points are removed (magnitude 0);
  a good ranking breaks the model early, so the CER (and f) rise fast and
  the area under the deletion curve is large;
- insertion at x %: only the x % most important points are kept; a good
  ranking restores the model early, so the area under the insertion curve
  is small.

The summary of one ranking is ``gap = AUC(deletion) - AUC(insertion)``
(x as a fraction in [0, 1]): larger is better. Explanations are compared
with the same curves for plain signal energy (loudest points first) and for
random orderings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from afmask.evaluate.scoring import Score, Scorer

KINDS = ("deletion", "insertion")
METRICS = ("cer_clean", "cer_transcript", "f")


def removal_mask(order: np.ndarray, count: int, shape: tuple[int, int], end: str = "most") -> np.ndarray:
    """Bool (K, T): True at the ``count`` most (``end="most"``) or least (``"least"``) important points of ``order``."""
    K, T = shape
    n = K * T
    if order.shape != (n,):
        raise ValueError(f"a ranking of a ({K}, {T}) map has {n} entries, got shape {order.shape}")
    if not 0 <= count <= n:
        raise ValueError(f"count must be in 0..{n}, got {count}")
    if end not in ("most", "least"):
        raise ValueError(f"end must be 'most' or 'least', got {end!r}")
    flat = np.zeros(n, dtype=bool)
    flat[order[:count] if end == "most" else order[n - count :]] = True
    return flat.reshape((K, T), order="F")


def apply_mask(magnitude: np.ndarray, removed: np.ndarray, gain: float = 0.0) -> np.ndarray:
    """Magnitudes (K, T) float32 with the ``removed`` points multiplied by ``gain`` (0: zeroed)."""
    return np.where(removed, np.float32(gain) * magnitude, magnitude).astype(np.float32)


def percent_grid(step: float = 5.0) -> list[float]:
    """x = 0, step, ..., 100 (per cent)."""
    if not 0 < step <= 100 or abs(100 / step - round(100 / step)) > 1e-9:
        raise ValueError(f"the curve step must divide 100 (per cent), got {step}")
    return [round(i * step, 6) for i in range(int(round(100 / step)) + 1)]


def auc(x_percent: Sequence[float], y: Sequence[Optional[float]]) -> Optional[float]:
    """Trapezoidal area under y over x in [0, 1] (x given in per cent); points with y None are left out."""
    pts = [(xv / 100.0, yv) for xv, yv in zip(x_percent, y) if yv is not None and math.isfinite(yv)]
    if len(pts) < 2:
        return None
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))


@dataclass
class Curve:
    """One ranking's deletion or insertion curve: x in per cent and a Score per x."""

    ranking: str
    kind: str
    x: list
    scores: list = field(default_factory=list)

    def values(self, metric: str) -> list:
        """The metric ("cer_clean", "cer_transcript" or "f") per x; None where undefined."""
        return [getattr(s, metric) for s in self.scores]

    def area(self, metric: str) -> Optional[float]:
        """Area under the curve of ``metric`` over x in [0, 1]."""
        return auc(self.x, self.values(metric))


def curve_specs(n: int, grid: Sequence[float]) -> list[tuple[str, float, int]]:
    """(kind, x, c) for every curve point: deletion removes the top c points, insertion keeps only the top c,
    ``c = round(x/100 * n)`` of the ``n`` points."""
    return [(kind, x, int(round(x / 100.0 * n))) for kind in KINDS for x in grid]


def compute_curves(
    scorer: Scorer,
    rankings: dict[str, np.ndarray],
    grid: Sequence[float],
    progress=None,
) -> dict[str, dict[str, Curve]]:
    """Deletion and insertion curves of each ranking, ``{name: {"deletion": Curve, "insertion": Curve}}``.

    Inputs that are the same for every ranking (nothing removed, everything
    removed) are scored once.
    """
    mag = scorer.magnitude
    shape = mag.shape
    n = shape[0] * shape[1]
    jobs: list[tuple[str, str, int]] = []  # (ranking, kind, index in grid)
    keys: list[object] = []
    inputs: dict[object, np.ndarray] = {}
    for name, order in rankings.items():
        for kind, x, c in curve_specs(n, grid):
            removed_count = c if kind == "deletion" else n - c
            if removed_count == 0:
                key: object = "clean"
            elif removed_count == n:
                key = "empty"
            else:
                key = (name, kind, c)
            if key not in inputs:
                end = "most" if kind == "deletion" else "least"
                inputs[key] = apply_mask(mag, removal_mask(order, removed_count, shape, end))
            jobs.append((name, kind, x))
            keys.append(key)
    unique = list(inputs)
    if progress is not None:
        progress.reset(total=len(unique))
    scores = dict(zip(unique, scorer.score([inputs[k] for k in unique], progress=progress)))
    curves: dict[str, dict[str, Curve]] = {name: {kind: Curve(name, kind, list(grid)) for kind in KINDS} for name in rankings}
    for (name, kind, _x), key in zip(jobs, keys):
        curves[name][kind].scores.append(scores[key])
    return curves


def score_at(curve: Curve, x: float) -> Score:
    """The Score of ``curve`` at ``x`` per cent (must be on its grid)."""
    for xv, s in zip(curve.x, curve.scores):
        if abs(xv - x) < 1e-9:
            return s
    raise ValueError(f"x = {x} % is not on the curve's grid {curve.x}")

"""Fixed-area extremal masks (Fong, Patrick and Vedaldi, ICCV 2019) over the time-frequency points.

For each area ``a`` (the share of points kept) a mask ``p`` in [0, 1]^(K x T)
is learned so that the masked utterance ``x * p`` keeps the model's output
(the "preservation game": the score of the clean greedy path, relative to the
clean input's), while the area constraint holds: the sorted mask values are
pulled towards ``a N`` ones and ``(1 - a) N`` zeros,
``R_a(p) = mean((sort(p) - r_a)^2)``. Per area the loss is
``-s(x * p) / s(x) + area_weight * R_a(p)``, with ``p = sigmoid(theta)``
optimised by Adam; all areas run as one batch through the network.

The masks of increasing area are (nearly) nested, so the importance of a point
is the mean of its mask values over the areas: a point kept already at the
smallest area ranks first, one kept by no area last. Unlike one mask with a
bound, the areas spread the points over as many levels as there are areas,
and the continuous values order the points inside each level.

Fong and Vedaldi also smooth the mask (a max-convolution of a coarse grid);
here every point is free, as in afmask's own mask.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from afmask.attribute.base import Attributor, Progress, _positive_int
from afmask.attribute.target import Target
from afmask.backend import get_backend
from afmask.fl.nn import Module
from afmask.mask.optim import Adam

#: The default areas: shares of the points kept, smallest first.
AREAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


def area_targets(n: int, areas: Sequence[float]) -> np.ndarray:
    """The sorted targets r_a (n, A): (1 - a) n zeros then a n ones per area, ascending as ``np.sort`` gives."""
    r = np.zeros((n, len(areas)))
    for j, a in enumerate(areas):
        keep = int(round(a * n))
        if keep:
            r[n - keep :, j] = 1.0
    return r


def area_penalty(p: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``R_a(p) = mean((sort(p) - r_a)^2)`` per area (A,) and its gradient d R / d p (n, A), for masks p (n, A)."""
    order = np.argsort(p, axis=0, kind="stable")
    sorted_p = np.take_along_axis(p, order, axis=0)
    diff = sorted_p - targets
    n = p.shape[0]
    grad = np.empty_like(p)
    np.put_along_axis(grad, order, 2.0 * diff / n, axis=0)
    return np.mean(diff * diff, axis=0), grad


class Extremal(Attributor):
    """Fixed-area extremal masks (Fong et al. 2019): one preserving mask per area, importance = mean mask value."""

    name = "extremal"
    default_score = "prob"
    default_space = "magnitude"

    def __init__(self, model: Module, areas: Sequence[float] = AREAS, iterations: int = 300, lr: float = 0.1,
                 area_weight: float = 30.0, score: Optional[str] = None, space: Optional[str] = None, batch: int = 8):
        """``areas``: shares of the points kept, each in (0, 1); ``iterations`` of Adam with ``lr`` on the logits;
        ``area_weight``: the area term's weight against the relative score (about 1)."""
        super().__init__(model, score, space, batch)
        areas = tuple(float(a) for a in areas)
        if not areas or any(not 0.0 < a < 1.0 for a in areas):
            raise ValueError(f"areas must be shares in (0, 1), got {areas}")
        if self.score == "distance":
            raise ValueError("the extremal masks preserve a score of the clean path: use score 'prob' or 'logprob'")
        if not (lr > 0 and area_weight > 0):
            raise ValueError(f"lr and area_weight must be > 0, got lr={lr}, area_weight={area_weight}")
        self.areas = tuple(sorted(areas))
        self.iterations = _positive_int("iterations", iterations)
        self.lr, self.area_weight = float(lr), float(area_weight)

    def settings(self) -> dict:
        """The method's settings, JSON-able."""
        return {**super().settings(), "areas": list(self.areas), "iterations": self.iterations, "lr": self.lr,
                "area_weight": self.area_weight, "optimizer": "adam", "parametrization": "sigmoid"}

    def _attribute(self, target: Target, progress: bool) -> tuple[np.ndarray, dict]:
        K, T, A = target.K, target.T, len(self.areas)
        n = K * T
        x = target.point.reshape(n, 1, order="F")
        clean = target.clean_score()
        scale = abs(clean) if clean != 0 else 1.0
        targets = area_targets(n, self.areas)
        theta = np.zeros((n, A))
        adam = Adam(get_backend("numpy"), self.lr)
        bar = Progress(progress, self.iterations, "afmask extremal")
        history = []
        try:
            for it in range(1, self.iterations + 1):
                p = 1.0 / (1.0 + np.exp(-theta))
                g_pts, s = target.gradients((x * p).reshape(K, T, A, order="F"))
                g_pts = g_pts.reshape(n, A, order="F")
                area, g_area = area_penalty(p, targets)
                # d loss / d p: the score (to be kept: maximised) through x * p, and the area term
                g_p = -g_pts * x / scale + self.area_weight * g_area
                theta = adam.step(theta, g_p * p * (1.0 - p))
                if it == 1 or it % 50 == 0 or it == self.iterations:
                    history.append({"iteration": it, "score": (s / scale).tolist(), "area_penalty": area.tolist()})
                bar.update(1)
        finally:
            bar.close()
        p = 1.0 / (1.0 + np.exp(-theta))
        importance = p.mean(axis=1).reshape(K, T, order="F")
        kept = (p > 0.5).mean(axis=0)
        extras = {"areas": list(self.areas), "kept_share": kept.tolist(),
                  "final_relative_score": history[-1]["score"], "final_area_penalty": history[-1]["area_penalty"],
                  "history": history}
        return importance, extras

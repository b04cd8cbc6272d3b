"""Gradient attributions with Captum's definitions: Saliency, InputXGradient, SmoothGrad, IntegratedGradients.

Gradients are of the target's score (default: the log posterior of the clean
greedy path) with respect to the points of the target's space (default: the
magnitudes |X|, through the global normalisation), by afmask.fl's autograd,
batched along dim 3 of the network input.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from afmask.attribute.base import Attributor, Progress, _positive_int, batches
from afmask.attribute.target import Target
from afmask.fl.nn import Module


def batched_gradients(target: Target, points: np.ndarray, batch: int, progress: Optional[Progress] = None) -> tuple[np.ndarray, np.ndarray]:
    """Gradients (K, T, N) and scores (N,) of N points (K, T, N), ``batch`` per forward and backward pass."""
    n = points.shape[2]
    grads = np.empty(points.shape, np.float64)
    scores = np.empty(n, np.float64)
    for sl in batches(n, batch):
        grads[:, :, sl], scores[sl] = target.gradients(points[:, :, sl])
        if progress is not None:
            progress.update(sl.stop - sl.start)
    return grads, scores


class Saliency(Attributor):
    """Captum's Saliency: ``|d score / d x|`` at the clean input (``abs=False``: the signed gradient)."""

    name = "saliency"

    def __init__(self, model: Module, score: Optional[str] = None, space: Optional[str] = None, batch: int = 8, abs: bool = True):  # noqa: A002 - Captum's name
        """``abs``: take the gradient's absolute value (Captum's default)."""
        super().__init__(model, score, space, batch)
        self.abs = bool(abs)

    def settings(self) -> dict:
        """The settings, JSON-able."""
        return {**super().settings(), "abs": self.abs}

    def _attribute(self, target: Target, progress: bool) -> tuple[np.ndarray, dict]:
        g, s = target.gradients(target.point)
        g = g[:, :, 0]
        return (np.abs(g) if self.abs else g), {"clean_score": float(s[0])}


class InputXGradient(Attributor):
    """Captum's InputXGradient: ``x * d score / d x`` at the clean input, signed (first-order effect of deleting x)."""

    name = "ixg"

    def __init__(self, model: Module, score: Optional[str] = None, space: Optional[str] = None, batch: int = 8, abs: bool = False):  # noqa: A002
        """``abs``: rank by ``|x * grad|`` instead of the signed product."""
        super().__init__(model, score, space, batch)
        self.abs = bool(abs)

    def settings(self) -> dict:
        """The settings, JSON-able."""
        return {**super().settings(), "abs": self.abs}

    def _attribute(self, target: Target, progress: bool) -> tuple[np.ndarray, dict]:
        g, s = target.gradients(target.point)
        a = target.point * g[:, :, 0]
        return (np.abs(a) if self.abs else a), {"clean_score": float(s[0])}


#: SmoothGrad's base attributions and how each is taken of a gradient g at a point x.
SMOOTHGRAD_BASES = {"saliency": lambda x, g: np.abs(g), "gradient": lambda x, g: g, "ixg": lambda x, g: x * g}
NT_TYPES = ("smoothgrad", "smoothgrad_sq")


class SmoothGrad(Attributor):
    """Captum's NoiseTunnel with nt_type "smoothgrad" around a gradient method: the mean of its attributions over
    ``n_samples`` noisy copies of the input, ``x + N(0, sigma^2)`` with ``sigma = stdev * (max(x) - min(x))``
    over the utterance's points (the SmoothGrad paper's noise level, a fraction of the input's range; Captum's
    ``stdevs`` is that sigma). The base method is Saliency (|gradient|) by default, as ``NoiseTunnel(Saliency)``."""

    name = "smoothgrad"

    def __init__(
        self,
        model: Module,
        score: Optional[str] = None,
        space: Optional[str] = None,
        batch: int = 8,
        n_samples: int = 16,
        stdev: float = 0.1,
        base: str = "saliency",
        nt_type: str = "smoothgrad",
        seed: int = 0,
    ):
        """``n_samples`` noisy inputs; ``stdev``: noise sigma as a fraction of the input's range (max - min); ``base``:
        "saliency" (|g|), "gradient" (g) or "ixg" (x~ * g); ``nt_type``: "smoothgrad" (mean) or "smoothgrad_sq"
        (mean of squares); ``seed`` of the noise."""
        super().__init__(model, score, space, batch)
        self.n_samples = _positive_int("n_samples", n_samples)
        if not (isinstance(stdev, (int, float)) and stdev >= 0):
            raise ValueError(f"stdev must be a number >= 0 (a fraction of the input's range), got {stdev!r}")
        if base not in SMOOTHGRAD_BASES:
            raise ValueError(f"base must be one of {tuple(SMOOTHGRAD_BASES)}, got {base!r}")
        if nt_type not in NT_TYPES:
            raise ValueError(f"nt_type must be one of {NT_TYPES}, got {nt_type!r}")
        self.stdev, self.base, self.nt_type, self.seed = float(stdev), base, nt_type, int(seed)

    def settings(self) -> dict:
        """The settings, JSON-able."""
        return {**super().settings(), "n_samples": self.n_samples, "stdev": self.stdev, "stdev_of": "max - min of the input",
                "base": self.base, "nt_type": self.nt_type, "seed": self.seed}

    def _attribute(self, target: Target, progress: bool) -> tuple[np.ndarray, dict]:
        x = target.point
        sigma = self.stdev * float(x.max() - x.min())
        rng = np.random.default_rng([self.seed, 11])
        base = SMOOTHGRAD_BASES[self.base]
        total = np.zeros(x.shape, np.float64)
        bar = Progress(progress, self.n_samples, "afmask attribute: smoothgrad")
        try:
            for sl in batches(self.n_samples, self.batch):
                # sample after sample from one stream, so the noise does not depend on the batch size
                noise = rng.standard_normal((sl.stop - sl.start, *x.shape)).transpose(1, 2, 0)
                noisy = x[:, :, None] + sigma * noise
                g, _ = target.gradients(noisy)
                a = base(noisy, g)
                total += np.sum(a * a if self.nt_type == "smoothgrad_sq" else a, axis=2)
                bar.update(sl.stop - sl.start)
        finally:
            bar.close()
        return total / self.n_samples, {"sigma": sigma}


def integration_rule(method: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) of Captum's approximation methods on [0, 1]: riemann_left/right/middle/trapezoid, gausslegendre."""
    n = _positive_int("n_steps", n_steps)
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        return (x + 1) / 2, w / 2
    if method == "riemann_trapezoid":
        if n < 2:
            raise ValueError("riemann_trapezoid needs n_steps >= 2")
        w = np.full(n, 1.0 / (n - 1))
        w[0] = w[-1] = 0.5 / (n - 1)
        return np.linspace(0, 1, n), w
    alphas = {"riemann_left": np.linspace(0, 1 - 1 / n, n), "riemann_right": np.linspace(1 / n, 1, n),
              "riemann_middle": np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n)}
    if method not in alphas:
        raise ValueError(f"method must be one of {('gausslegendre', 'riemann_trapezoid', *alphas)}, got {method!r}")
    return alphas[method], np.full(n, 1.0 / n)


class IntegratedGradients(Attributor):
    """Captum's IntegratedGradients: ``(x - b) * integral_0^1 d score/d x (b + a (x - b)) da`` by ``method`` with
    ``n_steps`` (default Gauss-Legendre, 50), signed. Completeness, ``sum = score(x) - score(b)``, is checked on
    every run (Captum's convergence delta; in ``extras["completeness"]``).

    The baseline is zero by default, in the space attributed, which for IG is the normalised network input
    (``space="input"``): zero there is the spectrogram's mean level. Zero magnitudes would be degenerate: the
    global normalisation makes the score the same at every point ``a * x`` of the path, so the default space here
    is "input"; ``space="magnitude"`` takes a baseline spectrogram that is not constant."""

    name = "ig"
    default_space = "input"

    def __init__(
        self,
        model: Module,
        score: Optional[str] = None,
        space: Optional[str] = None,
        batch: int = 8,
        n_steps: int = 50,
        method: str = "gausslegendre",
        baseline: Optional[np.ndarray] = None,
    ):
        """``baseline``: (K, T) in the space attributed, or None for zeros; ``method``: see :func:`integration_rule`."""
        super().__init__(model, score, space, batch)
        integration_rule(method, n_steps)  # checks both
        self.n_steps, self.method = int(n_steps), method
        self.baseline = None if baseline is None else np.asarray(baseline, np.float64)

    def settings(self) -> dict:
        """The settings, JSON-able."""
        return {**super().settings(), "n_steps": self.n_steps, "method": self.method,
                "baseline": "zero" if self.baseline is None else "given"}

    def _attribute(self, target: Target, progress: bool) -> tuple[np.ndarray, dict]:
        x = target.point
        b = np.zeros_like(x) if self.baseline is None else self.baseline
        if b.shape != x.shape:
            raise ValueError(f"the baseline must have the utterance's shape {x.shape}, got {b.shape}")
        if target.space == "magnitude" and np.ptp(b) == 0:
            raise ValueError("a constant baseline spectrogram is degenerate for IG on magnitudes (the global normalisation "
                             "makes the score constant along the path): use space='input' (zero = the mean level) or "
                             "a baseline that is not constant")
        alphas, weights = integration_rule(self.method, self.n_steps)
        d = x - b
        total = np.zeros(x.shape, np.float64)
        bar = Progress(progress, self.n_steps, "afmask attribute: integrated gradients")
        try:
            for sl in batches(self.n_steps, self.batch):
                a = alphas[sl]
                g, _ = target.gradients(b[:, :, None] + a[None, None, :] * d[:, :, None])
                total += np.tensordot(g, weights[sl], axes=([2], [0]))
                bar.update(sl.stop - sl.start)
        finally:
            bar.close()
        attr = d * total
        ends = target.scores(np.stack([x, b], axis=2))
        diff = float(ends[0] - ends[1])
        delta = float(attr.sum()) - diff
        check = {"sum": float(attr.sum()), "score_difference": diff, "score": float(ends[0]), "baseline_score": float(ends[1]),
                 "delta": delta, "relative_delta": abs(delta) / max(abs(diff), 1e-300)}
        return attr, {"completeness": check}

"""Model-randomisation sanity check (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

The same utterance is explained again with the model's parameter layers
randomised in a cascade from the top (output) layer down, ending with every
layer random. Each explanation's importance map is compared with the trained
model's by Spearman rank correlation over all K*T points. An explanation that
reflects what the model learned decorrelates as more layers are randomised;
one that stays correlated mostly reflects the input (for example its energy).

The re-runs are short (``iterations`` of the run's own method, no early
stop), so the trained model is re-run with the same short setting as well:
its correlation with the full run is the ceiling the randomised ones are
read against.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

from afmask.evaluate.importance import importance
from afmask.fl import Variable
from afmask.fl.nn import Module, Sequential
from afmask.mask import MaskConfig, MaskObjective, run_mask


def parameter_layers(model: Module) -> list[Module]:
    """The model's layers that hold parameters, bottom (input) to top (output)."""
    modules = model.modules() if isinstance(model, Sequential) else [model]
    return [m for m in modules if m.params()]


def cascade(num_layers: int, levels: int = 4) -> list[int]:
    """How many top layers are random at each cascade level: 1 (the top layer), evenly up to all of them."""
    if num_layers < 1:
        raise ValueError("the model has no parameter layers to randomise")
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if levels == 1:
        return [num_layers]
    return sorted({int(round(1 + (num_layers - 1) * i / (levels - 1))) for i in range(levels)})


@contextmanager
def randomised(model: Module, top: int, seed: int = 0) -> Iterator[list[str]]:
    """The model with its ``top`` highest parameter layers re-drawn, restored on exit; yields their descriptions.

    Each parameter is replaced by Gaussian noise with the mean and standard
    deviation of the trained parameter, so only the learned structure is lost,
    not the scale of the activations.
    """
    layers = parameter_layers(model)
    if not 1 <= top <= len(layers):
        raise ValueError(f"top must be in 1..{len(layers)}, got {top}")
    rng = np.random.default_rng(seed)
    saved: list[tuple[Module, int, Variable]] = []
    try:
        for layer in layers[len(layers) - top :][::-1]:
            for i, p in enumerate(layer.params()):
                host = p.host()
                new = rng.normal(float(np.mean(host)), float(np.std(host)), size=host.shape).astype(host.dtype)
                saved.append((layer, i, p))
                layer.setParams(Variable(p.backend.asarray(np.asfortranarray(new)), False), i)
        yield [layer.prettyString() for layer in layers[len(layers) - top :][::-1]]
    finally:
        for layer, i, p in reversed(saved):
            layer.setParams(p, i)


@dataclass
class SanityLevel:
    """One cascade level and its explanation's rank correlation with the trained explanation."""

    label: str
    randomised_layers: int  # 0: the trained model, re-run with the short setting
    layers: list
    spearman: Optional[float]  # against the run's (full) explanation; None: this level's map is constant
    spearman_short: Optional[float]  # against the trained model's short re-run (None for that re-run itself)
    seconds: float

    def to_dict(self) -> dict:
        """JSON-able fields."""
        return dict(self.__dict__)


def short_config(config: MaskConfig, iterations: int, samples: Optional[int] = None) -> MaskConfig:
    """The run's settings for a short re-run: ``iterations`` steps, no early stop, optionally fewer noise samples."""
    over = {"iterations": int(iterations), "early_stop": False, "checkpoint_every": max(int(iterations), 1)}
    if samples is not None:
        over["samples"] = int(samples)
    return config.replace(**over)


def spearman(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Spearman rank correlation of two maps of the same shape; None where a map is constant (no ranking)."""
    from scipy.stats import spearmanr

    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {a.shape} and {b.shape}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    rho = spearmanr(np.ravel(a), np.ravel(b)).statistic
    return float(rho) if np.isfinite(rho) else None


def explain_importance(fft: np.ndarray, clean_input: np.ndarray, model: Module, config: MaskConfig) -> np.ndarray:
    """Importance (K, T) of a short mask run (no files) of ``model`` on the clean FFT, from its last m."""
    objective = MaskObjective(fft, model, config.variant, noise=config.noise, stats=config.stats,
                              clean_input=clean_input, kernel_path=config.kernel_path)
    result = run_mask(objective, config, None, progress=False)
    return importance(result.m_last)


def sanity_check(
    fft: np.ndarray,
    clean_input: np.ndarray,
    model: Module,
    config: MaskConfig,
    trained_importance: np.ndarray,
    iterations: int = 25,
    samples: Optional[int] = 1,
    levels: int = 4,
    seed: int = 0,
    progress=None,
) -> list[SanityLevel]:
    """The trained model re-run short, then each cascade level; each compared by Spearman with the full explanation."""
    import time

    cfg = short_config(config, iterations, samples)
    layers = parameter_layers(model)
    counts = cascade(len(layers), levels)
    if progress is not None:
        progress.reset(total=len(counts) + 1)
    out: list[SanityLevel] = []
    t0 = time.perf_counter()
    short = explain_importance(fft, clean_input, model, cfg)
    out.append(SanityLevel("trained (short re-run)", 0, [], spearman(short, trained_importance), None,
                           time.perf_counter() - t0))
    if progress is not None:
        progress.update(1)
    for n in counts:
        t0 = time.perf_counter()
        with randomised(model, n, seed=seed + n) as names:
            imp = explain_importance(fft, clean_input, model, cfg)
        label = "all layers random" if n == len(layers) else f"top {n} of {len(layers)} layers random"
        out.append(SanityLevel(label, n, names, spearman(imp, trained_importance), spearman(imp, short),
                               time.perf_counter() - t0))
        if progress is not None:
            progress.update(1)
    return out


def decorrelates(levels: Sequence[SanityLevel]) -> Optional[bool]:
    """Whether the fully random model's map correlates less than half as much as the trained short re-run's."""
    if len(levels) < 2:
        return None
    ceiling = levels[0].spearman
    last = levels[-1].spearman
    if not ceiling:
        return None
    if last is None:  # a constant map ranks nothing: nothing of the trained explanation is left
        return True
    return bool(abs(last) < 0.5 * abs(ceiling))

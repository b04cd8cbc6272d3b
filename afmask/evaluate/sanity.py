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
from afmask.mask.importance import mean_rank


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


#: How the sanity checks re-draw a layer: "trained_stats" (Gaussian with the trained tensor's mean and spread) or
#: "he_normal" (weights N(0, 2 / fan_in), biases 0: a standard initialisation that keeps a ReLU network's
#: output input-dependent; with the trained statistics the all-random demo network emitted one token everywhere).
INITS = ("trained_stats", "he_normal")


def _fan_in(layer: Module, shape: tuple) -> Optional[int]:
    """Inputs per output of a weight tensor: Conv2D [wx, wy, nin, nout] -> wx*wy*nin; Linear [nout, nin] -> nin."""
    from afmask.fl.nn import Conv2D, Linear

    if isinstance(layer, Conv2D) and len(shape) == 4:
        return int(shape[0] * shape[1] * shape[2])
    if isinstance(layer, Linear) and len(shape) == 2:
        return int(shape[1])
    return None


def _redraw(layer: Module, i: int, host: np.ndarray, rng: np.random.Generator, init: str) -> np.ndarray:
    fan = _fan_in(layer, host.shape) if init == "he_normal" else None
    if init == "he_normal" and i == 0 and fan:
        return rng.normal(0.0, np.sqrt(2.0 / fan), size=host.shape).astype(host.dtype)
    if init == "he_normal" and i == 1 and _fan_in(layer, layer.param(0).host().shape):
        return np.zeros(host.shape, host.dtype)  # the bias of a Conv2D or Linear layer
    # other tensors (layer norm gains, ...) keep their trained statistics under either init
    return rng.normal(float(np.mean(host)), float(np.std(host)), size=host.shape).astype(host.dtype)


@contextmanager
def randomised(model: Module, top: int, seed: int = 0, init: str = "trained_stats") -> Iterator[list[str]]:
    """The model with its ``top`` highest parameter layers re-drawn, restored on exit; yields their descriptions.

    ``init="trained_stats"``: each parameter is replaced by Gaussian noise with the mean and standard
    deviation of the trained parameter; ``"he_normal"``: Conv2D/Linear weights by N(0, 2 / fan_in), their
    biases by 0 (other tensors as with "trained_stats").
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    layers = parameter_layers(model)
    if not 1 <= top <= len(layers):
        raise ValueError(f"top must be in 1..{len(layers)}, got {top}")
    rng = np.random.default_rng(seed)
    saved: list[tuple[Module, int, Variable]] = []
    try:
        for layer in layers[len(layers) - top :][::-1]:
            for i, p in enumerate(layer.params()):
                host = p.host()
                new = _redraw(layer, i, host, rng, init)
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
    """Importance (K, T) of a short mask run (no files) of ``model`` on the clean FFT, from its last m; with
    ``config.restarts`` > 1 the runs' maps averaged as percentile ranks, as the run's own map is."""
    objective = MaskObjective(fft, model, config.variant, noise=config.noise, stats=config.stats,
                              clean_input=clean_input, kernel_path=config.kernel_path)
    maps = []
    for cfg in config.restart_configs():
        result = run_mask(objective, cfg, None, progress=False)
        # the last m (no early stop here), the bins at the bound ordered by the run's tie-break as the run's own map is
        maps.append(importance(result.m_last, result.tiebreak, config.m_max))
    return maps[0] if len(maps) == 1 else mean_rank(maps)


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


# -- the randomisation check with energy taken out ---------------------------------------------------------
def _log_energy(magnitude: np.ndarray) -> np.ndarray:
    e = np.asarray(magnitude, dtype=np.float64) ** 2
    floor = max(float(e.max()) * 1e-12, np.finfo(np.float64).tiny)
    return np.log(np.maximum(e, floor))


def energy_residual(scores: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """``scores`` (K, T) minus its least-squares linear fit on log energy ``log|X|^2``: what energy does not explain."""
    y = np.asarray(scores, dtype=np.float64).ravel()
    x = _log_energy(magnitude).ravel()
    A = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return (y - A @ coef).reshape(np.shape(scores))


def energy_controlled_correlations(a: np.ndarray, b: np.ndarray, magnitude: np.ndarray, deciles: int = 10) -> dict:
    """Spearman of two maps: raw, after a linear log-energy fit (of both), and the mean within energy deciles."""
    from afmask.evaluate.controls import energy_strata

    raw = spearman(a, b)
    fit = spearman(energy_residual(a, magnitude), energy_residual(b, magnitude))
    strata = energy_strata(magnitude, deciles).reshape(np.shape(a), order="F")
    within = [spearman(np.asarray(a)[strata == d], np.asarray(b)[strata == d]) for d in range(deciles)]
    found = [w for w in within if w is not None]
    return {"raw": raw, "log_energy_fit": fit, "within_deciles": float(np.mean(found)) if found else None,
            "per_decile": within}


def output_dependence(model: Module, clean_input: np.ndarray) -> dict:
    """How input-dependent the model's output is on the clean input: distinct greedy tokens, spread over frames."""
    from afmask.model import greedy_decode

    out = model(Variable(np.asarray(clean_input, np.float32), False)).host()
    tokens = np.argmax(out, axis=0)
    return {"distinct_tokens": int(np.unique(tokens).size), "output_std_over_frames": float(np.std(out, axis=1).mean()),
            "decoding": greedy_decode(out)}


def randomisation_check(
    model: Module,
    explain,
    trained_importance: np.ndarray,
    magnitude: np.ndarray,
    clean_input: np.ndarray,
    tops: Optional[Sequence[int]] = None,
    init: str = "he_normal",
    seed: int = 0,
    deciles: int = 10,
    progress=None,
) -> dict:
    """Model randomisation with energy taken out: maps of randomised models against the trained map, raw, after a
    log-energy fit and within energy deciles, against a seed-to-seed ceiling (the trained model, another seed).

    ``explain(model, seed) -> importance (K, T)`` makes one map (any method); ``tops``: how many top layers are
    re-drawn per level (default: the top half, then all); ``init``: see :data:`INITS`.
    """
    import time

    layers = parameter_layers(model)
    n = len(layers)
    tops = sorted({int(t) for t in (tops or [max(1, (n + 1) // 2), n])})
    if not all(1 <= t <= n for t in tops):
        raise ValueError(f"tops must be in 1..{n}, got {tops}")
    if progress is not None:
        progress.reset(total=len(tops) + 1)
    t0 = time.perf_counter()
    other = np.asarray(explain(model, seed + 1), dtype=np.float64)
    ceiling = energy_controlled_correlations(other, trained_importance, magnitude, deciles)
    ceiling.update(label="trained model, another seed (ceiling)", randomised_layers=0, layers=[],
                   seconds=round(time.perf_counter() - t0, 3), output=output_dependence(model, clean_input))
    if progress is not None:
        progress.update(1)
    levels = [ceiling]
    for top in tops:
        t0 = time.perf_counter()
        with randomised(model, top, seed=seed + 100 + top, init=init) as names:
            imp = np.asarray(explain(model, seed), dtype=np.float64)
            dep = output_dependence(model, clean_input)
        c = energy_controlled_correlations(imp, trained_importance, magnitude, deciles)
        c.update(label="all layers random" if top == n else f"top {top} of {n} layers random", randomised_layers=top,
                 layers=names, seconds=round(time.perf_counter() - t0, 3), output=dep)
        levels.append(c)
        if progress is not None:
            progress.update(1)
    last = levels[-1]
    key = "within_deciles"
    cw, lw = ceiling[key], last[key]
    passes = None if cw is None or lw is None or cw <= 0 else bool(abs(lw) < 0.5 * cw)
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    head = {True: "passes", False: "WARNING: fails", None: "undecided"}[passes]
    verdict = (f"{head}: model randomisation ({init} re-draw): the {last['label']} map correlates with the trained map "
               f"{f(last['raw'])} raw, {f(last['log_energy_fit'])} after a log-energy fit and {f(lw)} within energy "
               f"deciles; the ceiling (trained model, another seed) is {f(ceiling['raw'])}, "
               f"{f(ceiling['log_energy_fit'])} and {f(cw)}")
    if last["output"]["distinct_tokens"] <= 1:
        verdict += "; WARNING: the randomised network emits one token everywhere (its output ignores the input)"
    return {"control": "model randomisation (energy-controlled)", "init": init, "levels": levels, "passes": passes,
            "verdict": verdict, "correlation": "Spearman; log-energy fit: of the residuals of a linear fit of each map "
            "on log|X|^2; within deciles: the mean over the energy deciles"}

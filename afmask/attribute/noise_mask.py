"""afmask's own method in the attribution shape: learn the noise scale m (afmask.mask), importance = -log of it."""

from __future__ import annotations

import time
from typing import Optional


from afmask.attribute.base import Attribution, Attributor
from afmask.attribute.target import Utterance, utterance_arrays
from afmask.fl.nn import Module
from afmask.mask import MaskConfig, MaskObjective, run_mask


class NoiseMask(Attributor):
    """The mask method (Guan et al.'s information-based noise scale, afmask.mask.run_mask) with a MaskConfig."""

    name = "mask"

    def __init__(self, model: Module, config: Optional[MaskConfig] = None, **overrides):
        """``config``: the run's settings (default: the default mode's preset); ``overrides``: settings changed on it
        (e.g. ``iterations=400``, ``seed=1``)."""
        super().__init__(model)
        base = config if config is not None else MaskConfig.preset("default")
        self.config = base.replace(**overrides) if overrides else base
        self.config.validate()
        self.last_result = None  # the MaskResult of the last attribute() call (m, history, lambda)

    def settings(self) -> dict:
        """The mask run's settings, JSON-able."""
        return {"score": f"-||pre - cur||^2 ({self.config.variant}) and the regulariser", "space": "fft",
                "config": self.config.to_dict()}

    def attribute(self, utterance: Utterance, progress: bool = False) -> Attribution:
        """Importance (K, T) = -log of the learned noise scale per bin (small m = important), the bins at the bound
        ordered by the run's tie-break."""
        t0 = time.perf_counter()
        fft, _, clean_input = utterance_arrays(utterance)
        cfg = self.config
        objective = MaskObjective(fft, self.model, cfg.variant, noise=cfg.noise, stats=cfg.stats, clean_input=clean_input,
                                  kernel_path=cfg.kernel_path)
        result = run_mask(objective, cfg, progress=progress)
        self.last_result = result
        imp = result.importance()  # the bins at the bound ordered by the run's tie-break (tie_break = "path")
        summary = result.summary()
        extras = {"forwards": result.iterations * cfg.samples, "K": objective.K, "T": objective.T,
                  "iterations": result.iterations, "converged_at": result.converged_at, "lambda": result.lam,
                  "final": summary["final"], "kernel_path": result.kernel_path}
        return Attribution(imp, self.name, self.settings(), time.perf_counter() - t0, extras)

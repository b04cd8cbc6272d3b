"""afmask's own method in the attribution shape: learn the noise scale m (afmask.mask), importance = -log of it."""

from __future__ import annotations

import time
from typing import Optional

from afmask.attribute.base import Attribution, Attributor
from afmask.attribute.target import Utterance, utterance_arrays
from afmask.fl.nn import Module
from afmask.mask import MaskConfig, MaskObjective, run_mask
from afmask.mask.importance import mean_rank


class NoiseMask(Attributor):
    """The mask method (Guan et al.'s information-based noise scale, afmask.mask.run_mask) with a MaskConfig."""

    name = "mask"

    def __init__(self, model: Module, config: Optional[MaskConfig] = None, restarts: Optional[int] = None,
                 **overrides):
        """``config``: the run's settings (default: the default mode's preset); ``restarts``: runs with the seeds
        ``seed, seed + 1, ...``, their maps averaged as percentile ranks (default: the config's); ``overrides``:
        settings changed on the config (e.g. ``iterations=400``, ``seed=1``)."""
        super().__init__(model)
        if restarts is not None:
            overrides = {**overrides, "restarts": restarts}
        base = config if config is not None else MaskConfig.preset("default")
        self.config = base.replace(**overrides) if overrides else base
        self.config.validate()
        self.restarts = self.config.restarts
        self.last_result = None  # the MaskResult of the last attribute() call's run of config.seed (m, history, lambda)

    def settings(self) -> dict:
        """The mask run's settings, JSON-able."""
        return {"score": f"-||pre - cur||^2 ({self.config.variant}) and the regulariser", "space": "fft",
                "config": self.config.to_dict(), "restarts": self.restarts}

    def attribute(self, utterance: Utterance, progress: bool = False) -> Attribution:
        """Importance (K, T) = -log of the learned noise scale per bin (small m = important), the bins at the bound
        ordered by the run's tie-break."""
        t0 = time.perf_counter()
        fft, _, clean_input = utterance_arrays(utterance)
        cfg = self.config
        objective = MaskObjective(fft, self.model, cfg.variant, noise=cfg.noise, stats=cfg.stats, clean_input=clean_input,
                                  kernel_path=cfg.kernel_path)
        runs = [run_mask(objective, c, progress=progress) for c in cfg.restart_configs()]
        maps = [r.importance() for r in runs]  # the bins at the bound ordered by each run's tie-break
        self.last_result = runs[0]
        imp = maps[0] if len(maps) == 1 else mean_rank(maps)
        summary = runs[0].summary()
        extras = {"forwards": sum(r.iterations for r in runs) * cfg.samples, "K": objective.K, "T": objective.T,
                  "iterations": runs[0].iterations, "converged_at": runs[0].converged_at, "lambda": runs[0].lam,
                  "final": summary["final"], "kernel_path": runs[0].kernel_path}
        if len(runs) > 1:
            extras["restarts"] = {"seeds": [c.seed for c in cfg.restart_configs()],
                                  "iterations": [r.iterations for r in runs], "lambda": [r.lam for r in runs]}
        return Attribution(imp, self.name, self.settings(), time.perf_counter() - t0, extras)


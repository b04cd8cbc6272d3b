"""Settings of a mask run: every constant of the original is one, and the two modes are named presets."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Union

MODES = ("faithful", "default")
VARIANTS = ("letters", "pitfall", "posteriors")
REGULARIZERS = ("log_norm", "mean_log")
PARAMETRIZATIONS = ("raw", "abs", "softplus", "exp")
OPTIMIZERS = ("sgd", "adam")
NOISES = ("absolute", "relative")
GRADIENTS = ("hand", "autograd")
STATS = ("float64", "arrayfire_cpu")
ACCUMULATIONS = ("float64", "float32")
NOISE_GENERATORS = ("host", "device")


@dataclass
class MaskConfig:
    """Everything that defines a mask run; ``MaskConfig.preset(mode)`` gives a mode's defaults."""

    #: "faithful" reproduces the original C++ loop; "default" is the best correct method.
    mode: str = "default"
    #: post-processing of the network output before the distance: "letters" (the note's second
    #: version), "pitfall" (its first version, softmax lost as in C++), "posteriors" (softmax over all 31 tokens).
    variant: str = "posteriors"
    #: the regulariser: "log_norm" is the note's -lambda*log(||m||^2); "mean_log" is Guan et al.'s
    #: per-point -lambda*mean(log(sigma^2)).
    regularizer: str = "mean_log"
    #: lambda, or "auto" to balance the two gradient norms at the start.
    lam: Union[float, str] = "auto"
    #: with lam="auto", lambda = lambda_scale * ||grad f|| / ||grad R(lambda=1)|| at the start. The distance's
    #: gradient shrinks as m grows while the regulariser's does not, so balancing them 1:1 at the start lets the
    #: regulariser win later (on the demo most points ran to m_max); 0.1 kept the two terms of one size.
    lambda_scale: float = 0.1
    #: how the optimised parameter theta gives the noise scale m: "raw" (m = theta, as the original),
    #: "abs" (|theta|), "softplus" or "exp" (positive by construction).
    parametrization: str = "exp"
    #: initial value of m everywhere (0.1 in the original).
    m_init: float = 0.1
    #: upper bound of m (None: unbounded, as the original). Both regularisers reward ever larger m; where the
    #: model ignores a point nothing pushes back, and m grew without end (1e10 on the demo) until the
    #: regulariser swamped the distance. Relative noise ten times a point's own magnitude has destroyed it.
    m_max: Optional[float] = 10.0
    #: "absolute": x~ = x + eps*m with eps ~ N(0, fftstdev^2) (the original); "relative":
    #: x~ = x + eps*m*|x_k| with eps ~ N(0, 1), noise relative to each bin's own magnitude.
    noise: str = "relative"
    #: noise samples per step, batched.
    samples: int = 4
    optimizer: str = "adam"
    lr: float = 0.05
    #: Adam's moment decay rates and epsilon.
    betas: tuple = (0.9, 0.999)
    adam_eps: float = 1e-8
    #: the most iterations; a run may stop earlier when the convergence test fires and early_stop is set.
    iterations: int = 1500
    early_stop: bool = True
    #: the convergence test compares mean losses of consecutive windows of this many iterations.
    window: int = 50
    #: a window "does not improve" when the mean loss falls by less than rtol*|mean| or 2 standard errors. The
    #: regulariser keeps rewarding m until it reaches m_max, so the loss creeps down long after the ranking has
    #: settled; 1e-3 did not fire in 1500 iterations on the demo.
    rtol: float = 1e-2
    #: consecutive non-improving windows before the test fires.
    patience: int = 3
    #: "hand" uses the note's hand-written gradient through the normalisation and the magnitudes (verified
    #: against autograd); "autograd" differentiates the whole pipeline with afmask.fl.
    gradient: str = "hand"
    #: the fused step's implementation: "auto" (fastest available), or loop, expr, ext, opencl, cuda, arrayfire.
    kernel_path: str = "auto"
    #: mean/stdev of the network input: "float64" or "arrayfire_cpu" (ArrayFire CPU's float32 accumulation, slow).
    stats: str = "float64"
    #: ||m|| as "float64" or "float32" (ArrayFire CPU's sequential float32 sum, as af::norm gives it).
    norm_accumulation: str = "float64"
    seed: int = 0
    #: where the noise is drawn: "host" (numpy.random.Generator(seed), copied to the device: the same noise and
    #: so the same m on every backend) or "device" (the backend's own generator: no copy, backend-dependent draws).
    noise_generator: str = "host"
    checkpoint_every: int = 100
    #: where the utterance comes from and which model explains it (filled in by the command line).
    audio: str = ""
    model: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def preset(cls, mode: str, **overrides: Any) -> "MaskConfig":
        """The defaults of ``mode`` ("faithful" or "default"), with ``overrides`` applied."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "faithful":
            base = cls(
                mode="faithful", variant="letters", regularizer="log_norm", lam=10.0, parametrization="raw",
                m_init=0.1, m_max=None, noise="absolute", samples=1, optimizer="sgd", lr=0.001, iterations=5000,
                early_stop=False, gradient="hand", stats="float64", norm_accumulation="float64",
            )
        else:
            base = cls()
        return base.replace(**overrides)

    def replace(self, **overrides: Any) -> "MaskConfig":
        """A copy with some settings changed (checked)."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        cfg = dataclasses.replace(self, **overrides)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ValueError naming the first setting that is out of range."""
        choices = {
            "mode": MODES, "variant": VARIANTS, "regularizer": REGULARIZERS, "parametrization": PARAMETRIZATIONS,
            "optimizer": OPTIMIZERS, "noise": NOISES, "gradient": GRADIENTS, "stats": STATS,
            "norm_accumulation": ACCUMULATIONS, "noise_generator": NOISE_GENERATORS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not (self.lam == "auto" or isinstance(self.lam, (int, float)) and self.lam >= 0):
            raise ValueError(f"lam must be a number >= 0 or 'auto', got {self.lam!r}")
        positive = {"lr": self.lr, "iterations": self.iterations, "samples": self.samples, "window": self.window,
                    "patience": self.patience, "checkpoint_every": self.checkpoint_every, "lambda_scale": self.lambda_scale}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if self.m_init <= 0 and self.parametrization in ("softplus", "exp"):
            raise ValueError(f"m_init must be > 0 with parametrization {self.parametrization!r}, got {self.m_init}")
        if self.m_max is not None and not self.m_max > abs(self.m_init):
            raise ValueError(f"m_max must be > m_init ({self.m_init}) or None, got {self.m_max}")
        if self.stats == "arrayfire_cpu" and self.samples != 1:
            raise ValueError("stats='arrayfire_cpu' replays the C++ for one noise sample: set samples=1")

    def to_dict(self) -> dict:
        """Plain JSON-able settings."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MaskConfig":
        """Settings from a dict; a "mode" key picks the preset the others override."""
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls.preset(d.pop("mode", "default"), **d)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], **overrides: Any) -> "MaskConfig":
        """Settings from a JSON or TOML file, then ``overrides``."""
        path = os.fspath(path)
        try:
            if path.endswith(".toml"):
                import tomllib

                with open(path, "rb") as f:
                    d = tomllib.load(f)
            else:
                with open(path, encoding="utf-8") as f:
                    d = json.load(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read config {path}: {exc}") from None
        if not isinstance(d, dict):
            raise ValueError(f"config {path} must hold a table of settings, got {type(d).__name__}")
        d.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"config {path}: {exc}") from None

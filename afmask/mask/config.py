"""Settings of a mask run: every constant of the original is one, and the two modes are named presets.

One typed schema (:data:`SCHEMA`, :data:`RULES`) checks every setting the same way whether it comes from the
command line, a JSON or TOML file or the Python API: its type, its range and the rules between settings. A bad
value raises :class:`ConfigError`, a ValueError whose text is ``KEY: why; what to do``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

MODES = ("faithful", "default")
VARIANTS = ("letters", "pitfall", "posteriors")
REGULARIZERS = ("log_norm", "mean_log")
PARAMETRIZATIONS = ("raw", "abs", "softplus", "exp")
OPTIMIZERS = ("sgd", "adam")
NOISES = ("absolute", "relative", "attenuate", "drop")
#: the noises that scale each bin's magnitude by (1 - m*u) instead of adding to it
ATTENUATIONS = ("attenuate", "drop")
#: "drop" keeps a bin where its U(0, 1) draw is below this (factor 1) and deletes it elsewhere (factor 0)
DROP_BELOW = 0.5
GRADIENTS = ("hand", "autograd")
STATS = ("float64", "arrayfire_cpu")
ACCUMULATIONS = ("float64", "float32")
NOISE_GENERATORS = ("host", "device")
TIE_BREAKS = ("path", "gradient", "none")
#: the fused step's implementations (afmask.kernels.mask_step.PATHS), plus "auto"; kept here so that checking
#: settings does not load the kernels.
KERNEL_PATHS = ("auto", "loop", "expr", "ext", "opencl", "cuda", "arrayfire")
#: the settings files afmask reads.
CONFIG_SUFFIXES = (".json", ".toml")


class ConfigError(ValueError):
    """A bad setting; its text is ``[SOURCE: ]KEY: why; what to do``."""

    def __init__(self, key: str, why: str, fix: str, source: str = ""):
        self.key, self.why, self.fix, self.source = key, why, fix, source
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"{self.source}: " if self.source else ""
        return f"{head}{self.key}: {self.why}; {self.fix}"

    def renamed(self, key: Optional[str] = None, source: Optional[str] = None) -> "ConfigError":
        """The same error under another name (a command-line option) or source (a file)."""
        return ConfigError(key or self.key, self.why, self.fix, self.source if source is None else source)


@dataclass(frozen=True)
class Setting:
    """The type and range of one setting: ``kind`` is choice, bool, int, float, lam, m_max, betas, str or extra."""

    kind: str
    choices: tuple = ()
    low: Optional[float] = None
    low_open: bool = False  # whether ``low`` itself is excluded
    example: str = ""

    def describe(self) -> str:
        """What a good value looks like, in words."""
        bound = ""
        if self.low is not None:
            bound = f" {'>' if self.low_open else '>='} {self.low:g}"
        return {
            "choice": "one of " + ", ".join(self.choices),
            "bool": "true or false",
            "int": "a whole number" + bound,
            "float": "a finite number" + bound,
            "lam": "a finite number >= 0 or 'auto'",
            "m_max": "a finite number > m_init, or null / 'none' for no bound",
            "betas": "two numbers in [0, 1), e.g. [0.9, 0.999]",
            "str": "a string",
            "extra": "a table of JSON values",
        }[self.kind]


def _choice(*choices: str, example: str = "") -> Setting:
    return Setting("choice", choices=choices, example=example or repr(choices[0]))


#: Every setting's type and range (the fields of MaskConfig, in order).
SCHEMA: dict = {
    "mode": _choice(*MODES), "variant": _choice(*VARIANTS), "regularizer": _choice(*REGULARIZERS),
    "lam": Setting("lam", example="10"), "lambda_scale": Setting("float", low=0, low_open=True, example="0.1"),
    "parametrization": _choice(*PARAMETRIZATIONS), "m_init": Setting("float", low=0, low_open=True, example="0.1"),
    "m_max": Setting("m_max", example="10"), "tie_break": _choice(*TIE_BREAKS), "noise": _choice(*NOISES),
    "samples": Setting("int", low=1, example="4"), "restarts": Setting("int", low=1, example="3"),
    "optimizer": _choice(*OPTIMIZERS),
    "lr": Setting("float", low=0, low_open=True, example="0.05"), "betas": Setting("betas", example="[0.9, 0.999]"),
    "adam_eps": Setting("float", low=0, low_open=True, example="1e-8"),
    "iterations": Setting("int", low=1, example="1500"), "early_stop": Setting("bool", example="false"),
    "window": Setting("int", low=1, example="50"), "rtol": Setting("float", low=0, example="0.01"),
    "patience": Setting("int", low=1, example="3"), "gradient": _choice(*GRADIENTS),
    "kernel_path": _choice(*KERNEL_PATHS), "stats": _choice(*STATS), "norm_accumulation": _choice(*ACCUMULATIONS),
    "seed": Setting("int", low=0, example="0"), "noise_generator": _choice(*NOISE_GENERATORS),
    "checkpoint_every": Setting("int", low=1, example="100"),
    "checkpoint_seconds": Setting("float", low=0, example="60"),
    "audio": Setting("str", example="'speech.wav'"), "model": Setting("str", example="'demo'"),
    "extra": Setting("extra", example="{}"),
}

#: Which settings go together, in words (checked by :meth:`MaskConfig.validate` after each setting's own check).
RULES = (
    "m_max, when given, must exceed m_init",
    "stats = 'arrayfire_cpu' replays the C++ loop for one noise sample: it needs samples = 1",
    "extra.frames, when given, is [start, stop] with 0 <= start < stop",
)


def _shown(value: Any) -> str:
    """A value as the user wrote it, for a message."""
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return f"the list {json.dumps(list(value), default=str)}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def _unquote_hint(value: Any, kind: str) -> str:
    """'write 3 without quotes' when a string holds a value of the right type."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            number = None
        if kind == "bool" and text.lower() in ("true", "false", "yes", "no", "on", "off", "0", "1"):
            word = "true" if text.lower() in ("true", "yes", "on", "1") else "false"
            return f"write {word} without quotes"
        if number is not None and kind in ("int", "float", "lam", "m_max"):
            return f"write {text} without quotes"
    return ""


def _number(name: str, spec: Setting, value: Any, integral: bool, desc: str = "") -> Union[int, float]:
    """``value`` as an int or float in ``spec``'s range, or a ConfigError (``desc``: the setting's words, if other)."""
    desc = desc or spec.describe()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fix = _unquote_hint(value, spec.kind) or f"give {desc}, e.g. {spec.example}"
        if spec.kind == "int" and isinstance(value, str) and _unquote_hint(value, "float") and not value.strip().isdigit():
            fix = f"give a whole number without quotes, e.g. {spec.example}"
        raise ConfigError(name, f"expected {desc}, got {_shown(value)}", fix)
    if not math.isfinite(float(value)):
        raise ConfigError(name, f"expected {desc}, got {_shown(float(value))}", f"give a finite value, e.g. {spec.example}")
    if integral:
        if not float(value).is_integer():
            raise ConfigError(name, f"expected {desc}, got {_shown(value)}", f"give a whole number, e.g. {spec.example}")
        value = int(value)
    else:
        value = float(value)
    if spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low):
        raise ConfigError(name, f"expected {desc}, got {_shown(value)}", f"give {desc}, e.g. {spec.example}")
    return value


def check_setting(name: str, value: Any) -> Any:
    """``value`` checked against the schema of setting ``name`` and normalised (int, float, tuple); else ConfigError."""
    spec = SCHEMA.get(name)
    if spec is None:
        raise unknown_setting(name)
    kind = spec.kind
    if kind in ("int", "float"):
        return _number(name, spec, value, integral=kind == "int")
    if kind == "choice":
        if not isinstance(value, str):
            raise ConfigError(name, f"expected {spec.describe()}, got {_shown(value)}", f"give one of these as a string, e.g. {spec.example}")
        if value not in spec.choices:
            close = difflib.get_close_matches(value, spec.choices, n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(spec.choices)}"
            raise ConfigError(name, f"expected {spec.describe()}, got {value!r}", fix)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            fix = _unquote_hint(value, kind) or "write true or false (without quotes)"
            raise ConfigError(name, f"expected true or false, got {_shown(value)}", fix)
        return value
    if kind == "lam":
        if value == "auto":
            return value
        if isinstance(value, str):
            fix = _unquote_hint(value, kind) or (
                "write 'auto' in lower case" if value.strip().lower() == "auto" else "give a number >= 0, e.g. 10, or 'auto'")
            raise ConfigError(name, f"expected {spec.describe()}, got {_shown(value)}", fix)
        return _number(name, Setting("float", low=0, example="10"), value, integral=False, desc=spec.describe())
    if kind == "m_max":
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            return None
        return _number(name, Setting("float", low=0, low_open=True, example="10"), value, integral=False,
                       desc=spec.describe())
    if kind == "betas":
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ConfigError(name, f"expected {spec.describe()}, got {_shown(value)}", "give Adam's two decay rates, e.g. [0.9, 0.999]")
        out = []
        for i, b in enumerate(value):
            b = _number(f"{name}[{i}]", Setting("float", low=0, example="0.9"), b, integral=False)
            if not b < 1:
                raise ConfigError(f"{name}[{i}]", f"expected a number in [0, 1), got {b:g}", "give e.g. [0.9, 0.999]")
            out.append(b)
        return tuple(out)
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(name, f"expected a string, got {_shown(value)}", f"give a string, e.g. {spec.example}")
        return value
    if kind == "extra":
        return _check_extra(name, value)
    raise AssertionError(kind)


def _check_extra(name: str, value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise ConfigError(name, f"expected a table of extra values, got {_shown(value)}", "give a table, e.g. {} (or leave it out)")
    value = dict(value)
    for k, v in value.items():
        if not isinstance(k, str):
            raise ConfigError(name, f"key {k!r} is not a string", "use string keys")
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}.{k}", f"{type(v).__name__} cannot be stored in config.json",
                              "give a string, number, boolean, list or table") from None
    frames = value.get("frames")
    if frames is not None:
        ok = (isinstance(frames, (list, tuple)) and len(frames) == 2
              and all(isinstance(f, numbers.Integral) and not isinstance(f, bool) for f in frames)
              and 0 <= frames[0] < frames[1])
        if not ok:
            raise ConfigError(f"{name}.frames", f"expected [start, stop] with 0 <= start < stop, got {_shown(frames)}",
                              "give two frame numbers, e.g. [0, 300] (or --frames 0:300)")
        value["frames"] = [int(frames[0]), int(frames[1])]
    return value


#: Names people write for a setting (the command line's, other tools'), for "did you mean".
ALIASES = {"lambda": "lam", "learning_rate": "lr", "steps": "iterations", "iters": "iterations", "n_samples": "samples"}


def unknown_setting(name: Any) -> ConfigError:
    """The error for a key that is not a setting, with the closest setting's name."""
    close = [ALIASES[name]] if name in ALIASES else difflib.get_close_matches(str(name), list(SCHEMA), n=1, cutoff=0.5)
    fix = f"did you mean {close[0]!r}?" if close else "the settings are the fields of afmask.mask.MaskConfig (see the README)"
    return ConfigError(str(name), "unknown setting", fix)


@dataclass
class MaskConfig:
    """Everything that defines a mask run; ``MaskConfig.preset(mode)`` gives a mode's defaults. Checked on creation."""

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
    #: regulariser swamped the distance. With attenuation noise m = 1 already lets a point be deleted outright;
    #: beyond 1 it would be amplified instead, which is not what "the model does not need it" means.
    m_max: Optional[float] = 1.0
    #: how the points that end at the bound are ordered among themselves: "path" by how long each stayed below it
    #: (the mean of -log m over the run: the longer the data term held it down, the more important), "none" (a tie,
    #: broken at random by the controls). With m_max = 1 two thirds of the demo's points end at the bound; at
    #: random their order let a model exactly blind to bins 60..120 get 12-13% of its top 20% there on two LibriVox
    #: clips; by the path 0%. "gradient": by the mean over the run of ``m * df/dm`` (how hard the distance pushes
    #: back against more noise there; a bin the model cannot read has 0).
    tie_break: str = "path"
    #: "absolute": x~ = x + eps*m with eps ~ N(0, fftstdev^2) (the original); "relative":
    #: x~ = x + eps*m*|x_k| with eps ~ N(0, 1), noise relative to each bin's own magnitude; "attenuate":
    #: x~_k = x_k * (1 - m_k*u_k), u_k ~ U(0, 1) per bin (shared by its Re and Im rows, so only the magnitude
    #: changes): m = 1 means the point may be scaled anywhere between intact and deleted. Relative noise mostly
    #: amplifies once m > 1, and tolerating amplification did not predict what deleting a point does (within
    #: equal-loudness strata its least-important points hurt more than random ones); attenuation does. "drop": the
    #: same with u_k = 0 or 1, probability 1/2 each: a point at m = 1 is kept or deleted outright, the deletion the
    #: controls test, where U(0, 1) never deletes it (it scales it by 1/2 on average). On the LibriVox clip 0920,
    #: over seeds 0..7, the least important points of "attenuate" hurt more than random ones on 6 of 8 seeds, those
    #: of "drop" on none (the README has the figures).
    noise: str = "drop"
    #: noise samples per step, batched.
    samples: int = 4
    #: runs with the seeds seed, seed + 1, ..., whose maps are averaged as percentile ranks
    #: (afmask.mask.importance.mean_rank). On one LibriVox clip one run's verdict against a time-shifted map
    #: depends on the seed (with drop noise 7 of 8 seeds pass); three averaged passed on every clip and seed triple
    #: tried, at three times the cost, so the default stays one run (the measurements are in the README).
    restarts: int = 1
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
    #: a checkpoint every this many iterations, and also every ``checkpoint_seconds`` seconds of running (0: only
    #: by count). One iteration of a 10-minute file takes over a minute, so 100 iterations were two hours of work.
    checkpoint_every: int = 100
    checkpoint_seconds: float = 60.0
    #: where the utterance comes from and which model explains it (filled in by the command line).
    audio: str = ""
    model: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def preset(cls, mode: str, **overrides: Any) -> "MaskConfig":
        """The defaults of ``mode`` ("faithful" or "default"), with ``overrides`` applied (checked)."""
        mode = check_setting("mode", mode)
        if mode == "faithful":
            base = cls(
                mode="faithful", variant="letters", regularizer="log_norm", lam=10.0, parametrization="raw",
                m_init=0.1, m_max=None, noise="absolute", samples=1, optimizer="sgd", lr=0.001, iterations=5000,
                early_stop=False, gradient="hand", stats="float64", norm_accumulation="float64", tie_break="none",
                restarts=1,
            )
        else:
            base = cls()
        return base.replace(**overrides)

    def restart_configs(self) -> list:
        """The settings of each of the ``restarts`` runs: seeds seed, seed + 1, ..., each one run."""
        return [self.replace(seed=self.seed + i, restarts=1) for i in range(self.restarts)]

    def replace(self, **overrides: Any) -> "MaskConfig":
        """A copy with some settings changed (checked: ConfigError naming the first bad one)."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in overrides:
            if key not in names:
                raise unknown_setting(key)
        for key, value in overrides.items():  # each value on its own first, so the error names the key given
            overrides[key] = check_setting(key, value)
        return dataclasses.replace(self, **overrides)

    def validate(self) -> None:
        """Check and normalise every setting against :data:`SCHEMA`, then :data:`RULES`; ConfigError naming the first bad one."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, check_setting(f.name, getattr(self, f.name)))
        if self.m_max is not None and not self.m_max > self.m_init:
            raise ConfigError("m_max", f"must exceed m_init ({self.m_init:g}), got {self.m_max:g}",
                              f"give m_max > {self.m_init:g}, or null / 'none' for no bound")
        if self.stats == "arrayfire_cpu" and self.samples != 1:
            raise ConfigError("stats", f"'arrayfire_cpu' replays the C++ loop for one noise sample, but samples = {self.samples}",
                              "set samples=1 (--samples 1) or stats='float64'")

    def to_dict(self) -> dict:
        """Plain JSON-able settings."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "") -> "MaskConfig":
        """Settings from a dict; a "mode" key picks the preset the others override. ``source`` names it in errors."""
        try:
            if not isinstance(d, Mapping):
                raise ConfigError("settings", f"expected a table of settings, got {_shown(d)}",
                                  'write e.g. {"iterations": 300} (JSON) or iterations = 300 (TOML)')
            d = dict(d)
            for key in d:
                if key not in SCHEMA:
                    raise unknown_setting(key)
            return cls.preset(d.pop("mode", "default"), **d)
        except ConfigError as exc:
            raise exc.renamed(source=source) if source else exc from None

    @classmethod
    def load(cls, path: Union[str, os.PathLike], **overrides: Any) -> "MaskConfig":
        """Settings from a JSON or TOML file, then ``overrides`` (None values skipped; "mode" picks the preset)."""
        path = os.fspath(path)
        d = read_settings_file(path)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if "mode" in overrides:
            d["mode"] = overrides.pop("mode")
        return cls.from_dict(d, source=path).replace(**overrides)


def _no_duplicates(pairs: list) -> dict:
    seen: dict = {}
    for k, v in pairs:
        if k in seen:
            raise ConfigError(k, "given twice", "keep one of the two")
        seen[k] = v
    return seen


def read_settings_file(path: str) -> dict:
    """The table of a JSON (.json) or TOML (.toml) settings file; ValueError naming the file otherwise."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".yaml", ".yml"):
        raise ValueError(f"{path}: YAML settings are not read; write them as JSON (.json) or TOML (.toml)")
    if suffix not in CONFIG_SUFFIXES:
        raise ValueError(f"{path}: unknown settings format {suffix or '(no extension)'!r}; "
                         "name the file .json (JSON) or .toml (TOML)")
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python < 3.11: the same parser as a package
                try:
                    import tomli as tomllib
                except ModuleNotFoundError:
                    raise ValueError(f"cannot read config {path}: TOML needs Python 3.11+ or the tomli package; "
                                     "pip install tomli, or write the settings as JSON") from None
            with open(path, "rb") as f:
                d = tomllib.load(f)
        else:
            with open(path, encoding="utf-8") as f:
                d = json.load(f, object_pairs_hook=_no_duplicates)
    except ConfigError as exc:
        raise exc.renamed(source=path) from None
    except OSError as exc:
        raise ValueError(f"cannot read config {path}: {exc.strerror or exc}; check the path") from None
    except UnicodeDecodeError:
        raise ValueError(f"cannot read config {path}: not UTF-8 text; save it as UTF-8") from None
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        kind = "TOML" if suffix == ".toml" else "JSON"
        raise ValueError(f"cannot read config {path}: not valid {kind} ({exc}); fix the file") from None
    if not isinstance(d, dict):
        raise ConfigError("settings", f"expected a table of settings, got {_shown(d)}",
                          'write e.g. {"iterations": 300}', source=path)
    return d

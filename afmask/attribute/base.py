"""The shape every attribution method shares: ``Method(model, ...).attribute(utterance) -> Attribution``.

As in Captum (``captum/attr/_core``): one class per method, one verb with the
same arguments everywhere; what a method needs beyond that is a constructor
argument. Batching and progress are the helpers here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from afmask.attribute.target import SCORES, SPACES, Target, Utterance
from afmask.fl.nn import Module
from afmask.io.files import atomic_write, json_safe

#: Files of an attribution folder.
IMPORTANCE_FILE = "importance.npy"
ATTRIBUTION_FILE = "attribution.json"


@dataclass
class Attribution:
    """One method's answer for one utterance: importance per time-frequency point, larger = more important."""

    importance: np.ndarray  # (K, T) float64, the orientation of afmask.evaluate.importance.importance(m)
    method: str
    settings: dict
    seconds: float
    extras: dict = field(default_factory=dict)  # method-specific findings (e.g. the completeness check)

    def __post_init__(self) -> None:
        imp = np.asarray(self.importance, dtype=np.float64)
        if imp.ndim != 2:
            raise ValueError(f"an importance map is (K, T), got shape {imp.shape}")
        if not np.all(np.isfinite(imp)):
            raise ValueError(f"the {self.method} map holds NaN or Inf")
        self.importance = imp

    def to_dict(self) -> dict:
        """Everything but the map, JSON-able."""
        return {"method": self.method, "settings": self.settings, "seconds": round(self.seconds, 3),
                "shape": list(self.importance.shape), "extras": self.extras}

    def save(self, out: os.PathLike) -> Path:
        """Write DIR/importance.npy and DIR/attribution.json, each whole or not at all; returns DIR."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(out / IMPORTANCE_FILE) as f:
            np.save(f, self.importance)
        with atomic_write(out / ATTRIBUTION_FILE) as f:
            f.write(json.dumps(json_safe(self.to_dict()), indent=2).encode())
        return out

    @classmethod
    def load(cls, out: os.PathLike) -> "Attribution":
        """The attribution saved in DIR."""
        out = Path(out)
        for name in (IMPORTANCE_FILE, ATTRIBUTION_FILE):
            if not (out / name).is_file():
                raise FileNotFoundError(f"{out} is not an attribution folder: {name} is missing (afmask attribute AUDIO --out {out})")
        with open(out / ATTRIBUTION_FILE, encoding="utf-8") as f:
            doc = json.load(f)
        return cls(np.load(out / IMPORTANCE_FILE), doc["method"], doc.get("settings", {}), float(doc.get("seconds", 0.0)),
                   doc.get("extras", {}))


# -- shared plumbing -----------------------------------------------------------------------------------
def batches(n: int, batch: int) -> Iterator[slice]:
    """Slices of ``range(n)`` of at most ``batch`` items each."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    for start in range(0, n, batch):
        yield slice(start, min(start + batch, n))


class Progress:
    """A tqdm bar on stderr, or nothing."""

    def __init__(self, enabled: bool, total: int, desc: str):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=sys.stderr, desc=desc, unit="input", dynamic_ncols=True, leave=False)

    def update(self, n: int) -> None:
        """Advance by ``n`` inputs."""
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


class Attributor:
    """Base of the methods: the model, the score, the space, the batch size; ``attribute`` times ``_attribute``."""

    #: the method's short name (the CLI's --method)
    name = ""
    #: the default score and space of the method
    default_score = "logprob"
    default_space = "magnitude"

    def __init__(self, model: Module, score: Optional[str] = None, space: Optional[str] = None, batch: int = 8):
        """``score``: "logprob", "prob" or "distance" (see afmask.attribute.target); ``space``: "magnitude" or
        "input"; ``batch``: inputs per forward pass."""
        self.model = model
        self.score = score or self.default_score
        self.space = space or self.default_space
        self.batch = _positive_int("batch", batch)
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")

    def settings(self) -> dict:
        """The method's settings, JSON-able (extended by each method)."""
        return {"score": self.score, "space": self.space, "batch": self.batch}

    def target(self, utterance: Utterance) -> Target:
        """The clean pipeline and score for ``utterance``."""
        return Target(self.model, utterance, self.score, self.space)

    def attribute(self, utterance: Utterance, progress: bool = False) -> Attribution:
        """Importance per time-frequency point (K, T) of ``utterance`` (its FFT (2K, T) or features dict)."""
        t0 = time.perf_counter()
        target = self.target(utterance)
        imp, extras = self._attribute(target, progress)
        seconds = time.perf_counter() - t0
        extras = {"forwards": target.forwards, **target.describe(), **extras}
        return Attribution(imp, self.name, self.settings(), seconds, extras)

    def _attribute(self, target: Target, progress: bool) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

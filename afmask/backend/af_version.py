"""ArrayFire behaviour that changed between releases, as a setting.

``af::var(x, isbiased=false)`` divides by N-1 in ArrayFire 3.6.x and by N from
3.7 on (``af::stdev`` divides by N in every release). The original experiment
ran on ArrayFire 3.6.2 (its Dockerfile); the flashlight fixtures were made with
3.9.0. ``AFMASK_AF_VERSION`` (default 3.6.2) picks the semantics afmask mirrors.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from afmask.backend.base import Backend

ENV_VAR = "AFMASK_AF_VERSION"
DEFAULT_VERSION = "3.6.2"


def af_version(version: Optional[str] = None) -> tuple[int, int, int]:
    """The ArrayFire release whose semantics to mirror, as (major, minor, patch)."""
    text = version or os.environ.get(ENV_VAR, DEFAULT_VERSION)
    try:
        parts = tuple(int(p) for p in text.strip().split("."))
    except ValueError:
        raise ValueError(f"{ENV_VAR} must look like 3.6.2, got {text!r}") from None
    if not 1 <= len(parts) <= 3 or parts[0] < 3:
        raise ValueError(f"{ENV_VAR} must be an ArrayFire 3.x release like 3.6.2, got {text!r}")
    return (parts + (0, 0))[:3]  # type: ignore[return-value]


def af_var(backend: Backend, a: Any, isbiased: bool = False, version: Optional[str] = None) -> float:
    """``af::var<float>(a, isbiased)`` over all elements: N-1 unless ``isbiased`` in 3.6.x, always N from 3.7."""
    population = isbiased or af_version(version) >= (3, 7, 0)
    return backend.scalar(backend.var(a, [0, 1, 2, 3], biased=population))

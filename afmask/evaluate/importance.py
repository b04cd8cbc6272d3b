"""Importance per time-frequency point from the learned noise scale m (afmask.mask.importance), and rankings."""

from __future__ import annotations

import numpy as np

from afmask.mask.importance import bin_scale, importance

__all__ = ["bin_scale", "importance", "ranking"]


def ranking(scores: np.ndarray) -> np.ndarray:
    """Flat column-major indices of the (K, T) points from most to least important (ties by position)."""
    flat = np.asarray(scores, dtype=np.float64).ravel(order="F")
    return np.argsort(-flat, kind="stable")

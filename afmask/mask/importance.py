"""Importance per time-frequency point from the learned noise scale m: small noise scale = important."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np


def bin_scale(m: np.ndarray) -> np.ndarray:
    """Noise scale per bin (K, T) from m (2K, T): the RMS of the (Re, Im) pair, ``sqrt((m_re^2 + m_im^2) / 2)``.

    The pair's noise is ``eps_re*m_re + i*eps_im*m_im``, whose expected power is
    proportional to ``m_re^2 + m_im^2``; the RMS keeps the scale of m.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] % 2:
        raise ValueError(f"m must be (2K, T) with interleaved Re/Im rows, got shape {m.shape}")
    return np.sqrt((m[0::2] ** 2 + m[1::2] ** 2) / 2.0)


#: A bin counts as at the bound when its scale is within this relative distance of m_max.
AT_BOUND_RTOL = 1e-6


def at_bound(m: np.ndarray, m_max: Optional[float]) -> np.ndarray:
    """Bool (K, T): the bins whose noise scale ended at the bound m_max (none without a bound)."""
    s = bin_scale(m)
    if m_max is None:
        return np.zeros(s.shape, dtype=bool)
    return s >= float(m_max) * (1.0 - AT_BOUND_RTOL)


def importance(m: np.ndarray, tiebreak: Optional[np.ndarray] = None, m_max: Optional[float] = None) -> np.ndarray:
    """Importance per bin (K, T): ``-log(bin_scale(m))``, so larger means the model needs that point more; with a
    run's ``tiebreak`` (K, T) and its bound ``m_max``, the bins at the bound are ordered by the tie-break.

    The tie-break (:attr:`afmask.mask.run.MaskResult.tiebreak`) is the mean of ``-log m`` over the run: a bin
    the data term held below the bound longer is more important. The bins at the bound then take values in
    ``(-log(m_max) - 2, -log(m_max) - 1]``, below every bin inside the bound, evenly spaced in the tie-break's
    order (equal tie-breaks stay equal); only their order means something, not their value.
    """
    s = bin_scale(m)
    floor = np.finfo(np.float64).tiny
    imp = -np.log(np.maximum(s, floor))
    if tiebreak is None or m_max is None:
        return imp
    key = np.asarray(tiebreak, dtype=np.float64)
    if key.shape != imp.shape:
        raise ValueError(f"tiebreak must be (K, T) = {imp.shape}, got {key.shape}")
    at = at_bound(m, m_max)
    if at.any():
        # dense ranks, evenly spaced: distinct tie-breaks stay apart however they cluster
        levels, rank = np.unique(key[at], return_inverse=True)
        imp[at] = -math.log(float(m_max)) - 2.0 + (rank.ravel() + 1.0) / levels.size
    return imp


def mean_rank(maps: list) -> np.ndarray:
    """The mean over maps (each K x T) of each point's percentile rank in its map (ties share their mean rank)."""
    from scipy.stats import rankdata

    if not maps:
        raise ValueError("mean_rank needs at least one map")
    return np.mean([rankdata(np.asarray(m, np.float64).ravel()).reshape(np.shape(m)) / np.size(m) for m in maps], axis=0)

"""Importance per time-frequency point from the learned noise scale m: small noise scale = important."""

from __future__ import annotations

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


def importance(m: np.ndarray) -> np.ndarray:
    """Importance per bin (K, T): ``-log(bin_scale(m))``, so larger means the model needs that point more."""
    s = bin_scale(m)
    floor = np.finfo(np.float64).tiny
    return -np.log(np.maximum(s, floor))

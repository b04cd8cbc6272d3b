"""Renditions for listening, as the original made them (``checkFolderM_expandM.py``), with the importance end named.

The clean magnitudes keep their own phase; the p % most or least important
time-frequency points (importance from m: small noise scale = important,
:mod:`afmask.evaluate.importance`) are set to zero (or, for the soft
versions, attenuated by a fixed number of dB); the FFT goes back to samples
by the least-squares inverse STFT (:func:`afmask.features.istft`: overlap-add
with hop 160, FFT size 512, divided by 32768), is divided by its peak if that
is above 1, and is written as 16-bit FLAC (and WAV on request).

File names say which end was removed and what that end is in terms of m:

- ``zero20pct_most-important_small-m.flac``: the 20 % points with the
  smallest m (most important) zeroed, i.e. the original's "keep large-m points";
- ``zero20pct_least-important_large-m.flac``: the 20 % points with the
  largest m (least important) zeroed, i.e. "keep small-m points";
- ``atten20dB-20pct_...``: the same points attenuated by 20 dB instead;
- ``clean.flac``: the reconstruction with nothing removed (the reference).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from afmask.evaluate.curves import apply_mask, removal_mask
from afmask.features import fft_from_magnitude, istft
from afmask.io import write_audio

ENDS = {"most": "most-important_small-m", "least": "least-important_large-m"}


@dataclass
class Rendition:
    """One rendition: what was removed, and how."""

    name: str  # file stem
    end: Optional[str]  # "most" or "least" important points removed; None for the clean reconstruction
    percent: float  # share of points removed (per cent)
    gain_db: Optional[float]  # None: zeroed; else attenuated by this many dB

    def describe(self) -> str:
        """A sentence saying what was removed and what is kept."""
        if self.end is None:
            return "clean reconstruction (nothing removed)"
        how = "zeroed" if self.gain_db is None else f"attenuated by {self.gain_db:g} dB"
        if self.end == "most":
            return (f"the {self.percent:g}% most important points (smallest m) {how}: keeps the "
                    f"{100 - self.percent:g}% least important (the original's 'keep large-m points')")
        return (f"the {self.percent:g}% least important points (largest m) {how}: keeps the "
                f"{100 - self.percent:g}% most important (the original's 'keep small-m points')")

    def kept_label(self) -> str:
        """Short label of what is kept, e.g. "80% most important"."""
        if self.end is None:
            return "all"
        return f"{100 - self.percent:g}% {'least' if self.end == 'most' else 'most'} important"

    def gain(self) -> float:
        """Linear factor on the removed points' magnitudes."""
        return 0.0 if self.gain_db is None else float(10.0 ** (-self.gain_db / 20.0))


def rendition_plan(percents: Sequence[float], soft_db: Optional[float] = None) -> list[Rendition]:
    """The clean reconstruction, then for each p both ends zeroed (and attenuated by ``soft_db`` dB if given)."""
    plan = [Rendition("clean", None, 0.0, None)]
    for p in percents:
        if not 0 < p < 100:
            raise ValueError(f"rendition percentages must be in (0, 100), got {p}")
        for end in ("most", "least"):
            plan.append(Rendition(f"zero{p:g}pct_{ENDS[end]}", end, float(p), None))
        if soft_db is not None:
            if not soft_db > 0:
                raise ValueError(f"the soft attenuation must be > 0 dB, got {soft_db}")
            for end in ("most", "least"):
                plan.append(Rendition(f"atten{soft_db:g}dB-{p:g}pct_{ENDS[end]}", end, float(p), float(soft_db)))
    return plan


def rendition_magnitudes(magnitude: np.ndarray, order: np.ndarray, r: Rendition) -> np.ndarray:
    """Magnitudes (K, T) float32 of rendition ``r`` from the clean magnitudes and the importance ranking ``order``."""
    if r.end is None:
        return np.asarray(magnitude, dtype=np.float32)
    n = magnitude.size
    removed = removal_mask(order, int(round(r.percent / 100.0 * n)), magnitude.shape, r.end)
    return apply_mask(magnitude, removed, r.gain())


def render(fft: np.ndarray, magnitude: np.ndarray, num_samples: int) -> np.ndarray:
    """Samples (num_samples,) float32 from modified magnitudes (257, T) with the clean FFT's (514, T) phase; peak <= 1."""
    x = istft(fft_from_magnitude(magnitude, fft), num_samples=num_samples)
    peak = float(np.max(np.abs(x), initial=0.0))
    if peak > 1.0:
        x = (x / peak).astype(np.float32)
    return x


def write_rendition(folder: os.PathLike, name: str, samples: np.ndarray, wav: bool = False) -> list[str]:
    """Write ``name``.flac (and .wav) into ``folder``; returns the file names written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{name}.flac"] + ([f"{name}.wav"] if wav else [])
    for fn in names:
        write_audio(folder / fn, samples)
    return names

"""Does the model hear anything in this audio? Checks of the features against the model's input normalisation.

The network input is the magnitude spectrum divided by its own global
standard deviation, so loudness alone never matters: a quiet recording is
amplified to the same scale as a loud one, and so is whatever rounding noise
it carries. What the model can hear is what changes over time above the
rounding of the samples. :func:`audibility` measures that: the RMS over
bins and frames of each bin's magnitude minus its mean over time, in units
of the magnitude that rounding noise of the samples' own quantisation step
(1 for 16-bit audio, in the features' 32768 scale) gives after pre-emphasis
and the Hamming window. A DC offset or a steady tone scores 0 (every frame
has the same spectrum); the bundled utterance about 1400; the same 60 dB quieter (16-bit) about 1.4,
70 dB quieter about 0.5; its 8-bit copy about 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from afmask.features.stft import FRAME_LENGTH, PREEMPHASIS, SCALE, hamming_window

__all__ = ["HEARS_NOTHING", "NEAR_SILENT", "Audibility", "audibility", "quantisation_step", "rounding_floor"]

#: Below this (-6 dB) the spectrum changes over time by less than half the rounding of the samples: nothing to hear.
HEARS_NOTHING = 0.5
#: Below this (+3.5 dB) the normalised input is mostly rounding: a warning. 8-bit speech scores about 4.
NEAR_SILENT = 1.5


def quantisation_step(samples: np.ndarray) -> float:
    """The samples' rounding step in the features' 32768 scale: 1 for 16-bit audio, 256 for 8-bit, 1/256 for 24-bit;
    for float audio the float32 spacing at the samples' RMS level."""
    x = np.asarray(samples, np.float64) * SCALE
    if not np.any(x):
        return 0.0
    for bits in (16, 24):
        scaled = x * 2.0 ** (bits - 16)
        if np.all(scaled == np.round(scaled)):
            ints = np.abs(scaled).astype(np.int64)
            return float(np.gcd.reduce(ints[ints > 0])) / 2.0 ** (bits - 16)
    rms = math.sqrt(float(np.mean(x * x)))
    return float(np.spacing(np.float32(rms)))


def rounding_floor(step: float) -> float:
    """RMS magnitude per bin of uniform rounding noise of ``step`` after pre-emphasis and the Hamming window."""
    w = hamming_window(FRAME_LENGTH).astype(np.float64)
    gain = 1.0 + float(PREEMPHASIS) ** 2  # the pre-emphasis filter's mean power gain on white noise
    return step * math.sqrt(float(np.sum(w * w)) * gain / 12.0)


@dataclass
class Audibility:
    """How far the spectrum's changes over time stand above the samples' rounding, and what that means."""

    level: float  # RMS of (magnitude - its mean over time) / rounding floor; 0 for a steady spectrum
    step: float  # the samples' rounding step (32768 scale)
    peak: float  # the largest |sample| in the 32768 scale
    frames: int

    @property
    def hears_nothing(self) -> bool:
        """Nothing above rounding changes over time: the explanation would be of rounding noise."""
        return self.level < HEARS_NOTHING

    @property
    def near_silent(self) -> bool:
        """Within 12 dB of the rounding: the normalised input is mostly rounding."""
        return self.level < NEAR_SILENT

    def reason(self) -> Optional[str]:
        """Why the model hears (almost) nothing, or None when it hears something."""
        if self.frames < 2:
            return None  # one frame has no change over time to measure; the frame-count check speaks for it
        if self.level == 0:
            return (f"every one of its {self.frames} frames has the same spectrum (a DC offset or a steady tone, "
                    f"peak {self.peak:.0f} of 32768): the model hears nothing that changes")
        db = 20 * math.log10(self.level)
        if self.hears_nothing:
            return (f"its spectrum changes over time by {db:+.1f} dB relative to the rounding of its samples "
                    f"(peak {self.peak:.0f} of 32768): after the model's input normalisation it is rounding noise, "
                    "the model hears nothing")
        if self.near_silent:
            return (f"it is near-silent (DC aside): its spectrum changes over time by only {db:+.1f} dB relative to the "
                    f"rounding of its samples (peak {self.peak:.0f} of 32768; limit {20 * math.log10(NEAR_SILENT):+.1f} dB), so the "
                    "model's normalised input is mostly rounding noise")
        return None


def audibility(samples: np.ndarray, magnitude: np.ndarray) -> Audibility:
    """Audibility of magnitudes (K, T) computed from ``samples`` (N,) float in [-1, 1) (for the rounding step)."""
    mag = np.asarray(magnitude, np.float64)
    if mag.ndim == 1:
        mag = mag[:, None]
    step = quantisation_step(samples)
    peak = float(np.max(np.abs(np.asarray(samples, np.float64)), initial=0.0)) * SCALE
    steady = bool(np.all(mag == mag[:, :1]))  # exactly: a mean over time need not round back to the value
    change = 0.0 if steady else math.sqrt(float(np.mean((mag - mag.mean(axis=1, keepdims=True)) ** 2)))
    floor = rounding_floor(step)
    if change == 0 or floor == 0:
        level = 0.0 if change == 0 else math.inf
    else:
        level = change / floor
    return Audibility(level=level, step=step, peak=peak, frames=int(mag.shape[1]))


def features_of(name: str, samples: np.ndarray, stats: str = "float64") -> dict:
    """:func:`afmask.features.features` of the samples of file ``name``, with errors that name the file
    (AudioError): digital silence, no full frame, a spectrum that cannot be normalised."""
    from afmask.features.stft import covered_samples, features, num_frames
    from afmask.io import AudioError

    x = np.asarray(samples)
    try:
        used = covered_samples(num_frames(x.size)) if x.ndim == 1 else x.size
    except ValueError as e:
        raise AudioError(name, str(e)) from None
    if x.ndim == 1 and not np.any(x[:used]):
        where = (f"all its {x.size} samples are 0" if not np.any(x) else
                 f"the {used} samples its frames cover are 0 (only the {x.size - used} after the last full frame are not)")
        raise AudioError(name, f"is digital silence: {where}, so the model hears nothing; use a recording with speech in it")
    try:
        return features(x, stats=stats)
    except ValueError as e:
        raise AudioError(name, f"{e}; use a recording with speech in it") from None


def check_audible(name: str, samples: np.ndarray, magnitude: np.ndarray, refuse: bool = True) -> Audibility:
    """Refuse (AudioError; with ``refuse=False`` warn) audio of file ``name`` in which the model hears nothing;
    warn (AudioWarning) about near-silent audio. Returns the measured :class:`Audibility`."""
    import warnings

    from afmask.io import AudioError
    from afmask.io.audio import AudioWarning

    a = audibility(samples, magnitude)
    why = a.reason()
    if why is None:
        return a
    if a.hears_nothing and refuse:
        raise AudioError(name, f"{why}; there is nothing to explain: use a recording with audible speech in it")
    warnings.warn(f"{name}: {why}; its explanation and evaluation are not meaningful", AudioWarning, stacklevel=2)
    return a

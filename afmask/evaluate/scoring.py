"""Re-scoring modified magnitudes with the model itself: the loss's f-term, the greedy decoding and its CER.

A "modified input" is the clean magnitude spectrogram (K, T) with some points
zeroed (or attenuated). It is scored as the mask run scores a perturbed
input, without the noise: transposed, globally normalised with the run's
``stats``, through the model, post-processed with the run's variant, and
compared with the clean post-processed output by ``MaskObjective.distance``
(``||pre - cur||_F^2``). The output is also decoded greedily and compared
with the clean decoding (and with a transcript, if one is given) by CER.

Inputs are batched along dim 3 of the network input (T x K x 1 x S), as the
mask run batches noise samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from afmask.features.stft import global_mean_stdev
from afmask.fl import Variable
from afmask.fl.nn import Module
from afmask.mask import MaskObjective
from afmask.mask.postprocess import postprocess
from afmask.model import cer, greedy_decode
from afmask.model.tokens import normalize_text


def normalise(mag: np.ndarray, stats: str = "float64") -> np.ndarray:
    """Network input (T, K) float32 from magnitudes (K, T): ``(|X|^T - mean) / stdev`` over all values.

    A constant spectrogram (everything removed) has stdev 0; its normalised
    input is taken as all zeros, the limit of ``(x - mean) / stdev`` for a
    spectrogram shrinking to a constant.
    """
    mag = np.asarray(mag)
    if mag.ndim != 2:
        raise ValueError(f"magnitudes must be (K, T), got shape {mag.shape}")
    tr = np.ascontiguousarray(mag.T, dtype=np.float32)
    mean, stdev = global_mean_stdev(tr, stats)
    if not np.isfinite(stdev) or stdev == 0:
        return np.zeros_like(tr)
    return (tr - mean) / stdev


def safe_cer(hyp: str, ref: Optional[str]) -> Optional[float]:
    """CER of ``hyp`` against ``ref``; None when there is no reference or it is empty after normalisation."""
    if ref is None or not normalize_text(ref):
        return None
    return cer(hyp, ref)


@dataclass
class Score:
    """How the model does on one modified input."""

    f: Optional[float]  # ||pre - cur||_F^2 with the run's variant; None where undefined (NaN, e.g. a constant output)
    text: str  # greedy decoding
    cer_clean: Optional[float]  # CER against the clean decoding; None if the clean decoding is empty
    cer_transcript: Optional[float]  # CER against the transcript; None without one

    def to_dict(self) -> dict:
        """JSON-able fields."""
        return {"f": self.f, "text": self.text, "cer_clean": self.cer_clean, "cer_transcript": self.cer_transcript}


class Scorer:
    """Scores modified magnitudes (K, T) with one model, post-processing variant and normalisation."""

    def __init__(
        self,
        fft: np.ndarray,
        magnitude: np.ndarray,
        model: Module,
        variant: str,
        stats: str = "float64",
        noise: str = "absolute",
        transcript: Optional[str] = None,
        batch: int = 8,
    ):
        """``fft`` (2K, T) and ``magnitude`` (K, T) of the clean utterance; ``batch`` inputs per forward pass."""
        magnitude = np.asarray(magnitude, dtype=np.float32)
        if fft.shape != (2 * magnitude.shape[0], magnitude.shape[1]):
            raise ValueError(f"fft {fft.shape} and magnitude {magnitude.shape} do not belong together: need (2K, T) and (K, T)")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.magnitude, self.stats, self.variant, self.batch = magnitude, stats, variant, int(batch)
        self.model = model
        self.clean_input = normalise(magnitude, stats)
        self.objective = MaskObjective(fft, model, variant, noise=noise, stats=stats, clean_input=self.clean_input)
        self.B = self.objective.B
        self.clean_output = self.B.to_numpy(self.objective.clean_output.array())
        self.clean_text = greedy_decode(self.clean_output)
        self.transcript = transcript if transcript is not None and normalize_text(transcript) else None
        self.forwards = 1  # the clean one

    def score(self, mags: Sequence[np.ndarray], progress=None) -> list[Score]:
        """Scores of magnitudes (K, T) each; ``progress``: a tqdm bar updated per input."""
        out: list[Score] = []
        for start in range(0, len(mags), self.batch):
            chunk = mags[start : start + self.batch]
            out.extend(self._score_batch(chunk))
            if progress is not None:
                progress.update(len(chunk))
        return out

    def score_inputs(self, inputs: Sequence[np.ndarray]) -> list[Score]:
        """Scores of ready network inputs (T, K) each (e.g. features of a rendition read back from its file)."""
        out: list[Score] = []
        for start in range(0, len(inputs), self.batch):
            out.extend(self._run(inputs[start : start + self.batch]))
        return out

    def _score_batch(self, mags: Sequence[np.ndarray]) -> list[Score]:
        shape = self.magnitude.shape
        for mg in mags:
            if mg.shape != shape:
                raise ValueError(f"modified magnitudes must have the clean shape {shape}, got {mg.shape}")
        return self._run([normalise(mg, self.stats) for mg in mags])

    def _run(self, inputs: Sequence[np.ndarray]) -> list[Score]:
        S = len(inputs)
        if S == 0:
            return []
        T, K = self.clean_input.shape
        x = np.empty((T, K, 1, S), dtype=np.float32, order="F")
        for s, inp in enumerate(inputs):
            if inp.shape != (T, K):
                raise ValueError(f"network input must be ({T}, {K}), got {inp.shape}")
            x[:, :, 0, s] = inp
        out = self.model(Variable(self.B.asarray(x if S > 1 else np.asfortranarray(x[:, :, 0, 0])), False))
        self.forwards += S
        host = self.B.to_numpy(out.array())
        if S == 1:
            host = host.reshape(host.shape[0], -1, 1)
        scores = []
        for s in range(S):
            emissions = np.ascontiguousarray(host[:, :, s])
            cur = postprocess(Variable(self.B.asarray(emissions), False), self.variant)
            f = float(self.objective.distance(cur, 1, self.objective.pre).scalar())
            text = greedy_decode(emissions)
            scores.append(Score(
                f=f if math.isfinite(f) else None,
                text=text,
                cer_clean=safe_cer(text, self.clean_text),
                cer_transcript=safe_cer(text, self.transcript),
            ))
        return scores

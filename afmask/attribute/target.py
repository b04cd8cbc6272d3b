"""What an attribution explains: one utterance's clean pipeline and a score of the model's output.

The pipeline is the mask's own (:class:`afmask.mask.MaskObjective`): magnitudes
``|X|`` (K, T) -> transpose -> global normalisation (population stdev) ->
model -> output (31, T'). An attribution is taken with respect to the points of
one of two spaces, both held as (K, T) arrays:

- ``"magnitude"``: the magnitudes ``|X|`` themselves; gradients run back
  through the global normalisation (so every point also acts through the
  utterance's mean and stdev);
- ``"input"``: the normalised network input ``z`` (T, K), held transposed as
  (K, T). Zero there is the spectrogram's mean level, which is what the
  evaluation's "everything removed" input becomes after normalisation.

Scores (the scalar per input being explained; larger = closer to what the
model heard on the clean input):

- ``"logprob"``: ``sum_t log p_t(c_t)``, the log posterior of the clean
  greedy path ``c_t = argmax_k output[k, t]`` summed over output frames (the
  standard target for a CTC model's greedy decoding);
- ``"prob"``: ``mean_t p_t(c_t)``, in [0, 1] (RISE's class probability, per
  frame);
- ``"distance"``: ``-||softmax(clean) - softmax(cur)||_F^2``, the mask
  objective's f-term with the ``posteriors`` variant, negated. Its gradient
  is 0 at the clean input, so it suits path and occlusion methods only.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from afmask import fl
from afmask.fl import Variable
from afmask.fl.nn import Module
from afmask.mask import MaskObjective

SCORES = ("logprob", "prob", "distance")
SPACES = ("magnitude", "input")

#: An utterance: its interleaved FFT (2K, T), or the dict afmask.features.features gives ("fft", and
#: optionally "magnitude" (K, T) and "input" (T, K), which then are used as they are).
Utterance = Union[np.ndarray, dict]


def utterance_arrays(utterance: Utterance) -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """(fft (2K, T), magnitudes (K, T) or None, clean network input (T, K) or None) of an utterance."""
    if isinstance(utterance, dict):
        if "fft" not in utterance:
            raise ValueError(f"an utterance dict needs the key 'fft' (2K, T), got keys {sorted(utterance)}")
        fft, mag, clean_input = utterance["fft"], utterance.get("magnitude"), utterance.get("input")
    else:
        fft, mag, clean_input = utterance, None, None
    fft = np.asarray(fft)
    if fft.ndim != 2 or fft.shape[0] % 2 or fft.shape[1] < 1:
        raise ValueError(f"an utterance is its interleaved FFT (2K, T), got shape {fft.shape}")
    if mag is not None and np.shape(mag) != (fft.shape[0] // 2, fft.shape[1]):
        raise ValueError(f"the utterance's magnitudes {np.shape(mag)} do not fit its FFT {fft.shape}: need (K, T)")
    return fft, (None if mag is None else np.asarray(mag)), (None if clean_input is None else np.asarray(clean_input))


class Target:
    """One utterance's clean pipeline and the score to explain, as afmask.fl graphs over (K, T[, S]) points."""

    def __init__(self, model: Module, utterance: Utterance, score: str = "logprob", space: str = "magnitude"):
        """``model``: a wav2letter network (31 outputs); its parameters' dtype (float32 or float64) is the dtype here."""
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        fft, mag, clean_input = utterance_arrays(utterance)
        params = model.params()
        self.dtype = np.dtype(params[0].type() if params else np.float32)
        self.score_name, self.space = score, space
        self.objective = MaskObjective(fft, model, "posteriors", noise="absolute", clean_input=clean_input, dtype=self.dtype)
        self.model, self.B = model, self.objective.B
        self.K, self.T = self.objective.K, self.objective.T
        clean = self.B.to_numpy(self.objective.clean_output.array())
        self.clean_output = clean.reshape(clean.shape[0], -1)  # (31, T')
        self.path = np.argmax(self.clean_output, axis=0)  # the clean greedy path c_t, (T',)
        onehot = np.zeros(self.clean_output.shape, self.dtype)
        onehot[self.path, np.arange(self.path.size)] = 1
        self._onehot = Variable(self.B.asarray(onehot), False)
        # the features' magnitudes (of the double FFT, as the C++) where given, else those of the float32 FFT
        self.magnitude = np.asarray(self.objective.clean_magnitude if mag is None else mag, np.float64)  # (K, T)
        self.clean_input = np.asarray(self.objective.clean_input, np.float64)  # (T, K)
        #: the clean point in this target's space, (K, T)
        self.point = self.magnitude if space == "magnitude" else self.clean_input.T.copy()
        self.forwards = 0  # inputs run through the model (the clean one not counted)

    # -- graphs ----------------------------------------------------------------------------------
    def network_input(self, points: Variable) -> Variable:
        """Network input (T, K, 1[, S]) of points (K, T[, S]) of this target's space."""
        if self.space == "magnitude":
            return self.objective.autograd_input(points)
        S = points.dims(2)
        z = fl.reorder(points, 1, 0, 2, 3)
        return fl.moddims(z, (self.T, self.K, 1, S)) if S > 1 else z

    def score_graph(self, output: Variable) -> Variable:
        """The score per input, (1, 1, S), of network outputs (31, T', S)."""
        onehot = fl.tileAs(self._onehot, output)
        if self.score_name == "logprob":
            return fl.sum(fl.logSoftmax(output, 0) * onehot, [0, 1])
        post = fl.softmax(output, 0)
        if self.score_name == "prob":
            return fl.mean(fl.sum(post * onehot, [0]), [1])
        clean = fl.tileAs(fl.softmax(Variable(self.B.asarray(self.clean_output.astype(self.dtype)), False), 0), output)
        d = post - clean
        return fl.negate(fl.sum(d * d, [0, 1]))

    def _points(self, points: np.ndarray, calc_grad: bool) -> Variable:
        pts = np.asarray(points)
        if pts.ndim == 2:
            pts = pts[:, :, None]
        if pts.ndim != 3 or pts.shape[:2] != (self.K, self.T):
            raise ValueError(f"points must be ({self.K}, {self.T}[, S]) in the {self.space} space, got shape {np.shape(points)}")
        if not np.all(np.isfinite(pts)):
            raise ValueError("points hold NaN or Inf")
        data = np.asfortranarray(pts.astype(self.dtype))
        if data.shape[2] == 1:
            data = np.asfortranarray(data[:, :, 0])
        return Variable(self.B.asarray(data), calc_grad)

    # -- evaluation ------------------------------------------------------------------------------
    def scores(self, points: np.ndarray) -> np.ndarray:
        """The score (S,) float64 of points (K, T[, S]), one forward pass without a graph."""
        v = self._points(points, False)
        s = self.score_graph(self._output(v))
        self.forwards += v.dims(2)
        return self.B.to_numpy(s.array()).astype(np.float64).reshape(-1)

    def gradients(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(d score / d points (K, T, S) float64, scores (S,)) of points (K, T[, S]): one batched forward and backward."""
        v = self._points(points, True)
        s = self.score_graph(self._output(v))
        S = v.dims(2)
        total = fl.sum(s, [2]) if S > 1 else s
        total.backward()  # the inputs of a batch do not interact, so the sum's gradient is each one's own
        self.forwards += S
        g = self.B.to_numpy(v.grad().array()).astype(np.float64).reshape(self.K, self.T, S, order="F")
        return g, self.B.to_numpy(s.array()).astype(np.float64).reshape(-1)

    def _output(self, v: Variable) -> Variable:
        out = self.model(self.network_input(v))
        if out.dims(0) != 31:
            raise ValueError(f"the model must give 31 x T' outputs, got {out.dims()}")
        return out

    def clean_score(self) -> float:
        """The score of the clean point."""
        return float(self.scores(self.point)[0])

    def describe(self) -> dict[str, Any]:
        """What is explained, JSON-able."""
        return {"score": self.score_name, "space": self.space, "K": self.K, "T": self.T, "output_frames": int(self.path.size)}

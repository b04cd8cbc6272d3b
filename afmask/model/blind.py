"""Models made blind to part of their input, for ground-truth tests of an explanation.

- :func:`blind_to_band`: the first parameter layer's weights for input bins
  LO..HI-1 are zeroed, so no value in those bins reaches the network except
  through the global normalisation of the whole input (its mean and stdev);
- :func:`blind_to_frames`: the network input's frames START..STOP-1 are
  zeroed (after the normalisation, i.e. set to the input's mean) by a first
  module, so those frames reach the network only through the normalisation.

That is the *leaky* form: the global normalisation's mean and stdev are taken
over every point, so deleting the blind region still changes what the
network reads (on the demo model enough to change its decoding). Given the
clean magnitudes (``magnitude=``) both are made *exactly* blind: a first
module, :class:`Restandardise`, standardises the network input again over
the points outside the region only, and maps it back to the clean input's
scale there with constants taken from the clean utterance. On the clean
utterance the network then reads what the leaky form reads; on any input its
output is a function of the points outside the region alone (to float32
rounding), which is what a ground-truth test needs.

Both return a new network; the given one is not changed.
"""

from __future__ import annotations

import copy
from typing import Optional

import numpy as np

from afmask.fl import Variable, nn
from afmask.fl import functions as F


def _first_weight_layer(modules: list) -> int:
    for i, m in enumerate(modules):
        if m.params():
            return i
    raise ValueError("the model has no parameter layer to make blind")


def blind_to_band(model: nn.Module, lo: int, hi: int, magnitude: Optional[np.ndarray] = None) -> nn.Module:
    """A copy of ``model`` whose first layer ignores input bins ``lo``..``hi - 1`` (its weights there zeroed);
    exactly blind to them, the normalisation included, when the clean ``magnitude`` (K, T) is given.

    The first parameter layer must read the bins as input channels: a Conv2D with weights
    [wx, wy, K, nout] (the wav2letter layout after ``V -1 1 NFEAT 0``) or a Linear with weights [nout, K].
    """
    modules = model.modules() if isinstance(model, nn.Sequential) else [model]
    i = _first_weight_layer(modules)
    # a shallow copy with its own parameter list: the other layers are shared, read-only, with the model
    layer = copy.copy(modules[i])
    layer._params = list(layer.params())
    w = np.array(layer.param(0).host(), copy=True)
    if isinstance(layer, nn.Conv2D):
        axis = 2
    elif isinstance(layer, nn.Linear):
        axis = 1
    else:
        raise ValueError(f"cannot make {layer.prettyString()} blind to a band: the first parameter layer must be a "
                         "Conv2D or Linear reading the bins as its input channels")
    k = w.shape[axis]
    if not 0 <= int(lo) < int(hi) <= k:
        raise ValueError(f"band {lo}:{hi} must satisfy 0 <= LO < HI <= {k} (the first layer's input channels)")
    index = [slice(None)] * w.ndim
    index[axis] = slice(int(lo), int(hi))
    w[tuple(index)] = 0
    layer.setParams(Variable(layer.param(0).backend.asarray(np.asfortranarray(w)), False), 0)
    first = []
    if magnitude is not None:
        region = np.zeros(np.shape(magnitude), dtype=bool)
        region[int(lo) : int(hi)] = True
        first = [Restandardise.outside(magnitude, region)]
    blind = nn.Sequential([*first, *modules[:i], layer, *modules[i + 1 :]])
    blind.eval()
    return blind


class Restandardise(nn.Module):
    """Standardises the network input (T, K[, 1, S]) over the points where ``keep`` (T, K) is set, per sample,
    as ``scale * (y - mean) / stdev + shift`` there and 0 elsewhere, so that the output depends on the kept
    points alone."""

    def __init__(self, keep: np.ndarray, scale: float, shift: float):
        super().__init__()
        self.keep = np.asarray(keep, dtype=bool)
        if self.keep.ndim != 2 or self.keep.sum() < 2:
            raise ValueError(f"keep must be a (T, K) mask of at least 2 points, got shape {self.keep.shape} with "
                             f"{int(self.keep.sum())} set")
        if not (np.isfinite(scale) and scale > 0 and np.isfinite(shift)):
            raise ValueError(f"scale must be finite and > 0 and shift finite, got {scale}, {shift}")
        self.scale, self.shift = float(scale), float(shift)

    @classmethod
    def outside(cls, magnitude: np.ndarray, region: np.ndarray) -> "Restandardise":
        """The module that keeps the points outside the bool (K, T) ``region`` of the clean ``magnitude`` (K, T)
        and reproduces there the clean network input ``(|X|^T - mean) / stdev`` (population stdev, all points)."""
        mag = np.asarray(magnitude, dtype=np.float64)
        region = np.asarray(region, dtype=bool)
        if mag.ndim != 2 or region.shape != mag.shape:
            raise ValueError(f"magnitude must be (K, T) and region the same shape, got {mag.shape} and {region.shape}")
        outside = mag[~region]
        sd_all, sd_out = mag.std(), outside.std() if outside.size else 0.0
        if not (sd_all > 0 and sd_out > 0):
            raise ValueError("the clean magnitudes outside the blind region are constant: nothing to standardise")
        # the clean input outside the region is (x - mean_all) / sd_all; standardised over the region's outside it
        # is (x - mean_out) / sd_out: scale and shift map the latter back onto the former
        return cls((~region).T, sd_out / sd_all, (outside.mean() - mag.mean()) / sd_all)

    def forward(self, input: Variable) -> Variable:
        T, K = self.keep.shape
        if input.dims(0) != T or input.dims(1) != K:
            raise ValueError(f"Restandardise is for a ({T}, {K}) input, got {input.dims()}")
        keep = Variable(input.backend.asarray(np.asfortranarray(self.keep.astype(input.type()))), False)
        keep = F.tileAs(keep, input)
        n = float(self.keep.sum())
        mean = F.div(F.sum(F.mul(input, keep), [0, 1]), n)
        centred = F.mul(F.sub(input, F.tileAs(mean, input)), keep)
        var = F.div(F.sum(F.mul(centred, centred), [0, 1]), n)
        # a sample made constant outside the region has no spread: it maps to the constant shift, not to NaN
        stdev = F.sqrt(F.max(var, 1e-30))
        return F.add(F.mul(F.div(centred, F.tileAs(stdev, input)), self.scale), F.mul(keep, self.shift))

    def prettyString(self) -> str:  # noqa: N802
        return f"Restandardise (over {int(self.keep.sum())} of {self.keep.size} points)"


class FrameMask(nn.Module):
    """Multiplies the network input (T, K[, 1, S]) by a fixed 0/1 mask over its T frames."""

    def __init__(self, keep: np.ndarray):
        super().__init__()
        self.keep = np.asarray(keep, dtype=np.float32).reshape(-1, 1)

    def forward(self, input: Variable) -> Variable:
        if input.dims(0) != self.keep.shape[0]:
            raise ValueError(f"the frame mask is for {self.keep.shape[0]} frames, the input has {input.dims(0)}")
        mask = Variable(input.backend.asarray(np.asfortranarray(self.keep.astype(input.type()))), False)
        return F.mul(input, F.tileAs(mask, input))

    def prettyString(self) -> str:  # noqa: N802
        return f"FrameMask ({int(self.keep.sum())} of {self.keep.shape[0]} frames kept)"


def blind_to_frames(model: nn.Module, start: int, stop: int, num_frames: int,
                    magnitude: Optional[np.ndarray] = None) -> nn.Module:
    """``model`` behind a :class:`FrameMask` that zeroes input frames ``start``..``stop - 1`` of ``num_frames``;
    behind a :class:`Restandardise` over the other frames (exactly blind) when the clean ``magnitude`` is given."""
    if not 0 <= int(start) < int(stop) <= int(num_frames):
        raise ValueError(f"frames {start}:{stop} must satisfy 0 <= A < B <= {num_frames} (the utterance's frames)")
    keep = np.ones(int(num_frames), np.float32)
    keep[int(start) : int(stop)] = 0
    if magnitude is not None:
        if np.shape(magnitude)[1] != int(num_frames):
            raise ValueError(f"magnitude has {np.shape(magnitude)[1]} frames, the blind window is for {num_frames}")
        region = np.zeros(np.shape(magnitude), dtype=bool)
        region[:, int(start) : int(stop)] = True
        first = Restandardise.outside(magnitude, region)  # zero on the window, as the FrameMask would set it
    else:
        first = FrameMask(keep)
    blind = nn.Sequential([first, *(model.modules() if isinstance(model, nn.Sequential) else [model])])
    blind.eval()
    return blind

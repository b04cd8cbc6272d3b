"""Models made blind to part of their input, for ground-truth tests of an explanation.

- :func:`blind_to_band`: the first parameter layer's weights for input bins
  LO..HI-1 are zeroed, so no value in those bins reaches the network except
  through the global normalisation of the whole input (its mean and stdev);
- :func:`blind_to_frames`: the network input's frames START..STOP-1 are
  zeroed (after the normalisation, i.e. set to the input's mean) by a first
  module, so those frames reach the network only through the normalisation.

Both return a new network; the given one is not changed.
"""

from __future__ import annotations

import copy

import numpy as np

from afmask.fl import Variable, nn
from afmask.fl import functions as F


def _first_weight_layer(modules: list) -> int:
    for i, m in enumerate(modules):
        if m.params():
            return i
    raise ValueError("the model has no parameter layer to make blind")


def blind_to_band(model: nn.Module, lo: int, hi: int) -> nn.Module:
    """A copy of ``model`` whose first layer ignores input bins ``lo``..``hi - 1`` (its weights there zeroed).

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
    blind = nn.Sequential([*modules[:i], layer, *modules[i + 1 :]])
    blind.eval()
    return blind


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


def blind_to_frames(model: nn.Module, start: int, stop: int, num_frames: int) -> nn.Module:
    """``model`` behind a :class:`FrameMask` that zeroes input frames ``start``..``stop - 1`` of ``num_frames``."""
    if not 0 <= int(start) < int(stop) <= int(num_frames):
        raise ValueError(f"frames {start}:{stop} must satisfy 0 <= A < B <= {num_frames} (the utterance's frames)")
    keep = np.ones(int(num_frames), np.float32)
    keep[int(start) : int(stop)] = 0
    blind = nn.Sequential([FrameMask(keep), *(model.modules() if isinstance(model, nn.Sequential) else [model])])
    blind.eval()
    return blind

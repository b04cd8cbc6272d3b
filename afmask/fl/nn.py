"""flashlight-style modules (``fl::Module``): parameters, ``forward``, train/eval mode."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from afmask.fl import functions as F
from afmask.fl.variable import Variable

#: flashlight's ``PaddingMode::SAME``.
SAME = -1


def derive_padding(in_size: int, filter_size: int, stride: int, pad: int, dilation: int = 1) -> int:
    """The padding flashlight uses on each side; ``pad == SAME`` keeps ``ceil(in/stride)`` outputs."""
    if pad != SAME:
        return pad
    rem = stride if in_size % stride == 0 else in_size % stride
    new_pad = (filter_size - 1) * dilation - rem + 1
    return max((new_pad + 1) // 2, 0)


def _uniform(rng: np.random.Generator, dims: Sequence[int], bound: float) -> np.ndarray:
    return rng.uniform(-bound, bound, size=tuple(dims)).astype(np.float32)


class Module:
    """A layer with parameters; ``module(x)`` runs ``forward(x)``."""

    def __init__(self, params: Sequence[Variable] = ()):
        self._params: list[Variable] = list(params)
        self._train = True

    def params(self) -> list[Variable]:
        """Parameters in flashlight's ``params()`` order."""
        return list(self._params)

    def param(self, i: int) -> Variable:
        """The i-th parameter."""
        return self._params[i]

    def setParams(self, var: Variable, position: int) -> None:  # noqa: N802
        """Replace parameter ``position`` (dims must match)."""
        if var.dims() != self._params[position].dims():
            raise ValueError(
                f"{self.prettyString()}: parameter {position} has dims {self._params[position].dims()}, got {var.dims()}"
            )
        self._params[position] = var

    def train(self) -> None:
        """Training mode (dropout active; parameters need gradients)."""
        self._train = True
        for p in self._params:
            p.setCalcGrad(True)

    def eval(self) -> None:
        """Evaluation mode (dropout off; no parameter gradients)."""
        self._train = False
        for p in self._params:
            p.setCalcGrad(False)

    def isTrain(self) -> bool:  # noqa: N802
        """Whether in training mode."""
        return self._train

    def forward(self, input: Variable) -> Variable:
        """Apply the layer."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def __call__(self, input: Variable) -> Variable:
        return self.forward(input)

    def prettyString(self) -> str:  # noqa: N802
        """A one-line description, as flashlight prints modules."""
        return type(self).__name__

    def __repr__(self) -> str:
        return self.prettyString()


class Sequential(Module):
    """Modules applied in order; parameters are theirs, concatenated."""

    def __init__(self, modules: Sequence[Module] = ()):
        super().__init__()
        self._modules: list[Module] = []
        for m in modules:
            self.add(m)

    def add(self, module: Module) -> None:
        """Append a module."""
        self._modules.append(module)

    def modules(self) -> list[Module]:
        """The sub-modules in order."""
        return list(self._modules)

    def params(self) -> list[Variable]:
        return [p for m in self._modules for p in m.params()]

    def setParams(self, var: Variable, position: int) -> None:  # noqa: N802
        for m in self._modules:
            n = len(m.params())
            if position < n:
                m.setParams(var, position)
                return
            position -= n
        raise IndexError("parameter position out of range")

    def train(self) -> None:
        self._train = True
        for m in self._modules:
            m.train()

    def eval(self) -> None:
        self._train = False
        for m in self._modules:
            m.eval()

    def forward(self, input: Variable) -> Variable:
        for m in self._modules:
            input = m(input)
        return input

    def prettyString(self) -> str:  # noqa: N802
        return "Sequential [input -> " + " -> ".join(f"({i})" for i in range(len(self._modules))) + " -> output]\n" + "\n".join(
            f"\t({i}): {m.prettyString()}" for i, m in enumerate(self._modules)
        )


class View(Module):
    """``moddims`` to fixed dims (0 copies the input's dim, -1 is inferred)."""

    def __init__(self, dims: Sequence[int]):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, input: Variable) -> Variable:
        return F.moddims(input, self.dims)

    def prettyString(self) -> str:  # noqa: N802
        return "View (" + " ".join(map(str, self.dims)) + ")"


class Reorder(Module):
    """Permute dims (``fl::reorder``)."""

    def __init__(self, dim0: int, dim1: int, dim2: int = 2, dim3: int = 3):
        super().__init__()
        self.perm = (dim0, dim1, dim2, dim3)

    def forward(self, input: Variable) -> Variable:
        return F.reorder(input, *self.perm)

    def prettyString(self) -> str:  # noqa: N802
        return "Reorder (" + ",".join(map(str, self.perm)) + ")"


class Conv2D(Module):
    """2-D convolution with weights [wx, wy, nin, nout] and bias [1, 1, nout, 1]; padding -1 is SAME."""

    def __init__(
        self,
        nin: int,
        nout: int,
        wx: int,
        wy: int,
        sx: int = 1,
        sy: int = 1,
        px: int = 0,
        py: int = 0,
        bias: bool = True,
        rng: np.random.Generator | None = None,
    ):
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1.0 / math.sqrt(wx * wy * nin)
        params = [Variable(_uniform(rng, (wx, wy, nin, nout), bound), True)]
        if bias:
            params.append(Variable(_uniform(rng, (1, 1, nout), bound), True))
        super().__init__(params)
        self.nin, self.nout, self.wx, self.wy, self.sx, self.sy, self.px, self.py = nin, nout, wx, wy, sx, sy, px, py
        self.bias = bias

    def forward(self, input: Variable) -> Variable:
        px = derive_padding(input.dims(0), self.wx, self.sx, self.px)
        py = derive_padding(input.dims(1), self.wy, self.sy, self.py)
        b = self._params[1] if self.bias else None
        return F.conv2d(input, self._params[0], b, self.sx, self.sy, px, py)

    def prettyString(self) -> str:  # noqa: N802
        pad = lambda p: "SAME" if p == SAME else str(p)  # noqa: E731
        return (
            f"Conv2D ({self.nin}->{self.nout}, {self.wx}x{self.wy}, {self.sx},{self.sy}, "
            f"{pad(self.px)},{pad(self.py)}, 1, 1){' (with bias)' if self.bias else ''}"
        )


class Linear(Module):
    """``W x + b`` with weight [nout, nin] and bias [nout]."""

    def __init__(self, nin: int, nout: int, bias: bool = True, rng: np.random.Generator | None = None):
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1.0 / math.sqrt(nin)
        params = [Variable(_uniform(rng, (nout, nin), bound), True)]
        if bias:
            params.append(Variable(_uniform(rng, (nout,), bound), True))
        super().__init__(params)
        self.nin, self.nout, self.bias = nin, nout, bias

    def forward(self, input: Variable) -> Variable:
        return F.linear(input, self._params[0], self._params[1] if self.bias else None)

    def prettyString(self) -> str:  # noqa: N802
        return f"Linear ({self.nin}->{self.nout}){' (with bias)' if self.bias else ''}"


class ReLU(Module):
    """``max(x, 0)``."""

    def forward(self, input: Variable) -> Variable:
        return F.relu(input)

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
    # column-major, as ArrayFire stores arrays: conv2d's moddims of the weight is then a view, not a copy
    return np.asfortranarray(rng.uniform(-bound, bound, size=tuple(dims)).astype(np.float32))


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
        mods = self._modules
        i = 0
        while i < len(mods):
            m = mods[i]
            if type(m) is Conv2D and i + 1 < len(mods) and type(mods[i + 1]) is ReLU:
                input = m.forward_relu(input)  # the same values, one fused step (functions.conv2d_relu)
                i += 2
            else:
                input = m(input)
                i += 1
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

    def forward_relu(self, input: Variable) -> Variable:
        """``relu(forward(input))``, fused where it can be."""
        px = derive_padding(input.dims(0), self.wx, self.sx, self.px)
        py = derive_padding(input.dims(1), self.wy, self.sy, self.py)
        b = self._params[1] if self.bias else None
        return F.conv2d_relu(input, self._params[0], b, self.sx, self.sy, px, py)

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


class Tanh(Module):
    """Element-wise hyperbolic tangent."""

    def forward(self, input: Variable) -> Variable:
        return F.tanh(input)


class Sigmoid(Module):
    """Element-wise logistic function."""

    def forward(self, input: Variable) -> Variable:
        return F.sigmoid(input)


class Log(Module):
    """Element-wise natural logarithm."""

    def forward(self, input: Variable) -> Variable:
        return F.log(input)


#: flashlight's ``PoolingMode`` names (re-exported from functions).
MAX, AVG_INCLUDE_PADDING, AVG_EXCLUDE_PADDING = F.MAX, F.AVG_INCLUDE_PADDING, F.AVG_EXCLUDE_PADDING


class HardTanh(Module):
    """``clamp(x, -1, 1)``; gradient 1 strictly inside (-1, 1)."""

    def forward(self, input: Variable) -> Variable:
        return F.clamp(input, -1.0, 1.0)


class ELU(Module):
    """``x`` for ``x >= 0``, else ``alpha * (exp(x) - 1)``."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, input: Variable) -> Variable:
        return F.elu(input, self.alpha)

    def prettyString(self) -> str:  # noqa: N802
        return f"ELU (alpha={self.alpha:g})"


class Swish(Module):
    """``x * sigmoid(beta * x)``."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = float(beta)

    def forward(self, input: Variable) -> Variable:
        return input * F.sigmoid(input * self.beta)

    def prettyString(self) -> str:  # noqa: N802
        return f"Swish ({self.beta:g})"


class GatedLinearUnit(Module):
    """GLU along ``dim``: the first half times the sigmoid of the second half (the dim must be even)."""

    def __init__(self, dim: int):
        super().__init__()
        if not 0 <= dim < 4:
            raise ValueError(f"GatedLinearUnit: dim must be 0..3, got {dim}")
        self.dim = dim

    def forward(self, input: Variable) -> Variable:
        n = input.dims(self.dim)
        if n % 2:
            raise ValueError(f"GatedLinearUnit: dim {self.dim} of input dims {input.dims()} has odd size {n}; it must be even")
        first = [slice(None)] * 4
        second = [slice(None)] * 4
        first[self.dim], second[self.dim] = slice(0, n // 2), slice(n // 2, n)
        return F.index(input, *first) * F.sigmoid(F.index(input, *second))

    def prettyString(self) -> str:  # noqa: N802
        return f"GatedLinearUnit ({self.dim})"


class LogSoftmax(Module):
    """``logSoftmax`` along ``dim``."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, input: Variable) -> Variable:
        return F.logSoftmax(input, self.dim)

    def prettyString(self) -> str:  # noqa: N802
        return f"Logsoftmax ({self.dim})"


class Dropout(Module):
    """Zero elements with probability ``ratio`` in training (scaling the rest by 1/(1-ratio)); identity in evaluation."""

    def __init__(self, ratio: float = 0.5, seed: int | None = None):
        super().__init__()
        if not 0 <= ratio < 1:
            raise ValueError(f"Dropout: ratio must be in [0, 1), got {ratio}")
        self.ratio = float(ratio)
        self._seeds = np.random.default_rng(seed)

    def forward(self, input: Variable) -> Variable:
        if not self._train or self.ratio == 0:
            return input
        return F.dropout(input, self.ratio, True, int(self._seeds.integers(0, 2**31 - 1)))

    def prettyString(self) -> str:  # noqa: N802
        return f"Dropout ({self.ratio:g})"


class Padding(Module):
    """Pad dim i with ``pads[i] = (before, after)`` elements of value ``val`` (``fl::Padding``)."""

    def __init__(self, pads: Sequence[tuple[int, int]], val: float = 0.0):
        super().__init__()
        pads = [tuple(int(v) for v in p) for p in pads]
        if len(pads) > 4 or any(len(p) != 2 or min(p) < 0 for p in pads):
            raise ValueError(f"Padding: expected up to 4 (before, after) pairs of non-negative ints, got {pads}")
        self.pads = pads + [(0, 0)] * (4 - len(pads))
        self.val = float(val)

    def forward(self, input: Variable) -> Variable:
        return F.padding(input, self.pads, self.val)

    def prettyString(self) -> str:  # noqa: N802
        return f"Padding ({self.val:g}, {{ " + ", ".join(f"({a}, {b})" for a, b in self.pads) + " })"


class Pool2D(Module):
    """Max or average pooling over dims 0-1 of [W, H, C, N]; padding -1 is SAME (``fl::Pool2D``)."""

    def __init__(self, wx: int, wy: int, sx: int = 1, sy: int = 1, px: int = 0, py: int = 0, mode: str = MAX):
        super().__init__()
        if mode not in (MAX, AVG_INCLUDE_PADDING, AVG_EXCLUDE_PADDING):
            raise ValueError(f"Pool2D: unknown mode {mode!r}")
        self.wx, self.wy, self.sx, self.sy, self.px, self.py, self.mode = wx, wy, sx, sy, px, py, mode

    def forward(self, input: Variable) -> Variable:
        px = derive_padding(input.dims(0), self.wx, self.sx, self.px)
        py = derive_padding(input.dims(1), self.wy, self.sy, self.py)
        return F.pool2d(input, self.wx, self.wy, self.sx, self.sy, px, py, self.mode)

    def prettyString(self) -> str:  # noqa: N802
        name = {MAX: "-max", AVG_INCLUDE_PADDING: "-avg(with pad)", AVG_EXCLUDE_PADDING: "-avg(without pad)"}[self.mode]
        pad = lambda p: "SAME" if p == SAME else str(p)  # noqa: E731
        return f"Pool2D{name} ({self.wx}x{self.wy}, {self.sx},{self.sy}, {pad(self.px)},{pad(self.py)})"


class LayerNorm(Module):
    """``(x - mean) / sqrt(var + eps)`` with mean and population variance over ``axis``, then a scalar affine map.

    ``axis`` lists the dims normalised over (flashlight's current ``LayerNorm(axis)``:
    ``LN 0 1 2`` normalises each element of dim 3 over dims 0-2). Parameters:
    weight (1) initialised to 1 and bias (1) to 0, as flashlight does.
    """

    def __init__(self, axis: Sequence[int] | int, eps: float = 1e-5, affine: bool = True):
        axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
        if not axes or any(not 0 <= a < 4 for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"LayerNorm: axis must be distinct dims in 0..3, got {axis}")
        params = [Variable(np.ones(1, np.float32), True), Variable(np.zeros(1, np.float32), True)] if affine else []
        super().__init__(params)
        self.axes, self.eps, self.affine = [int(a) for a in axes], float(eps), affine

    def forward(self, input: Variable) -> Variable:
        mean = F.mean(input, self.axes)
        centred = input - F.tileAs(mean, input)
        var = F.mean(centred * centred, self.axes)
        out = centred / F.tileAs(F.sqrt(var + self.eps), input)
        if self.affine:
            out = F.tileAs(self._params[0], input) * out + F.tileAs(self._params[1], input)
        return out

    def prettyString(self) -> str:  # noqa: N802
        return "LayerNorm ( axis : { " + " ".join(map(str, self.axes)) + " } , size : -1)"


class WeightNorm(Module):
    """Weight normalisation of a Linear or Conv2D: ``w = v * g / ||v||``, the norm over every dim of v but ``dim``.

    Parameters in flashlight's order: v (the wrapped module's weight dims), g (v's
    dims with 1 in every normed dim), then the wrapped module's bias if it has one.
    """

    def __init__(self, module: Module, dim: int):
        if not isinstance(module, (Linear, Conv2D)):
            raise TypeError(f"WeightNorm supports Linear and Conv2D only, got {module.prettyString()}")
        v = module.param(0)
        numdims = v.numdims()
        if not 0 <= dim < 4:
            raise ValueError(f"WeightNorm: dim must be 0..3, got {dim}")
        self.normDim = [i for i in range(numdims) if i != dim]
        if not self.normDim:
            raise ValueError(f"WeightNorm: no dim left to take the norm over for weight dims {v.dims()} and dim {dim}")
        g = Variable(F.norm(Variable._leaf(v.array(), v.backend), self.normDim).array(), True)
        super().__init__([v, g] + module.params()[1:])
        self.module_, self.dim = module, dim

    def module(self) -> Module:
        """The wrapped module."""
        return self.module_

    def _computeWeight(self) -> None:  # noqa: N802
        v, g = self._params[0], self._params[1]
        wt = v * F.tileAs(g / F.norm(v, self.normDim), v)
        if not wt.isCalcGrad():
            # no graph to keep: store the weight column-major (a flat copy viewed back), as the other layers' weights
            b, dims = wt.backend, wt.dims()
            wt = Variable._leaf(b.moddims(b.moddims(wt.array(), (wt.elements(),)), dims), b)
        self.module_.setParams(wt, 0)

    def setParams(self, var: Variable, position: int) -> None:  # noqa: N802
        super().setParams(var, position)
        if position == 2:
            self.module_.setParams(var, 1)
        elif position <= 1:
            self._computeWeight()

    def train(self) -> None:
        super().train()
        self.module_.train()

    def eval(self) -> None:
        super().eval()
        self.module_.eval()
        self._computeWeight()

    def forward(self, input: Variable) -> Variable:
        if self._train:
            self._computeWeight()
        return self.module_(input)

    def prettyString(self) -> str:  # noqa: N802
        return f"WeightNorm ({self.module_.prettyString()}, {self.dim})"

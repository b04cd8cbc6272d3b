"""Differentiable functions with flashlight's semantics, each forward beside its gradient.

Names and argument orders mirror ``flashlight/autograd/Functions.h`` so C++
lines port one to one. Binary operations need equal dims (flashlight does not
broadcast; tile explicitly with ``tile``/``tileAs``); a Python number is
allowed on either side.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence, Union

import numpy as np

from afmask.backend import dims4, get_backend, unwrap_counts
from afmask.fl import afconv as _afconv
from afmask.fl import conv as _conv
from afmask.fl.variable import Variable

Number = Union[int, float]
DimsLike = Union[Variable, Sequence[int]]


# -- plumbing --------------------------------------------------------------------------------
def _out(data: Any, like: Variable, inputs: Sequence[Variable], grad_func) -> Variable:
    return Variable._from(data, like.backend, inputs, grad_func)


def _add_grad(v: Variable, data: Any) -> None:
    v.addGrad(Variable._leaf(data, v.backend))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _check_operand(x: Any, op: str) -> None:
    if not isinstance(x, Variable) and not _is_number(x):
        raise TypeError(
            f"{op}: operands must be Variables or Python numbers, got {type(x).__name__}; "
            "wrap arrays as Variable(array, False)"
        )


def _same_dims(a: Variable, b: Variable, op: str) -> None:
    if a.backend is not b.backend:
        raise ValueError(f"{op}: Variables live on different backends ({a.backend.name}, {b.backend.name})")
    if a.dims() != b.dims():
        fa, fb = ("x".join(map(str, v.dims())) for v in (a, b))
        raise ValueError(f"{op}: dims {fa} and {fb} differ; flashlight does not broadcast, tile explicitly (tileAs)")


def _dims_of(ref: DimsLike) -> tuple[int, int, int, int]:
    return ref.dims() if isinstance(ref, Variable) else dims4(ref)


def _tile_to(b, data, dims):
    d = b.dims(data)
    reps = [t // s for t, s in zip(dims, d)]
    return data if all(r == 1 for r in reps) else b.tile(data, reps)


def _sum_to(b, data, dims):
    d = b.dims(data)
    axes = [i for i in range(4) if d[i] != dims[i]]
    return b.sum(data, axes) if axes else data


# -- arithmetic ------------------------------------------------------------------------------
def add(lhs: Union[Variable, Number], rhs: Union[Variable, Number]) -> Variable:
    """Element-wise ``lhs + rhs``."""
    _check_operand(lhs, "add"), _check_operand(rhs, "add")
    if isinstance(lhs, Variable) and isinstance(rhs, Variable):
        _same_dims(lhs, rhs, "add")

        def grad(inputs, g):
            _add_grad(inputs[0], g.array())
            _add_grad(inputs[1], g.array())

        return _out(lhs.array() + rhs.array(), lhs, (lhs, rhs), grad)
    v, s = (lhs, rhs) if isinstance(lhs, Variable) else (rhs, lhs)
    return _out(v.array() + s, v, (v,), lambda inputs, g: _add_grad(inputs[0], g.array()))


def sub(lhs: Union[Variable, Number], rhs: Union[Variable, Number]) -> Variable:
    """Element-wise ``lhs - rhs``."""
    _check_operand(lhs, "sub"), _check_operand(rhs, "sub")
    if isinstance(lhs, Variable) and isinstance(rhs, Variable):
        _same_dims(lhs, rhs, "sub")

        def grad(inputs, g):
            _add_grad(inputs[0], g.array())
            if inputs[1].isCalcGrad():
                _add_grad(inputs[1], -g.array())

        return _out(lhs.array() - rhs.array(), lhs, (lhs, rhs), grad)
    if isinstance(lhs, Variable):
        return _out(lhs.array() - rhs, lhs, (lhs,), lambda inputs, g: _add_grad(inputs[0], g.array()))
    return _out(lhs - rhs.array(), rhs, (rhs,), lambda inputs, g: _add_grad(inputs[0], -g.array()))


def mul(lhs: Union[Variable, Number], rhs: Union[Variable, Number]) -> Variable:
    """Element-wise ``lhs * rhs``."""
    _check_operand(lhs, "mul"), _check_operand(rhs, "mul")
    if isinstance(lhs, Variable) and isinstance(rhs, Variable):
        _same_dims(lhs, rhs, "mul")
        a, b = lhs.array(), rhs.array()

        def grad(inputs, g):
            if inputs[0].isCalcGrad():
                _add_grad(inputs[0], g.array() * b)
            if inputs[1].isCalcGrad():
                _add_grad(inputs[1], g.array() * a)

        return _out(a * b, lhs, (lhs, rhs), grad)
    v, s = (lhs, rhs) if isinstance(lhs, Variable) else (rhs, lhs)
    return _out(v.array() * s, v, (v,), lambda inputs, g: _add_grad(inputs[0], g.array() * s))


def div(lhs: Union[Variable, Number], rhs: Union[Variable, Number]) -> Variable:
    """Element-wise ``lhs / rhs``."""
    _check_operand(lhs, "div"), _check_operand(rhs, "div")
    if isinstance(lhs, Variable) and isinstance(rhs, Variable):
        _same_dims(lhs, rhs, "div")
        b = rhs.array()
        out = lhs.array() / b

        def grad(inputs, g):
            gb = g.array() / b
            if inputs[0].isCalcGrad():
                _add_grad(inputs[0], gb)
            if inputs[1].isCalcGrad():
                _add_grad(inputs[1], -gb * out)

        return _out(out, lhs, (lhs, rhs), grad)
    if isinstance(lhs, Variable):
        return _out(lhs.array() / rhs, lhs, (lhs,), lambda inputs, g: _add_grad(inputs[0], g.array() / rhs))
    b = rhs.array()
    out = lhs / b
    return _out(out, rhs, (rhs,), lambda inputs, g: _add_grad(inputs[0], -g.array() * out / b))


def negate(input: Variable) -> Variable:
    """Element-wise ``-input``."""
    return _out(-input.array(), input, (input,), lambda inputs, g: _add_grad(inputs[0], -g.array()))


def reciprocal(input: Variable) -> Variable:
    """Element-wise ``1 / input``."""
    return div(1.0, input)


# -- element-wise functions --------------------------------------------------------------------
def exp(input: Variable) -> Variable:
    """Element-wise exponential."""
    out = input.backend.exp(input.array())
    return _out(out, input, (input,), lambda inputs, g: _add_grad(inputs[0], g.array() * out))


def log(input: Variable) -> Variable:
    """Element-wise natural logarithm."""
    x = input.array()
    return _out(input.backend.log(x), input, (input,), lambda inputs, g: _add_grad(inputs[0], g.array() / x))


def log1p(input: Variable) -> Variable:
    """Element-wise ``log(1 + input)``."""
    x = input.array()
    return _out(input.backend.log1p(x), input, (input,), lambda inputs, g: _add_grad(inputs[0], g.array() / (x + 1)))


def sqrt(input: Variable) -> Variable:
    """Element-wise square root."""
    out = input.backend.sqrt(input.array())
    return _out(out, input, (input,), lambda inputs, g: _add_grad(inputs[0], g.array() / (out * 2)))


def abs(input: Variable) -> Variable:  # noqa: A001 - flashlight's name
    """Element-wise absolute value (gradient ``sign(input)``, 0 at 0)."""
    x = input.array()
    b = input.backend
    return _out(b.abs(x), input, (input,), lambda inputs, g: _add_grad(inputs[0], g.array() * b.sign(x)))


def pow(input: Variable, p: Number) -> Variable:  # noqa: A001 - flashlight's name
    """Element-wise ``input ** p`` for a number ``p``."""
    x = input.array()
    out = x**p

    def grad(inputs, g):
        _add_grad(inputs[0], g.array() * (x ** (p - 1)) * p)

    return _out(out, input, (input,), grad)


def sigmoid(input: Variable) -> Variable:
    """Element-wise logistic function."""
    out = input.backend.sigmoid(input.array())
    return _out(out, input, (input,), lambda inputs, g: _add_grad(inputs[0], g.array() * out * (1 - out)))


def tanh(input: Variable) -> Variable:
    """Element-wise hyperbolic tangent."""
    out = input.backend.tanh(input.array())
    return _out(out, input, (input,), lambda inputs, g: _add_grad(inputs[0], g.array() * (1 - out * out)))


def relu(input: Variable) -> Variable:
    """``max(input, 0)``; gradient 1 where input > 0."""
    x = input.array()
    b = input.backend
    # the gradient times the mask, as flashlight's max(Variable, double) has it; a select (np.where, ArrayFire's
    # select) gives the same values for every finite gradient but was 6-7x slower, branching on a random mask
    return _out(b.maximum(x, 0.0), input, (input,), lambda inputs, g: _add_grad(inputs[0], g.array() * (x > 0)))


def max(lhs: Variable, rhs: Union[Variable, Number]) -> Variable:  # noqa: A001 - flashlight's name
    """Element-wise maximum; the gradient goes to ``lhs`` where ``lhs > rhs``, else to ``rhs``."""
    b = lhs.backend
    r = rhs.array() if isinstance(rhs, Variable) else rhs
    if isinstance(rhs, Variable):
        _same_dims(lhs, rhs, "max")
    mask = lhs.array() > r

    def grad(inputs, g):
        _add_grad(inputs[0], b.where(mask, g.array(), 0.0))
        if len(inputs) > 1 and inputs[1].isCalcGrad():
            _add_grad(inputs[1], b.where(mask, 0.0, g.array()))

    inputs = (lhs, rhs) if isinstance(rhs, Variable) else (lhs,)
    return _out(b.maximum(lhs.array(), r), lhs, inputs, grad)


def min(lhs: Variable, rhs: Union[Variable, Number]) -> Variable:  # noqa: A001 - flashlight's name
    """Element-wise minimum; the gradient goes to ``lhs`` where ``lhs < rhs``, else to ``rhs``."""
    b = lhs.backend
    r = rhs.array() if isinstance(rhs, Variable) else rhs
    if isinstance(rhs, Variable):
        _same_dims(lhs, rhs, "min")
    mask = lhs.array() < r

    def grad(inputs, g):
        _add_grad(inputs[0], b.where(mask, g.array(), 0.0))
        if len(inputs) > 1 and inputs[1].isCalcGrad():
            _add_grad(inputs[1], b.where(mask, 0.0, g.array()))

    inputs = (lhs, rhs) if isinstance(rhs, Variable) else (lhs,)
    return _out(b.minimum(lhs.array(), r), lhs, inputs, grad)


def _astype(input: Variable, dtype: Any) -> Variable:
    b = input.backend
    src = input.type()
    return _out(b.astype(input.array(), dtype), input, (input,), lambda inputs, g: _add_grad(inputs[0], b.astype(g.array(), src)))


# -- reductions (reduced dims are kept as size 1) ----------------------------------------------
def _axes(axes: Sequence[int]) -> list[int]:
    axes = [int(a) for a in axes]
    if any(a < 0 or a > 3 for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"axes must be distinct dims in 0..3, got {axes}")
    return axes


def sum(input: Variable, axes: Sequence[int]) -> Variable:  # noqa: A001 - flashlight's name
    """Sum over ``axes``."""
    b, dims = input.backend, input.dims()
    return _out(b.sum(input.array(), _axes(axes)), input, (input,), lambda inputs, g: _add_grad(inputs[0], _tile_to(b, g.array(), dims)))


def mean(input: Variable, axes: Sequence[int]) -> Variable:
    """Mean over ``axes``."""
    b, dims = input.backend, input.dims()
    axes = _axes(axes)
    n = int(np.prod([dims[a] for a in axes]))
    return _out(b.mean(input.array(), axes), input, (input,), lambda inputs, g: _add_grad(inputs[0], _tile_to(b, g.array(), dims) / n))


def var(input: Variable, axes: Sequence[int], isbiased: bool = False) -> Variable:  # noqa: N803
    """Variance over ``axes``; divides by N-1 unless ``isbiased`` (flashlight's default, unlike af::var 3.7+)."""
    b, dims, x = input.backend, input.dims(), input.array()
    axes = _axes(axes)
    n = int(np.prod([dims[a] for a in axes]))
    out = b.var(x, axes, biased=isbiased)
    denom = n if isbiased else n - 1

    def grad(inputs, g):
        centred = x - _tile_to(b, b.mean(x, axes), dims)
        _add_grad(inputs[0], _tile_to(b, g.array(), dims) * centred * (2.0 / denom))

    return _out(out, input, (input,), grad)


def norm(input: Variable, axes: Sequence[int], p: float = 2) -> Variable:
    """``(sum over axes |input|^p)^(1/p)``; ``norm(x, {0, 1})`` of a matrix is its Frobenius norm."""
    b, dims, x = input.backend, input.dims(), input.array()
    axes = _axes(axes)
    if p == 2:
        out = b.sqrt(b.sum(x * x, axes))
    else:
        out = b.sum(b.abs(x) ** p, axes) ** (1.0 / p)

    def grad(inputs, g):
        scale = _tile_to(b, g.array() / (out if p == 2 else out ** (p - 1)), dims)
        local = x if p == 2 else b.sign(x) * b.abs(x) ** (p - 1)
        _add_grad(inputs[0], scale * local)

    return _out(out, input, (input,), grad)


def softmax(input: Variable, dim: int) -> Variable:
    """``exp(x - max) / sum`` along ``dim`` (stabilised); keeps only its result for the gradient."""
    b, dims, x = input.backend, input.dims(), input.array()
    e = b.exp(x - _tile_to(b, b.max(x, dim), dims))
    out = e / _tile_to(b, b.sum(e, [dim]), dims)

    def grad(inputs, g):
        gy = g.array() * out
        _add_grad(inputs[0], gy - out * _tile_to(b, b.sum(gy, [dim]), dims))

    return _out(out, input, (input,), grad)


def logSoftmax(input: Variable, dim: int) -> Variable:  # noqa: N802
    """``x - max - log(sum(exp(x - max)))`` along ``dim``."""
    b, dims, x = input.backend, input.dims(), input.array()
    shifted = x - _tile_to(b, b.max(x, dim), dims)
    out = shifted - _tile_to(b, b.log(b.sum(b.exp(shifted), [dim])), dims)

    def grad(inputs, g):
        _add_grad(inputs[0], g.array() - b.exp(out) * _tile_to(b, b.sum(g.array(), [dim]), dims))

    return _out(out, input, (input,), grad)


# -- shape -------------------------------------------------------------------------------------
def transpose(input: Variable) -> Variable:
    """Swap dims 0 and 1."""
    b = input.backend
    return _out(b.transpose(input.array()), input, (input,), lambda inputs, g: _add_grad(inputs[0], b.transpose(g.array())))


def reorder(input: Variable, dim0: int, dim1: int, dim2: int = 2, dim3: int = 3) -> Variable:
    """Permute dims: output dim i is input dim ``dimi`` (``fl::reorder``)."""
    b = input.backend
    perm = (dim0, dim1, dim2, dim3)
    inverse = [perm.index(i) for i in range(4)] if sorted(perm) == [0, 1, 2, 3] else None
    out = b.reorder(input.array(), perm)
    return _out(out, input, (input,), lambda inputs, g: _add_grad(inputs[0], b.reorder(g.array(), inverse)))


def _infer_dims(input: Variable, dims: Sequence[int]) -> tuple[int, ...]:
    # flashlight's moddims: 0 copies the input dim, one -1 is inferred from the element count
    d = list(dims4(dims))
    idims = input.dims()
    d = [idims[i] if v == 0 else v for i, v in enumerate(d)]
    if d.count(-1) > 1:
        raise ValueError(f"moddims: at most one dim may be -1, got {tuple(dims)}")
    if -1 in d:
        known = int(np.prod([v for v in d if v != -1]))
        if known == 0 or input.elements() % known:
            raise ValueError(f"moddims: cannot infer -1 in {tuple(dims)} for {input.elements()} elements")
        d[d.index(-1)] = input.elements() // known
    if int(np.prod(d)) != input.elements():
        raise ValueError(f"moddims: {tuple(dims)} -> {tuple(d)} does not hold {input.elements()} elements (dims {idims})")
    return tuple(d)


def moddims(input: Variable, dims: Sequence[int]) -> Variable:
    """Column-major reshape; a 0 keeps the input's dim and one -1 is inferred (``fl::moddims``)."""
    b, idims = input.backend, input.dims()
    out = b.moddims(input.array(), _infer_dims(input, dims))
    return _out(out, input, (input,), lambda inputs, g: _add_grad(inputs[0], b.moddims(g.array(), idims)))


def flat(input: Variable) -> Variable:
    """All elements as one column."""
    return moddims(input, (input.elements(),))


def tile(input: Variable, dims: Sequence[int]) -> Variable:
    """Repeat ``dims[i]`` times along dim i."""
    b, idims = input.backend, input.dims()
    return _out(b.tile(input.array(), dims4(dims)), input, (input,), lambda inputs, g: _add_grad(inputs[0], _sum_to(b, g.array(), idims)))


def tileAs(input: Variable, reference: DimsLike) -> Variable:  # noqa: N802
    """Tile ``input`` to the dims of ``reference`` (a Variable or dims); each input dim must divide."""
    rdims, idims = _dims_of(reference), input.dims()
    if any(r % i for r, i in zip(rdims, idims)):
        raise ValueError(f"tileAs: dims {idims} do not divide {rdims}")
    return tile(input, [r // i for r, i in zip(rdims, idims)])


def sumAs(input: Variable, reference: DimsLike) -> Variable:  # noqa: N802
    """Sum ``input`` down to the dims of ``reference`` (which must be 1 wherever they differ)."""
    b, rdims, idims = input.backend, _dims_of(reference), input.dims()
    axes = [i for i in range(4) if idims[i] != rdims[i]]
    if any(rdims[i] != 1 for i in axes):
        raise ValueError(f"sumAs: cannot sum dims {idims} to {rdims}")
    if not axes:
        return _out(input.array(), input, (input,), lambda inputs, g: _add_grad(inputs[0], g.array()))
    return _out(b.sum(input.array(), axes), input, (input,), lambda inputs, g: _add_grad(inputs[0], _tile_to(b, g.array(), idims)))


def concatenate(concatInputs: Sequence[Variable], dim: int) -> Variable:  # noqa: N803
    """Join Variables along ``dim`` (the other dims must agree)."""
    inputs = list(concatInputs)
    if not inputs:
        raise ValueError("concatenate needs at least one Variable")
    b = inputs[0].backend
    for v in inputs[1:]:
        d0, d = inputs[0].dims(), v.dims()
        if any(d0[i] != d[i] for i in range(4) if i != dim):
            raise ValueError(f"concatenate along {dim}: dims {d0} and {d} differ elsewhere")
    sizes = [v.dims(dim) for v in inputs]
    starts = list(itertools.accumulate([0] + sizes[:-1]))

    def grad(ins, g):
        for v, start, size in zip(ins, starts, sizes):
            if v.isCalcGrad():
                idx = [slice(None)] * 4
                idx[dim] = slice(start, start + size)
                _add_grad(v, b.index(g.array(), idx))

    return _out(b.concatenate([v.array() for v in inputs], dim), inputs[0], inputs, grad)


def index(input: Variable, *idx: Any) -> Variable:
    """``input(idx...)``: a new Variable holding a copy; the gradient is scatter-added into zeros."""
    b, dims = input.backend, input.dims()
    resolved = input._resolve(idx)
    out = b.index(input.array(), resolved)
    return _out(out, input, (input,), lambda inputs, g: _add_grad(inputs[0], b.index_add(dims, resolved, g.array())))


def assignIndex(input: Variable, value: Union[Variable, Number], *idx: Any) -> Variable:  # noqa: N802
    """A new Variable equal to ``input`` with the range ``idx`` replaced by ``value`` (what ``v(idx) = w;`` was meant to do).

    The gradient flows to ``input`` outside the range and to ``value`` inside it.
    """
    b = input.backend
    resolved = input._resolve(idx)
    region = b.dims(b.index(input.array(), resolved))
    if isinstance(value, Variable):
        if value.dims() != region:
            raise ValueError(f"assignIndex: value dims {value.dims()} do not match the indexed range {region}")
        data = b.index_assign(input.array(), resolved, value.array())
        inputs = (input, value)
    else:
        data = b.index_assign(input.array(), resolved, b.full(region, float(value), input.type()))
        inputs = (input,)

    def grad(ins, g):
        if ins[0].isCalcGrad():
            _add_grad(ins[0], b.index_assign(g.array(), resolved, b.zeros(region, b.dtype(g.array()))))
        if len(ins) > 1 and ins[1].isCalcGrad():
            _add_grad(ins[1], b.index(g.array(), resolved))

    return _out(data, input, inputs, grad)


# -- linear algebra ----------------------------------------------------------------------------
def _matmul(lhs: Variable, rhs: Variable, ta: bool, tb: bool, name: str) -> Variable:
    b = lhs.backend
    if lhs.backend is not rhs.backend:
        raise ValueError(f"{name}: Variables live on different backends")
    A, B = lhs.array(), rhs.array()
    out = b.matmul(A, B, ta, tb)
    da, db = lhs.dims(), rhs.dims()

    def grad(inputs, g):
        G = g.array()
        if inputs[0].isCalcGrad():
            # d(op(A) op(B))/dA for each transposition case
            ga = b.matmul(B, G, tb, True) if ta else b.matmul(G, B, False, not tb)
            _add_grad(inputs[0], _sum_to(b, ga, da))
        if inputs[1].isCalcGrad():
            gb = b.matmul(G, A, True, ta) if tb else b.matmul(A, G, not ta, False)
            _add_grad(inputs[1], _sum_to(b, gb, db))

    return _out(out, lhs, (lhs, rhs), grad)


def matmul(lhs: Variable, rhs: Variable) -> Variable:
    """``lhs x rhs``: [M, N] x [N, K], batched over dims 2-3."""
    return _matmul(lhs, rhs, False, False, "matmul")


def matmulTN(lhs: Variable, rhs: Variable) -> Variable:  # noqa: N802
    """``lhs^T x rhs``."""
    return _matmul(lhs, rhs, True, False, "matmulTN")


def matmulNT(lhs: Variable, rhs: Variable) -> Variable:  # noqa: N802
    """``lhs x rhs^T``."""
    return _matmul(lhs, rhs, False, True, "matmulNT")


def linear(input: Variable, weight: Variable, bias: Variable | None = None) -> Variable:
    """``weight x input (+ bias)``: weight [out, in], input [in, T, N], bias [out]."""
    b = input.backend
    wd = weight.dims()
    if getattr(b, "xp", None) is not None and wd[2:] == (1, 1) and input.dims(0) == wd[1] and input.dims(3) == 1 and (
            bias is None or bias.elements() == wd[0]):
        return _linear_frames(input, weight, bias)
    if b.name == "arrayfire" and wd[2:] == (1, 1) and input.dims(0) == wd[1] and input.dims(3) == 1 and (
            bias is None or bias.elements() == wd[0]):
        return _linear_af(input, weight, bias)
    out = matmul(weight, input)
    if bias is not None:
        out = out + tileAs(bias, out)
    return out


def _linear_af(input: Variable, weight: Variable, bias: Variable | None) -> Variable:
    """``linear`` on ArrayFire as one 2-D GEMM over every frame of every sample ([in, T * N]), not a batched matmul
    of weights tiled N times."""
    b = input.backend
    af = b.af
    nin, T, N, _ = input.dims()
    nout = weight.dims(0)
    w, x, bias_arr = _afconv.promote(af, b, weight.array(), input.array(), None if bias is None else bias.array())
    x2 = af.moddims(x, nin, T * N)
    out = af.matmul(w, x2)
    if bias is not None:
        out = out + af.tile(af.moddims(bias_arr, nout, 1), 1, T * N)
    out = af.moddims(out, nout, T, N)

    def grad(inputs, g):
        g2 = af.moddims(g.array(), nout, T * N)
        if b.dtype(g2) != b.dtype(w):
            g2 = b.astype(g2, b.dtype(w))
        if inputs[0].isCalcGrad():
            _add_grad(inputs[0], af.moddims(af.matmul(w, g2, af.MATPROP.TRANS), nin, T, N))
        if inputs[1].isCalcGrad():
            _add_grad(inputs[1], af.matmul(g2, x2, af.MATPROP.NONE, af.MATPROP.TRANS))
        if len(inputs) > 2 and inputs[2].isCalcGrad():
            _add_grad(inputs[2], af.moddims(af.sum(g2, 1), *b.dims(inputs[2].array())))

    inputs = (input, weight) if bias is None else (input, weight, bias)
    return _out(out, input, inputs, grad)


def _linear_frames(input: Variable, weight: Variable, bias: Variable | None) -> Variable:
    """``linear`` as one GEMM over every frame of every sample, in the input's memory order, bias added in place.

    [in, T, N] is viewed as (T, N, in) rows (the layout the time convolution leaves), so
    no batch loop, no copy and no full-size tile of the bias."""
    b = input.backend
    xp = b.xp
    nin, T, N, _ = input.dims()
    nout = weight.dims(0)
    w = b._4d(weight.array())[:, :, 0, 0]  # (out, in)
    x = b._4d(input.array())[:, :, :, 0].transpose(1, 2, 0)  # (T, N, in) view
    xr = x.reshape(T * N, nin) if x.flags.c_contiguous else xp.ascontiguousarray(x).reshape(T * N, nin)
    out = xr @ w.T  # (T*N, out)
    if bias is not None:
        out += b._4d(bias.array()).reshape(-1)
    view = lambda a, n: b._canon(a.reshape(T, N, n).transpose(2, 0, 1))  # noqa: E731 - (T*N, n) rows -> [n, T, N]

    def grad(inputs, g):
        gt = b._4d(g.array())[:, :, :, 0].transpose(1, 2, 0)
        g2 = gt.reshape(T * N, nout) if gt.flags.c_contiguous else xp.ascontiguousarray(gt).reshape(T * N, nout)
        if inputs[0].isCalcGrad():
            _add_grad(inputs[0], view(g2 @ w, nin))
        if inputs[1].isCalcGrad():
            _add_grad(inputs[1], b._canon(g2.T @ xr))
        if len(inputs) > 2 and inputs[2].isCalcGrad():
            _add_grad(inputs[2], b._canon(g2.sum(axis=0).reshape(b.dims(inputs[2].array()))))

    inputs = (input, weight) if bias is None else (input, weight, bias)
    return _out(view(out, nout), input, inputs, grad)


def conv2d(
    input: Variable,
    weights: Variable,
    bias: Variable | None = None,
    sx: int = 1,
    sy: int = 1,
    px: int = 0,
    py: int = 0,
    dx: int = 1,
    dy: int = 1,
    groups: int = 1,
) -> Variable:
    """2-D cross-correlation: input [W, H, C, N], weights [kw, kh, C, cout], bias [1, 1, cout, 1] -> [W', H', cout, N].

    Padding is explicit here (the SAME rule lives in ``nn.Conv2D``); dilation and groups other than 1 are not supported.
    """
    if dx != 1 or dy != 1 or groups != 1:
        raise NotImplementedError(f"conv2d supports dilation 1 and groups 1 only, got dx={dx}, dy={dy}, groups={groups}")
    b = input.backend
    W, H, C, N = input.dims()
    kw, kh, cin, cout = weights.dims()
    if cin != C:
        raise ValueError(f"conv2d: input has {C} channels (dims {input.dims()}), weights expect {cin} (dims {weights.dims()})")
    if _conv.supported(b, (kw, kh, cin, cout), (W, H, C, N), sy, py):
        return _conv_time(input, weights, bias, sx, px)
    if _afconv.supported(b, (kw, kh, cin, cout), (W, H, C, N), sy, py):
        return _conv_time_af(input, weights, bias, sx, px)
    cols = b.unwrap(input.array(), kw, kh, sx, sy, px, py)  # [kw*kh, L, C, N]
    L = b.dims(cols)[1]
    nx, ny = (W + 2 * px - kw) // sx + 1, (H + 2 * py - kh) // sy + 1
    patches = b.moddims(b.reorder(cols, (1, 0, 2, 3)), (L, kw * kh * C, N))
    w2 = b.moddims(weights.array(), (kw * kh * C, cout))
    out = b.moddims(b.matmul(patches, w2), (nx, ny, cout, N))
    if bias is not None:
        out = out + _tile_to(b, bias.array(), (nx, ny, cout, N))

    def grad(inputs, g):
        g3 = b.moddims(g.array(), (L, cout, N))
        if inputs[0].isCalcGrad():
            dpatches = b.matmul(g3, w2, False, True)  # [L, kw*kh*C, N]
            dcols = b.reorder(b.moddims(dpatches, (L, kw * kh, C, N)), (1, 0, 2, 3))
            _add_grad(inputs[0], b.wrap(dcols, W, H, kw, kh, sx, sy, px, py))
        if inputs[1].isCalcGrad():
            dw = _sum_to(b, b.matmul(patches, g3, True, False), (kw * kh * C, cout, 1, 1))
            _add_grad(inputs[1], b.moddims(dw, (kw, kh, cin, cout)))
        if len(inputs) > 2 and inputs[2].isCalcGrad():
            _add_grad(inputs[2], b.sum(g.array(), [0, 1, 3]))

    inputs = (input, weights) if bias is None else (input, weights, bias)
    return _out(out, input, inputs, grad)


def conv2d_relu(input: Variable, weights: Variable, bias: Variable | None = None, sx: int = 1, sy: int = 1,
                px: int = 0, py: int = 0) -> Variable:
    """``relu(conv2d(...))`` (same shapes and values), fused where the time convolution applies: the ReLU runs on
    each output block in the cache and the graph keeps one array instead of two."""
    b = input.backend
    W, H, C, N = input.dims()
    kw, kh, cin, cout = weights.dims()
    if cin == C and _conv.supported(b, (kw, kh, cin, cout), (W, H, C, N), sy, py):
        return _conv_time(input, weights, bias, sx, px, relu=True)
    if cin == C and _afconv.supported(b, (kw, kh, cin, cout), (W, H, C, N), sy, py):
        return _conv_time_af(input, weights, bias, sx, px, relu=True)
    return relu(conv2d(input, weights, bias, sx, sy, px, py))


def _conv_time(input: Variable, weights: Variable, bias: Variable | None, sx: int, px: int, relu: bool = False) -> Variable:
    """conv2d of [W, 1, C, N] by [kw, 1, C, cout] without an im2col buffer (afmask.fl.conv), optionally with a ReLU."""
    b = input.backend
    xp = b.xp
    W, _, C, N = input.dims()
    kw, _, _, cout = weights.dims()
    w_grad = weights.isCalcGrad()
    wk = _conv.taps(xp, weights.array(), b._4d(weights.array()), cache=not w_grad)
    bias_row = None if bias is None else b._4d(bias.array()).reshape(-1)
    out4, phases = _conv.forward(xp, b._4d(input.array()), wk, bias_row, sx, px, keep_input=w_grad, relu=relu)

    def grad(inputs, g):
        g4 = b._4d(g.array())
        masked_by = out4 if relu else None
        if inputs[0].isCalcGrad():
            _add_grad(inputs[0], b._canon(_conv.backward_input(xp, g4, wk, W, sx, px, masked_by)))
        if inputs[1].isCalcGrad():
            _add_grad(inputs[1], b._canon(_conv.backward_weights(xp, g4, phases, kw, sx, masked_by)))
        if len(inputs) > 2 and inputs[2].isCalcGrad():
            gb = g.array() if not relu else g.array() * (out4 > 0)
            _add_grad(inputs[2], b.sum(gb, [0, 1, 3]))

    inputs = (input, weights) if bias is None else (input, weights, bias)
    return _out(b._canon(out4), input, inputs, grad)


def _conv_time_af(input: Variable, weights: Variable, bias: Variable | None, sx: int, px: int,
                  relu: bool = False) -> Variable:
    """conv2d of [W, 1, C, N] by [kw, 1, C, cout] on ArrayFire without af.unwrap (afmask.fl.afconv), optionally
    with a ReLU."""
    b = input.backend
    if _afconv.host_route(b, input.array(), weights, bias):
        return _conv_time_af_host(input, weights, bias, sx, px, relu)
    af = b.af
    W, _, C, N = input.dims()
    kw = weights.dims(0)
    w_grad = weights.isCalcGrad()
    x, w, bias_arr = _afconv.promote(af, b, input.array(), weights.array(), None if bias is None else bias.array())
    fixed = not w_grad and w is weights.array() and (bias is None or (not bias.isCalcGrad() and bias_arr is bias.array()))
    mats = _afconv.taps(af, w, sx, cache=fixed, bias=bias_arr)
    out, phases = _afconv.forward(af, x, mats, kw, bias is not None, sx, px, keep_input=w_grad, relu=relu)

    def grad(inputs, g):
        ga = g.array()
        if b.dtype(ga) != b.dtype(out):
            ga = b.astype(ga, b.dtype(out))
        # subnormal gradients flushed to 0 (each changes by less than the smallest normal number): ArrayFire's
        # CPU GEMM ran 8-10x slower on the few hundred subnormals the softmax's gradient leaves in the last layer.
        # A gradient straight from another time convolution's backward (flushed at its entry, then one GEMM
        # of normal numbers) is not tested again: the test cost 0.2 ms a layer. The mask is a product, as on
        # NumPy (ArrayFire's CPU select is 6x slower than a JIT multiply).
        if getattr(ga, "_afmask_flushed", False):
            ga = ga * (out > 0) if relu else ga
        else:
            keep = af.abs(ga) >= float(np.finfo(b.dtype(ga)).tiny)
            ga = ga * ((out > 0) & keep if relu else keep)
        if inputs[0].isCalcGrad():
            dx = _afconv.backward_input(af, ga, mats, kw, W, sx, px)
            dx._afmask_flushed = True
            _add_grad(inputs[0], dx)
        if inputs[1].isCalcGrad():
            _add_grad(inputs[1], _afconv.backward_weights(af, ga, phases, kw, sx))
        if len(inputs) > 2 and inputs[2].isCalcGrad():
            _add_grad(inputs[2], b.sum(ga, [0, 1, 3]))

    inputs = (input, weights) if bias is None else (input, weights, bias)
    return _out(out, input, inputs, grad)


def _conv_time_af_host(input: Variable, weights: Variable, bias: Variable | None, sx: int, px: int,
                       relu: bool) -> Variable:
    """_conv_time_af on ArrayFire's CPU backend: afmask.fl.conv's loops on ArrayFire's own buffers, with NumPy's
    arithmetic (fixed weights only, the experiment's case)."""
    b = input.backend
    W, _, C, N = input.dims()
    wk, bias_row = _afconv.host_taps(b, weights.array(), None if bias is None else bias.array())
    keep, (x4,) = b.host_views(input.array())  # keep: the arrays whose memory the view reads
    o4, _ = _conv.forward(np, x4, wk, bias_row, sx, px, keep_input=False, relu=relu)
    del keep, x4
    dt = o4.dtype
    out, view = b.empty_host(o4.shape, dt)
    view[...] = o4  # time-major pooled memory -> ArrayFire's layout, one copy
    del o4, view  # the pool's buffer is free for the next layer (the backward must not hold it)

    def grad(inputs, g):
        if not inputs[0].isCalcGrad():
            return
        keep, (g4, *o) = b.host_views(g.array(), *((out,) if relu else ()))
        d4 = _conv.backward_input(np, g4.astype(dt, copy=False), wk, W, sx, px, o[0] if relu else None)
        dx, dview = b.empty_host(d4.shape, d4.dtype)
        dview[...] = d4
        _add_grad(inputs[0], dx)

    inputs = (input, weights) if bias is None else (input, weights, bias)
    return _out(out, input, inputs, grad)


# -- more layers' functions ------------------------------------------------------------------
def clamp(input: Variable, lo: float, hi: float) -> Variable:
    """``clamp(input, lo, hi)``; the gradient passes only where ``lo < result < hi`` (as fl::clamp)."""
    b = input.backend
    out = b.minimum(b.maximum(input.array(), lo), hi)

    def grad(inputs, g):
        inside = b.where(out > lo, b.where(out < hi, g.array(), 0.0), 0.0)
        _add_grad(inputs[0], inside)

    return _out(out, input, (input,), grad)


def padding(input: Variable, pads: Sequence[tuple[int, int]], val: float) -> Variable:
    """``fl::padding``: ``pads[i] = (before, after)`` elements of value ``val`` around dim i."""
    b, dims = input.backend, input.dims()
    pads = list(pads) + [(0, 0)] * (4 - len(pads))
    out_dims = [d + lo + hi for d, (lo, hi) in zip(dims, pads)]
    region = tuple(slice(lo, lo + d) for d, (lo, _) in zip(dims, pads))
    out = b.index_assign(b.full(out_dims, val, input.type()), region, input.array())
    return _out(out, input, (input,), lambda inputs, g: _add_grad(inputs[0], b.index(g.array(), region)))


def elu(input: Variable, alpha: float) -> Variable:
    """``x`` where ``x >= 0``, else ``alpha * (exp(x) - 1)``."""
    b, x = input.backend, input.array()
    pos = x >= 0
    ex = b.exp(b.minimum(x, 0.0))
    out = b.where(pos, x, (ex - 1.0) * alpha)
    return _out(out, input, (input,), lambda inputs, g: _add_grad(inputs[0], b.where(pos, g.array(), g.array() * ex * alpha)))


#: flashlight's ``PoolingMode`` names.
MAX = "max"
AVG_INCLUDE_PADDING = "avg_include_padding"
AVG_EXCLUDE_PADDING = "avg_exclude_padding"


def pool2d(input: Variable, wx: int, wy: int, sx: int, sy: int, px: int, py: int, mode: str) -> Variable:
    """``fl::pool2d`` over dims 0-1 of [W, H, C, N]: max (padding never wins) or average (padding counted or not)."""
    b, dims = input.backend, input.dims()
    W, H, C, N = dims
    dtype = input.type()
    nx, ny = unwrap_counts(W, wx, sx, px), unwrap_counts(H, wy, sy, py)
    K = wx * wy
    if mode == MAX:
        x = input.array()
        if px or py:
            # pad with -inf so that the padding is never the maximum (cuDNN / oneDNN behaviour)
            x = padding(Variable._leaf(x, b), [(px, px), (py, py)], -np.inf).array()
        cols = b.unwrap(x, wx, wy, sx, sy, 0, 0)  # [K, L, C, N]
        best = b.max(cols, 0)  # [1, L, C, N]
        out = b.moddims(best, (nx, ny, C, N))

        def grad(inputs, g):
            # the gradient goes to the first maximum of each window, as the C++ kernels do
            taken = b.zeros(b.dims(best), dtype)
            parts = []
            for k in range(K):
                hit = b.where(b.index(cols, [slice(k, k + 1)]) == best, 1.0, 0.0) * (1.0 - taken)
                taken = taken + hit
                parts.append(hit)
            g1 = b.moddims(g.array(), b.dims(best))
            dcols = b.concatenate(parts, 0) * b.tile(g1, (K, 1, 1, 1))
            _add_grad(inputs[0], b.wrap(dcols, W, H, wx, wy, sx, sy, px, py))

        return _out(out, input, (input,), grad)
    if mode not in (AVG_INCLUDE_PADDING, AVG_EXCLUDE_PADDING):
        raise ValueError(f"pool2d: unknown mode {mode!r}; expected {MAX!r}, {AVG_INCLUDE_PADDING!r} or {AVG_EXCLUDE_PADDING!r}")
    cols = b.unwrap(input.array(), wx, wy, sx, sy, px, py)
    if mode == AVG_INCLUDE_PADDING:
        counts = None
        total = b.sum(cols, [0]) * (1.0 / K)
    else:
        ones = b.unwrap(b.full((W, H, 1, 1), 1.0, dtype), wx, wy, sx, sy, px, py)  # [K, L, 1, 1]
        counts = b.tile(b.sum(ones, [0]), (1, 1, C, N))  # real (unpadded) elements per window
        total = b.sum(cols, [0]) / counts
    out = b.moddims(total, (nx, ny, C, N))

    def grad_avg(inputs, g):
        g1 = b.moddims(g.array(), (1, nx * ny, C, N))
        g1 = g1 * (1.0 / K) if counts is None else g1 / counts
        _add_grad(inputs[0], b.wrap(b.tile(g1, (K, 1, 1, 1)), W, H, wx, wy, sx, sy, px, py))

    return _out(out, input, (input,), grad_avg)


def dropout(input: Variable, p: float, train: bool = True, seed: int = 0) -> Variable:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) in training; identity otherwise."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not train or p == 0:
        return input
    b = input.backend
    keep = b.astype(b.randu(input.dims(), seed, input.type()) >= p, input.type()) * (1.0 / (1 - p))
    return _out(input.array() * keep, input, (input,), lambda inputs, g: _add_grad(inputs[0], g.array() * keep))


# -- random Variables ---------------------------------------------------------------------------
def normal(dims: Sequence[int], stdv: float = 1.0, mean: float = 0.0, calcGrad: bool = False, seed: int = 0) -> Variable:  # noqa: N803
    """``fl::normal(dims, stdv, mean)``: ``stdv * randn + mean`` on the current backend, reproducible for ``seed``."""
    b = get_backend()
    return Variable._leaf(b.randn(dims, seed) * np.float32(stdv) + np.float32(mean), b) if not calcGrad else Variable(
        b.randn(dims, seed) * np.float32(stdv) + np.float32(mean), True)


def uniform(dims: Sequence[int], min: float = 0.0, max: float = 1.0, calcGrad: bool = False, seed: int = 0) -> Variable:  # noqa: A002,N803
    """``fl::uniform(dims, min, max)``: uniform samples in [min, max) on the current backend, reproducible for ``seed``."""
    b = get_backend()
    data = b.randu(dims, seed) * np.float32(max - min) + np.float32(min)
    return Variable(data, True) if calcGrad else Variable._leaf(data, b)

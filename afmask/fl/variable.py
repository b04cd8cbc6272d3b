"""``Variable``: an array, its gradient, and the graph that produced it (flashlight's ``fl::Variable``)."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from afmask.backend import Backend, backend_of, get_backend
from afmask.backend.indexing import resolve_index
from afmask.fl import pitfall

#: gradFunc(inputs, gradOutput): adds each input's gradient with ``inputs[i].addGrad``.
GradFunc = Callable[[Sequence["Variable"], "Variable"], None]


class Variable:
    """An array with an optional gradient and the function that made it, as ``fl::Variable``."""

    __slots__ = ("_data", "_backend", "_calc_grad", "_grad", "_inputs", "_grad_func", "__weakref__")
    __array_priority__ = 1000  # so ndarray * Variable defers to Variable

    def __init__(self, data: Any = None, calcGrad: bool = False):  # noqa: N803 - flashlight's name
        """``fl::Variable(af::array, bool calcGrad)``: wrap an array (NumPy or backend) as a leaf."""
        if data is None:
            self._data, self._backend = None, None
        else:
            b = backend_of(data)
            if b.name == "numpy" and not isinstance(data, np.ndarray):
                data = np.asarray(data, dtype=np.float32)
            if b.name == "numpy" and get_backend().name != "numpy":
                b = get_backend()
            elif b.name == "numpy":
                data = np.array(data, copy=True)  # value semantics, like af::array from host memory
            self._data, self._backend = b.asarray(data), b
        self._calc_grad = bool(calcGrad)
        self._grad: Optional[Variable] = None
        self._inputs: tuple[Variable, ...] = ()
        self._grad_func: Optional[GradFunc] = None

    @classmethod
    def _from(cls, data: Any, backend: Backend, inputs: Sequence["Variable"], grad_func: GradFunc) -> "Variable":
        """A non-leaf Variable; keeps the graph only if some input needs a gradient."""
        v = cls.__new__(cls)
        v._data, v._backend, v._grad = data, backend, None
        v._calc_grad = any(i._calc_grad for i in inputs)
        v._inputs = tuple(inputs) if v._calc_grad else ()
        v._grad_func = grad_func if v._calc_grad else None
        return v

    # -- data -----------------------------------------------------------------------------
    def array(self) -> Any:
        """The underlying backend array (a NumPy array on the numpy backend)."""
        if self._data is None:
            raise RuntimeError("this Variable holds no array")
        return self._data

    @property
    def backend(self) -> Backend:
        """The backend the array lives on."""
        return self._backend

    def host(self) -> np.ndarray:
        """A NumPy copy of the array (ArrayFire orientation)."""
        return self._backend.to_numpy(self.array())

    def dims(self, dim: Optional[int] = None):
        """ArrayFire dims (a 4-tuple), or one of them."""
        d = self._backend.dims(self.array())
        return d if dim is None else d[dim]

    def numdims(self) -> int:
        """Number of dims up to the last one that is not 1 (at least 1)."""
        d = self.dims()
        n = 4
        while n > 1 and d[n - 1] == 1:
            n -= 1
        return n

    def elements(self) -> int:
        """Number of elements."""
        return int(np.prod(self.dims()))

    def type(self) -> np.dtype:
        """Element type as a NumPy dtype."""
        return self._backend.dtype(self.array())

    def scalar(self) -> float:
        """The value of a one-element Variable."""
        return self._backend.scalar(self.array())

    def astype(self, dtype: Any) -> "Variable":
        """``Variable::as(type)``: the same values in another element type (gradient cast back)."""
        from afmask.fl.functions import _astype

        return _astype(self, dtype)

    # -- gradient ---------------------------------------------------------------------------
    def isCalcGrad(self) -> bool:  # noqa: N802
        """Whether a gradient is computed for this Variable."""
        return self._calc_grad

    def setCalcGrad(self, calcGrad: bool) -> None:  # noqa: N802,N803
        """Turn gradient computation for this Variable on or off."""
        self._calc_grad = bool(calcGrad)
        if not calcGrad:
            self._grad = None

    def isGradAvailable(self) -> bool:  # noqa: N802
        """Whether a gradient has been computed."""
        return self._grad is not None

    def grad(self) -> "Variable":
        """The gradient as a Variable; raises if none was computed (as flashlight does)."""
        if not self._calc_grad:
            raise RuntimeError("gradient calculation is disabled for this Variable (calcGrad=False)")
        if self._grad is None:
            raise RuntimeError("gradient not calculated yet: call backward() first")
        return self._grad

    def addGrad(self, childGrad: "Variable") -> None:  # noqa: N802,N803
        """Accumulate a gradient into this Variable."""
        if not self._calc_grad:
            return
        if childGrad.dims() != self.dims():
            raise ValueError(f"gradient dims {childGrad.dims()} do not match variable dims {self.dims()}")
        if self._grad is None:
            self._grad = Variable._leaf(childGrad.array(), self._backend)
        else:
            self._grad = Variable._leaf(self._grad.array() + childGrad.array(), self._backend)

    @classmethod
    def _leaf(cls, data: Any, backend: Backend) -> "Variable":
        v = cls.__new__(cls)
        v._data, v._backend, v._calc_grad, v._grad, v._inputs, v._grad_func = data, backend, False, None, (), None
        return v

    def zeroGrad(self) -> None:  # noqa: N802
        """Forget the accumulated gradient."""
        self._grad = None

    def _build_dag(self) -> list["Variable"]:
        """Variables needing gradients, each after all of its inputs (iterative DFS)."""
        order: list[Variable] = []
        seen: set[int] = set()
        stack: list[tuple[Variable, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for inp in node._inputs:
                if inp._calc_grad and id(inp) not in seen:
                    stack.append((inp, False))
        return order

    def backward(self, grad: Optional["Variable"] = None, retainGraph: bool = False) -> None:  # noqa: N803
        """Backpropagate ``grad`` (default: ones) to every Variable in the graph that needs a gradient."""
        if not self._calc_grad:
            raise RuntimeError("backward() on a Variable that does not need a gradient (calcGrad=False)")
        if grad is None:
            grad = Variable._leaf(self._backend.full(self.dims(), 1.0, self.type()), self._backend)
        self.addGrad(grad)
        for node in reversed(self._build_dag()):
            if node._grad_func is not None and node._grad is not None:
                node._grad_func(node._inputs, node._grad)
            if not retainGraph and node._grad_func is not None:
                node._inputs, node._grad_func = (), None

    # -- indexing ---------------------------------------------------------------------------
    def __call__(self, *idx: Any) -> "Variable":
        """``v(seq(2, 27), span)``: a new Variable holding the indexed copy (flashlight's ``operator()``)."""
        from afmask.fl.functions import index

        return index(self, *idx)

    def __getitem__(self, key: Any) -> "Variable":
        """``v[...]``: the same as ``v(...)``; ints keep their dim, slices use Python semantics."""
        from afmask.fl.functions import index

        return index(self, *(key if isinstance(key, tuple) else (key,)))

    def __setitem__(self, key: Any, value: Any) -> None:
        """Does nothing to this Variable, as ``v(idx) = w;`` in flashlight; warns (or raises in strict mode)."""
        pitfall.ignored_assignment(key)

    def _resolve(self, idx: Sequence[Any]):
        return resolve_index(tuple(idx), self.dims(), to_host=_host_of)

    # -- arithmetic ---------------------------------------------------------------------------
    def __add__(self, other):
        from afmask.fl.functions import add

        return add(self, other)

    def __radd__(self, other):
        from afmask.fl.functions import add

        return add(other, self)

    def __sub__(self, other):
        from afmask.fl.functions import sub

        return sub(self, other)

    def __rsub__(self, other):
        from afmask.fl.functions import sub

        return sub(other, self)

    def __mul__(self, other):
        from afmask.fl.functions import mul

        return mul(self, other)

    def __rmul__(self, other):
        from afmask.fl.functions import mul

        return mul(other, self)

    def __truediv__(self, other):
        from afmask.fl.functions import div

        return div(self, other)

    def __rtruediv__(self, other):
        from afmask.fl.functions import div

        return div(other, self)

    def __neg__(self):
        from afmask.fl.functions import negate

        return negate(self)

    def _compare(self, other, op):
        o = other.array() if isinstance(other, Variable) else other
        return Variable._leaf(op(self.array(), o), self._backend)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        if self._data is None:
            return "Variable(empty)"
        d = "x".join(str(x) for x in self.dims())
        return f"Variable(dims={d}, type={self.type()}, calcGrad={self._calc_grad}, backend={self._backend.name})"


def _host_of(k: Any) -> Any:
    if isinstance(k, Variable):
        return k.host()
    return backend_of(k).to_numpy(k) if not isinstance(k, (list, tuple, np.ndarray)) else k

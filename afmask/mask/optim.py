"""First-order optimisers on backend arrays: the original's plain SGD, and Adam."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from afmask.backend import Backend


class SGD:
    """``theta -= lr * grad`` (the original's update)."""

    def __init__(self, backend: Backend, lr: float):
        self.B, self.lr = backend, float(lr)

    def step(self, theta: Any, grad: Any) -> Any:
        """The parameter after one step."""
        return theta - grad * np.float32(self.lr)

    def state(self) -> dict:
        """What a checkpoint must keep."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restore from a checkpoint."""


class Adam:
    """Adam (Kingma and Ba, 2015) with bias correction."""

    def __init__(self, backend: Backend, lr: float, betas: tuple = (0.9, 0.999), eps: float = 1e-8):
        self.B, self.lr, self.b1, self.b2, self.eps = backend, float(lr), float(betas[0]), float(betas[1]), float(eps)
        self.t = 0
        self.m1: Any = None
        self.m2: Any = None

    def step(self, theta: Any, grad: Any) -> Any:
        """The parameter after one step."""
        B = self.B
        if self.m1 is None:
            self.m1 = B.zeros(B.dims(theta), B.dtype(theta))
            self.m2 = B.zeros(B.dims(theta), B.dtype(theta))
        self.t += 1
        f = B.dtype(theta).type
        self.m1 = self.m1 * f(self.b1) + grad * f(1 - self.b1)
        self.m2 = self.m2 * f(self.b2) + grad * grad * f(1 - self.b2)
        B.eval(self.m1, self.m2)  # ArrayFire: else each step's moments would inline all the previous steps'
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        step_size = self.lr * math.sqrt(c2) / c1
        return theta - self.m1 * f(step_size) / (B.sqrt(self.m2) + f(self.eps * math.sqrt(c2)))

    def state(self) -> dict:
        """What a checkpoint must keep."""
        if self.m1 is None:
            return {"t": self.t}
        return {"t": self.t, "m1": self.B.to_numpy(self.m1), "m2": self.B.to_numpy(self.m2)}

    def load_state(self, state: dict) -> None:
        """Restore from a checkpoint."""
        self.t = int(state.get("t", 0))
        if "m1" in state:
            self.m1, self.m2 = self.B.asarray(state["m1"]), self.B.asarray(state["m2"])


def make_optimizer(backend: Backend, name: str, lr: float, betas: tuple = (0.9, 0.999), eps: float = 1e-8):
    """The optimiser called ``name`` ("sgd" or "adam")."""
    if name == "sgd":
        return SGD(backend, lr)
    if name == "adam":
        return Adam(backend, lr, betas, eps)
    raise ValueError(f"unknown optimizer {name!r}; expected 'sgd' or 'adam'")

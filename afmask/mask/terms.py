"""The regularisers and the parametrisations of the noise scale, each value beside its gradient."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from afmask.backend import Backend


class ZeroScaleError(ValueError):
    """The regulariser met m = 0 (its logarithm is -inf there)."""


def sqnorm(B: Backend, m: Any, accumulation: str = "float64") -> float:
    """``||m||^2``: in float64, or as ArrayFire's CPU ``af::norm`` gives it (a sequential float32 sum, column-major)."""
    if accumulation == "float32":
        flat = B.to_numpy(m).astype(np.float32).ravel(order="F")
        return float(np.cumsum(flat * flat, dtype=np.float32)[-1])  # cumsum adds one element at a time
    return B.total64(m, squares=True)


def regularizer(B: Backend, kind: str, m: Any, lam: float, m_sqnorm: float) -> tuple[float, Any]:
    """Value and gradient d/dm of the regulariser.

    ``log_norm`` (the note): ``R = -lam * log(||m||^2)``, ``dR/dm = -2 lam m / ||m||^2``.
    ``mean_log`` (Guan et al.): ``R = -lam * mean(log(m^2))``, ``dR/dm = -2 lam / (N m)``; needs m != 0.
    """
    if kind == "log_norm":
        if m_sqnorm <= 0:
            raise ZeroScaleError("the log-norm regulariser needs m != 0 somewhere (||m|| = 0)")
        return -lam * math.log(m_sqnorm), m * np.float32(-2.0 * lam / m_sqnorm)
    if kind == "mean_log":
        n = float(np.prod(B.dims(m)))
        absm = B.abs(m)
        value = -lam * float(B.scalar(B.mean(B.log(B.astype(absm, np.float64)), [0, 1]))) * 2.0
        # a zero (log 0 = -inf) or NaN makes the mean non-finite: only then is the minimum looked at (a
        # reduction that cost a millisecond an iteration on ArrayFire's CPU backend)
        if not math.isfinite(value) and not B.scalar(B.min(B.min(absm, 0), 1)) > 0:
            raise ZeroScaleError("the mean-log regulariser needs m != 0 everywhere; use a positive parametrisation")
        return value, np.float32(-2.0 * lam / n) / m
    raise ValueError(f"unknown regulariser {kind!r}")


def regularizer_grad_norm(B: Backend, kind: str, m: Any, lam: float, m_sqnorm: float, grad: Any) -> float:
    """``||dR/dm||``; analytic for the log-norm regulariser (``2 lam / ||m||``)."""
    if kind == "log_norm":
        return 2.0 * lam / math.sqrt(m_sqnorm)
    return math.sqrt(B.total64(grad, squares=True))


def scale_from(B: Backend, kind: str, theta: Any) -> Any:
    """The noise scale m from the optimised parameter theta."""
    if kind == "raw":
        return theta
    if kind == "abs":
        return B.abs(theta)
    if kind == "exp":
        return B.exp(theta)
    if kind == "softplus":
        # log(1 + e^t) = max(t, 0) + log1p(e^-|t|): no overflow for large t
        return B.maximum(theta, 0.0) + B.log1p(B.exp(-B.abs(theta)))
    raise ValueError(f"unknown parametrisation {kind!r}")


def scale_grad(B: Backend, kind: str, theta: Any, m: Any, grad_m: Any) -> Any:
    """Chain rule: ``dL/dtheta`` from ``dL/dm``."""
    if kind == "raw":
        return grad_m
    if kind == "abs":
        return grad_m * B.sign(theta)
    if kind == "exp":
        return grad_m * m
    if kind == "softplus":
        return grad_m * B.sigmoid(theta)
    raise ValueError(f"unknown parametrisation {kind!r}")


def theta_for(kind: str, m0: float) -> float:
    """The parameter value that gives the noise scale ``m0``."""
    if kind in ("raw", "abs"):
        return m0
    if kind == "exp":
        return math.log(m0)
    if kind == "softplus":
        return m0 + math.log(-math.expm1(-m0))  # inverse of log(1 + e^t)
    raise ValueError(f"unknown parametrisation {kind!r}")


def bound_theta(B: Backend, kind: str, theta: Any, m_max: float) -> Any:
    """Project theta so that ``|m| <= m_max``."""
    if kind in ("raw", "abs"):
        return B.minimum(B.maximum(theta, -m_max), m_max)
    return B.minimum(theta, theta_for(kind, m_max))  # exp and softplus are increasing

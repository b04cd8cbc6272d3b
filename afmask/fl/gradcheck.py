"""A reusable gradient check: autograd against central finite differences in float64."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from afmask.fl.variable import Variable


@dataclass
class GradcheckReport:
    """Worst disagreement between analytic and numeric gradients, per input."""

    max_abs_error: list[float] = field(default_factory=list)
    max_rel_error: list[float] = field(default_factory=list)
    checked: list[int] = field(default_factory=list)
    passed: bool = True

    def __str__(self) -> str:
        rows = [
            f"input {i}: {n} elements, max abs err {a:.3g}, max rel err {r:.3g}"
            for i, (n, a, r) in enumerate(zip(self.checked, self.max_abs_error, self.max_rel_error))
        ]
        return ("PASSED" if self.passed else "FAILED") + "\n" + "\n".join(rows)


def gradcheck(
    fn: Callable[..., Variable],
    inputs: Sequence[Variable],
    *,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    max_elements: int | None = 200,
    seed: int = 0,
) -> GradcheckReport:
    """Compare ``fn``'s autograd gradients with central differences of ``sum(fn(*inputs) * r)`` for a random ``r``.

    Inputs must be float64 Variables; those with calcGrad are checked, at most
    ``max_elements`` randomly chosen elements each. An element passes when
    ``|analytic - numeric| <= atol + rtol * max|numeric|``.
    """
    for i, v in enumerate(inputs):
        if v.type() != np.float64:
            raise TypeError(f"gradcheck needs float64 inputs; input {i} is {v.type()}")
    rng = np.random.default_rng(seed)
    backend = inputs[0].backend
    out = fn(*inputs)
    proj_host = rng.standard_normal(out.dims()).reshape(out.host().shape)
    proj = Variable(backend.asarray(proj_host), False)
    for v in inputs:
        v.zeroGrad()
    out.backward(proj)

    def objective(host_values: list[np.ndarray]) -> float:
        fresh = [Variable(backend.asarray(h), False) for h in host_values]
        return float(np.sum(fn(*fresh).host() * proj_host))

    hosts = [v.host().copy() for v in inputs]
    report = GradcheckReport()
    for i, v in enumerate(inputs):
        if not v.isCalcGrad():
            continue
        analytic = v.grad().host().reshape(-1, order="F")
        flat = hosts[i].reshape(-1, order="F")
        n = flat.size
        chosen = np.arange(n) if max_elements is None or n <= max_elements else rng.choice(n, max_elements, replace=False)
        numeric = np.empty(len(chosen))
        for k, j in enumerate(chosen):
            saved = flat[j]
            step = eps * max(1.0, abs(saved))
            flat[j] = saved + step
            hosts[i] = flat.reshape(hosts[i].shape, order="F")
            plus = objective(hosts)
            flat[j] = saved - step
            hosts[i] = flat.reshape(hosts[i].shape, order="F")
            minus = objective(hosts)
            flat[j] = saved
            hosts[i] = flat.reshape(hosts[i].shape, order="F")
            numeric[k] = (plus - minus) / (2 * step)
        err = np.abs(analytic[chosen] - numeric)
        scale = np.max(np.abs(numeric)) if numeric.size else 0.0
        report.checked.append(len(chosen))
        report.max_abs_error.append(float(err.max(initial=0.0)))
        report.max_rel_error.append(float(err.max(initial=0.0) / scale) if scale > 0 else float(err.max(initial=0.0)))
        if np.any(err > atol + rtol * scale):
            report.passed = False
    return report

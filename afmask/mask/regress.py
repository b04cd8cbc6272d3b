"""Replay one iteration of the original C++ loop from an ``af::saveArray`` dump and compare every tensor.

Dump keys (ArrayFire dims; all but the first five are optional and compared when present):

==============  ===========  ==========================================================
key             dims         meaning
==============  ===========  ==========================================================
fft             2K x T       clean interleaved FFT (row 2k Re, 2k+1 Im)
m               2K x T       noise scale before the step
eps             2K x T       the noise drawn this iteration (fl::normal(dims, fftstdev, 0))
lambda          1            regulariser weight
lr              1            learning rate
variant         1            post-processing: 0 letters (default), 1 pitfall
input           T x K        normalised network input (trueInput)
output          31 x T'      network output
pre_output      P x T'       post-processed clean output (P = 26 letters, 31 pitfall)
dy              T x K        trueInput.grad() after myloss.backward()
mgrad           2K x T       hand gradient including the regulariser
m_next          2K x T       m - lr * mgrad
loss            1            f_loss - lambda * log(||m||^2)
f_loss          1            ||pre_output - post(output)||_F^2
==============  ===========  ==========================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from afmask.backend import get_backend
from afmask.fl import Variable
from afmask.fl.nn import Module
from afmask.mask import terms
from afmask.mask.objective import MaskObjective, fortran
from afmask.mask.postprocess import postprocess

REQUIRED = ("fft", "m", "eps", "lambda", "lr")
COMPARED = ("input", "output", "pre_output", "dy", "mgrad", "m_next", "loss", "f_loss")
VARIANT_CODES = {0: "letters", 1: "pitfall"}

#: Default tolerance: max|got - dump| <= RTOL * max|dump| per tensor. By default each stage is replayed from
#: the dump's own inputs to that stage (the input for the network, dy for the hand gradient, ...), so an error
#: shows at the stage that made it and rounding does not compound through the network; what is left is float32
#: rounding in another summation order (BLAS, reductions): a few 1e-6 of each tensor's scale on the C++ fixture.
#: The global mean/stdev and ||m|| are summed as ArrayFire's CPU backend does (float32, one element at a time);
#: summing them in float64 instead (--stats float64 --norm float64) moves dy and mgrad by ~1.5e-4 of their
#: maxima on the fixture (its af::norm is +3.9e-4 off the exact value), and dumps from ArrayFire's CUDA or
#: OpenCL backends, which reduce in trees, differ by as much: this tolerance admits both.
RTOL = 5e-4


def check_rtol(rtol: Any, name: str = "rtol") -> float:
    """``rtol`` as a float; ValueError naming ``name`` unless it is a finite number >= 0."""
    try:
        value = float(rtol)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(rtol, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} {rtol!r}: the tolerance must be a finite number >= 0, a fraction of each tensor's "
                         f"largest value (default {RTOL:g}; 0 asks for bit-equal tensors)")
    return value


@dataclass
class TensorCheck:
    """One tensor compared: worst absolute and relative error and the verdict."""

    key: str
    max_abs: float
    max_rel: float
    scale: float
    passed: bool

    def line(self) -> str:
        """A table row."""
        return f"{self.key:<11} {self.max_abs:>12.4g} {self.max_rel:>12.4g} {self.scale:>12.4g}  {'pass' if self.passed else 'FAIL'}"


def _scalar(dump: dict, key: str) -> float:
    v = np.asarray(dump[key]).reshape(-1)
    if v.size != 1:
        raise ValueError(f"dump key {key!r} must hold one value, got {v.size}")
    return float(v[0])


def replay(
    dump: dict,
    model: Module,
    rtol: float = RTOL,
    stats: str = "arrayfire_cpu",
    norm_accumulation: str = "float32",
    stagewise: bool = True,
) -> tuple[list[TensorCheck], dict]:
    """Recompute one C++ iteration from the dump's inputs; compare each tensor the dump holds.

    With ``stagewise`` each stage starts from the dump's own tensors where present (input -> output and dy,
    output -> f_loss, dy -> mgrad, mgrad -> m_next, f_loss -> loss); otherwise the whole chain runs from
    fft, m and eps alone. ``stats="arrayfire_cpu"`` and ``norm_accumulation="float32"`` reproduce ArrayFire's
    CPU float32 accumulation. Returns the checks and the recomputed tensors.
    """
    check_rtol(rtol, "rtol")
    missing = [k for k in REQUIRED if k not in dump]
    if missing:
        raise ValueError(f"the dump lacks required key(s) {', '.join(missing)}; it needs {', '.join(REQUIRED)}")
    for key in REQUIRED + (("variant",) if "variant" in dump else ()):
        v = np.asarray(dump[key])
        if v.dtype.kind not in "fiub":
            raise ValueError(f"dump key {key!r} holds {v.dtype} values, expected real numbers")
        bad = int(np.count_nonzero(~np.isfinite(v))) if v.dtype.kind == "f" else 0
        if bad:
            what = f"is {v.reshape(-1)[0]}" if v.size == 1 else f"holds {bad} NaN or infinite value(s) of {v.size}"
            raise ValueError(f"dump key {key!r} {what}: the C++ iteration that wrote it had already diverged; "
                             "dump an earlier iteration, or one with a smaller learning rate or lambda")
    fft = np.asarray(dump["fft"], np.float32)
    for key in ("m", "eps"):
        if np.shape(dump[key]) != fft.shape:
            raise ValueError(f"dump key {key!r} has dims {np.shape(dump[key])}, expected the fft's {fft.shape}")
    code = _scalar(dump, "variant") if "variant" in dump else 0
    if code not in VARIANT_CODES:
        raise ValueError(f"dump key 'variant' must be 0 (letters) or 1 (pitfall), got {code:g}")
    code = int(code)
    lam, lr = _scalar(dump, "lambda"), _scalar(dump, "lr")
    B = get_backend()
    obj = MaskObjective(fft, model, VARIANT_CODES[code], noise="absolute", stats=stats, backend=B)

    def given(key: str, mine: Any) -> Any:
        """The dump's tensor for the next stage (stagewise), else this replay's own."""
        if stagewise and key in dump:
            return B.asarray(np.asarray(dump[key], np.float32))
        return mine

    m = B.asarray(np.asfortranarray(dump["m"], np.float32))
    eps = B.asarray(np.asfortranarray(dump["eps"], np.float32))
    m = fortran(B, m)
    eps = fortran(B, eps)
    got: dict[str, np.ndarray] = {}
    mag = obj.magnitudes(m, eps)
    inp, centred, stdev = obj.network_input(mag)
    got["input"] = B.to_numpy(inp)
    input_var = Variable._leaf(given("input", inp), B)
    input_var.setCalcGrad(True)
    output = model(input_var)
    got["output"] = output.host()
    got["pre_output"] = obj.pre.host()
    pre = Variable(given("pre_output", obj.pre.array()), False)
    # df/d(output), evaluated at the dump's output (stagewise), then back through the network from its input:
    # in the pitfall variant f compares large unsquashed outputs, so evaluating it at our own float32 output
    # would amplify rounding through the cancellation in pre - cur
    out_point = Variable(given("output", output.array()), True)
    f = obj.distance(postprocess(out_point, obj.variant), 1, pre)
    got["f_loss"] = np.array([f.scalar()], np.float32)
    f.backward()
    output.backward(out_point.grad())
    got["dy"] = input_var.grad().host()
    xgrad = obj.normalisation_backward(given("dy", input_var.grad().array()), centred, stdev)
    g_data, _ = obj.magnitude_backward(xgrad, eps, m, mag)
    m_host = B.to_numpy(m)
    m_sq = terms.sqnorm(B, m, norm_accumulation)
    got["mgrad"] = B.to_numpy(g_data) - np.float32(2 * lam) * m_host / np.float32(m_sq)
    mgrad_used = B.to_numpy(given("mgrad", B.asarray(got["mgrad"])))
    got["m_next"] = m_host - np.float32(lr) * mgrad_used
    f_used = float(np.asarray(B.to_numpy(given("f_loss", B.asarray(got["f_loss"])))).reshape(-1)[0])
    got["loss"] = np.array([f_used - lam * math.log(m_sq)], np.float32)
    checks = []
    for key in COMPARED:
        if key not in dump:
            continue
        want = np.asarray(dump[key], np.float64)
        mine = np.asarray(got[key], np.float64)
        if mine.shape != want.shape:
            raise ValueError(f"dump key {key!r} has dims {want.shape}, the replay gives {mine.shape}: wrong model or arch?")
        err = np.abs(mine - want)
        scale = float(np.max(np.abs(want)))
        max_abs = float(err.max())
        rel = max_abs / scale if scale > 0 else max_abs
        checks.append(TensorCheck(key, max_abs, rel, scale, bool(np.all(np.isfinite(mine))) and max_abs <= rtol * scale + 1e-30))
    return checks, got


def format_report(checks: list[TensorCheck], rtol: float) -> str:
    """The per-tensor table and a verdict line."""
    head = f"{'tensor':<11} {'max abs err':>12} {'max rel err':>12} {'max |dump|':>12}  verdict (rtol {rtol:g} of max |dump|)"
    failed = [c.key for c in checks if not c.passed]
    verdict = "PASS: every tensor within tolerance" if not failed else f"FAIL: {', '.join(failed)} out of tolerance"
    return "\n".join([head] + [c.line() for c in checks] + [verdict])

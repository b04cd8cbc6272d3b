"""afmask.fl against real flashlight: outputs and input gradients computed by flashlight v0.2 on ArrayFire 3.9.

Tolerance: float32 rounding. Reductions may sum in another order than ArrayFire,
so values agree to a few float32 ulps of the largest magnitude involved:
|got - want| <= 1e-5 * max|want| + 1e-6.
"""

import numpy as np
import pytest

from afmask import fl
from afmask.fl import Variable, seq, span
from afmask.io import read_arrays


@pytest.fixture(scope="module")
def F(shared):
    return read_arrays(shared / "fixtures" / "flashlight" / "flashlight_functions.af")


def close(got, want):
    want = np.asarray(want)
    got = np.asarray(got).reshape(want.shape)
    tol = 1e-5 * float(np.max(np.abs(want))) + 1e-6
    assert np.max(np.abs(got.astype(np.float64) - want)) <= tol, f"max err {np.max(np.abs(got - want))} > {tol}"


# name -> (inputs, function); each input gets a gradient, compared with <name>_gin (or _gin0, _gin1)
CASES = {
    "var1": (["x"], lambda x: fl.var(x, [1])),
    "var1_biased": (["x"], lambda x: fl.var(x, [1], True)),
    "var01": (["x"], lambda x: fl.var(x, [0, 1])),
    "norm01": (["x"], lambda x: fl.norm(x, [0, 1])),
    "norm1": (["x"], lambda x: fl.norm(x, [1])),
    "softmax0": (["x"], lambda x: fl.softmax(x, 0)),
    "softmax1": (["x"], lambda x: fl.softmax(x, 1)),
    "tileAs": (["y31", "x"], lambda y, x: fl.tileAs(y, x)),
    "sumAs": (["x", "y31"], lambda x, y: fl.sumAs(x, y)),
    "matmul": (["a", "b"], fl.matmul),
    "matmulTN": (["aT", "b"], fl.matmulTN),
    "matmulNT": (["a", "bT"], fl.matmulNT),
    "sqrt": (["xpos"], fl.sqrt),
    "stdnorm": (["x"], lambda x: x / fl.tileAs(fl.sqrt(fl.var(x, [1])), x)),
    "letters": (["x"], lambda x: fl.softmax((x / fl.tileAs(fl.sqrt(fl.var(x, [1])), x))(seq(2, 27), span), 0)),
    "index": (["x"], lambda x: x(seq(2, 27), span)),
    "reorder": (["x4"], lambda x: fl.reorder(x, 2, 0, 3, 1)),
    "moddims_view": (["xTK"], lambda x: fl.moddims(x, (-1, 1, 31, 0))),
    "moddims": (["x"], lambda x: fl.moddims(x, (62, 20))),
}
# inputs whose gradient flashlight did not record (only used as a dims reference)
NO_GRAD = {("tileAs", "x"), ("sumAs", "y31")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_and_backward_match_flashlight(F, backend, name):
    keys, fn = CASES[name]
    inputs = [Variable(backend.asarray(F[k]), (name, k) not in NO_GRAD) for k in keys]
    out = fn(*inputs)
    close(out.host(), F[f"{name}_out"])
    out.backward(Variable(backend.asarray(F[f"{name}_gout"]), False))
    graded = [(k, v) for k, v in zip(keys, inputs) if (name, k) not in NO_GRAD]
    for i, (k, v) in enumerate(graded):
        want = F[f"{name}_gin"] if len(graded) == 1 else F[f"{name}_gin{i}"]
        close(v.grad().host(), want)


def test_arrayfire_reductions(F):
    x = F["x"].astype(np.float64)
    close(np.float32(x.std()), F["af_stdev_x"])  # af::stdev divides by N
    close(np.float32(x.mean()), F["af_mean_x"])
    close(np.sqrt((x * x).sum()), F["af_norm_x"])  # af::norm is Frobenius
    close(np.float32(x.var()), F["af_var_x_default"])  # AF 3.9 default var: population

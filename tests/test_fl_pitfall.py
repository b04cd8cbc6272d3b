"""The indexed-assignment pitfall: `v[idx] = w` does nothing, as `v(idx) = w;` in flashlight."""

import warnings

import numpy as np
import pytest

from afmask import fl
from afmask.fl import IndexAssignmentError, IndexAssignmentWarning, Variable, gradcheck, seq, span


def zero_weight(backend):
    wgt = np.eye(31, dtype=np.float32)
    for i in (0, 1, 28, 29, 30):
        wgt[i, i] = 0
    return Variable(backend.asarray(wgt), True)


def test_note_first_block_ported_line_by_line_loses_the_softmax(shared, backend):
    from afmask.io import read_arrays

    F = read_arrays(shared / "fixtures" / "flashlight" / "flashlight_functions.af")
    addoutput = Variable(backend.asarray(F["x"]), True)  # fl::Variable addoutput(output_arr, true);
    before = addoutput.host().copy()
    tmp = addoutput(seq(2, 27), span, span, span)  # auto tmp = addoutput(af::seq(2,27), af::span, ...);
    softmax_tmp = fl.softmax(tmp, 0)  # auto softmax_tmp = fl::softmax(tmp, 0);
    with pytest.warns(IndexAssignmentWarning) as record:
        addoutput[seq(2, 27), span, span, span] = softmax_tmp  # addoutput(af::seq(2,27), ...) = softmax_tmp;
    addweight = zero_weight(backend)  # wgt = af::identity(31, 31) with 5 zeros; fl::Variable(wgt, true)
    softmax_add_output = fl.matmul(addweight, addoutput)  # fl::matmul(addweight, addoutput)

    # the warning names this file and line, and the function to use instead
    message = str(record[0].message)
    assert __file__ in message and "assignIndex" in message
    assert record[0].filename == __file__
    # nothing reached addoutput: identical to before, exactly as flashlight's replay
    np.testing.assert_array_equal(addoutput.host(), before)
    np.testing.assert_array_equal(F["pitfall_addoutput_after"], F["pitfall_addoutput_before"])
    np.testing.assert_array_equal(addoutput.host(), F["pitfall_addoutput_after"])
    assert int(F["pitfall_unchanged_flag"][0]) == 1
    np.testing.assert_allclose(softmax_tmp.host(), F["pitfall_softmax_tmp"], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(addweight.host(), F["pitfall_zero_wgt"])
    np.testing.assert_allclose(softmax_add_output.host(), F["pitfall_zeroed"], rtol=1e-6, atol=1e-6)
    softmax_add_output.backward(Variable(backend.asarray(F["pitfall_zeroed_gout"]), False))
    np.testing.assert_allclose(addoutput.grad().host(), F["pitfall_zeroed_gin"], rtol=1e-6, atol=1e-6)
    # the lost softmax: rows 2..27 of the result are the raw outputs, not probabilities
    assert not np.allclose(softmax_add_output.host()[2:28].sum(axis=0), 1.0)


def test_assign_index_keeps_the_softmax_and_its_gradient_checks(backend):
    rng = np.random.default_rng(0)
    x = Variable(backend.asarray(rng.standard_normal((31, 12))), True)

    def corrected(out):
        replaced = fl.assignIndex(out, fl.softmax(out(seq(2, 27), span), 0), seq(2, 27), span)
        wgt = zero_weight(backend).astype(np.float64)
        return fl.matmul(wgt, replaced)

    y = corrected(x).host()
    np.testing.assert_allclose(y[2:28].sum(axis=0), 1.0, rtol=1e-12)
    assert np.all(y[[0, 1, 28, 29, 30]] == 0)
    report = gradcheck(corrected, [x])
    assert report.passed, str(report)


def test_strict_mode_raises(backend, monkeypatch):
    v = Variable(backend.asarray(np.zeros((31, 4), np.float32)), True)
    w = Variable(backend.asarray(np.ones((26, 4), np.float32)), False)
    with fl.strict():
        with pytest.raises(IndexAssignmentError, match="assignIndex"):
            v[seq(2, 27), span] = w
    monkeypatch.setenv("AFMASK_STRICT", "1")
    with pytest.raises(IndexAssignmentError):
        v[0] = w
    with fl.strict(False), warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(IndexAssignmentWarning):
            v[0] = w
    np.testing.assert_array_equal(v.host(), 0)

"""Post-processing of the network output (31 x T' [x S]) before the distance, as named variants."""

from __future__ import annotations

import warnings

import numpy as np

from afmask import fl
from afmask.fl import IndexAssignmentWarning, Variable, seq, span

#: Rows the original treats as useless: `|`, `'`, the two repetition labels and the blank.
ZEROED_ROWS = (0, 1, 28, 29, 30)


def per_token_scaled(output: Variable) -> Variable:
    """Each token's row divided by its own stdev over time: ``output / tileAs(sqrt(var(output, {1})), output)``."""
    return output / fl.tileAs(fl.sqrt(fl.var(output, [1])), output)


def letters(output: Variable) -> Variable:
    """The note's second version: per-token scaling, rows 2..27, softmax over the 26 letters per frame -> 26 x T'."""
    tmp = per_token_scaled(output)(seq(2, 27), span, span, span)
    return fl.softmax(tmp, 0)


def zero_weight(backend, dtype=np.float32):
    """``af::identity(31, 31)`` with (0,0), (1,1), (28,28), (29,29), (30,30) set to 0."""
    wgt = np.eye(31, dtype=dtype)
    for i in ZEROED_ROWS:
        wgt[i, i] = 0
    return backend.asarray(wgt)


def pitfall(output: Variable) -> Variable:
    """The note's first version as committed: the softmax assigned back is lost, as in C++; 31 x T' with 5 rows zeroed.

    The assignment runs exactly as ported (and does nothing, like ``v(idx) = w;``
    in flashlight); its warning is silenced here because losing the softmax is
    the point of this variant.
    """
    addoutput = per_token_scaled(output)
    tmp = addoutput(seq(2, 27), span, span, span)
    softmax_tmp = fl.softmax(tmp, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IndexAssignmentWarning)
        addoutput[seq(2, 27), span, span, span] = softmax_tmp
    addweight = Variable(zero_weight(output.backend, output.type()), False)
    return fl.matmul(addweight, addoutput)


def posteriors(output: Variable) -> Variable:
    """The token posteriors: softmax over all 31 tokens per frame -> 31 x T'."""
    return fl.softmax(output, 0)


VARIANTS = {"letters": letters, "pitfall": pitfall, "posteriors": posteriors}


def postprocess(output: Variable, variant: str) -> Variable:
    """Apply the named post-processing variant to a 31 x T' [x S] output."""
    try:
        fn = VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown post-processing variant {variant!r}; expected one of {', '.join(VARIANTS)}") from None
    if output.dims(0) != 31:
        raise ValueError(f"post-processing expects 31 token rows, got output dims {output.dims()}")
    return fn(output)

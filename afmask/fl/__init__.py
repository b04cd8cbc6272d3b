"""A flashlight-compatible autograd on afmask's backends.

Names mirror flashlight (``fl::Variable``, ``fl::softmax``, ``tileAs``, ...) so
that C++ lines port one to one::

    from afmask.fl import Variable, seq, span, softmax, var, norm, tileAs, matmul, sqrt
    output = Variable(logits, True)                     # 31 x T
    scaled = output / tileAs(sqrt(var(output, [1])), output)
    letters = softmax(scaled(seq(2, 27), span), 0)     # 26 x T

``v[idx] = w`` does nothing, exactly as ``v(idx) = w;`` in flashlight, and
warns with :class:`IndexAssignmentWarning`; use :func:`assignIndex`.
"""

from afmask.backend.indexing import seq, span
from afmask.fl import nn
from afmask.fl.functions import (
    AVG_EXCLUDE_PADDING,
    AVG_INCLUDE_PADDING,
    MAX,
    abs,  # noqa: F401 - an attribute only (shadows a builtin)
    add,
    assignIndex,
    clamp,
    concatenate,
    conv2d,
    div,
    dropout,
    elu,
    exp,
    flat,
    index,
    linear,
    log,
    log1p,
    logSoftmax,
    matmul,
    matmulNT,
    matmulTN,
    max,  # noqa: F401 - an attribute only (shadows a builtin)
    mean,
    min,  # noqa: F401 - an attribute only (shadows a builtin)
    moddims,
    mul,
    negate,
    norm,
    normal,
    padding,
    pool2d,
    pow,  # noqa: F401 - an attribute only (shadows a builtin)
    reciprocal,
    relu,
    reorder,
    sigmoid,
    softmax,
    sqrt,
    sub,
    sum,  # noqa: F401 - an attribute only (shadows a builtin)
    sumAs,
    tanh,
    tile,
    tileAs,
    transpose,
    uniform,
    var,
)
from afmask.fl.gradcheck import GradcheckReport, gradcheck
from afmask.fl.pitfall import IndexAssignmentError, IndexAssignmentWarning, strict
from afmask.fl.variable import Variable

# Builtin-shadowing names (abs, max, min, pow, sum) are attributes only, so `import *` cannot hide builtins.
__all__ = [
    "AVG_EXCLUDE_PADDING", "AVG_INCLUDE_PADDING", "MAX", "GradcheckReport", "IndexAssignmentError", "IndexAssignmentWarning", "Variable", "add", "assignIndex",
    "clamp", "concatenate", "conv2d", "div", "dropout", "elu", "exp", "flat", "gradcheck", "index", "linear", "log", "log1p",
    "logSoftmax", "matmul", "matmulNT", "matmulTN", "mean", "moddims", "mul", "negate", "nn", "norm", "normal", "padding", "pool2d",
    "reciprocal", "relu", "reorder", "seq", "sigmoid", "softmax", "span", "sqrt", "strict", "sub", "sumAs",
    "tanh", "tile", "tileAs", "transpose", "uniform", "var",
]

"""wav2letter ``.arch`` files: parse each line into a layer spec and build the flashlight network.

The syntax is wav2letter's (``src/module/W2lModule.cpp``, flashlight's
``SequentialBuilder``): one layer per line, a code then integer or float
arguments; ``NFEAT`` and ``NLABEL`` are replaced by the feature and label
counts; empty lines and lines starting with ``#`` are skipped (afmask also
drops a trailing ``# comment``). Supported codes and their forms are in
:data:`LAYER_FORMS`. Any problem is an :class:`ArchError` naming the file,
the line number and the expected form.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from afmask.fl import nn

#: The form of every supported layer line ([...] is optional).
LAYER_FORMS: dict[str, str] = {
    "V": "V D0 D1 D2 D3  (view; -1 infers a dim, 0 copies the input's)",
    "RO": "RO D0 D1 D2 D3  (reorder; a permutation of 0 1 2 3)",
    "PD": "PD VAL P0B P0A [P1B P1A [P2B P2A [P3B P3A]]]  (padding: value, then before/after pairs per dim)",
    "C": "C NIN NOUT KW SX [PX [DX [BIAS [GROUPS]]]]  (1-D conv over dim 0; PX -1 is SAME)",
    "C1": "C1 NIN NOUT KW SX [PX [DX [BIAS [GROUPS]]]]  (same as C)",
    "C2": "C2 NIN NOUT KW KH SX SY [PX [PY [DX [DY]]]]  (2-D conv; PX/PY -1 is SAME)",
    "L": "L NIN NOUT [BIAS]  (linear; BIAS 0 drops the bias)",
    "LN": "LN AXIS [AXIS [AXIS]]  (layer norm over the given dims)",
    "WN": "WN DIM LAYER  (weight norm of a C, C1, C2 or L layer; norm over all dims but DIM)",
    "DO": "DO P  (dropout with probability P; identity in evaluation)",
    "M": "M WX WY SX SY [PX [PY]]  (max pooling; PX/PY -1 is SAME)",
    "A": "A WX WY SX SY [PX [PY]]  (average pooling, padding counted)",
    "R": "R  (ReLU)",
    "HT": "HT  (hard tanh)",
    "T": "T  (tanh)",
    "ELU": "ELU",
    "LG": "LG  (log)",
    "SH": "SH [BETA]  (swish: x * sigmoid(BETA * x))",
    "GLU": "GLU DIM  (gated linear unit along DIM)",
    "LSM": "LSM DIM  (log-softmax along DIM)",
}

#: The original experiment's network (wav2letter ``tutorials/1-librispeech_clean/network.arch``); {C} is the width.
ORIGINAL_ARCH = (
    "V -1 1 NFEAT 0\n"
    "C2 NFEAT {C} 8 1 2 1 -1 -1\n"
    "R\n"
    + "C2 {C} {C} 8 1 1 1 -1 -1\nR\n" * 7
    + "RO 2 0 3 1\n"
    "L {C} {C2}\n"
    "R\n"
    "L {C2} NLABEL\n"
)


def original_arch(width: int = 256) -> str:
    """The original network's .arch text with ``width`` channels (256 in the original; the last hidden layer has 2x)."""
    return ORIGINAL_ARCH.format(C=int(width), C2=2 * int(width))


#: wav2letter codes that afmask recognises but does not implement.
UNSUPPORTED = ("AC", "TDS", "E", "BN", "PR", "R6", "RNN", "GRU", "LSTM", "RES", "SKIP", "SKIPL", "SAUG", "TR", "CFR",
               "POSEMB", "SINPOSEMB", "ADAPTIVEE", "SL2P", "LC", "LPF", "WF")


class ArchError(ValueError):
    """A line of an .arch file that cannot be parsed; the message names the file, the line and the expected form."""

    def __init__(self, filename: str, lineno: int, line: str, message: str):
        self.filename, self.lineno, self.line = filename, lineno, line
        super().__init__(f"{filename}:{lineno}: {message} (line: {line!r})")


@dataclass(frozen=True)
class LayerSpec:
    """One layer line: its code, typed arguments, nested layer (WN only), and where it came from."""

    code: str
    args: tuple[Any, ...]
    filename: str
    lineno: int
    text: str
    child: "LayerSpec | None" = field(default=None, compare=False)


# -- argument checking --------------------------------------------------------------------------
def _fail(where: tuple[str, int, str], message: str) -> ArchError:
    return ArchError(where[0], where[1], where[2], message)


def _count(code: str, args: Sequence[str], lo: int, hi: int | None, where, parity: int | None = None) -> None:
    n = len(args)
    bad = n < lo or (hi is not None and n > hi) or (parity is not None and n % 2 != parity)
    if bad:
        if hi is None:
            want = f"at least {lo} argument{'s' if lo != 1 else ''}"
        elif lo == hi:
            want = f"{lo} argument{'s' if lo != 1 else ''}" if lo else "no arguments"
        else:
            want = f"{lo} to {hi} arguments" + (" (an odd number)" if parity == 1 else "")
        raise _fail(where, f"{code} takes {want}, got {n}; expected form: {LAYER_FORMS[code]}")


def _int(code: str, tok: str, name: str, where) -> int:
    try:
        return int(tok)
    except ValueError:
        raise _fail(where, f"{code}: {name} must be an integer, got {tok!r}; expected form: {LAYER_FORMS[code]}") from None


def _float(code: str, tok: str, name: str, where) -> float:
    try:
        value = float(tok)
    except ValueError:
        raise _fail(where, f"{code}: {name} must be a number, got {tok!r}; expected form: {LAYER_FORMS[code]}") from None
    if not np.isfinite(value) and code != "PD":
        raise _fail(where, f"{code}: {name} must be finite, got {tok!r}")
    return value


def _positive(code: str, values: dict[str, int], where) -> None:
    for name, v in values.items():
        if v < 1:
            raise _fail(where, f"{code}: {name} must be >= 1, got {v}; expected form: {LAYER_FORMS[code]}")


def _padding_value(code: str, name: str, v: int, where) -> None:
    if v < -1:
        raise _fail(where, f"{code}: {name} must be >= 0 or -1 (SAME), got {v}")


def _dim(code: str, v: int, where) -> None:
    if not 0 <= v < 4:
        raise _fail(where, f"{code}: DIM must be 0..3, got {v}; expected form: {LAYER_FORMS[code]}")


def _check_args(code: str, toks: list[str], where) -> tuple[Any, ...]:
    """Typed arguments of one layer line (after the code), checked against the code's form."""
    if code in ("V", "RO"):
        _count(code, toks, 4, 4, where)
        dims = tuple(_int(code, t, f"D{i}", where) for i, t in enumerate(toks))
        if code == "RO" and sorted(dims) != [0, 1, 2, 3]:
            raise _fail(where, f"RO: dims must be a permutation of 0 1 2 3, got {' '.join(toks)}")
        if code == "V" and (any(d < -1 for d in dims) or dims.count(-1) > 1):
            raise _fail(where, f"V: dims must be positive, 0 (copy) or one -1 (infer), got {' '.join(toks)}")
        return dims
    if code == "PD":
        _count(code, toks, 3, 9, where, parity=1)
        val = _float(code, toks[0], "VAL", where)
        pads = [_int(code, t, "padding", where) for t in toks[1:]]
        if any(p < 0 for p in pads):
            raise _fail(where, f"PD: paddings must be >= 0, got {' '.join(toks[1:])}")
        return (val, tuple((pads[i], pads[i + 1]) for i in range(0, len(pads), 2)))
    if code in ("C", "C1"):
        _count(code, toks, 4, 8, where)
        nin, nout, kw, sx = (_int(code, t, n, where) for t, n in zip(toks, ("NIN", "NOUT", "KW", "SX")))
        px = _int(code, toks[4], "PX", where) if len(toks) > 4 else 0
        dx = _int(code, toks[5], "DX", where) if len(toks) > 5 else 1
        bias = _int(code, toks[6], "BIAS", where) if len(toks) > 6 else 1
        groups = _int(code, toks[7], "GROUPS", where) if len(toks) > 7 else 1
        _positive(code, {"NIN": nin, "NOUT": nout, "KW": kw, "SX": sx}, where)
        _padding_value(code, "PX", px, where)
        if dx != 1 or groups != 1:
            raise _fail(where, f"{code}: dilation {dx} / groups {groups}: afmask supports dilation 1 and groups 1 only")
        return (nin, nout, kw, sx, px, bool(bias))
    if code == "C2":
        _count(code, toks, 6, 10, where)
        names = ("NIN", "NOUT", "KW", "KH", "SX", "SY", "PX", "PY", "DX", "DY")
        vals = [_int(code, t, n, where) for t, n in zip(toks, names)]
        vals += [0, 0, 1, 1][len(vals) - 6:]
        nin, nout, kw, kh, sx, sy, px, py, dx, dy = vals
        _positive(code, dict(zip(names[:6], vals[:6])), where)
        _padding_value(code, "PX", px, where)
        _padding_value(code, "PY", py, where)
        if dx != 1 or dy != 1:
            raise _fail(where, f"C2: dilation {dx},{dy}: afmask supports dilation 1 only")
        return (nin, nout, kw, kh, sx, sy, px, py)
    if code == "L":
        _count(code, toks, 2, 3, where)
        nin, nout = _int(code, toks[0], "NIN", where), _int(code, toks[1], "NOUT", where)
        _positive(code, {"NIN": nin, "NOUT": nout}, where)
        return (nin, nout, not (len(toks) == 3 and toks[2] == "0"))
    if code == "LN":
        _count(code, toks, 1, 3, where)
        axes = tuple(_int(code, t, "AXIS", where) for t in toks)
        if any(not 0 <= a < 4 for a in axes) or len(set(axes)) != len(axes):
            raise _fail(where, f"LN: axes must be distinct dims in 0..3, got {' '.join(toks)}")
        return axes
    if code == "DO":
        _count(code, toks, 1, 1, where)
        p = _float(code, toks[0], "P", where)
        if not 0 <= p < 1:
            raise _fail(where, f"DO: P must be in [0, 1), got {toks[0]}")
        return (p,)
    if code in ("M", "A"):
        _count(code, toks, 4, 6, where)
        names = ("WX", "WY", "SX", "SY", "PX", "PY")
        vals = [_int(code, t, n, where) for t, n in zip(toks, names)]
        vals += [0, 0][len(vals) - 4:]
        _positive(code, dict(zip(names[:4], vals[:4])), where)
        _padding_value(code, "PX", vals[4], where)
        _padding_value(code, "PY", vals[5], where)
        return tuple(vals)
    if code in ("R", "HT", "T", "ELU", "LG"):
        _count(code, toks, 0, 0, where)
        return ()
    if code == "SH":
        _count(code, toks, 0, 1, where)
        return (_float(code, toks[0], "BETA", where) if toks else 1.0,)
    if code in ("GLU", "LSM"):
        _count(code, toks, 1, 1, where)
        d = _int(code, toks[0], "DIM", where)
        _dim(code, d, where)
        return (d,)
    raise AssertionError(code)  # every code of LAYER_FORMS but WN is handled above


def parse_line(text: str, filename: str = "<string>", lineno: int = 1) -> LayerSpec:
    """Parse one substituted, comment-free layer line into a :class:`LayerSpec`."""
    toks = text.split()
    where = (filename, lineno, text)
    if not toks:
        raise _fail(where, "empty layer line")
    code, rest = toks[0], toks[1:]
    if code == "WN":
        if len(rest) < 2:
            raise _fail(where, f"WN takes a DIM and a layer, got {len(rest)} argument(s); expected form: {LAYER_FORMS['WN']}")
        dim = _int("WN", rest[0], "DIM", where)
        _dim("WN", dim, where)
        try:
            child = parse_line(" ".join(rest[1:]), filename, lineno)
        except ArchError as e:  # show the whole WN line, not only the wrapped layer
            raise _fail(where, f"WN {dim}: {str(e).split(': ', 1)[1].rsplit(' (line: ', 1)[0]}") from None
        if child.code not in ("C", "C1", "C2", "L"):
            raise _fail(where, f"WN wraps a C, C1, C2 or L layer, got {child.code}; expected form: {LAYER_FORMS['WN']}")
        return LayerSpec("WN", (dim,), filename, lineno, text, child)
    if code in LAYER_FORMS:
        return LayerSpec(code, _check_args(code, rest, where), filename, lineno, text)
    if code in UNSUPPORTED:
        raise _fail(where, f"layer code {code!r} is a wav2letter layer that afmask does not implement; "
                           f"supported: {', '.join(LAYER_FORMS)} and WN")
    raise _fail(where, f"unknown layer code {code!r}; supported: {', '.join(LAYER_FORMS)} and WN")


def parse_arch_text(text: str, nfeat: int = 257, nlabel: int = 31, filename: str = "<string>") -> list[LayerSpec]:
    """Layer specs of an .arch text, with NFEAT and NLABEL replaced by ``nfeat`` and ``nlabel``."""
    specs = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().replace("NFEAT", str(int(nfeat))).replace("NLABEL", str(int(nlabel)))
        if not line or line.startswith("#"):
            continue
        line = line.split("#", 1)[0].strip()  # a trailing comment
        specs.append(parse_line(line, filename, lineno))
    if not specs:
        raise ArchError(filename, 0, "", "no layers found (the file is empty or all comments)")
    return specs


def read_arch(path: str | os.PathLike, nfeat: int = 257, nlabel: int = 31) -> list[LayerSpec]:
    """Layer specs of the .arch file at ``path`` (NFEAT/NLABEL substituted)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such .arch file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ArchError(path, 0, "", f"not a text file ({e})") from None
    return parse_arch_text(text, nfeat, nlabel, filename=path)


# -- building modules -----------------------------------------------------------------------------
def _conv1d(a, rng):
    nin, nout, kw, sx, px, bias = a
    return nn.Conv2D(nin, nout, kw, 1, sx, 1, px, 0, bias=bias, rng=rng)


_BUILDERS: dict[str, Callable[[tuple, np.random.Generator], nn.Module]] = {
    "V": lambda a, rng: nn.View(a),
    "RO": lambda a, rng: nn.Reorder(*a),
    "PD": lambda a, rng: nn.Padding(a[1], a[0]),
    "C": _conv1d,
    "C1": _conv1d,
    "C2": lambda a, rng: nn.Conv2D(*a, rng=rng),
    "L": lambda a, rng: nn.Linear(a[0], a[1], bias=a[2], rng=rng),
    "LN": lambda a, rng: nn.LayerNorm(list(a)),
    "DO": lambda a, rng: nn.Dropout(a[0], seed=int(rng.integers(0, 2**31 - 1))),
    "M": lambda a, rng: nn.Pool2D(*a, mode=nn.MAX),
    "A": lambda a, rng: nn.Pool2D(*a, mode=nn.AVG_INCLUDE_PADDING),
    "R": lambda a, rng: nn.ReLU(),
    "HT": lambda a, rng: nn.HardTanh(),
    "T": lambda a, rng: nn.Tanh(),
    "ELU": lambda a, rng: nn.ELU(),
    "LG": lambda a, rng: nn.Log(),
    "SH": lambda a, rng: nn.Swish(a[0]),
    "GLU": lambda a, rng: nn.GatedLinearUnit(a[0]),
    "LSM": lambda a, rng: nn.LogSoftmax(a[0]),
}


def build_layer(spec: LayerSpec, rng: np.random.Generator | None = None) -> nn.Module:
    """The afmask.fl module for one layer spec (random weights from ``rng``)."""
    rng = rng if rng is not None else np.random.default_rng()
    if spec.code == "WN":
        assert spec.child is not None
        return nn.WeightNorm(build_layer(spec.child, rng), spec.args[0])
    return _BUILDERS[spec.code](spec.args, rng)


def build_network(specs: Sequence[LayerSpec], rng: np.random.Generator | None = None) -> nn.Sequential:
    """A ``Sequential`` of the layers of ``specs``, in training mode, with random weights from ``rng``."""
    rng = rng if rng is not None else np.random.default_rng()
    return nn.Sequential([build_layer(s, rng) for s in specs])

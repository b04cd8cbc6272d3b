"""The wav2letter network: load an .arch file and its weights, run it forward and back to its input.

The network is an ``afmask.fl.nn.Sequential`` in evaluation mode, as
flashlight's ``network`` after ``network->eval()``: input ``T x K`` (ArrayFire
orientation, NumPy shape ``(T, K)``), output ``NLABEL x T'`` (``(31, T')``).
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import numpy as np

from afmask.fl import Variable, nn
from afmask.model.arch import build_network, read_arch
from afmask.model.params import load_params

#: Where the demo model lives inside the package.
DEMO_FOLDER = ("data", "demo")
DEMO_ARCH = "demo.arch"
DEMO_PARAMS = "demo_params.af"
#: Feature and label counts of the original model and of the demo model.
NFEAT = 257
NLABEL = 31


class DemoModelNotFound(FileNotFoundError):
    """The packaged demo model (afmask/data/demo) is not there."""


def demo_paths() -> tuple[Path, Path]:
    """Paths of the packaged demo model's .arch and params files; raises DemoModelNotFound if absent."""
    folder = importlib.resources.files("afmask").joinpath(*DEMO_FOLDER)
    paths = []
    for name in (DEMO_ARCH, DEMO_PARAMS):
        entry = folder.joinpath(name)
        if not entry.is_file():
            raise DemoModelNotFound(
                f"the demo model is not installed: {entry} is missing. Train and export it with "
                "examples/train_demo_model (export.py writes afmask/data/demo), or use your own model "
                "(CLI: --arch FILE --params FILE)"
            )
        paths.append(Path(os.fspath(entry)))
    return paths[0], paths[1]


def demo_model() -> nn.Sequential:
    """The packaged demo model (NFEAT 257, NLABEL 31), in evaluation mode."""
    arch, params = demo_paths()
    return load_model(arch, params)


def load_model(
    arch_path: str | os.PathLike,
    params_path: str | os.PathLike | None = None,
    nfeat: int = NFEAT,
    nlabel: int = NLABEL,
    seed: int = 0,
) -> nn.Sequential:
    """The network of an .arch file with weights from ``params_path`` (.af or .npz), or random ones from ``seed``; in evaluation mode."""
    specs = read_arch(arch_path, nfeat, nlabel)
    network = build_network(specs, np.random.default_rng(seed))
    if params_path is not None:
        load_params(network, params_path)
    network.eval()
    return network


def expected_features(network: nn.Module) -> int | None:
    """K of a wav2letter network whose first layer is ``V -1 1 K 0`` (the T x K input convention), else None."""
    layers = network.modules() if isinstance(network, nn.Sequential) else [network]
    first = layers[0] if layers else None
    if isinstance(first, nn.View) and first.dims[0] == -1 and first.dims[1] == 1 and first.dims[2] > 0:
        return int(first.dims[2])
    return None


def _as_input(network: nn.Module, input: np.ndarray, calc_grad: bool) -> Variable:
    k = expected_features(network)
    x = np.asarray(input)
    if x.ndim != 2 or (k is not None and x.shape[1] != k):
        # a K x T input would pass the View silently (T*K is divisible by K): refuse it here
        want = f"(T, {k})" if k is not None else "(T, K)"
        raise ValueError(f"network input must have shape {want} (frames x features, ArrayFire orientation), got {x.shape}")
    if x.dtype.kind not in "fiu" or not np.isfinite(x).all():
        raise ValueError(f"network input must hold finite real numbers (dtype {x.dtype}; NaN or inf found?)")
    params = network.params()
    dtype = params[0].type() if params else np.float32
    return Variable(x.astype(dtype, copy=False), calc_grad)


def forward(network: nn.Module, input: np.ndarray) -> np.ndarray:
    """Network output (NLABEL, T') float32 for an input (T, K), without a graph."""
    return network(_as_input(network, input, False)).host()


def forward_backward(
    network: nn.Module, input: np.ndarray, grad_output: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Output (NLABEL, T') and the gradient (T, K) of ``sum(output * grad_output)`` w.r.t. the input (default: all ones)."""
    x = _as_input(network, input, True)
    out = network(x)
    if grad_output is None:
        g = Variable(out.backend.full(out.dims(), 1.0, out.type()), False)
    else:
        go = np.asarray(grad_output, dtype=out.type())
        if go.shape != out.host().shape:
            raise ValueError(f"grad_output must have the output's shape {out.host().shape}, got {go.shape}")
        g = Variable(go, False)
    out.backward(g)
    return out.host(), x.grad().host()


def output_frames(network: nn.Module, num_frames: int, nfeat: int | None = None) -> int:
    """Number of output frames T' (dim 1 of the output) for an input of ``num_frames`` frames (K from the network's View)."""
    k = nfeat if nfeat is not None else (expected_features(network) or NFEAT)
    out = network(_as_input(network, np.zeros((num_frames, k), np.float32), False))
    return int(out.dims(1))


def receptive_field(network: nn.Module) -> int:
    """Input frames one output frame sees through the network's convolutions and poolings (along time, dim 0)."""
    layers = network.modules() if isinstance(network, nn.Sequential) else [network]
    rf, jump = 1, 1
    for layer in layers:
        layer = getattr(layer, "module_", layer)  # WeightNorm wraps the convolution
        if isinstance(layer, (nn.Conv2D, nn.Pool2D)):
            rf += (int(layer.wx) - 1) * jump
            jump *= int(layer.sx)
    return rf


def min_frames(network: nn.Module, output_frames_needed: int = 1, at_least: int = 2) -> int:
    """The fewest input frames (>= ``at_least``) for which the network gives ``output_frames_needed`` output frames."""
    limit = at_least + 2 * receptive_field(network) + 2 * output_frames_needed
    for t in range(at_least, limit + 1):
        try:
            if output_frames(network, t) >= output_frames_needed:
                return t
        except ValueError:  # too short for an unpadded convolution
            continue
    return limit

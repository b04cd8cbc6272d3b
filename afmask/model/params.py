"""Network weights on disk: flashlight's ``network->params()`` saved in order, as .af (af::saveArray) or .npz.

A ``.af`` file is read in file order (entry 0..n-1), whatever its keys, as the
C++ exporter (``csrc/tools/export_params.cpp``) or any ``af::saveArray`` loop
writes it. A ``.npz`` file is read in ``param_000, param_001, ...`` order when
every key has that form, else in its stored order. Arrays are in ArrayFire
orientation (a conv weight is ``(kw, kh, cin, cout)``).
"""

from __future__ import annotations

import os
import re
import zipfile

import numpy as np

from afmask.backend import canonical_shape, dims4
from afmask.fl import Variable, nn
from afmask.io import list_arrays, read_array, save_arrays

_PARAM_KEY = re.compile(r"^param_(\d+)$")


class ParamsError(ValueError):
    """A params file that does not fit the network (count, shape, dtype or values)."""


def param_key(i: int) -> str:
    """The key afmask and the C++ exporter give parameter ``i``: ``param_000``, ``param_001``, ..."""
    return f"param_{i:03d}"


def read_params(path: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """``(key, array)`` pairs of a .af or .npz params file, in parameter order (ArrayFire orientation)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such params file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".af":
        return [(info.key, read_array(path, index=info.index)) for info in list_arrays(path)]
    if ext == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                items = [(k, z[k]) for k in z.files]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise ParamsError(f"{path}: not a readable .npz file ({e})") from None
        numbered = [_PARAM_KEY.match(k) for k, _ in items]
        if items and all(numbered):
            items = sorted(items, key=lambda kv: int(_PARAM_KEY.match(kv[0]).group(1)))  # type: ignore[union-attr]
        return items
    raise ParamsError(f"{path}: unknown params file extension {ext!r}; expected .af (af::saveArray) or .npz")


def _param_owners(network: nn.Module) -> list[tuple[int, nn.Module, int]]:
    """For each parameter in params() order: (layer index, layer, position within the layer)."""
    layers = network.modules() if isinstance(network, nn.Sequential) else [network]
    return [(i, layer, j) for i, layer in enumerate(layers) for j in range(len(layer.params()))]


def _where(owner: tuple[int, nn.Module, int], k: int) -> str:
    i, layer, j = owner
    return f"parameter {k} (layer {i}: {layer.prettyString()}, its parameter {j})"


def load_params(network: nn.Module, path: str | os.PathLike) -> None:
    """Set every parameter of ``network`` from a params file, checking count, dims, dtype and finiteness."""
    path = os.fspath(path)
    arrays = read_params(path)
    set_params(network, [a for _, a in arrays], source=path, keys=[k for k, _ in arrays])


def set_params(network: nn.Module, arrays: list[np.ndarray], source: str = "<arrays>", keys: list[str] | None = None) -> None:
    """Set the parameters of ``network`` (in params() order) from arrays in ArrayFire orientation."""
    owners = _param_owners(network)
    current = network.params()
    keys = keys if keys is not None else [param_key(i) for i in range(len(arrays))]
    if len(arrays) != len(current):
        if len(arrays) < len(current):
            missing = _where(owners[len(arrays)], len(arrays))
            detail = f"the first without an array is {missing}"
        else:
            detail = f"the first extra array is {keys[len(current)]!r} of shape {tuple(arrays[len(current)].shape)}"
        raise ParamsError(f"{source}: holds {len(arrays)} arrays, the network has {len(current)} parameters; {detail}")
    for k, (arr, owner, param) in enumerate(zip(arrays, owners, current)):
        arr = np.asarray(arr)
        want = param.dims()
        if dims4(arr.shape) != want:
            raise ParamsError(
                f"{source}: array {k} ({keys[k]!r}) has dims {dims4(arr.shape)}, but {_where(owner, k)} has dims {want}"
            )
        if arr.dtype.kind != "f":
            raise ParamsError(f"{source}: array {k} ({keys[k]!r}) has dtype {arr.dtype}; {_where(owner, k)} needs floats (f32)")
        if not np.isfinite(arr).all():
            raise ParamsError(f"{source}: array {k} ({keys[k]!r}) for {_where(owner, k)} contains NaN or inf")
    for arr, (_, layer, j), param in zip(arrays, owners, current):
        # column-major (ArrayFire's layout) whatever the file's: results then do not depend on the
        # file format, and conv2d's moddims of a weight is a view rather than a copy on every call
        data = np.asfortranarray(np.asarray(arr, dtype=param.type()).reshape(canonical_shape(param.dims())))
        layer.setParams(Variable(data, layer.isTrain()), j)


def save_params(network: nn.Module, path: str | os.PathLike) -> None:
    """Write every parameter of ``network`` in params() order as ``param_000, ...`` to a .af or .npz file."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".af", ".npz"):
        raise ParamsError(f"{path}: unknown params file extension {ext!r}; expected .af or .npz")
    save_arrays(path, {param_key(i): p.host() for i, p in enumerate(network.params())})

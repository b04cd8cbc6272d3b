"""Backends with ArrayFire semantics: ``arrayfire``, ``numpy`` (the reference) and ``cupy``.

Chosen by ``AFMASK_BACKEND=arrayfire|numpy|cupy``; otherwise automatically
(``automatic_choice``): arrayfire where its active backend is a GPU, else cupy
where it finds a GPU, else numpy.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

from afmask.backend.base import (
    MAX_DIMS,
    Array,
    AxisIndex,
    Backend,
    DeviceInfo,
    canonical_shape,
    dims4,
    unwrap_counts,
)

NAMES = ("arrayfire", "numpy", "cupy")
ENV_VAR = "AFMASK_BACKEND"

_INSTALL_HINT = {
    "arrayfire": (
        "install the ArrayFire library (https://arrayfire.com/download, or build it) and the "
        "bindings with `pip install afmask[arrayfire]`; set AF_PATH if the library is not on the "
        "loader path"
    ),
    "cupy": "install CuPy for your CUDA version (`pip install cupy-cuda12x`) on a machine with an NVIDIA GPU",
    "numpy": "`pip install numpy`",
}


class BackendUnavailable(RuntimeError):
    """A backend that was asked for cannot be loaded; the message says why and what to install."""


@dataclass(frozen=True)
class Probe:
    """Whether a backend loads here, and why not."""

    name: str
    available: bool
    reason: str


_cache: dict[str, Backend] = {}
_failures: dict[str, str] = {}
_current: Backend | None = None
_current_reason = ""


def _load(name: str) -> Backend:
    if name in _cache:
        return _cache[name]
    if name in _failures:
        raise BackendUnavailable(_failures[name])
    try:
        backend = _construct(name)
    except BackendUnavailable as exc:
        _failures[name] = str(exc)
        raise
    _cache[name] = backend
    return backend


def _construct(name: str) -> Backend:
    if name == "numpy":
        import numpy

        from afmask.backend.xp_backend import XpBackend

        return XpBackend(numpy, "numpy")
    if name == "cupy":
        try:
            import cupy
        except ImportError as exc:
            raise BackendUnavailable(f"cupy backend: the cupy package is not installed ({exc}); {_INSTALL_HINT['cupy']}") from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDA driver or runtime missing
            raise BackendUnavailable(f"cupy backend: CuPy is installed but CUDA is not usable ({exc}); {_INSTALL_HINT['cupy']}") from None
        if count < 1:
            raise BackendUnavailable(f"cupy backend: no CUDA device found; {_INSTALL_HINT['cupy']}")
        from afmask.backend.xp_backend import XpBackend

        return XpBackend(cupy, "cupy")
    if name == "arrayfire":
        from afmask.backend import threads

        threads.share_blas_coretype()  # before ArrayFire's own OpenBLAS loads and detects the CPU by itself
        try:
            import arrayfire
        except ImportError as exc:
            raise BackendUnavailable(
                f"arrayfire backend: the arrayfire Python package is not installed ({exc}); {_INSTALL_HINT['arrayfire']}"
            ) from None
        except (RuntimeError, OSError) as exc:  # the bindings raise when no library loads
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendUnavailable(
                f"arrayfire backend: the ArrayFire library could not be loaded ({first}); {_INSTALL_HINT['arrayfire']}"
            ) from None
        from afmask.backend.arrayfire_backend import ArrayFireBackend

        return ArrayFireBackend(arrayfire)
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(NAMES)}")


def probe(name: str) -> Probe:
    """Try to load backend ``name`` and say whether it works and why not."""
    try:
        _load(name)
    except BackendUnavailable as exc:
        return Probe(name, False, str(exc))
    return Probe(name, True, "loaded")


def get_backend(name: str | None = None) -> Backend:
    """The backend called ``name``, or the current one (chosen on first use)."""
    if name is not None:
        return _load(name)
    if _current is None:
        _choose()
    assert _current is not None
    return _current


def _choose() -> None:
    global _current, _current_reason
    wanted = os.environ.get(ENV_VAR, "").strip().lower()
    if wanted:
        if wanted not in NAMES:
            raise ValueError(f"{ENV_VAR}={wanted!r} is not a backend; expected one of {', '.join(NAMES)}")
        _current = _load(wanted)
        _current_reason = f"{ENV_VAR}={wanted}"
        return
    af = probe("arrayfire")
    active = _load("arrayfire").active_backend() if af.available else None
    # CuPy is probed only where ArrayFire offers no GPU: importing it costs a second
    cp = probe("cupy") if active not in GPU_BACKENDS else Probe("cupy", False, "not probed: ArrayFire runs on a GPU")
    name, reason = automatic_choice(af, active, cp)
    _current, _current_reason = _load(name), reason


#: ArrayFire backends on which afmask takes ArrayFire automatically.
GPU_BACKENDS = ("cuda", "opencl", "oneapi")


def automatic_choice(arrayfire: Probe, af_active: str | None, cupy: Probe) -> tuple[str, str]:
    """(backend name, reason) of the automatic choice from the probes' results and ArrayFire's active backend.

    Never a backend several times slower than another one that loads: ArrayFire on a GPU (CUDA, OpenCL);
    else CuPy if it finds a GPU; else NumPy, also where ArrayFire runs only on its CPU backend, where a
    default iteration measured 7.5x NumPy's (issue 10: unwrap, select and many small kernels).
    """
    active = (af_active or "").lower()
    if arrayfire.available and active in GPU_BACKENDS:
        return "arrayfire", f"automatic: ArrayFire loads and its active backend is {active.upper()} (a GPU)"
    if cupy.available:
        why = "ArrayFire runs on its CPU backend only" if arrayfire.available else "ArrayFire is not available"
        return "cupy", f"automatic: {why}, and CuPy finds a CUDA device"
    if arrayfire.available:
        return "numpy", (
            f"automatic: ArrayFire loads but its active backend is {active.upper() or 'unknown'}, where an "
            "iteration measured several times slower than NumPy's; AFMASK_BACKEND=arrayfire uses it anyway"
        )
    return "numpy", "automatic: ArrayFire not available, NumPy is the fallback"


def choice_reason() -> str:
    """Why the current backend was chosen."""
    get_backend()
    return _current_reason


def set_backend(name: str) -> Backend:
    """Make ``name`` the current backend (raises BackendUnavailable with the reason)."""
    global _current, _current_reason
    _current = _load(name)
    _current_reason = "set_backend()"
    return _current


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """Run a block with backend ``name`` current, restoring the previous one after."""
    global _current, _current_reason
    previous, previous_reason = _current, _current_reason
    _current, _current_reason = _load(name), f"use_backend({name!r})"
    try:
        yield _current
    finally:
        _current, _current_reason = previous, previous_reason


def backend_of(a: object) -> Backend:
    """The loaded backend whose array type ``a`` is (NumPy for anything array-like)."""
    for name in ("cupy", "arrayfire"):
        b = _cache.get(name)
        if b is not None and b.is_array(a):
            return b
    return _load("numpy")


__all__ = [
    "GPU_BACKENDS", "MAX_DIMS", "Array", "AxisIndex", "Backend", "BackendUnavailable", "DeviceInfo", "NAMES", "Probe",
    "automatic_choice", "backend_of", "canonical_shape", "choice_reason", "dims4", "get_backend", "probe", "set_backend",
    "unwrap_counts", "use_backend",
]

"""Where the noise comes from: one host generator for every backend (default), or the backend's own.

The same seed must give the same explanation on NumPy, ArrayFire and CuPy, so that
a user moving from the CPU to a GPU can check that nothing changed. Each backend's
own generator (``af::randn``, ``cupy.random``) draws different numbers for the same
seed, so by default the noise is drawn on the host by ``numpy.random.Generator``
(PCG64) and copied to the device once per iteration (``afmask bench backends``
measures that copy). ``generator="device"`` keeps the backend's generator: no copy,
but the numbers depend on the backend.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from afmask.backend import Backend
from afmask.backend.workspace import POOL

#: "host": numpy.random.Generator(seed), the same draws on every backend; "device": the backend's generator.
GENERATORS = ("host", "device")


def _draw(fill: Any, shape: tuple, dtype: Any, reuse: bool) -> np.ndarray:
    """``fill(out=...)`` into a new array of ``shape``, or into a reused one (afmask.backend.workspace) if ``reuse``:
    the same numbers (a Generator fills ``out`` as it fills a new array), without the fresh pages of a new one."""
    if not reuse:
        return fill(size=shape, dtype=dtype)
    out = POOL.take(np, shape, np.dtype(dtype))
    fill(dtype=dtype, out=out)
    return out


def _column_major(fill: Any, rows: int, T: int, samples: int, dt: Any, reuse: bool) -> np.ndarray:
    """``fill``'s next draws as (rows, T[, S]), column-major: drawn in reversed dims and transposed, no copy."""
    if samples == 1:
        return _draw(fill, (T, rows), dt, reuse).T
    return _draw(fill, (samples, T, rows), dt, reuse).transpose(2, 1, 0)


def _host(method: str, rows: int, T: int, samples: int, seed: int, dtype: Any, reuse: bool) -> np.ndarray:
    """The draws of ``numpy.random.Generator(seed).<method>`` as (rows, T[, S]), column-major."""
    rng = np.random.default_rng(seed)
    return _column_major(getattr(rng, method), rows, T, samples, np.dtype(dtype).type, reuse)


def _on_backend(B: Backend, method: str, device: str, rows: int, T: int, samples: int, seed: int, dtype: Any,
                generator: str) -> Any:
    """The host draws of ``method`` copied to ``B``, or ``B.<device>``'s own draws, (rows, T[, S])."""
    if generator == "host":
        # one host-to-device copy (none on NumPy); already column-major, so no device transpose
        return B.asarray(_host(method, rows, T, samples, seed, dtype, reuse=B.name == "numpy"))
    if generator == "device":
        draw = getattr(B, device)
        if samples == 1:
            return B.transpose(draw((T, rows), seed, dtype))
        return B.reorder(draw((samples, T, rows), seed, dtype), (2, 1, 0))
    raise ValueError(f"noise generator must be one of {', '.join(GENERATORS)}, got {generator!r}")


def host_standard_normal(rows: int, T: int, samples: int, seed: int, dtype: Any = np.float32,
                         reuse: bool = False) -> np.ndarray:
    """N(0, 1) draws (rows, T[, S]) on the host, column-major: the numbers every backend gets for ``seed``.

    ``reuse``: into a buffer of the workspace pool, free again once nothing holds the result."""
    return _host("standard_normal", rows, T, samples, seed, dtype, reuse)


def standard_normal(
    B: Backend, rows: int, T: int, samples: int, seed: int, dtype: Any = np.float32, generator: str = "host"
) -> Any:
    """N(0, 1) noise (rows, T[, S]) as a backend array for ``seed``; ``generator`` "host" or "device" (see GENERATORS)."""
    return _on_backend(B, "standard_normal", "randn", rows, T, samples, seed, dtype, generator)


def host_uniform_parts(rows: int, T: int, samples: int, seed: int, per: int,
                       dtype: Any = np.float32) -> Iterator[tuple[int, np.ndarray]]:
    """The draws of :func:`host_uniform` block by block: ``(n, u)`` with u (rows, T[, n]) for ``per`` samples at a
    time (fewer in the last block), into reused buffers. A Generator consumes its stream in order, so the blocks
    are the whole draw's numbers, bit for bit, and at no time does more than one block exist."""
    if per < 1:
        raise ValueError(f"per must be >= 1, got {per}")
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype).type
    for s0 in range(0, samples, per):
        n = min(per, samples - s0)
        yield n, _column_major(rng.random, rows, T, n, dt, True)


def host_uniform(rows: int, T: int, samples: int, seed: int, dtype: Any = np.float32, reuse: bool = False) -> np.ndarray:
    """U(0, 1) draws (rows, T[, S]) on the host, column-major: the numbers every backend gets for ``seed``
    (``reuse`` as for :func:`host_standard_normal`)."""
    return _host("random", rows, T, samples, seed, dtype, reuse)


def uniform(
    B: Backend, rows: int, T: int, samples: int, seed: int, dtype: Any = np.float32, generator: str = "host"
) -> Any:
    """U(0, 1) noise (rows, T[, S]) as a backend array for ``seed``; ``generator`` as for :func:`standard_normal`."""
    return _on_backend(B, "random", "randu", rows, T, samples, seed, dtype, generator)

"""Where the noise comes from: one host generator for every backend (default), or the backend's own.

The same seed must give the same explanation on NumPy, ArrayFire and CuPy, so that
a user moving from the CPU to a GPU can check that nothing changed. Each backend's
own generator (``af::randn``, ``cupy.random``) draws different numbers for the same
seed, so by default the noise is drawn on the host by ``numpy.random.Generator``
(PCG64) and copied to the device once per iteration (``afmask bench backends``
measures that copy). ``generator="device"`` keeps the backend's generator: no copy,
but the numbers depend on the backend.

Normal draws are the Box-Muller transform of the generator's uniforms, one stream
per noise sample (``SeedSequence(seed, spawn_key=(s,))``), the samples drawn on as
many threads as BLAS may use. NumPy's own normals (its ziggurat) cost 9-11 ns a
number here, single-threaded: with relative noise at T = 1593 that was 36 ms of a
125 ms iteration on two cores; uniforms (2 ns) and NumPy's SIMD log, sqrt, sin and
cos cost about 4 ns, and streams of their own let the samples go in parallel. The
numbers do not depend on the thread count.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Optional

import numpy as np

from afmask.backend import Backend, threads
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


def _on_backend(B: Backend, host: Any, device: str, rows: int, T: int, samples: int, seed: int, dtype: Any,
                generator: str) -> Any:
    """The draws of ``host`` (a host_* function below) copied to ``B``, or ``B.<device>``'s own, (rows, T[, S])."""
    if generator == "host":
        # one host-to-device copy (none on NumPy); already column-major, so no device transpose
        return B.asarray(host(rows, T, samples, seed, dtype, reuse=B.name == "numpy"))
    if generator == "device":
        draw = getattr(B, device)
        if samples == 1:
            return B.transpose(draw((T, rows), seed, dtype))
        return B.reorder(draw((samples, T, rows), seed, dtype), (2, 1, 0))
    raise ValueError(f"noise generator must be one of {', '.join(GENERATORS)}, got {generator!r}")


def sample_stream(seed: int, sample: int) -> np.random.Generator:
    """The generator of noise sample ``sample``'s normal draws for ``seed`` (independent of every other sample's)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(sample,))))


def box_muller(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """Fill the contiguous float array ``out`` with N(0, 1) draws: Box-Muller on uniforms from ``rng``."""
    flat = out.reshape(-1)  # a view: out is contiguous
    dt = flat.dtype.type
    n = flat.size
    h = (n + 1) // 2
    r, second = flat[:h], flat[h:]
    angle = POOL.take(np, (h,), flat.dtype)
    rng.random(out=r, dtype=dt)
    rng.random(out=angle, dtype=dt)
    # radius sqrt(-2 log(1 - u)): 1 - u lies in (0, 1], so the log is finite (at most 5.8 in float32, 8.6 in float64)
    np.subtract(dt(1), r, out=r)
    np.log(r, out=r)
    r *= dt(-2)
    np.sqrt(r, out=r)
    angle *= dt(2 * math.pi)
    np.sin(angle[: n - h], out=second)
    second *= r[: n - h]
    np.cos(angle, out=angle)
    r *= angle
    return out


#: Thread pools by size for the normal draws (threads of their own: NumPy's generator and ufuncs release the GIL).
_pools: dict = {}


def _workers(samples: int, workers: Optional[int]) -> int:
    """Threads for ``samples`` draws: ``workers``, else as many as BLAS may use now (afmask.backend.threads)."""
    if workers is None:
        workers = threads.in_force()
    return max(1, min(int(workers), samples))


def host_standard_normal(rows: int, T: int, samples: int, seed: int, dtype: Any = np.float32,
                         reuse: bool = False, workers: Optional[int] = None) -> np.ndarray:
    """N(0, 1) draws (rows, T[, S]) on the host, column-major: the numbers every backend gets for ``seed``.

    ``reuse``: into a buffer of the workspace pool, free again once nothing holds the result. ``workers``: threads
    that draw (default: the BLAS thread count in force); the numbers do not depend on it."""
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"normal noise must be floating point, got {dt}")
    shape = (samples, T, rows)
    buf = POOL.take(np, shape, dt) if reuse else np.empty(shape, dt)
    fill = [lambda s=s: box_muller(sample_stream(seed, s), buf[s]) for s in range(samples)]
    n = _workers(samples, workers)
    if n == 1:
        for f in fill:
            f()
    else:
        pool = _pools.get(n)
        if pool is None:
            pool = _pools[n] = ThreadPoolExecutor(n, thread_name_prefix="afmask-normal")
        for done in [pool.submit(f) for f in fill]:
            done.result()
    return buf[0].T if samples == 1 else buf.transpose(2, 1, 0)


def standard_normal(
    B: Backend, rows: int, T: int, samples: int, seed: int, dtype: Any = np.float32, generator: str = "host"
) -> Any:
    """N(0, 1) noise (rows, T[, S]) as a backend array for ``seed``; ``generator`` "host" or "device" (see GENERATORS)."""
    return _on_backend(B, host_standard_normal, "randn", rows, T, samples, seed, dtype, generator)


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
    return _column_major(np.random.default_rng(seed).random, rows, T, samples, np.dtype(dtype).type, reuse)


def uniform(
    B: Backend, rows: int, T: int, samples: int, seed: int, dtype: Any = np.float32, generator: str = "host"
) -> Any:
    """U(0, 1) noise (rows, T[, S]) as a backend array for ``seed``; ``generator`` as for :func:`standard_normal`."""
    return _on_backend(B, host_uniform, "randu", rows, T, samples, seed, dtype, generator)

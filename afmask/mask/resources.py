"""What a mask run needs, known before it allocates: memory from the shapes (by a short traced probe), disk, and
what the machine has free.

The memory of one step grows as ``c1*T + c2*T*S`` (T frames, S noise samples; the model's widths set the
coefficients). Two probes of one data-gradient step on a few frames (1 and 2 samples) give the coefficients with
``tracemalloc``, which sees every NumPy array; the arrays the loop keeps for the whole run (the clean FFT, the
noise scale, the parameter, Adam's moments, the best state) are added from their shapes. On the demo model the
estimate was 3.6 GB where the process grew by 2.9 GB (300 frames, 256 samples): a little high, never low.
"""

from __future__ import annotations

import os
import shutil
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

#: Frames of the probes (fewer when the utterance is shorter).
PROBE_FRAMES = 32
#: Arrays of (2K, T) float32 the loop keeps for the whole run: x, the relative noise scale, theta, best theta,
#: Adam's two moments, the new theta, the gradient and m; two more for the checkpoint's copies.
RESIDENT_ARRAYS = 11
#: Headroom for what tracing does not see (the extension's OpenMP buffers, fragmentation); the traced peak
#: already overestimates a little (see above).
HEADROOM = 1.0


class ResourceError(ValueError):
    """A run that would not fit the machine; the text says what it needs, what there is and what to lower."""


@dataclass
class MemoryEstimate:
    """Bytes a run will need: ``c0 + c1*T + c2*T*S`` plus the resident arrays, with headroom."""

    frames: int
    samples: int
    c0: float
    c1: float
    c2: float
    resident: int

    @property
    def bytes(self) -> int:
        """The estimate for ``frames`` and ``samples``."""
        return self.for_shape(self.frames, self.samples)

    def for_shape(self, frames: int, samples: int) -> int:
        """The estimate for another number of frames and samples."""
        per_frame_resident = self.resident / max(self.frames, 1)
        raw = self.c0 + (self.c1 + per_frame_resident) * frames + self.c2 * frames * samples
        return int(HEADROOM * raw)

    def samples_that_fit(self, available: int) -> int:
        """The most noise samples that fit ``available`` bytes with these frames (0: not even one)."""
        lo, hi = 0, max(self.samples, 1)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.for_shape(self.frames, mid) <= available:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def frames_that_fit(self, available: int) -> int:
        """The most frames that fit ``available`` bytes with these samples (0: none)."""
        lo, hi = 0, max(self.frames, 1)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.for_shape(mid, self.samples) <= available:
                lo = mid
            else:
                hi = mid - 1
        return lo


def _cgroup_room() -> Optional[int]:
    """Bytes left under this process's cgroup memory limit (v2, then v1), or None when there is no limit."""
    pairs = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
             ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    for limit_path, usage_path in pairs:
        try:
            limit_text = Path(limit_path).read_text().strip()
            usage = int(Path(usage_path).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit_text == "max":
            return None
        limit = int(limit_text)
        if limit >= 1 << 60:  # v1 writes a huge number for "no limit"
            return None
        return max(limit - usage, 0)
    return None


def available_memory() -> Optional[int]:
    """Bytes this process can still allocate: MemAvailable of /proc/meminfo (else sysconf), capped by a cgroup limit."""
    free: Optional[int] = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            free = None
    room = _cgroup_room()
    if room is not None:
        free = room if free is None else min(free, room)
    return free


def _traced_peak(fn) -> int:
    """Peak bytes NumPy and Python allocate while ``fn()`` runs, above what was allocated before."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return max(tracemalloc.get_traced_memory()[1] - base, 0)
    finally:
        if not was_tracing:
            tracemalloc.stop()


def estimate_memory(fft: np.ndarray, model, config) -> Optional[MemoryEstimate]:
    """The host memory a run of ``config`` over ``fft`` (2K, T) with ``model`` needs, or None when it cannot be
    probed (a GPU backend, whose device memory this does not measure; or a model the probe cannot run)."""
    from afmask.backend import get_backend, use_backend
    from afmask.backend.workspace import POOL
    from afmask.mask.objective import MaskObjective
    from afmask.mask.run import MaskRun, iteration_seed

    B = get_backend()
    if B.name == "arrayfire" and B.active_backend() == "cpu":
        # ArrayFire's CPU backend holds the same arrays in host memory, where tracing does not see them: the probe
        # runs on NumPy, with the model's parameters copied there for its duration
        from afmask.fl import Variable

        params = model.params()
        try:
            with use_backend("numpy"):
                for i, p in enumerate(params):
                    model.setParams(Variable(p.host(), False), i)
                return estimate_memory(fft, model, config)
        finally:
            for i, p in enumerate(params):
                model.setParams(p, i)
    if B.name != "numpy":
        return None
    K2, T = fft.shape
    t1 = min(PROBE_FRAMES, T)
    # a fixed lambda skips the automatic choice; float64 statistics allow two samples (the memory is the same)
    probe_cfg = config.replace(lam=1.0, stats="float64", samples=1)

    def peak(frames: int, samples: int) -> int:
        obj = MaskObjective(np.ascontiguousarray(fft[:, :frames]), model, config.variant, noise=config.noise,
                            kernel_path=config.kernel_path)
        run = MaskRun(obj, probe_cfg.replace(samples=samples))
        m = run.scale()
        POOL.clear()  # reused buffers from an earlier probe would hide what a run allocates
        return _traced_peak(lambda: run.data_gradient(m, iteration_seed(config.seed, 0)))

    try:
        peak(t1, 1)  # once untimed: caches a first pass fills (the convolution's weight taps) are not per-run memory
        p1, p2 = peak(t1, 1), peak(t1, 2)
    except (ValueError, RuntimeError, ArithmeticError, IndexError):
        return None  # the real run reports what is wrong with the model or the input
    c2 = max(p2 - p1, 0) / t1
    # what one sample does not explain grows with the frames (a fixed part would only make the estimate high)
    c1 = max(p1 / t1 - c2, 0.0)
    c0 = 0.0
    resident = RESIDENT_ARRAYS * 4 * K2 * T
    return MemoryEstimate(T, int(config.samples), c0, c1, c2, resident)


def disk_needed(K2: int, T: int, audio_samples: int) -> int:
    """Bytes a run folder takes at its largest: the checkpoint twice (old and new while it is replaced), m three
    times (m.npy, m_last.npy, m.af) and the features (FFT, magnitudes, samples), all float32."""
    block = 4 * K2 * T
    checkpoint = 4 * block  # theta, best theta, Adam's two moments
    return int(2 * checkpoint + 3 * block + block + block // 2 + 4 * audio_samples + (1 << 20))


def gb(n: float) -> str:
    """Bytes in GB, MB or kB, for messages."""
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def check_resources(fft: np.ndarray, model, config, out: os.PathLike, audio_samples: int = 0,
                    available: Optional[int] = None) -> dict:
    """Refuse (ResourceError) a run that would not fit the free memory or disk; returns the estimate as a dict.

    ``available``: free bytes of memory (default: :func:`available_memory`).
    """
    K2, T = fft.shape
    S = int(config.samples)
    info: dict = {"frames": T, "samples": S}
    est = estimate_memory(fft, model, config)
    free = available_memory() if available is None else available
    if est is not None:
        info["memory_bytes"] = est.bytes
        if free is not None:
            info["memory_available_bytes"] = free
            if est.bytes > free:
                fit_s, fit_t = est.samples_that_fit(free), est.frames_that_fit(free)
                what = []
                if S > 1 and fit_s >= 1:
                    what.append(f"--samples (at most about {fit_s} fit)")
                elif S > 1:
                    what.append("--samples")
                what.append(f"the frames (--frames START:STOP; about {fit_t} fit with {S} samples)"
                            if fit_t >= 1 else "the frames (--frames START:STOP)")
                raise ResourceError(
                    f"samples {S} over {T} frames: the run needs about {gb(est.bytes)} of memory "
                    f"({gb(est.c2 * HEADROOM)} per frame and noise sample), {gb(free)} are available; lower {' or '.join(what)}"
                )
    need = disk_needed(K2, T, audio_samples)
    info["disk_bytes"] = need
    folder = Path(out).resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        disk_free = shutil.disk_usage(folder).free
    except OSError:
        disk_free = None
    if disk_free is not None:
        info["disk_available_bytes"] = disk_free
        if need > disk_free:
            raise ResourceError(
                f"{out}: the run folder needs about {gb(need)} of disk ({T} frames), {gb(disk_free)} are free on "
                f"{folder}; free some space, choose another --out or explain fewer --frames"
            )
    info["memory_known"] = est is not None and free is not None
    return info

"""afmask owns its threads: BLAS (numpy's and scipy's OpenBLAS, each loaded apart) and OpenMP, through threadpoolctl.

Left alone, OpenBLAS starts one thread per core. On a small machine where another
process keeps a core busy, every multi-threaded GEMM then waits for the slowest
thread: measured 3.8x slower per iteration on a 2-core machine than one thread.
So afmask chooses: ``AFMASK_THREADS`` (or ``--threads N``) when given, else a short
measurement of a network-sized GEMM with one thread and with all usable cores,
taking more threads only when they are clearly faster now.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

#: The environment variable that fixes the thread count (0: every usable core).
THREADS_ENV = "AFMASK_THREADS"
#: More threads must beat one thread by this factor to be chosen (a busy core makes them lose).
GAIN_NEEDED = 1.25


@dataclass(frozen=True)
class ThreadChoice:
    """How many threads BLAS and OpenMP run with, and why."""

    threads: int
    reason: str
    measured_ms: Optional[dict] = None  # threads -> median ms of what was measured (a GEMM, or a loop's steps)
    by_user: bool = False  # --threads or AFMASK_THREADS: afmask never changes it
    fixed: bool = False  # afmask chose it for the results' sake: loops do not measure another count


_choice: Optional[ThreadChoice] = None
_limiter = None


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def parse_threads(text: str, source: str) -> int:
    """A thread count from ``text`` (0 means every usable core); ValueError naming ``source`` otherwise."""
    t = str(text).strip()
    if not t.isdigit():
        raise ValueError(f"{source} must be a number of threads (0: every usable core), got {text!r}")
    n = int(t)
    return usable_cores() if n == 0 else n


#: The count last applied (None before the first), and whether other BLAS libraries than NumPy's and SciPy's
#: were held at one thread then: a loop applies its own count only when another is in force.
_in_force: Optional[int] = None
_pinned = False


def _use(n: int, pin_others: bool = False) -> None:
    if n != _in_force or pin_others != _pinned:
        _apply(n, pin_others)


def _numpy_blas_prefixes() -> set:
    """threadpoolctl prefixes of the BLAS libraries NumPy and SciPy loaded (their own OpenBLAS builds)."""
    from threadpoolctl import threadpool_info

    return {i["prefix"] for i in threadpool_info() if i.get("user_api") == "blas"
            and any(part in i.get("filepath", "") for part in ("numpy", "scipy"))}


def numpy_blas_architecture() -> Optional[str]:
    """The kernel set (OpenBLAS's "architecture", e.g. Haswell, SkylakeX) of NumPy's BLAS, or None if unknown."""
    from threadpoolctl import threadpool_info

    for i in threadpool_info():
        if i.get("user_api") == "blas" and "numpy" in i.get("filepath", "") and i.get("architecture"):
            return str(i["architecture"])
    return None


def _apply(n: int, pin_others: bool = False) -> None:
    """n threads for every BLAS and OpenMP library loaded; with ``pin_others``, one for a BLAS that is neither
    NumPy's nor SciPy's (ArrayFire's: its results change with the count, NumPy's do not)."""
    global _limiter, _in_force, _pinned
    from threadpoolctl import threadpool_info, threadpool_limits

    if _limiter is not None:
        _limiter.restore_original_limits()
    # BLAS and OpenMP libraries loaded so far (numpy's and scipy's OpenBLAS, the extension's libgomp)
    import scipy.linalg  # noqa: F401 - loads scipy's own OpenBLAS so that the limit reaches it too

    limits: object = n
    if pin_others:
        ours = _numpy_blas_prefixes()
        limits = {i["prefix"]: (n if i["prefix"] in ours else 1) for i in threadpool_info() if i.get("user_api") == "blas"}
        limits["openmp"] = n
    _limiter = threadpool_limits(limits=limits)
    _in_force, _pinned = n, pin_others
    ext = sys.modules.get("afmask._ext")
    if ext is not None:
        # the extension's OpenMP loops take their count from it (omp_set_num_threads is per calling thread): left
        # at the count of its first load, a loop measured down to one thread still ran them on two, and with the
        # other core busy every such loop waited for it (busy-core steps 1.5x an idle core's at "one thread")
        ext.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))  # OpenMP runtimes loaded later (the extension's) start with it


def _gemm_ms(n: int, a: np.ndarray, b: np.ndarray, out: np.ndarray, repeats: int) -> list[float]:
    from threadpoolctl import threadpool_limits

    times = []
    with threadpool_limits(limits=n, user_api="blas"):
        np.matmul(a, b, out=out)  # wake the pool
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.matmul(a, b, out=out)
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def measure(cores: int, rounds: int = 3) -> dict:
    """Median ms of a network-sized float32 GEMM (2112 x 128 by 128 x 128, 4 times) with 1 and ``cores`` threads, interleaved."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2112, 128), dtype=np.float32)
    b = rng.standard_normal((128, 128), dtype=np.float32)
    out = np.empty((2112, 128), np.float32)
    times: dict = {1: [], cores: []}
    for _ in range(rounds):
        for n in (1, cores):
            times[n].extend(_gemm_ms(n, a, b, out, 4))
    return {n: statistics.median(t) for n, t in times.items()}


_count_dependent: dict = {}


def count_dependent(cores: int) -> bool:
    """Whether NumPy's float32 GEMM gives other bits on ``cores`` threads than on one (cached per count).

    OpenBLAS splits a GEMM's rows and columns among threads, and with most kernel sets each element's sum is the
    same on any count; with its Haswell (AVX2) kernels it is not for inner sizes past 256 (here 5125 of the 6168
    input gradients of the demo model at T = 24 differed between one and two threads). Two GEMMs of the network's
    shapes tell."""
    if cores < 2:
        return False
    if cores not in _count_dependent:
        from threadpoolctl import threadpool_limits

        rng = np.random.default_rng(0)
        pairs = [(rng.standard_normal((96, 257), dtype=np.float32), rng.standard_normal((257, 128), dtype=np.float32)),
                 (rng.standard_normal((264, 128), dtype=np.float32), rng.standard_normal((128, 512), dtype=np.float32))]
        results = {}
        for n in (1, cores):
            with threadpool_limits(limits=n, user_api="blas"):
                results[n] = [a @ b for a, b in pairs]
        _count_dependent[cores] = any(not np.array_equal(x, y) for x, y in zip(results[1], results[cores]))
    return _count_dependent[cores]


def configure(threads: Optional[int] = None, backend: Optional[str] = None) -> ThreadChoice:
    """Set BLAS/OpenMP threads: ``threads`` if given, else AFMASK_THREADS, else one for ArrayFire (``backend``, or
    afmask's current one), else what measures fastest now."""
    global _choice
    cores = usable_cores()
    env = os.environ.get(THREADS_ENV)
    if threads is not None:
        n = usable_cores() if int(threads) == 0 else int(threads)
        if n < 1:
            raise ValueError(f"--threads must be >= 0 (0: every usable core), got {threads}")
        choice = ThreadChoice(n, "set by --threads", by_user=True)
    elif env is not None and env.strip():
        choice = ThreadChoice(parse_threads(env, THREADS_ENV), f"set by {THREADS_ENV}={env.strip()}", by_user=True)
    elif cores == 1:
        choice = ThreadChoice(1, "one usable core")
    elif (backend or _current_backend()) == "arrayfire":
        choice = ThreadChoice(1, "ArrayFire backend: its results change with the BLAS thread count (6 seeded steps "
                                 "came out 6.5e-4 apart with 1 and 2), so one thread keeps seeded and resumed runs "
                                 "bit-identical")
    elif count_dependent(cores):
        arch = numpy_blas_architecture()
        forced = os.environ.get("OPENBLAS_CORETYPE")
        kernels = f"its {arch} kernels" if arch else "its kernels"
        if forced:
            kernels += f", OPENBLAS_CORETYPE={forced}"
        choice = ThreadChoice(1, f"NumPy's BLAS gives other bits on {cores} threads than on 1 here ({kernels}): one "
                                 "thread keeps seeded and resumed runs bit-identical", fixed=True)
    else:
        ms = measure(cores)
        faster = ms[1] / ms[cores]
        if faster >= GAIN_NEEDED:
            choice = ThreadChoice(cores, f"measured: {cores} threads {faster:.2f}x as fast as 1 on a network-sized GEMM", ms)
        else:
            choice = ThreadChoice(1, f"measured: {cores} threads {faster:.2f}x as fast as 1 on a network-sized GEMM "
                                     f"(needs {GAIN_NEEDED}x; a busy core makes them wait)", ms)
    _apply(choice.threads)
    _choice = choice
    global _measured_at
    _measured_at = time.monotonic()
    return choice


def _current_backend() -> str:
    """The name of afmask's current backend (chosen here if not yet)."""
    from afmask.backend import get_backend

    return get_backend().name


#: A measured choice is measured again after this many seconds (load changes both ways).
RECHECK_SECONDS = 30.0
#: A step this much slower than the chosen count's typical step makes the loop measure again at once: a core has
#: turned busy, and with more threads every GEMM now waits for the one that shares it.
SLOWDOWN = 1.5
#: Steps a loop runs before it first measures: the first ones fill the workspace pools and the noise thread.
WARMUP_STEPS = 2
#: The steps a loop times with each count when it measures (one thread, then every usable core), the first of
#: each block not counted: OpenBLAS's idle workers spin for a while after a multi-threaded GEMM, and a one-thread
#: step right after two-thread ones measured 1.7x its time (the spinning worker took the noise thread's core).
STEP_BLOCK = 4
#: More threads must make the step itself this much faster to be kept.
STEP_GAIN_NEEDED = 1.1
_measured_at = 0.0


class StepThreads:
    """The thread count for a loop of like steps (the mask iterations), measured on the steps themselves.

    A GEMM alone is not the work: with relative noise the next step's normal draws (about a third of a step) run
    in a thread of their own, and two BLAS threads on two cores then made a step 1.2-1.8x slower than one in some
    runs, while with attenuation noise two threads made it 1.3-1.5x faster. So after ``WARMUP_STEPS`` steps the
    loop times ``STEP_BLOCK`` steps with one thread, then as many with every usable core, keeps the faster by the
    median of each block but its first step (more threads only if ``STEP_GAIN_NEEDED`` times faster; the block
    of more threads ends early once one of its steps takes ``SLOWDOWN`` times one thread's), and measures again
    after ``RECHECK_SECONDS``, or at once when a step on more threads takes ``SLOWDOWN`` times its typical time.
    NumPy's results do not depend on the count (OpenBLAS splits a GEMM's rows and columns, never its sums), except
    with kernel sets where they do (:func:`count_dependent`): there afmask keeps one thread and loops do not measure.

    A count the user set is kept. On ArrayFire the loop measures the count of NumPy's BLAS (which ArrayFire's
    CPU-backend convolutions use) and keeps ArrayFire's own BLAS on one thread: ArrayFire's results change with
    its count. Each loop applies its own count before each of its steps, so loops on two backends can take turns
    in one process (``afmask bench backends``)."""

    def __init__(self, backend: str = "numpy") -> None:
        self.backend = backend
        # on ArrayFire the count is NumPy's BLAS's (its CPU-backend convolutions run there), ArrayFire's stays one
        self._pin = not current().by_user and backend == "arrayfire"
        self._n: Optional[int] = None  # the count this loop measured best
        self._plan: list = []
        self._times: dict = {}
        self._typical: Optional[float] = None
        self._decided_at = -float("inf")
        self._steps = 0

    def _fixed(self) -> Optional[int]:
        """The count this loop must run with, or None if it measures its own."""
        c = current()
        if c.by_user or c.fixed:
            return c.threads
        return 1 if usable_cores() == 1 else None

    def count(self) -> int:
        """The count this loop runs its steps with (outside a measurement)."""
        fixed = self._fixed()
        if fixed is not None:
            return fixed
        return self._n if self._n is not None else current().threads

    def before(self) -> None:
        """Set the threads for the next step."""
        if self._fixed() is None:
            stale = self._typical is None or time.monotonic() - self._decided_at > RECHECK_SECONDS
            if not self._plan and self._steps >= WARMUP_STEPS and stale:
                cores = usable_cores()
                self._plan = [1] * STEP_BLOCK + [cores] * STEP_BLOCK
                self._times = {1: [], cores: []}
        _use(self._plan[0] if self._plan else self.count(), self._pin)

    def after(self, seconds: float) -> None:
        """Record how long the step took."""
        if self._fixed() is not None:
            return
        self._steps += 1
        if self._plan:
            n = self._plan.pop(0)
            if len(self._plan) % STEP_BLOCK != STEP_BLOCK - 1:  # not the first step of its block
                self._times[n].append(seconds)
            # more threads already this much slower than one (a busy core): no need to suffer the whole block
            if n > 1 and self._times[n] and self._times[n][-1] > SLOWDOWN * statistics.median(self._times[1]):
                self._plan = []
            if not self._plan:
                self._decide()
        elif self._typical is not None and self.count() > 1 and seconds > SLOWDOWN * self._typical:
            # measure again from the next step: a core may have turned busy under more threads. On one thread a
            # slow step has no cure in more of them (a busy core would slow them more): the 30 s recheck finds
            # a core that has turned free
            self._typical = None

    def _decide(self) -> None:
        global _choice, _measured_at
        ms = {n: 1e3 * statistics.median(t) for n, t in self._times.items()}
        cores = max(ms)
        faster = ms[1] / ms[cores]
        n = cores if faster >= STEP_GAIN_NEEDED else 1
        why = f"measured on the run's own iterations: {cores} threads {faster:.2f}x as fast as 1"
        if n == 1:
            why += f" (needs {STEP_GAIN_NEEDED}x)"
        _use(n, self._pin)
        if self._pin:
            why += "; ArrayFire's own BLAS on one thread"
        _choice, _measured_at = ThreadChoice(n, why, ms), time.monotonic()
        self._n, self._typical, self._decided_at = n, ms[n] / 1e3, _measured_at


def in_force() -> int:
    """The BLAS/OpenMP thread count in force now (choosing it first if afmask has not yet)."""
    return _in_force or current().threads


def spare_core() -> bool:
    """Whether the threads in force leave a usable core free (for work in a thread of afmask's own)."""
    return in_force() < usable_cores()


def current() -> ThreadChoice:
    """The choice in force; configures (measuring if need be) on first use."""
    return _choice if _choice is not None else configure()


def ensure(backend: Optional[str] = None) -> int:
    """Make sure afmask has chosen its threads (one for ``backend`` "arrayfire", unless the user set them); the number."""
    c = current()
    if backend == "arrayfire" and c.threads > 1 and c.measured_ms is not None:
        # measured for another backend earlier in this process: ArrayFire's results depend on the count
        c = configure(backend=backend)
    return c.threads


#: Why OPENBLAS_CORETYPE was set for libraries loaded later (ArrayFire's BLAS), or None if afmask left it alone.
coretype_note: Optional[str] = None


def share_blas_coretype() -> Optional[str]:
    """Before a library with its own OpenBLAS loads (ArrayFire's CPU backend): pass it the CPU type NumPy's
    OpenBLAS detected, unless OPENBLAS_CORETYPE is set. Returns what was done, or None.

    An OpenBLAS older than the CPU may not recognise it and fall back to its slowest kernels (Debian 12's 0.3.21
    runs "Prescott" code on this machine's Xeon: ArrayFire's GEMMs measured 6x slower than with SkylakeX)."""
    global coretype_note
    if os.environ.get("OPENBLAS_CORETYPE"):
        return None
    from threadpoolctl import threadpool_info

    import scipy.linalg  # noqa: F401 - its OpenBLAS too, should NumPy's report nothing

    # NumPy's own first: a SciPy loaded later may have detected the CPU under other settings
    archs = [numpy_blas_architecture()] + [i.get("architecture") for i in threadpool_info()
                                           if i.get("internal_api") == "openblas"]
    archs = [a for a in archs if a]
    if not archs:
        return None
    os.environ["OPENBLAS_CORETYPE"] = archs[0]
    coretype_note = (f"OPENBLAS_CORETYPE={archs[0]} (the CPU type NumPy's OpenBLAS detected), set for ArrayFire's BLAS; "
                     "set OPENBLAS_CORETYPE yourself to choose another")
    return coretype_note

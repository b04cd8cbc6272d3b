"""Buffers reused across iterations: no fresh pages for every large temporary of every step.

An iteration at T = 6372 frames allocated and freed hundreds of MB of
temporaries; large ones are mapped and unmapped anew each time, and the kernel
zero-fills every fresh page (a third of the CPU time at that length). A pool
hands out an array of a given shape and dtype that nobody else holds any more
(its reference count says so: a view keeps its base alive), or a new one that
it then keeps for the next call.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

#: The most bytes a pool keeps; past it the pool is emptied (a new length or batch size).
MAX_BYTES = 1 << 30
#: Buffers of one shape a pool keeps (several may be in use at once, e.g. two layers of one size).
PER_KEY = 6


class Pool:
    """Arrays by (module, shape, dtype); ``take`` gives one that is free, else a new one."""

    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self._bufs: dict = {}
        self._bytes = 0
        # the noise is drawn into pooled buffers in a background thread while the loop takes its own: a free
        # buffer must go to one taker only (once returned, the taker's reference marks it as in use)
        self._lock = threading.Lock()

    def take(self, xp: Any, shape: tuple, dtype: Any, zero: bool = False) -> Any:
        """An array of ``shape`` and ``dtype`` (zero-filled if asked) that no one else references."""
        with self._lock:
            return self._take(xp, shape, dtype, zero)

    def _take(self, xp: Any, shape: tuple, dtype: Any, zero: bool) -> Any:
        key = (xp.__name__, shape, dtype)
        bufs = self._bufs.setdefault(key, [])
        for a in bufs:
            # references: the list, the loop variable and getrefcount's argument
            if sys.getrefcount(a) <= 3:
                if zero:
                    a.fill(0)
                return a
        a = xp.zeros(shape, dtype) if zero else xp.empty(shape, dtype)
        if len(bufs) < PER_KEY:
            if self._bytes + a.nbytes > self.max_bytes:
                self._clear()
                bufs = self._bufs.setdefault(key, [])
            bufs.append(a)
            self._bytes += a.nbytes
        return a

    def clear(self) -> None:
        """Forget every buffer (those still in use live on with their users)."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._bufs.clear()
        self._bytes = 0

    def nbytes(self) -> int:
        """Bytes the pool holds."""
        return self._bytes


#: The pool of afmask.fl's convolution and of the mask objective.
POOL = Pool()


def return_free_memory() -> bool:
    """Hand the C heap's free pages back to the operating system; whether that was possible (glibc only)."""
    # glibc keeps freed heap pages mapped: after a run at T = 6372 released its workspaces the process stayed
    # at its peak (361 MB), and the plots that follow then added 26 MB on top of it; trimmed, it falls to 217 MB
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return False
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True

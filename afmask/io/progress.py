"""Progress on stderr: a tqdm bar on a terminal, a few plain lines when stderr is a file or a pipe.

A tqdm bar redraws itself with carriage returns; piped into a log file that is
one line of tens of kilobytes. :func:`progress_bar` returns a tqdm bar only
when stderr is a terminal, else a :class:`PlainProgress` that prints one line
per tenth of the work (and at most one every ``PLAIN_EVERY_S`` seconds for
long steps in between), and nothing for work it was never told the size of.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO

__all__ = ["PLAIN_EVERY_S", "PlainProgress", "progress_bar"]

#: Between the 10 % lines, a plain line at most this often (seconds), so long runs show they are alive.
PLAIN_EVERY_S = 60.0


class PlainProgress:
    """The part of tqdm's interface afmask uses (update, set_postfix, reset, close), printing plain lines."""

    def __init__(self, total: int = 0, initial: int = 0, desc: str = "", unit: str = "it",
                 file: Optional[TextIO] = None, every_s: float = PLAIN_EVERY_S):
        self.total, self.n, self.desc, self.unit = int(total or 0), int(initial), desc, unit
        self.file = file if file is not None else sys.stderr
        self.every_s = every_s
        self.postfix = ""
        self._t0 = self._last_t = time.perf_counter()
        self._last_tenth = self._tenth()
        self._printed_n = self.n
        self.closed = False

    def _tenth(self) -> int:
        return 10 * self.n // self.total if self.total > 0 else 0

    def _line(self) -> None:
        elapsed = time.perf_counter() - self._t0
        done = f"{self.n}/{self.total} {self.unit}" if self.total > 0 else f"{self.n} {self.unit}"
        pct = f"{100 * self.n // self.total:3d}% " if self.total > 0 else ""
        post = f" {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {pct}({done}, {elapsed:.1f} s){post}", file=self.file, flush=True)
        self._last_t = time.perf_counter()
        self._printed_n = self.n

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units; print a line at each new tenth (or after ``every_s`` seconds)."""
        self.n += int(n)
        if self.total <= 0:
            return
        tenth = self._tenth()
        if tenth > self._last_tenth or time.perf_counter() - self._last_t >= self.every_s:
            self._last_tenth = tenth
            self._line()

    def set_postfix(self, **kwargs: Any) -> None:
        """Values shown at the end of the next line (as tqdm's postfix)."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in kwargs.items())

    def reset(self, total: Optional[int] = None) -> None:
        """Start again at 0 (with a new total), as tqdm's reset."""
        if total is not None:
            self.total = int(total)
        self.n = 0
        self._last_tenth = 0
        self._printed_n = 0
        self._t0 = self._last_t = time.perf_counter()

    def close(self) -> None:
        """Print the last line if the work went on since the last one."""
        if not self.closed and self.total > 0 and self.n != self._printed_n:
            self._line()
        self.closed = True


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or unusual stream: no bar
        return False


def progress_bar(total: int = 0, desc: str = "", unit: str = "it", initial: int = 0, leave: bool = True) -> Any:
    """A progress display on stderr: a tqdm bar on a terminal, else a :class:`PlainProgress` (plain lines)."""
    if _is_terminal(sys.stderr):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, file=sys.stderr, desc=desc, unit=unit, dynamic_ncols=True, leave=leave)
    return PlainProgress(total=total, initial=initial, desc=desc, unit=unit)

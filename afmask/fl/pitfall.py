"""flashlight's indexed-assignment pitfall, replicated on purpose.

In flashlight, ``v(idx) = w;`` compiles and does nothing to ``v``: indexing a
``fl::Variable`` returns a new Variable holding a copy, and the assignment only
rebinds that temporary. afmask's ``v[idx] = w`` behaves the same way so that
ported code reproduces the original's numbers, and says so with a warning of
its own class. Strict mode (``AFMASK_STRICT=1`` or ``with strict():``) raises.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from typing import Iterator


class IndexAssignmentWarning(UserWarning):
    """``v[idx] = w`` on a Variable was ignored, exactly as flashlight ignores ``v(idx) = w;``."""


class IndexAssignmentError(TypeError):
    """``v[idx] = w`` on a Variable in strict mode."""


_state = threading.local()


def strict_enabled() -> bool:
    """Whether indexed assignment raises instead of warning."""
    override = getattr(_state, "strict", None)
    if override is not None:
        return override
    return os.environ.get("AFMASK_STRICT", "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def strict(enabled: bool = True) -> Iterator[None]:
    """Within the block, ``v[idx] = w`` on a Variable raises IndexAssignmentError (or only warns if ``enabled`` is False)."""
    previous = getattr(_state, "strict", None)
    _state.strict = enabled
    try:
        yield
    finally:
        _state.strict = previous


def ignored_assignment(key: object, depth: int = 2) -> None:
    """Report an indexed assignment that, as in flashlight, changed nothing."""
    frame = sys._getframe(depth)
    site = f"{frame.f_code.co_filename}:{frame.f_lineno}"
    message = (
        f"indexed assignment v[{key!r}] = w at {site} does nothing, as `v(idx) = w;` does nothing in "
        "flashlight: indexing returns a new Variable and the assignment only rebinds that temporary. "
        "Use `v = afmask.fl.assignIndex(v, w, *idx)` for a Variable with the range replaced "
        "(gradients flow to both)."
    )
    if strict_enabled():
        raise IndexAssignmentError(message)
    warnings.warn(message, IndexAssignmentWarning, stacklevel=depth + 1)

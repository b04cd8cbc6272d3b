"""Whole-or-nothing file writes, shared by every writer in afmask."""

from __future__ import annotations

import os
import secrets
import stat
from contextlib import contextmanager
from typing import BinaryIO, Iterator, Union

PathLike = Union[str, os.PathLike]


@contextmanager
def atomic_write(path: PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file beside ``path`` that replaces ``path`` on success and vanishes on error."""
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            # O_EXCL with mode 0o666 lets the umask decide the permissions, as for a plain open().
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:  # name the file the caller asked for, not our temporary one
            raise type(e)(e.errno, f"cannot write {path}: {e.strerror}", path) from None
    try:
        with os.fdopen(fd, "w+b") as f:  # readable too: libsndfile reads back what it writes
            yield f
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

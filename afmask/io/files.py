"""Whole-or-nothing file writes, shared by every writer in afmask; errors that name the file; stale temporaries swept."""

from __future__ import annotations

import errno
import math
import os
import re
import secrets
import shutil
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional, Union

import numpy as np

PathLike = Union[str, os.PathLike]

#: When this process started (close enough: when afmask.io was imported); temporaries older than it are stale.
PROCESS_START = time.time()
#: The names of afmask's own temporaries: ``.NAME.PID-HEX.tmp`` (atomic_write; before: ``.NAME.HEX.tmp``) and
#: ``.evaluation.PID-XXXX`` (the evaluation's staging folder; before: ``.evaluation.XXXX``).
_TMP_FILE = re.compile(r"^\..+\.(?:(?P<pid>\d+)-)?[0-9a-f]{12}\.tmp$")
_STAGING = re.compile(r"^\.evaluation\.(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+$")

_stage: list[str] = []


class RunFileError(ValueError):
    """A file of a run folder that cannot be used: names the file, why and what to do."""

    def __init__(self, path: PathLike, why: str, fix: str):
        self.filename = os.fspath(path)
        super().__init__(f"{self.filename}: {why}; {fix}")


@contextmanager
def stage(what: str) -> Iterator[None]:
    """Name the stage of the work (e.g. "saving the features") in write errors raised inside the block."""
    _stage.append(what)
    try:
        yield
    finally:
        _stage.pop()


def _write_error(e: OSError, path: str) -> OSError:
    """``e`` again, naming ``path``, the stage and (for a full disk) what to do."""
    where = f" ({_stage[-1]})" if _stage else ""
    reason = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        folder = os.path.dirname(os.path.abspath(path))
        free = shutil.disk_usage(folder).free if os.path.isdir(folder) else None
        left = f" ({free / 1e6:.0f} MB free)" if free is not None else ""
        reason += f"{left}; nothing partial was kept: free space on the disk of {folder} and run again"
    return type(e)(e.errno, f"cannot write {path}{where}: {reason}", path)


@contextmanager
def writing(path: PathLike) -> Iterator[None]:
    """Inside the block, an OSError that names no file (a full disk during a write) is raised again naming ``path``."""
    try:
        yield
    except OSError as e:
        if e.filename is not None:
            raise
        raise _write_error(e, os.fspath(path)) from None


def in_stage(what: str, folder_param: str):
    """Decorator: the call runs in stage ``what`` (see :func:`stage`), and an OSError naming no file raised in it
    is raised again naming the folder that argument ``folder_param`` names."""
    import functools
    import inspect

    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            folder = sig.bind(*args, **kwargs).arguments.get(folder_param, ".")
            with stage(what), writing(folder):
                return fn(*args, **kwargs)
        return inner
    return wrap


@contextmanager
def atomic_write(path: PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file beside ``path`` that replaces ``path`` on success and vanishes on error."""
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    while True:
        # The pid in the name tells sweep_stale whether the writer is still alive.
        tmp = os.path.join(folder, f".{base}.{os.getpid()}-{secrets.token_hex(6)}.tmp")
        try:
            # O_EXCL with mode 0o666 lets the umask decide the permissions, as for a plain open().
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:  # name the file the caller asked for, not our temporary one
            raise _write_error(e, path) from None
    try:
        try:
            with os.fdopen(fd, "w+b") as f:  # readable too: libsndfile reads back what it writes
                yield f
                f.flush()
                os.fsync(f.fileno())
            if os.path.exists(path):
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
            os.replace(tmp, path)
        except OSError as e:
            if e.filename is not None and os.fspath(e.filename) not in (tmp, path):
                raise  # about another file (one the caller read): its own message names it
            raise _write_error(e, path) from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def staging_folder(out: PathLike) -> Path:
    """A new hidden staging folder ``.evaluation.PID-XXXX`` inside ``out`` (sweep_stale knows the name)."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f".evaluation.{os.getpid()}-", dir=os.fspath(out)))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: leave its files alone
    return True


def sweep_stale(folder: PathLike, before: Optional[float] = None) -> list[Path]:
    """Remove afmask's own temporaries in ``folder`` (not below it) left by killed runs; returns what was removed.

    Only names of afmask's own patterns (``.NAME.PID-HEX.tmp`` files, ``.evaluation.PID-XXXX`` folders),
    only last modified before ``before`` (default: this process's start), and never those whose
    writer (the pid in the name) is still running.
    """
    folder = Path(folder)
    before = PROCESS_START if before is None else before
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        pattern = _TMP_FILE if entry.is_file(follow_symlinks=False) else (
            _STAGING if entry.is_dir(follow_symlinks=False) else None)
        match = pattern.match(entry.name) if pattern is not None else None
        if match is None:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= before:
                continue
        except FileNotFoundError:
            continue
        if match.group("pid") and _alive(int(match.group("pid"))):
            continue
        try:
            if pattern is _STAGING:
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass  # cannot remove it: harmless, try again next time
    return removed


def _only_temporaries(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but afmask's own temporaries and the settings a run writes first (or nothing)."""
    try:
        # config.json is written when a run starts: alone it records a run that never made anything
        return all(_TMP_FILE.match(e.name) or _STAGING.match(e.name) or e.name == "config.json" for e in os.scandir(folder))
    except OSError:
        return False


def removes_new_folder_on_failure(param: str):
    """Decorator: when the call fails, remove the folder named by argument ``param`` (and the parents it needed)
    if the call created it and wrote nothing there, so an early failure leaves no empty run folder behind."""
    import functools
    import inspect

    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            target = sig.bind(*args, **kwargs).arguments.get(param)
            new: list[Path] = []
            if target is not None:
                p = Path(os.fspath(target)).absolute()
                while not p.exists() and p != p.parent:
                    new.append(p)
                    p = p.parent
            try:
                return fn(*args, **kwargs)
            except BaseException:
                for folder in new:  # innermost first
                    if folder.is_dir() and _only_temporaries(folder):
                        shutil.rmtree(folder, ignore_errors=True)
                    else:
                        break
                raise
        return inner
    return wrap


def json_safe(obj: Any) -> Any:
    """``obj`` with NumPy scalars and arrays made plain Python and NaN/Inf made None, for strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    return obj

"""Reading the files of a run folder back: a damaged or hand-edited file is one RunFileError naming it and the fix.

Every reader takes ``fix``, the sentence that says what to do (re-run
``afmask explain ... --resume``, evaluate again, ...), because only the
caller knows which command wrote the file.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from typing import Any, Callable

import numpy as np

from afmask.io.files import RunFileError

__all__ = ["RunFileError", "read_csv_rows", "read_json", "read_npy", "read_npz"]


def _missing(path: str, fix: str) -> None:
    if not os.path.exists(path):
        raise RunFileError(path, "is missing", fix)
    if os.path.isdir(path):
        raise RunFileError(path, "is a folder, not a file", fix)


def read_json(path: os.PathLike, fix: str) -> Any:
    """The JSON document in ``path``."""
    path = os.fspath(path)
    _missing(path, fix)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError as e:
        raise RunFileError(path, f"is not text ({e.reason} at byte {e.start})", fix) from None
    except ValueError as e:
        raise RunFileError(path, f"is not valid JSON ({e})", fix) from None


def read_npy(path: os.PathLike, fix: str) -> np.ndarray:
    """The array in the .npy file ``path`` (no pickles)."""
    path = os.fspath(path)
    _missing(path, fix)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise RunFileError(path, f"is not a readable .npy file, truncated or damaged ({e})", fix) from None


def read_npz(path: os.PathLike, fix: str) -> dict[str, np.ndarray]:
    """``{name: array}`` of the .npz file ``path`` (no pickles), every member read (a damaged one fails here)."""
    path = os.fspath(path)
    _missing(path, fix)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, KeyError) as e:
        raise RunFileError(path, f"is not a readable .npz file, truncated or damaged ({e})", fix) from None


def read_csv_rows(path: os.PathLike, fix: str, columns: Callable[[str], Callable[[str], Any]],
                  required: tuple = ()) -> list[dict]:
    """The rows of CSV file ``path`` as dicts, each value converted by ``columns(name)`` (e.g. int or float);
    ``required``: columns the header must have."""
    path = os.fspath(path)
    _missing(path, fix)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            lacking = [c for c in required if c not in header]
            if lacking:
                raise RunFileError(path, f"lacks the column(s) {', '.join(lacking)} (header: {','.join(header) or 'none'})", fix)
            rows = []
            for line, row in enumerate(reader, start=2):
                if None in row or any(v is None for v in row.values()):
                    raise RunFileError(path, f"line {line} has {len(header)} columns expected, not "
                                             f"{sum(v is not None for v in row.values()) + len(row.get(None) or [])}", fix)
                try:
                    rows.append({k: columns(k)(v) for k, v in row.items()})
                except ValueError as e:
                    raise RunFileError(path, f"line {line}: {e}", fix) from None
            return rows
    except UnicodeDecodeError as e:
        raise RunFileError(path, f"is not text ({e.reason} at byte {e.start})", fix) from None
    except csv.Error as e:
        raise RunFileError(path, f"is not a valid CSV file ({e})", fix) from None

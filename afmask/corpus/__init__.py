"""Explaining a corpus: many utterances on Dask (a LocalCluster or an existing scheduler), aggregated answers.

:func:`explain_corpus` makes one normal run folder per utterance (``DIR/<id>/``, as ``afmask explain``
writes it), resumably, with failures in ``DIR/failures.csv``; :func:`write_corpus` writes the
corpus-level tables, plots and page from the finished folders.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> submodule. Loaded on first use (PEP 562): ``afmask.corpus.run`` imports Dask's distributed
#: (about 25 MB of resident memory), which every other command, ``afmask explain`` among them, does without.
_WHERE = {"write_corpus": "aggregate", "Utterance": "manifest", "read_list": "manifest", "CorpusRun": "run",
          "cluster_shape": "run", "explain_corpus": "run", "is_corpus": "run", "read_corpus": "run"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))

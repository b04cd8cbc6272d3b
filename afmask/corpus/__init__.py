"""Explaining a corpus: many utterances on Dask (a LocalCluster or an existing scheduler), aggregated answers.

:func:`explain_corpus` makes one normal run folder per utterance (``DIR/<id>/``, as ``afmask explain``
writes it), resumably, with failures in ``DIR/failures.csv``; :func:`write_corpus` writes the
corpus-level tables, plots and page from the finished folders.
"""

from afmask.corpus.aggregate import write_corpus
from afmask.corpus.manifest import Utterance, read_list
from afmask.corpus.run import CorpusRun, cluster_shape, explain_corpus, is_corpus, read_corpus

__all__ = ["CorpusRun", "Utterance", "cluster_shape", "explain_corpus", "is_corpus", "read_corpus", "read_list", "write_corpus"]

"""The 31-token wav2letter letter set and CTC targets with repetition labels.

Index: 0 ``|`` (word separator), 1 ``'``, 2..27 ``a``..``z``, 28 ``1`` and
29 ``2`` (repetition labels, ``--replabel=2``), 30 the CTC blank (written
``<blank>`` here; wav2letter appends it after the token file's entries).
Targets follow wav2letter (``--surround=|``, ``--replabel=2``): words joined
by ``|``, one ``|`` added at each end, then runs of a repeated token packed
into the token and a repetition label (``hello`` -> ``h e l 1 o``,
``aaa`` -> ``a 2``, ``aaaa`` -> ``a 2 a``), as ``packReplabels`` does.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

import numpy as np

TOKENS: tuple[str, ...] = ("|", "'", *string.ascii_lowercase, "1", "2", "<blank>")
NUM_TOKENS = len(TOKENS)  #: 31
WORD_SEP = 0  #: index of ``|``
APOSTROPHE = 1  #: index of ``'``
LETTER_ROWS = slice(2, 28)  #: rows of a..z (ArrayFire ``seq(2, 27)``)
REP_LABELS = (28, 29)  #: indices of the repetition labels ``1`` and ``2``
BLANK = 30  #: index of the CTC blank
MAX_REPS = 2  #: wav2letter ``--replabel``
TOKEN_INDEX: dict[str, int] = {tok: i for i, tok in enumerate(TOKENS)}

_NOT_KEPT = re.compile(r"[^a-z' ]+")


def normalize_text(text: str) -> str:
    """Text normalised for scoring: lower-case, every character but a-z, ' and space -> space, spaces collapsed and stripped."""
    return " ".join(_NOT_KEPT.sub(" ", text.lower()).split())


def _rep_index(count: int) -> int:
    """Index of the repetition label for ``count`` repeats (1..MAX_REPS)."""
    return REP_LABELS[count - 1]


def pack_replabels(indices: Iterable[int], max_reps: int = MAX_REPS) -> list[int]:
    """Token indices -> the same with runs packed into repetition labels (wav2letter packReplabels)."""
    if not 0 <= max_reps <= len(REP_LABELS):
        raise ValueError(f"max_reps must be in 0..{len(REP_LABELS)}, got {max_reps}")
    indices = [int(i) for i in indices]
    if max_reps == 0:
        return indices
    out: list[int] = []
    prev, reps = -1, 0
    for tok in indices:
        if tok == prev and reps < max_reps:
            reps += 1
            continue
        if reps:
            out.append(_rep_index(reps))
            reps = 0
        out.append(tok)
        prev = tok
    if reps:
        out.append(_rep_index(reps))
    return out


def unpack_replabels(indices: Iterable[int], max_reps: int = MAX_REPS) -> list[int]:
    """Token indices with repetition labels -> plain indices (wav2letter unpackReplabels).

    A label ``r`` repeats the previous plain token r times; a label with no
    plain token before it (at the start, or right after another label) is
    dropped, as in wav2letter.
    """
    if not 0 <= max_reps <= len(REP_LABELS):
        raise ValueError(f"max_reps must be in 0..{len(REP_LABELS)}, got {max_reps}")
    reps = {REP_LABELS[r - 1]: r for r in range(1, max_reps + 1)}
    out: list[int] = []
    prev = -1
    for tok in (int(i) for i in indices):
        if tok not in reps:
            out.append(tok)
            prev = tok
        elif prev != -1:
            out.extend([prev] * reps[tok])
            prev = -1
    return out


def text_to_indices(text: str, max_reps: int = MAX_REPS, surround: bool = True) -> np.ndarray:
    """CTC target (L,) int32 for a transcript: lower-cased words joined by ``|``, surrounded by ``|``, replabel-packed.

    Only a-z, apostrophes and whitespace are accepted (ValueError naming the
    first other character); use :func:`normalize_text` first to drop them.
    An empty transcript gives ``[|]`` with ``surround`` (as wav2letter), else ``[]``.
    """
    words = text.lower().split()
    for word in words:
        for ch in word:
            if not 1 <= TOKEN_INDEX.get(ch, -1) <= 27:
                raise ValueError(
                    f"transcript character {ch!r} (in word {word!r}) is not in the token set "
                    "(a-z, ', whitespace); normalise the text first"
                )
    target = [TOKEN_INDEX[ch] for ch in "|".join(words)]
    if surround:
        # wav2letter: append | unless already last; prepend | when longer than one token.
        if not target or target[-1] != WORD_SEP:
            target.append(WORD_SEP)
        if len(target) > 1 and target[0] != WORD_SEP:
            target.insert(0, WORD_SEP)
    return np.asarray(pack_replabels(target, max_reps), dtype=np.int32)


def indices_to_text(indices: Iterable[int], max_reps: int = MAX_REPS) -> str:
    """Text for a token index sequence: replabels unpacked, blanks dropped, ``|`` -> space, spaces collapsed and stripped."""
    plain = unpack_replabels(indices, max_reps)
    bad = [i for i in plain if not 0 <= i < NUM_TOKENS]
    if bad:
        raise ValueError(f"token index {bad[0]} is outside 0..{NUM_TOKENS - 1}")
    chars = [" " if i == WORD_SEP else TOKENS[i] for i in plain if i != BLANK and i not in REP_LABELS]
    return " ".join("".join(chars).split())

"""Greedy CTC decoding of wav2letter emissions, and character / word error rates.

Scoring normalisation (both :func:`cer` and :func:`wer`, hypothesis and
reference alike) is :func:`afmask.model.tokens.normalize_text`: lower-case,
every character other than a-z, apostrophe and space becomes a space, runs
of spaces collapse to one, leading/trailing spaces are stripped. CER counts
characters of that string (spaces included); WER counts its space-separated
words. Both are Levenshtein edits (substitution, insertion, deletion, each
costing 1) divided by the reference length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .tokens import BLANK, MAX_REPS, NUM_TOKENS, indices_to_text, normalize_text


def _check_emissions(emissions: np.ndarray) -> np.ndarray:
    """Validate emissions (31, T') in ArrayFire orientation ((31,) is T' = 1)."""
    emissions = np.asarray(emissions)
    if emissions.ndim == 1:
        emissions = emissions[:, None]  # ArrayFire orientation drops a trailing T' = 1
    if emissions.ndim != 2 or emissions.shape[0] != NUM_TOKENS:
        raise ValueError(
            f"emissions must have shape ({NUM_TOKENS}, T') (tokens x frames, ArrayFire "
            f"orientation), got {emissions.shape}"
        )
    if not np.all(np.isfinite(emissions)):
        raise ValueError("emissions contain NaN or inf")
    return emissions


def greedy_path(emissions: np.ndarray) -> np.ndarray:
    """Best token per frame (T',) int64 of emissions (31, T') (ties: the lower index)."""
    return np.argmax(_check_emissions(emissions), axis=0)


def greedy_decode(emissions: np.ndarray, max_reps: int = MAX_REPS) -> str:
    """Greedy CTC transcript of emissions (31, T'), any float dtype: argmax, collapse, drop blank, expand replabels.

    Per frame argmax; runs of the same token collapse to one; blanks are
    dropped; ``1``/``2`` repeat the previous token once/twice; ``|`` becomes
    a space; spaces are collapsed and stripped. All blank gives "".
    """
    path = greedy_path(emissions)
    if path.size == 0:
        return ""
    keep = np.ones(path.size, dtype=bool)
    keep[1:] = path[1:] != path[:-1]
    collapsed = path[keep]
    return indices_to_text(collapsed[collapsed != BLANK].tolist(), max_reps)


def edit_distance(hyp: Sequence, ref: Sequence) -> int:
    """Levenshtein distance between two sequences (unit-cost substitution, insertion, deletion)."""
    if len(hyp) < len(ref):
        hyp, ref = ref, hyp  # keep the row (the shorter sequence) short
    prev = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, start=1):
        cur = [i]
        for j, r in enumerate(ref, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r)))
        prev = cur
    return prev[-1]


def cer(hyp: str, ref: str) -> float:
    """Character error rate of a hypothesis against a reference, after the module's normalisation.

    Raises ValueError when the normalised reference is empty (the rate is undefined).
    """
    h, r = normalize_text(hyp), normalize_text(ref)
    if not r:
        raise ValueError(f"reference {ref!r} is empty after normalisation; CER is undefined")
    return edit_distance(h, r) / len(r)


def wer(hyp: str, ref: str) -> float:
    """Word error rate of a hypothesis against a reference, after the module's normalisation.

    Raises ValueError when the normalised reference has no words (the rate is undefined).
    """
    h, r = normalize_text(hyp).split(), normalize_text(ref).split()
    if not r:
        raise ValueError(f"reference {ref!r} has no words after normalisation; WER is undefined")
    return edit_distance(h, r) / len(r)

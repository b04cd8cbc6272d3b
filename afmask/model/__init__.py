"""wav2letter model: token set, greedy decoding and error rates (the .arch parser and layers come later)."""

from .decode import cer, edit_distance, greedy_decode, greedy_path, wer
from .tokens import (
    BLANK,
    LETTER_ROWS,
    NUM_TOKENS,
    TOKENS,
    WORD_SEP,
    indices_to_text,
    normalize_text,
    pack_replabels,
    text_to_indices,
    unpack_replabels,
)

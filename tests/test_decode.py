"""Token set, replabel targets, greedy CTC decoding and error rates."""

import numpy as np
import pytest

from afmask.model import (
    BLANK,
    LETTER_ROWS,
    TOKENS,
    cer,
    greedy_decode,
    indices_to_text,
    pack_replabels,
    text_to_indices,
    unpack_replabels,
    wer,
)
from afmask.model.decode import edit_distance
from afmask.model.tokens import TOKEN_INDEX, normalize_text


def _emissions(tokens):
    """One-hot-ish emissions (31, T') whose argmax per frame is the given token sequence."""
    e = np.zeros((31, len(tokens)), np.float32)
    e[[TOKEN_INDEX[t] for t in tokens], np.arange(len(tokens))] = 5.0
    return e


def test_token_set():
    assert len(TOKENS) == 31 and BLANK == 30
    assert TOKENS[0] == "|" and TOKENS[1] == "'" and TOKENS[28:30] == ("1", "2")
    assert "".join(TOKENS[LETTER_ROWS]) == "abcdefghijklmnopqrstuvwxyz"


def test_original_model_output_cer(shared):
    emissions = np.load(shared / "fixtures/original_model/utt-000000000_output.npy")
    assert emissions.shape == (31, 804)
    ref = (shared / "data/librispeech/utt-000000000.txt").read_text()
    hyp = greedy_decode(emissions)
    assert hyp.startswith("at had it source away back in the woods of the old")
    rate = cer(hyp, ref)
    print(f"CER {rate:.4f}, WER {wer(hyp, ref):.4f}: {hyp}")
    assert rate <= 0.115


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("hello", "| h e l 1 o |"),
        ("aaa", "| a 2 |"),
        ("aaaa", "| a 2 a |"),
        ("aaaaa", "| a 2 a 1 |"),
        ("bookkeeper", "| b o 1 k 1 e 1 p e r |"),
        ("Lynde's  HOLLOW", "| l y n d e ' s | h o l 1 o w |"),
    ],
)
def test_replabel_targets(text, tokens):
    expected = [TOKEN_INDEX[t] for t in tokens.split()]
    target = text_to_indices(text)
    assert target.dtype == np.int32
    assert target.tolist() == expected
    assert indices_to_text(target) == " ".join(text.lower().split())


def test_replabel_edge_cases():
    assert text_to_indices("").tolist() == [0]  # wav2letter's surround of an empty target
    assert text_to_indices("", surround=False).tolist() == []
    assert text_to_indices("ab", surround=False).tolist() == [2, 3]
    assert text_to_indices("hello", max_reps=0, surround=False).tolist() == [9, 6, 13, 13, 16]
    # Labels with nothing to repeat (first, or right after a label) are dropped, as in wav2letter.
    assert unpack_replabels([29, 2, 28, 29, 3]) == [2, 2, 3]
    assert pack_replabels([]) == [] and unpack_replabels([]) == []
    with pytest.raises(ValueError, match="'1'"):
        text_to_indices("route 1")
    with pytest.raises(ValueError, match=r"'\|'"):
        text_to_indices("a|b")


def test_greedy_decode_rules():
    b = "<blank>"
    # collapse repeats, blank separates real repeats, 1/2 expand, | -> space, strip.
    seq = ["|", "h", "h", b, "e", "l", "l", "1", b, "o", "|", "|", b, "a", "2", "|"]
    assert greedy_decode(_emissions(seq)) == "hello aaa"
    assert greedy_decode(_emissions(["l", b, "l"])) == "ll"
    assert greedy_decode(_emissions(["l", "l"])) == "l"
    assert greedy_decode(_emissions(["|", "a", "|", "|", b, "|", "b", "|"])) == "a b"


def test_greedy_decode_edge_cases():
    assert greedy_decode(_emissions(["<blank>"] * 7)) == ""
    assert greedy_decode(np.zeros((31, 0), np.float32)) == ""
    # ArrayFire orientation drops a trailing T' = 1: (31,) is one frame.
    assert greedy_decode(_emissions(["q"])[:, 0]) == "q"
    # A label with no letter before it is dropped.
    assert greedy_decode(_emissions(["2", "a"])) == "a"
    with pytest.raises(ValueError, match=r"\(31, T'\).*\(804, 31\)"):
        greedy_decode(np.zeros((804, 31), np.float32))
    bad = _emissions(["a", "b"])
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        greedy_decode(bad)


def test_error_rates():
    assert normalize_text("  Hello,  WORLD!  it's-42 ") == "hello world it's"
    assert cer("Hello, world!", "hello world") == 0.0
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a"]) == 1
    assert cer("kitten", "sitting") == pytest.approx(3 / 7)
    assert wer("the cat sat", "the cat sat down") == pytest.approx(1 / 4)
    assert wer("a b c", "x y") == pytest.approx(3 / 2)  # insertions can push it above 1
    assert cer("", "abc") == 1.0 and wer("", "a b") == 1.0
    with pytest.raises(ValueError, match="empty after normalisation"):
        cer("abc", "")
    with pytest.raises(ValueError, match="no words"):
        wer("abc", " !? ")

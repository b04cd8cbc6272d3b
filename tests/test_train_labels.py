"""The demo-model training's text rules: Whisper text and AN4 spelled letters -> the 31 tokens."""

import importlib.util
import sys
from pathlib import Path

import pytest

TRAIN = Path(__file__).resolve().parents[1] / "examples" / "train_demo_model"


def load(name):
    sys.path.insert(0, str(TRAIN))
    try:
        spec = importlib.util.spec_from_file_location(f"train_demo_{name}", TRAIN / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(TRAIN))
    return module


def test_whisper_text_is_normalised_to_the_tokens():
    label = load("label")
    assert label.normalise("Mr. Smith paid $5 in 1820, the 21st of May.") == \
        "mister smith paid five dollars in eighteen twenty the twenty first of may"
    assert label.normalise("It's 1905 and 100% \u2014 3,000 men.") == \
        "it's nineteen oh five and one hundred percent three thousand men"
    assert label.number_words(9999) == "nine thousand nine hundred and ninety nine"
    assert label.ordinal_words(40) == "fortieth" and label.ordinal_words(12) == "twelfth"


def test_whisper_text_with_other_symbols_is_refused():
    label = load("label")
    with pytest.raises(ValueError, match="symbols left"):
        label.normalise("it costs 5\u20ac")
    with pytest.raises(ValueError, match="out of range"):
        label.normalise("in 123456 ways")


def test_an4_spelled_letters_are_written_as_their_names():
    real = load("real_data")
    assert real.an4_text("U M N Y H SIX") == "you em en why aitch six"
    assert real.an4_text("ENTER SEVENTY W") == "enter seventy double you"

"""afmask: which time-frequency points of an utterance a speech recogniser relies on."""

__version__ = "0.1.0"

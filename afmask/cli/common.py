"""Options and loaders shared by the sub-commands that read an utterance or a model."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from contextlib import contextmanager
from typing import Iterator


def int_pair(flag: str, form: str):
    """An argparse type reading ``A:B`` as two whole numbers; the error names ``flag`` and the expected ``form``."""
    def parse(text: str) -> tuple[int, int]:
        try:
            a, b = text.split(":")
            return int(a), int(b)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes {form}, got {text!r}") from None
    return parse


def add_audio_arguments(p: argparse.ArgumentParser) -> None:
    """The audio-loading and normalisation options shared by commands that read an utterance."""
    p.add_argument("--resample", action="store_true", help="resample audio that is not 16 kHz (else it is refused)")
    p.add_argument("--channel", type=int, metavar="N", default=None, help="use channel N (0-based) of a multi-channel file")
    p.add_argument("--allow-clipping", action="store_true", help="accept audio with many full-scale samples")
    p.add_argument("--stats", choices=["float64", "arrayfire_cpu"], default="float64",
                   help="how the global mean/stdev of the input are computed (arrayfire_cpu replays the C++ float32 sums)")


def load_input(args: argparse.Namespace) -> dict:
    """The features dict ("fft", "magnitude", "input") of ``args.audio`` under the shared audio options."""
    from afmask.features.checks import check_audible, features_of
    from afmask.io import load_audio

    samples = load_audio(args.audio, resample=args.resample, channel=args.channel, allow_clipping=args.allow_clipping)
    feats = features_of(args.audio, samples, stats=args.stats)
    check_audible(args.audio, samples, feats["magnitude"], refuse=False)  # a warning: the numbers are still right
    return feats


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--model demo | --arch A --params P``."""
    p.add_argument("--model", choices=["demo"], default=None,
                   help="packaged model to use (default: demo, unless --arch/--params are given)")
    p.add_argument("--arch", metavar="A", help="wav2letter .arch file (NFEAT=257, NLABEL=31); needs --params")
    p.add_argument("--params", metavar="P", help="weights for --arch: af::saveArray file (.af) or .npz, in params() order")


def model_from_args(args: argparse.Namespace):
    """The network the model options name: the demo model unless --arch/--params are given."""
    from afmask.model import demo_model, load_model

    if args.model is not None and (args.arch or args.params):
        raise ValueError("give either --model or --arch/--params, not both")
    if bool(args.arch) != bool(args.params):
        raise ValueError("--arch and --params go together: give both (a model needs its weights), or neither for the demo model")
    if args.arch:
        for flag, path in (("--arch", args.arch), ("--params", args.params)):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path}: no such file ({flag})")
        return load_model(args.arch, args.params)
    return demo_model()


@contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """Inside the block, afmask's own warnings print as one line ``afmask CMD: warning: ...`` on stderr."""
    with warnings.catch_warnings():
        default = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if getattr(category, "__module__", "").startswith("afmask"):
                print(f"afmask {command}: warning: {message}", file=sys.stderr, flush=True)
            else:
                default(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield

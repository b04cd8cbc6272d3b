"""``afmask features AUDIO -o OUT``: the wav2letter "pow" features of an utterance, saved as .af or .npz."""

from __future__ import annotations

import argparse
import os

#: Feature file formats, by extension.
FEATURE_EXTS = (".af", ".npz")


def add_audio_arguments(p: argparse.ArgumentParser) -> None:
    """The audio-loading and normalisation options shared by commands that read an utterance."""
    p.add_argument("--resample", action="store_true", help="resample audio that is not 16 kHz (else it is refused)")
    p.add_argument("--channel", type=int, metavar="N", default=None, help="use channel N (0-based) of a multi-channel file")
    p.add_argument("--allow-clipping", action="store_true", help="accept audio with many full-scale samples")
    p.add_argument("--stats", choices=["float64", "arrayfire_cpu"], default="float64",
                   help="how the global mean/stdev of the input are computed (arrayfire_cpu replays the C++ float32 sums)")


def load_input(args: argparse.Namespace) -> dict:
    """The features dict ("fft", "magnitude", "input") of ``args.audio`` under the shared audio options."""
    from afmask.features import features
    from afmask.io import load_audio

    samples = load_audio(args.audio, resample=args.resample, channel=args.channel, allow_clipping=args.allow_clipping)
    return features(samples, stats=args.stats)


def register(subparsers) -> None:
    """Add the ``features`` sub-command."""
    p = subparsers.add_parser(
        "features",
        help="compute the wav2letter pow features of an utterance",
        description="Write fft (2K x T), magnitude (K x T) and input (T x K, normalised), ArrayFire orientation, "
                    "float32, to an .af (af::saveArray) or .npz file.",
    )
    p.add_argument("audio", metavar="AUDIO", help="WAV or FLAC file, 16 kHz mono (see --resample, --channel)")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="output file, .af or .npz")
    add_audio_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compute the features and write them whole to ``args.output``."""
    from afmask.io import save_arrays

    ext = os.path.splitext(args.output)[1].lower()
    if ext not in FEATURE_EXTS:
        raise ValueError(f"{args.output}: -o needs an .af or .npz file, got {ext or 'no extension'!r}")
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{args.output}: folder {folder} does not exist")
    feats = load_input(args)
    save_arrays(args.output, {k: feats[k] for k in ("fft", "magnitude", "input")})
    t = feats["input"].shape[0]
    print(f"wrote {args.output}: fft {feats['fft'].shape}, magnitude {feats['magnitude'].shape}, input {feats['input'].shape} ({t} frames)")
    return 0

"""``afmask features AUDIO -o OUT``: the wav2letter "pow" features of an utterance, saved as .af or .npz."""

from __future__ import annotations

import argparse
import os

from afmask.cli.common import add_audio_arguments, load_input

#: Feature file formats, by extension.
FEATURE_EXTS = (".af", ".npz")


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

"""``afmask transcribe AUDIO``: greedy transcript of an utterance, optionally saving the model's emissions."""

from __future__ import annotations

import argparse
import os

from afmask.cli.common import add_audio_arguments, add_model_arguments, load_input, model_from_args

#: Emission file formats, by extension.
EMISSION_EXTS = (".npy", ".npz", ".af")


def register(subparsers) -> None:
    """Add the ``transcribe`` sub-command."""
    p = subparsers.add_parser(
        "transcribe",
        help="print the greedy transcript of an utterance",
        description="Run the wav2letter model on a 16 kHz mono utterance and print its greedy CTC transcript.",
    )
    p.add_argument("audio", metavar="AUDIO", help="WAV or FLAC file, 16 kHz mono (see --resample, --channel)")
    add_model_arguments(p)
    p.add_argument("--emissions", metavar="OUT",
                   help="also save the emissions (31 x T', ArrayFire orientation) as .npy, .npz or .af")
    add_audio_arguments(p)
    p.set_defaults(func=run)


def _check_output(path: str) -> None:
    ext = os.path.splitext(path)[1].lower()
    if ext not in EMISSION_EXTS:
        raise ValueError(f"{path}: --emissions needs one of {', '.join(EMISSION_EXTS)}, got {ext or 'no extension'!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{path}: folder {folder} does not exist")


def run(args: argparse.Namespace) -> int:
    """Load audio and model, print the transcript, save the emissions if asked."""
    from afmask.io import save_arrays
    from afmask.model import forward, greedy_decode

    if args.emissions:
        _check_output(args.emissions)  # fail before the slow part
    network = model_from_args(args)
    x = load_input(args)["input"]
    emissions = forward(network, x)
    if emissions.ndim == 1:
        emissions = emissions[:, None]  # one output frame: keep (31, 1)
    text = greedy_decode(emissions)
    if args.emissions:
        save_arrays(args.emissions, {"emissions": emissions})
    print(text)
    return 0

"""``afmask validate AUDIO --blind-band LO:HI | --blind-frames A:B --out DIR``: a ground-truth test of the method."""

from __future__ import annotations

import argparse

from afmask.cli.common import add_audio_arguments, add_model_arguments, int_pair, model_from_args
from afmask.cli.explain import add_run_arguments, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``validate`` sub-command."""
    p = sub.add_parser(
        "validate",
        help="ground truth: explain a model made blind to a band or time window and see where the map puts it",
        description="Derive a model blind to input bins LO..HI-1 (its first-layer weights there zeroed) or to frames "
                    "A..B-1 (those input frames zeroed), and, unless --leaky, exactly blind: its input standardised "
                    "over the other points only, so the region does not reach it through the global normalisation "
                    "either. Explain the utterance with it (a run folder in DIR), and report the share of the map's "
                    "top 20% points inside the blind region against energy's share, and how much deleting the region "
                    "changes the blind model's output (and the leaky form's). Writes DIR/validation.json.",
    )
    p.add_argument("audio", metavar="AUDIO", help="WAV or FLAC file, 16 kHz mono")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="run folder of the blind model's explanation")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--blind-band", type=int_pair("--blind-band", "LO:HI (two integers)"), metavar="LO:HI",
                       help="bins the model cannot read")
    where.add_argument("--blind-frames", type=int_pair("--blind-frames", "LO:HI (two integers)"), metavar="A:B",
                       help="frames the model cannot read")
    p.add_argument("--leaky", action="store_true",
                   help="keep the global normalisation over all points: the region still reaches the model through it")
    add_model_arguments(p)
    add_run_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_audio_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Explain the blind model and print the verdict."""
    from afmask.api import VALIDATION_FILE, validate

    if args.frames is not None:
        raise ValueError("--frames is not supported by validate: the blind model is explained over the whole utterance")
    name = "demo" if not args.arch else f"{args.arch} + {args.params}"
    res = validate(args.audio, args.out, model=model_from_args(args), config=config_from_args(args),
                   band=args.blind_band, frames=args.blind_frames, progress=not args.no_progress,
                   resample=args.resample, channel=args.channel, allow_clipping=args.allow_clipping, model_name=name,
                   leaky=args.leaky)
    print(f"afmask validate: {res['verdict']}")
    print(f"afmask validate: wrote {args.out}/{VALIDATION_FILE}")
    return 0

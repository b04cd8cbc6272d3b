"""``afmask attribute AUDIO --method M --out DIR``: explain an utterance with one of the field's methods (or the mask)."""

from __future__ import annotations

import argparse
import math

from afmask.cli.common import add_audio_arguments, add_model_arguments, model_from_args


def _cell(text: str):
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cell takes BINS,FRAMES (or one number), got {text!r}") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"--cell takes BINS,FRAMES (or one number), got {text!r}")
    return tuple(parts)


def _areas(text: str) -> tuple:
    try:
        areas = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--areas takes shares in (0, 1) separated by commas, got {text!r}") from None
    if not areas or any(not 0.0 < a < 1.0 for a in areas):
        raise argparse.ArgumentTypeError(f"--areas takes shares in (0, 1) separated by commas, got {text!r}")
    return areas


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--noise-level takes a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"--noise-level takes a finite number > 0, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``attribute`` sub-command."""
    from afmask.attribute import METHODS, SCORES, SPACES
    from afmask.evaluate.controls import NOISE_KINDS

    p = sub.add_parser(
        "attribute",
        help="explain an utterance with saliency, gradient x input, SmoothGrad, IG, RISE, extremal masks or the mask",
        description="Explain which time-frequency points the recogniser relies on with one of the field's attribution "
                    "methods (Captum's definitions; RISE for random occlusion; fixed-area extremal masks) or afmask's own mask, in one shape: "
                    "importance per point (K x T), larger = more important. Writes importance.npy, attribution.json, "
                    "config.json, features.npz and heatmap.png to DIR, then (unless --no-evaluation) the controls "
                    "(energy-stratified deletion, ties, plausibility, global deletion/insertion gap) to controls.json. "
                    "`afmask compare DIR1 DIR2 ...` ranks several such folders per control.",
    )
    p.add_argument("audio", metavar="AUDIO", help="WAV or FLAC file, 16 kHz mono (see --resample, --channel)")
    p.add_argument("--method", required=True, choices=list(METHODS), help="the attribution method")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    add_model_arguments(p)
    g = p.add_argument_group("method settings (each applies to the methods named)")
    g.add_argument("--score", choices=SCORES, help="what is explained: logprob of the clean greedy path (gradients' "
                                                   "default), its mean posterior prob (RISE's default), or -distance")
    g.add_argument("--space", choices=SPACES, help="attribute to the magnitudes (default) or to the normalised network "
                                                   "input (IG's default)")
    g.add_argument("--batch", type=int, metavar="N", help="inputs per forward pass (default 8)")
    g.add_argument("--n-samples", type=int, metavar="N", help="smoothgrad: noisy inputs (default 16)")
    g.add_argument("--stdev", type=float, metavar="X", help="smoothgrad: noise sigma as a fraction of the input's max - min (default 0.1)")
    g.add_argument("--n-steps", type=int, metavar="N", help="ig: integration steps (default 50)")
    g.add_argument("--ig-method", choices=["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"],
                   help="ig: quadrature (default gausslegendre)")
    g.add_argument("--n-masks", type=int, metavar="N", help="rise: random masks (default 1000)")
    g.add_argument("--cell", type=_cell, metavar="BINS,FRAMES", help="rise: grid cell size (default 16,8)")
    g.add_argument("--p-keep", type=float, metavar="P", help="rise: probability a cell is kept (default 0.5)")
    g.add_argument("--seed", type=int, help="smoothgrad, rise, mask: random seed")
    g.add_argument("--iterations", type=int, metavar="N", help="mask: most iterations (default mode's preset otherwise); "
                                                             "extremal: Adam steps (default 300)")
    g.add_argument("--areas", type=_areas, metavar="A,B,...", help="extremal: shares of the points kept (default "
                                                                  "0.05,0.1,0.2,0.3,0.5,0.7,0.9)")
    g.add_argument("--mode", choices=["default", "faithful"], help="mask: the MaskConfig preset (default: default)")
    g.add_argument("--restarts", type=int, metavar="N", help="mask: runs with seeds seed .. seed + N - 1, their maps "
                                                            "averaged as percentile ranks (default 1)")
    p.add_argument("--modes", nargs="+", choices=["zero", "noise"], default=["zero"],
                   help="stratified deletion by zeroing and/or by noise (--noise-kind; default: zero)")
    p.add_argument("--noise-kind", choices=NOISE_KINDS,
                   help="the noise of --modes noise (default: the default mode's own, drop)")
    p.add_argument("--noise-level", type=_positive, metavar="X",
                   help="its level (default: the default mode's bound, 1)")
    p.add_argument("--no-evaluation", action="store_true", help="skip the controls")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_audio_arguments(p)
    p.set_defaults(func=run)


#: Which command-line option sets which constructor argument, per method.
OPTIONS = {
    "score": ("score", ("saliency", "ixg", "smoothgrad", "ig", "rise", "extremal")),
    "space": ("space", ("saliency", "ixg", "smoothgrad", "ig", "rise", "extremal")),
    "batch": ("batch", ("saliency", "ixg", "smoothgrad", "ig", "rise", "extremal")),
    "n_samples": ("n_samples", ("smoothgrad",)),
    "stdev": ("stdev", ("smoothgrad",)),
    "n_steps": ("n_steps", ("ig",)),
    "ig_method": ("method", ("ig",)),
    "n_masks": ("n_masks", ("rise",)),
    "cell": ("cell", ("rise",)),
    "p_keep": ("p_keep", ("rise",)),
    "seed": ("seed", ("smoothgrad", "rise", "mask")),
    "iterations": ("iterations", ("mask", "extremal")),
    "areas": ("areas", ("extremal",)),
}


def method_options(args: argparse.Namespace) -> dict:
    """The constructor arguments the options give for ``args.method``; an option for another method is an error."""
    from afmask.mask import MaskConfig

    opts = {}
    for flag, (name, methods) in OPTIONS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if args.method not in methods:
            raise ValueError(f"--{flag.replace('_', '-')} does not apply to --method {args.method} (it is for {', '.join(methods)})")
        opts[name] = value
    if args.mode is not None and args.method != "mask":
        raise ValueError(f"--mode does not apply to --method {args.method} (it is for mask)")
    restarts = getattr(args, "restarts", None)
    if restarts is not None and args.method != "mask":
        raise ValueError(f"--restarts does not apply to --method {args.method} (it is for mask)")
    if args.method == "mask":
        opts = {"config": MaskConfig.preset(args.mode or "default", **opts)}
        if restarts is not None:
            opts["restarts"] = restarts
    return opts


def run(args: argparse.Namespace) -> int:
    """Explain, write the folder, then the controls."""
    from afmask.api import attribute, evaluate_attribution

    opts = method_options(args)
    model = model_from_args(args)
    name = "demo" if not args.arch else f"{args.arch} + {args.params}"
    result = attribute(args.audio, args.out, method=args.method, model=model, options=opts, progress=not args.no_progress,
                       resample=args.resample, channel=args.channel, allow_clipping=args.allow_clipping, model_name=name)
    print(f"afmask attribute: {args.method}, {result.seconds:.1f} s, {result.extras.get('forwards')} inputs through the "
          f"model; map {result.importance.shape[0]} x {result.importance.shape[1]} written to {args.out}/")
    if "completeness" in result.extras:
        c = result.extras["completeness"]
        print(f"  completeness: sum {c['sum']:.5g} vs score(x) - score(baseline) {c['score_difference']:.5g} "
              f"(relative error {c['relative_delta']:.2g})")
    if not args.no_evaluation:
        doc = evaluate_attribution(args.out, model, modes=tuple(args.modes), progress=not args.no_progress,
                                   noise_kind=args.noise_kind, noise_level=args.noise_level)
        print(f"  {doc['stratified']['verdict']}")
        print(f"  {doc['global']['verdict']}")
        print(f"  {doc['ties']['verdict']}")
        if "plausibility" in doc and "verdict" in doc["plausibility"]:
            print(f"  {doc['plausibility']['verdict']}")
        print(f"  controls written to {args.out}/controls.json")
    return 0

"""``afmask explain AUDIO --out DIR``: learn which time-frequency points the recogniser relies on."""

from __future__ import annotations

import argparse

from afmask.cli.common import add_audio_arguments, add_model_arguments, int_pair, model_from_args
from afmask.mask.config import GRADIENTS, MODES, NOISES, OPTIMIZERS, PARAMETRIZATIONS, REGULARIZERS, VARIANTS


def _typed(key: str):
    """An argparse type for a setting: a number as given (its range is checked with the settings), else the
    schema's message for a value that is no number."""
    from afmask.mask.config import ConfigError, check_setting

    def convert(text: str):
        value = text
        for parse in (int, float):
            try:
                value = parse(text)
                break
            except ValueError:
                continue
        if not isinstance(value, str) or (key == "lam" and text == "auto"):
            return value  # its range is checked with the other settings, and the error names the option
        try:
            return check_setting(key, value)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(f"{exc.why}; {exc.fix}") from None

    convert.__name__ = key
    return convert


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Settings of a run that the command line can override (everything else: --config FILE)."""
    p.add_argument("--config", metavar="FILE", help="settings file (JSON or TOML); options given here override it")
    p.add_argument("--mode", choices=MODES, default=None, help="faithful (the original C++ loop) or default (the best method)")
    p.add_argument("--iterations", type=_typed("iterations"), metavar="N", help="most iterations")
    p.add_argument("--lambda", dest="lam", type=_typed("lam"), metavar="X", help="regulariser weight, or 'auto'")
    p.add_argument("--lr", type=_typed("lr"), help="learning rate")
    p.add_argument("--variant", choices=VARIANTS, help="post-processing of the network output")
    p.add_argument("--regularizer", choices=REGULARIZERS)
    p.add_argument("--parametrization", choices=PARAMETRIZATIONS)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--noise", choices=NOISES, help="absolute (as the original), relative to each bin's magnitude, attenuate (scaled by 1 - m*U(0, 1)) or drop (by 1 - m or 1)")
    p.add_argument("--samples", type=_typed("samples"), metavar="S", help="noise samples per step")
    p.add_argument("--gradient", choices=GRADIENTS, help="hand-written (verified) or autograd")
    p.add_argument("--seed", type=_typed("seed"))
    p.add_argument("--restarts", type=_typed("restarts"), metavar="N",
                   help="runs with seeds seed .. seed + N - 1, their maps averaged (the others in DIR/restarts)")
    p.add_argument("--checkpoint-seconds", type=_typed("checkpoint_seconds"), metavar="S",
                   help="also write a checkpoint every S seconds of running (default 60; 0: only every checkpoint_every iterations)")
    p.add_argument("--frames", type=int_pair("--frames", "START:STOP (frame numbers)"), metavar="START:STOP",
                   help="explain only these frames")


#: The command-line option of each setting it can override (the others come from --config FILE).
OPTIONS = {"iterations": "--iterations", "lam": "--lambda", "lr": "--lr", "variant": "--variant",
           "regularizer": "--regularizer", "parametrization": "--parametrization", "optimizer": "--optimizer",
           "noise": "--noise", "samples": "--samples", "gradient": "--gradient", "seed": "--seed", "restarts": "--restarts",
           "checkpoint_seconds": "--checkpoint-seconds", "stats": "--stats", "mode": "--mode"}


def config_from_args(args: argparse.Namespace):
    """The run's settings: the mode's preset, then --config, then the options given (errors name the option)."""
    from afmask.mask import MaskConfig
    from afmask.mask.config import ConfigError

    overrides = {k: getattr(args, k) for k in OPTIONS if k != "mode" and getattr(args, k, None) is not None}
    if args.config:
        base = MaskConfig.load(args.config, mode=args.mode)
    else:
        base = MaskConfig.preset(args.mode or "default")
    try:
        return base.replace(**overrides)
    except ConfigError as exc:
        raise (exc.renamed(OPTIONS[exc.key]) if exc.key in overrides else exc) from None


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``explain`` sub-command."""
    p = sub.add_parser(
        "explain",
        help="learn the noise scale m over an utterance's FFT (small m = what the model needs)",
        description="Learn, for every time-frequency point of the utterance's FFT, how much noise the recogniser "
                    "tolerates while its outputs stay unchanged. Writes m, the per-iteration log, the settings, "
                    "checkpoints, plots and (unless --no-report) renditions and the HTML report to DIR.",
    )
    p.add_argument("audio", metavar="AUDIO", help="WAV or FLAC file, 16 kHz mono (see --resample, --channel)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="run folder")
    add_model_arguments(p)
    add_run_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--no-report", action="store_true", help="skip the evaluation and the HTML report")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_audio_arguments(p)
    # --stats is a run setting here: unset unless given, so that --config FILE's stats stand
    p.set_defaults(func=run, stats=None)


def print_summary(expl) -> None:
    """A short summary of a finished run."""
    r = expl.result
    s = r.summary()
    final = s["final"]
    state = f"converged at iteration {r.converged_at}" if r.converged else "not converged"
    print(f"afmask {r.config.mode} run: {r.iterations} iterations, {state}, {s['seconds']:.1f} s "
          f"({1000 * s['seconds_per_iteration']:.1f} ms/iteration, kernel path {r.kernel_path})")
    print(f"  lambda {r.lam:.4g}; final loss {final['total']:.5g} = f {final['f_term']:.5g} + regulariser {final['reg_term']:.5g}")
    print(f"  m: mean {final['m_mean']:.4g}, variance {final['m_var']:.4g}; result from iteration {r.best_iteration}")
    if r.config.restarts > 1:
        seeds = f"{r.config.seed + 1}..{r.config.seed + r.config.restarts - 1}"
        print(f"  the map: the mean percentile ranks of {r.config.restarts} runs (importance.npy; the runs of seeds "
              f"{seeds} in {expl.out}/restarts/), so the explanation took about {r.config.restarts}x the above")
    print(f"  written to {expl.out}/")


def run(args: argparse.Namespace) -> int:
    """Run the explanation, then the evaluation and the report."""
    from afmask.api import explain

    config = config_from_args(args)
    model = model_from_args(args)
    name = "demo" if not args.arch else f"{args.arch} + {args.params}"
    expl = explain(args.audio, args.out, model=model, config=config, resume=args.resume,
                   progress=not args.no_progress, frames=args.frames, resample=args.resample,
                   channel=args.channel, allow_clipping=args.allow_clipping, model_name=name)
    print_summary(expl)
    if not args.no_report:
        from afmask.cli.report import evaluate_and_print

        evaluate_and_print(args.out, model, progress=not args.no_progress)
    return 0

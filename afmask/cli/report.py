"""``afmask report DIR``: (re)build a run's HTML report; evaluates the run first when given its model."""

from __future__ import annotations

import argparse
from pathlib import Path

from afmask.cli.common import add_model_arguments, int_pair, model_from_args


def add_evaluation_arguments(p: argparse.ArgumentParser) -> None:
    """Settings of the evaluation (renditions, curves, sanity check)."""
    g = p.add_argument_group("evaluation (runs when a model is given, or with --evaluate)")
    g.add_argument("--evaluate", action="store_true", help="evaluate the run again even if it has evaluation.json "
                                                          "(with the demo model unless --model/--arch/--params say otherwise)")
    g.add_argument("--transcript", metavar="FILE", help="reference transcript (default: AUDIO.txt or STEM.txt beside the run's audio)")
    g.add_argument("--percent", type=float, nargs="+", metavar="P", help="rendition percentages (default: 20 50 80)")
    g.add_argument("--soft-db", type=float, metavar="DB", help="also attenuated renditions (by DB dB instead of zeroed)")
    g.add_argument("--wav", action="store_true", help="also write the renditions as WAV")
    g.add_argument("--step", type=float, metavar="X", help="curve step in per cent (default 5)")
    g.add_argument("--random-seeds", type=int, metavar="N", help="random rankings to compare with (default 3)")
    g.add_argument("--no-sanity", action="store_true", help="skip the model-randomisation sanity check")
    g.add_argument("--sanity-iterations", type=int, metavar="N", help="iterations of each sanity re-run (default 25)")
    g.add_argument("--sanity-levels", type=int, metavar="N", help="cascade levels of the sanity check (default 4)")
    g.add_argument("--no-controls", action="store_true", help="skip the controls (energy-stratified deletion, ties, "
                                                               "plausibility against word alignments)")
    g.add_argument("--randomisation", action="store_true", help="also run the randomisation check with He-normal "
                                                                 "re-draws and energy taken out (3 explanations: minutes)")
    g.add_argument("--randomisation-iterations", type=int, metavar="N",
                   help="iterations of each explanation of the randomisation check (default 100)")
    g.add_argument("--blind-band", type=int_pair("--blind-band", "LO:HI (two integers)"), action="append",
                   metavar="LO:HI", help="ground truth: also explain a model exactly blind to bins LO..HI-1 and report "
                                         "where the band falls in its map (repeatable; one explanation each)")
    g.add_argument("--blind-iterations", type=int, metavar="N",
                   help="iterations of each blind model's explanation (default 400)")


#: Curve steps finer than this (per cent) cost thousands of forward passes for no visible difference.
MIN_STEP = 0.5
#: More random rankings than this only cost time: the best of them is what is compared.
MAX_RANDOM_SEEDS = 100


def check_evaluation_options(args: argparse.Namespace) -> None:
    """ValueError naming the first evaluation option out of range (before any slow work)."""
    import math

    def bad(flag: str, value, why: str) -> ValueError:
        return ValueError(f"{flag} {value:g}: {why}" if isinstance(value, float) else f"{flag} {value}: {why}")

    for p in getattr(args, "percent", None) or ():
        if not (math.isfinite(p) and 0 < p < 100):
            raise bad("--percent", p, "rendition percentages must lie strictly between 0 and 100, e.g. --percent 20 50 80")
    soft = getattr(args, "soft_db", None)
    if soft is not None and not (math.isfinite(soft) and soft > 0):
        raise bad("--soft-db", soft, "the attenuation must be a finite number of dB > 0, e.g. --soft-db 20")
    step = getattr(args, "step", None)
    if step is not None:
        if not (math.isfinite(step) and MIN_STEP <= step <= 50) or abs(100 / step - round(100 / step)) > 1e-9 \
                or abs(50 / step - round(50 / step)) > 1e-9:
            raise bad("--step", step, f"the curve step (per cent) must divide 50, between {MIN_STEP:g} and 50, e.g. 5 or 2.5")
    for flag, name, top in (("--random-seeds", "random_seeds", MAX_RANDOM_SEEDS), ("--sanity-iterations", "sanity_iterations", None),
                            ("--sanity-levels", "sanity_levels", None)):
        v = getattr(args, name, None)
        if v is not None and (v < 1 or (top is not None and v > top)):
            raise bad(flag, v, f"expected an integer >= 1{f' and <= {top}' if top else ''}")


def settings_from_args(args: argparse.Namespace):
    """The EvaluationSettings the options name (defaults for the rest)."""
    from afmask.evaluate import EvaluationSettings

    check_evaluation_options(args)
    s = EvaluationSettings()
    if getattr(args, "percent", None):
        s.percents = tuple(args.percent)
    for name in ("soft_db", "step", "random_seeds", "sanity_iterations", "sanity_levels", "randomisation_iterations",
                 "blind_iterations"):
        if getattr(args, name, None) is not None:
            setattr(s, name, getattr(args, name))
    s.wav = bool(getattr(args, "wav", False))
    s.sanity = not getattr(args, "no_sanity", False)
    s.controls = not getattr(args, "no_controls", False)
    s.randomisation = bool(getattr(args, "randomisation", False))
    s.blind_bands = tuple(tuple(b) for b in (getattr(args, "blind_band", None) or ()))
    s.validate()
    return s


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` sub-command."""
    p = sub.add_parser(
        "report",
        help="build DIR/report.html (evaluating the run first when a model is given)",
        description="Build the self-contained HTML report of a run folder: spectrogram and importance viewer, renditions "
                    "with players, deletion/insertion curves, sanity check, training curves and settings. The evaluation "
                    "(evaluation.json, renditions/, curves.csv) needs the model the run explained: give it with "
                    "--model demo or --arch/--params to evaluate; without a model the report is rebuilt from the "
                    "existing evaluation.json.",
    )
    p.add_argument("dir", metavar="DIR", help="run folder (written by afmask explain), or corpus folder (afmask explain-corpus)")
    add_model_arguments(p)
    add_evaluation_arguments(p)
    p.add_argument("--link-audio", action="store_true", help="link the renditions (renditions/*.flac beside report.html) "
                                                             "instead of embedding them in the page")
    p.add_argument("--no-evaluation", action="store_true", help="without evaluation.json, write a report of the training only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def print_evaluation(result) -> None:
    """The verdict, the comparison with the baselines and the sanity check, one line each."""
    print(f"afmask report: {result.verdict}")
    print(f"  {result.energy_note}")
    if result.sanity:
        print(f"  sanity check: {result.sanity['note']}")
    for name, c in (result.controls or {}).items():
        print(f"  {name}: {c['verdict']}")


def evaluate_and_print(out, model, progress: bool, settings=None) -> None:
    """After a run: evaluate it with ``model`` (and ``settings``), write its report, print the verdicts and the
    report's path."""
    from afmask.api import evaluate_and_report

    result, path = evaluate_and_report(out, model=model, progress=progress, settings=settings)
    print_evaluation(result)
    print(f"afmask report: wrote {path}")


def _corpus_report(out: Path, args: argparse.Namespace) -> int:
    from afmask.corpus import write_corpus

    if args.model or args.arch or args.params or args.evaluate:
        raise ValueError(f"{out} is a corpus folder: its page is rebuilt from its runs' files; to evaluate an utterance "
                         f"again, run `afmask report {out}/ID --model demo`")
    print(f"afmask report: wrote {write_corpus(out)}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Evaluate if asked (or given a model), then write the report."""
    from afmask.api import evaluate_run, load_run, write_report
    from afmask.evaluate import EVALUATION_FILE

    out = Path(args.dir)
    check_evaluation_options(args)
    if args.transcript is not None and not Path(args.transcript).is_file():
        raise FileNotFoundError(f"{args.transcript}: no such transcript file (--transcript)" if not Path(args.transcript).exists()
                                else f"{args.transcript}: is a folder, not a transcript file (--transcript)")
    from afmask.api import is_attribution_folder

    if is_attribution_folder(out):  # written by afmask attribute: its controls, then its page
        return _report_attribution(out, args)
    from afmask.corpus import is_corpus

    if is_corpus(out):  # a corpus folder: its aggregates and the page linking every utterance's page
        return _corpus_report(out, args)
    load_run(out)  # a clear error for a folder that is not a finished run
    model_given = bool(args.model or args.arch or args.params)
    if model_given or args.evaluate:
        settings = settings_from_args(args)
        model = model_from_args(args)
        result = evaluate_run(out, model=model, settings=settings, transcript=args.transcript, progress=not args.no_progress)
        print_evaluation(result)
    elif not (out / EVALUATION_FILE).exists() and not args.no_evaluation:
        raise ValueError(
            f"{out} has no {EVALUATION_FILE} yet; the evaluation needs the model the run explained: "
            f"`afmask report {out} --model demo` or `afmask report {out} --arch A.arch --params P.af` "
            "(or --no-evaluation for a report of the training only)"
        )
    try:
        path = write_report(out, embed_audio=not args.link_audio, require_evaluation=not args.no_evaluation)
    except (KeyError, TypeError, IndexError) as e:  # a value read_evaluation's layout check does not cover
        from afmask.io.runfiles import RunFileError

        raise RunFileError(out / EVALUATION_FILE, f"is damaged or from another version ({type(e).__name__}: {e})",
                           f"evaluate the run again: `afmask report {out} --model demo` (or --arch A.arch --params P.af)") from None
    print(f"afmask report: wrote {path}")
    return 0


def _report_attribution(out: Path, args: argparse.Namespace) -> int:
    """An attribution folder: compute its controls when a model is given (or --evaluate), then write report.html."""
    from afmask.api import CONTROLS_FILE, evaluate_attribution, write_attribution_report

    if args.model or args.arch or args.params or args.evaluate:
        doc = evaluate_attribution(out, model_from_args(args), progress=not args.no_progress)
        print(f"afmask report: {doc['stratified']['verdict']}")
        print(f"  {doc['global']['verdict']}")
    elif not (out / CONTROLS_FILE).exists() and not args.no_evaluation:
        raise ValueError(f"{out} has no {CONTROLS_FILE} yet; the controls need the model: `afmask report {out} --model demo` "
                         "(or --no-evaluation for the map and settings only)")
    path = write_attribution_report(out)
    print(f"afmask report: wrote {path}")
    return 0

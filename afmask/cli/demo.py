"""``afmask demo``: explain the bundled utterance with the demo model, then evaluate and report every control."""

from __future__ import annotations

import argparse

#: Settings that finish in about a minute on 2 CPU cores (the default method, fewer iterations).
DEMO_SETTINGS = {"iterations": 400}
#: The ground-truth bands the demo's report checks: a model exactly blind to each is explained the same way.
DEMO_BLIND_BANDS = ((0, 21), (60, 121))


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    p = sub.add_parser("demo", help="explain the bundled utterance with the demo model and report every control (a few minutes)",
                       description="Run `afmask explain` on the bundled LibriVox utterance with the demo model, "
                                   "then the evaluation with every control (the blind-band ground truth for bins "
                                   "0..20 and 60..120 and the randomisation check included, unless --quick) and the "
                                   "HTML report.")
    p.add_argument("--out", "-o", default="afmask-demo", metavar="DIR", help="run folder (default: ./afmask-demo)")
    p.add_argument("--mode", choices=["default", "faithful"], default="default")
    p.add_argument("--iterations", type=int, default=None, metavar="N", help=f"default {DEMO_SETTINGS['iterations']}")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo in DIR")
    p.add_argument("--no-report", action="store_true", help="skip the evaluation and the HTML report")
    p.add_argument("--quick", action="store_true", help="skip the controls that explain the utterance again (the "
                                                        "blind-band ground truth and the randomisation check)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Explain, evaluate, report."""
    from afmask.api import explain
    from afmask.io import demo_audio
    from afmask.cli.explain import print_summary
    from afmask.mask import MaskConfig
    from afmask.model import demo_model

    settings = dict(DEMO_SETTINGS)
    if args.iterations is not None:
        settings["iterations"] = args.iterations
    config = MaskConfig.preset(args.mode, **settings)
    model = demo_model()
    expl = explain(demo_audio(), args.out, model=model, config=config, resume=args.resume, progress=not args.no_progress)
    print_summary(expl)
    if not args.no_report:
        from afmask.cli.report import evaluate_and_print
        from afmask.evaluate import EvaluationSettings

        # every control of the report: also the two that explain the utterance again (about two minutes more)
        settings = EvaluationSettings() if args.quick else EvaluationSettings(
            randomisation=True, blind_bands=DEMO_BLIND_BANDS, blind_iterations=config.iterations)
        evaluate_and_print(args.out, model, progress=not args.no_progress, settings=settings)
    return 0

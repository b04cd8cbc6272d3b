"""``afmask explain-corpus LIST --out DIR``: explain every utterance of a folder or manifest on Dask, then aggregate."""

from __future__ import annotations

import argparse

from afmask.cli.common import add_model_arguments
from afmask.cli.explain import add_run_arguments, config_from_args


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {v}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``explain-corpus`` sub-command."""
    p = sub.add_parser(
        "explain-corpus",
        help="explain every utterance of a folder or manifest on Dask; aggregate by band, token, word and control",
        description="Explain every utterance of LIST (a folder of audio files, or a manifest: TSV or JSONL of id, path, "
                    "optional transcript and .words.json alignment, or wav2letter's 'id path duration transcript' list) "
                    "into DIR/<id>/, the same run folder `afmask explain` writes, on a Dask cluster (a LocalCluster "
                    "sized to this machine unless --scheduler). A re-run skips finished utterances and resumes "
                    "interrupted ones; failures go to DIR/failures.csv. Then writes the corpus's aggregates "
                    "(bands, tokens, words, controls: CSV and PNG) and DIR/report.html linking every utterance's page. "
                    "Exit status 1 when some utterance failed.",
    )
    p.add_argument("list", metavar="LIST", help="folder of audio files, or manifest (.tsv, .jsonl, or a wav2letter list)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="corpus folder (one run folder per utterance)")
    add_model_arguments(p)
    add_run_arguments(p)
    d = p.add_argument_group("Dask")
    d.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler (e.g. tcp://host:8786); "
                                                          "its workers must see DIR and the audio at the same paths")
    d.add_argument("--workers", type=_positive, metavar="N", help="LocalCluster workers (default: one per core, "
                                                                  "at most one per utterance)")
    d.add_argument("--blas-threads", type=_positive, metavar="N", help="BLAS threads per task (default 1: more "
                                                                       "lost 4-5x on a loaded machine)")
    d.add_argument("--retries", type=int, default=1, metavar="N", help="Dask retries of a failed utterance (default 1)")
    d.add_argument("--dashboard", default=":8787", metavar="ADDRESS",
                   help="the LocalCluster's dashboard address (default :8787; 'none' for no dashboard)")
    e = p.add_argument_group("evaluation of each utterance")
    e.add_argument("--no-report", action="store_true", help="no evaluation and no per-utterance page (no controls)")
    e.add_argument("--percent", type=float, nargs="+", metavar="P", help="rendition percentages (default: 20 50 80)")
    e.add_argument("--step", type=float, metavar="X", help="curve step in per cent (default 5)")
    e.add_argument("--random-seeds", type=int, metavar="N", help="random rankings to compare with (default 3)")
    e.add_argument("--no-sanity", action="store_true", help="skip the model-randomisation sanity check")
    e.add_argument("--sanity-iterations", type=int, metavar="N", help="iterations of each sanity re-run (default 25)")
    e.add_argument("--sanity-levels", type=int, metavar="N", help="cascade levels of the sanity check (default 4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Explain the corpus, write the aggregates and the corpus page; 1 if any utterance failed."""
    from afmask.cli.report import settings_from_args
    from afmask.corpus import explain_corpus

    if args.model is not None and (args.arch or args.params):
        raise ValueError("give either --model or --arch/--params, not both")
    config = config_from_args(args)
    evaluation = None if args.no_report else settings_from_args(args)
    result = explain_corpus(
        args.list, args.out, config=config, arch=args.arch, params=args.params, evaluation=evaluation,
        frames=args.frames, scheduler=args.scheduler, workers=args.workers, blas_threads=args.blas_threads,
        retries=args.retries, dashboard=None if args.dashboard.lower() == "none" else args.dashboard,
        progress=not args.no_progress,
    )
    n = len(result.done) + len(result.skipped) + len(result.failed)
    print(f"afmask explain-corpus: {len(result.done)} explained now, {len(result.skipped)} skipped (finished before), "
          f"{len(result.failed)} failed, of {n}; {result.seconds:.1f} s")
    return 1 if result.failed else 0

"""``afmask compare DIR1 DIR2 ...``: the curves and verdicts of several evaluated runs side by side (HTML + CSV)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``compare`` sub-command."""
    p = sub.add_parser(
        "compare",
        help="compare the curves and verdicts of several evaluated runs (HTML page + CSV)",
        description="Put the deletion/insertion curves, verdicts and sanity checks of several evaluated run folders "
                    "side by side (e.g. faithful vs default mode, absolute vs relative noise, several lambdas). Each "
                    "folder needs evaluation.json (afmask report DIR --model ...).",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="evaluated run folders")
    p.add_argument("--out", "-o", default="afmask-compare.html", metavar="FILE.html",
                   help="the page to write (default ./afmask-compare.html); the CSV goes beside it with the same stem")
    p.add_argument("--labels", nargs="+", metavar="NAME", help="one label per run (default: the folder names)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the comparison page and CSV."""
    from afmask.api import compare_runs

    try:
        html_path, csv_path = compare_runs(args.dirs, args.out, labels=args.labels)
    except (KeyError, TypeError, IndexError) as e:  # a value read_evaluation's layout check does not cover
        raise ValueError(f"an evaluation.json of {', '.join(args.dirs)} is damaged or from another version "
                         f"({type(e).__name__}: {e}); evaluate each run again: afmask report DIR --model demo") from None
    print(f"afmask compare: wrote {html_path} and {csv_path}")
    return 0

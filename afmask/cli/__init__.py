"""The afmask command line: one sub-command per module of this package."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Sub-commands, each a module ``afmask.cli.<name>`` with ``register(subparsers)``.
COMMANDS = ["info", "demo", "explain", "report", "compare", "regress", "transcribe", "features", "bench"]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="afmask",
        description="Which time-frequency points of an utterance does a speech recogniser rely on?",
    )
    parser.add_argument("--threads", type=_threads, metavar="N", default=None,
                        help="BLAS/OpenMP threads (0: every core; default: AFMASK_THREADS, else what measures fastest)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"afmask.cli.{name}").register(sub)
    for p in sub.choices.values():
        if not any("--threads" in a.option_strings for a in p._actions):
            # `afmask explain ... --threads N` as well as `afmask --threads N explain ...`
            p.add_argument("--threads", type=_threads, metavar="N", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _threads(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"--threads takes a number of threads (0: every core), got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Run the afmask command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        from afmask.backend import threads

        threads.configure(getattr(args, "threads", None))  # before any work: afmask owns its threads
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as exc:  # user-facing errors: no traceback
        print(f"afmask {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

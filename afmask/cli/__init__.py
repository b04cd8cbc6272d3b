"""The afmask command line: one sub-command per module of this package."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Sub-commands, each a module ``afmask.cli.<name>`` with ``register(subparsers)``.
COMMANDS = ["info", "demo", "explain", "report", "compare", "regress", "transcribe", "features", "bench"]
COMMANDS.append("explain_corpus")  # afmask explain-corpus (afmask.corpus)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="afmask",
        description="Which time-frequency points of an utterance does a speech recogniser rely on?",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"afmask.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the afmask command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as exc:  # user-facing errors: no traceback
        print(f"afmask {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

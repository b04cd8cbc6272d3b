"""The afmask command line: one sub-command per module of this package."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shlex
import signal
import sys
import threading

#: Sub-commands, each a module ``afmask.cli.<name>`` with ``register(subparsers)``.
COMMANDS = [
    "info", "demo", "explain", "attribute", "report", "compare", "regress", "transcribe", "features", "bench", "validate",
    "explain_corpus",
]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``afmask CMD: error: ...; see afmask CMD --help`` (rc 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside the mask loop: unwinds like Ctrl-C, so whole-or-nothing writes clean up."""

    exit_code = 128 + int(getattr(signal, "SIGTERM", 15))


@contextlib.contextmanager
def _sigterm_unwinds():
    """While a command runs, SIGTERM raises _Terminated (where nobody else handles it) instead of killing outright."""
    sigterm = getattr(signal, "SIGTERM", None)
    if sigterm is None or threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(sigterm) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        raise _Terminated()

    signal.signal(sigterm, handler)
    try:
        yield
    finally:
        signal.signal(sigterm, signal.SIG_DFL)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = _Parser(
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
    from afmask.cli.common import one_line_warnings

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        from afmask.backend import threads

        threads.configure(getattr(args, "threads", None))  # before any work: afmask owns its threads
        with _sigterm_unwinds(), one_line_warnings(args.command):
            return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: one line, the mask loop's says how to resume
        code = int(getattr(exc, "exit_code", 130))
        if getattr(exc, "checkpoint", None) is not None:
            again = argv if "--resume" in argv else [*argv, "--resume"]
            print(f"afmask {args.command}: {exc}; resume with: afmask {shlex.join(again)}", file=sys.stderr)
        else:
            print(f"afmask {args.command}: {exc or ('terminated (SIGTERM)' if code == 143 else 'interrupted (SIGINT)')}",
                  file=sys.stderr)
        return code
    except (ValueError, OSError, RuntimeError, FloatingPointError) as exc:  # user-facing errors: no traceback
        print(f"afmask {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``pwavenet`` command line: thin subcommands over the Python API.

Every subcommand turns a :class:`~pwavenet.errors.PwavenetError` into one line on stderr
(``pwavenet: error: <file>: <cause>``) and a non-zero exit; a training stopped by SIGTERM or
SIGINT reports its checkpoint in one line and exits with 128 + the signal's number. Progress bars
and printing live here, never in the library.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import PwavenetError, Stopped
from . import data, demo, evaluate, listen, synth, train
from .common import EXIT_ERROR, EXIT_INTERRUPTED, OVERRIDE, Handler, HelpFormatter

SUBCOMMANDS = (
    *data.COMMANDS,
    *train.COMMANDS,
    *synth.COMMANDS,
    *evaluate.COMMANDS,
    *listen.COMMANDS,
    *demo.COMMANDS,
)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = argparse.ArgumentParser(
        prog="pwavenet",
        formatter_class=HelpFormatter,
        description=(
            "Parallel WaveNet: train a WaveNet teacher, distill an inverse-autoregressive-flow "
            "student from it, and synthesize audio in one parallel pass."
        ),
    )
    parser.add_argument("--version", action="version", version=f"pwavenet {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="Log more (-v info, -vv debug)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Handler] = {}
    for add in SUBCOMMANDS:
        before = set(sub.choices)
        handler = add(sub)
        for name in set(sub.choices) - before:  # a subcommand and its aliases
            handlers[name] = handler
    # One place sets the help format of every subcommand: defaults shown, paragraphs kept.
    for subparser in sub.choices.values():
        subparser.formatter_class = HelpFormatter
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    # Overrides (key=value) may stand anywhere after the subcommand, also after options, which
    # plain argparse would refuse once the positionals are filled.
    args, extra = parser.parse_known_args(argv)
    if extra:
        stray = [a for a in extra if not (hasattr(args, "overrides") and OVERRIDE.match(a))]
        if stray:
            parser.error(f"unrecognized arguments: {' '.join(stray)}")
        args.overrides = [*args.overrides, *extra]
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return handlers[args.command](args)
    except Stopped as exc:  # a signal stopped training after a checkpoint
        print(f"pwavenet: {exc}", file=sys.stderr)
        return exc.exit_code
    except PwavenetError as exc:
        print(f"pwavenet: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("pwavenet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def toy2d_main(argv: Sequence[str] | None = None) -> int:
    """``pwavenet toy2d ARGS``: the toy ladder's command line on its own (``argv`` without the
    subcommand)."""
    return main(["toy2d", *(sys.argv[1:] if argv is None else argv)])

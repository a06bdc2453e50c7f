"""What every subcommand shares: the handler type, the help formatter, progress bars and printing,
config arguments, and the training runner of ``train-teacher`` and ``distill``."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
Handler = Callable[[argparse.Namespace], int]
OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default, and descriptions filled paragraph by paragraph
    (a blank line in a description stays a paragraph break)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # Flags, unset options and empty lists have no default worth a word; a help that already
        # says what its default is keeps its own words.
        default, text = action.default, action.help or ""
        if default is None or default is False or default == [] or "default" in text.lower():
            return action.help
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.split("\n\n")
        return "\n\n".join(
            super(HelpFormatter, self)._fill_text(p, width, indent) for p in paragraphs
        )


def progress_bar(desc: str, unit: str = "file") -> Callable:
    """A tqdm wrapper for library ``progress=`` hooks (disabled when stderr is not a terminal)."""
    from tqdm import tqdm

    def wrap(items):
        return tqdm(items, desc=desc, unit=unit, disable=None, dynamic_ncols=True)

    return wrap


def echo(line: str) -> None:
    """Print a line without breaking an active progress bar."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config file (defaults apply to missing keys).")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="Dotted overrides applied after the config file, e.g. audio.sample_rate=16000.",
    )


def run_training(args: argparse.Namespace, name: str, train: Callable, overrides: list[str]) -> int:
    """Load the config, run ``train(cfg, dump, out, ...)`` with a progress bar on the main
    process, and report where the export went."""
    from ..config import load_config
    from ..train.lifecycle import end_processes, init_processes

    cfg = load_config(args.config, overrides)
    main_process = init_processes(args.cpu, cfg.train.collective_timeout).is_main_process
    try:
        export = train(
            cfg,
            args.dump,
            args.out,
            resume=not args.no_resume,
            cpu=args.cpu,
            progress=progress_bar(name, "step") if main_process else None,
        )
    finally:
        end_processes()
    if main_process:
        print(f"{name}: {cfg.train.max_steps} steps done; export in {export}")
    return 0


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """The torch device ``name`` (``cpu``, ``cuda``, ``cuda:1``, ...), checked by putting a
    tensor on it: an unknown or unavailable device is a one-line :class:`ConfigError` naming
    ``option``, raised before any model is loaded."""
    import torch

    from ..errors import ConfigError

    try:
        device = torch.device(name)
        torch.zeros(1, device=device)
    except (RuntimeError, AssertionError, ValueError) as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{option} {name}: not available on this machine ({cause})") from None
    return device

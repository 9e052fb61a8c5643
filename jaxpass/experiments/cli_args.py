"""Shared pieces for ``jaxpass`` subcommands: the user-error type and argument parsers.

Each experiment module that adds a subcommand defines
``add_command(subparsers)``, which creates its parser with
``subparsers.add_parser(...)`` and sets ``func=<handler(args) -> int>``; the
module is then listed in ``jaxpass.cli.COMMAND_MODULES``. Handlers raise
:class:`UserError` for mistakes in the inputs (one line on stderr, exit 2).
"""

from __future__ import annotations

import argparse


class UserError(Exception):
    """A mistake in the command line or inputs: reported in one line, exit 2."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {value}")
    return value

"""Shared pieces for ``jaxpass`` subcommands: the user-error type and argument parsers.

Each experiment module that adds a subcommand defines
``add_command(subparsers)``, which creates its parser with
``subparsers.add_parser(...)`` and sets ``func=<handler(args) -> int>``; the
module is then listed in ``jaxpass.cli.COMMAND_MODULES``. Handlers raise
:class:`UserError` for mistakes in the inputs (one line on stderr, exit 2).
"""

from __future__ import annotations

import argparse
import sys


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


def add_options(parser: argparse.ArgumentParser, options_cls, names=None, *, prefix: str = "") -> None:
    """Add ``--<field>`` flags for the fields of an :class:`jaxpass._options.Options` class.

    Defaults and help come from the dataclass fields (``metadata["help"]``,
    optional ``metadata["choices"]``), so the CLI never restates an option. A
    tuple default becomes ``nargs="+"``; a bool becomes ``--x/--no-x``.
    ``names`` restricts (and orders) the fields; ``prefix`` namespaces ``dest``.
    """
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    for name in names or fields:
        f = fields[name]
        flag = "--" + name.replace("_", "-")
        kwargs = dict(dest=prefix + name, default=f.default, help=f.metadata.get("help", "") + " (default: %(default)s)")
        if isinstance(f.default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(f.default, tuple):
            kwargs.update(nargs="+", type=type(f.default[0]) if f.default else float)
        else:
            convert = f.metadata.get("type", float) if f.default is None else type(f.default)
            kwargs["type"] = convert if "choices" in f.metadata else _checked(options_cls, name, convert)
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(flag, **kwargs)


def _checked(options_cls, name: str, convert):
    """argparse type: ``convert(text)``, validated by the options class (a usage error names the rule)."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {convert.__name__}, got {text!r}") from None
        try:
            options_cls(**{name: value})
        except (TypeError, ValueError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value

    parse.__name__ = convert.__name__
    return parse


def options_from_args(args, options_cls, names=None, *, prefix: str = ""):
    """The options object from parsed ``args`` (see :func:`add_options`); bad values raise :class:`UserError`."""
    import dataclasses

    names = names or [f.name for f in dataclasses.fields(options_cls)]
    values = {n: getattr(args, prefix + n) for n in names}
    values = {n: tuple(v) if isinstance(v, list) else v for n, v in values.items()}
    try:
        return options_cls(**values)
    except (TypeError, ValueError) as err:
        raise UserError(str(err)) from None


def in_range(key: str):
    """argparse type: a float within ``jaxpass.config.RANGES[key]`` (e.g. ``"power_dbm"``, ``"snr_db"``)."""
    from jaxpass._checks import RANGES

    rng = RANGES[key]

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number [{rng.unit}], got {text!r}") from None
        if not rng.holds(value):
            raise argparse.ArgumentTypeError(f"expected a finite number in {rng.describe()} "
                                             f"(jaxpass.config.RANGES[{key!r}]), got {text}")
        return value

    parse.__name__ = key
    return parse


def add_num_users(parser: argparse.ArgumentParser, default, help_default: str) -> None:
    """``--num-users K`` (K users per drop) and the deprecated alias ``--users K``.

    ``--users`` means a FILE of user coordinates in ``jaxpass tune``; commands
    that take only a count use ``--num-users`` and keep ``--users K`` for one
    release (:func:`num_users_from_args` resolves both).
    """
    parser.add_argument("--num-users", type=positive_int, default=None, metavar="K",
                        help=f"K, users per drop (default: {help_default})")
    parser.add_argument("--users", dest="deprecated_users", default=None, metavar="K",
                        help="deprecated alias of --num-users (this command reads no user file)")
    parser.set_defaults(num_users_default=default)


def num_users_from_args(args, command: str):
    """K from ``--num-users`` or the deprecated ``--users K`` (one warning line on stderr).

    Raises:
      UserError: ``--users`` is not a positive integer (e.g. a file name), or
        both flags are given.
    """
    text = getattr(args, "deprecated_users", None)
    if text is None:
        return args.num_users if args.num_users is not None else args.num_users_default
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"--users takes no user file in `jaxpass {command}` (got {text!r}): use --num-users K "
                        "for K users per drop (user files are read by `jaxpass tune --users FILE`)") from None
    if value < 1:
        raise UserError(f"--num-users (--users) must be a positive integer, got {value}")
    if args.num_users is not None:
        raise UserError("give --num-users only (--users is its deprecated alias)")
    print(f"jaxpass {command}: warning: --users K is deprecated, use --num-users K", file=sys.stderr)
    return value

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


# ------------------------------------------------------------------ devices and processes
def add_parallel_options(parser: argparse.ArgumentParser) -> None:
    """``--devices N`` and ``--distributed`` for a command that batches drops (:func:`mesh_from_args`).

    ``jaxpass.cli`` sees ``parallel_options`` in the parsed arguments and, before
    any computation, starts ``jax.distributed`` (``--distributed``), checks
    ``--devices`` and silences every process but process 0.
    """
    parser.add_argument("--devices", type=int, default=None, metavar="N",
                        help="run the drops data-parallel on the first N local devices (1: one device, "
                        "unsharded; default: all devices of all processes when there are several)")
    parser.add_argument("--distributed", action="store_true",
                        help="one process of a multi-host run: call jaxpass.parallel.initialize() first "
                        "(JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID, SLURM, Open MPI); "
                        "process 0 alone prints and writes --out")
    parser.set_defaults(parallel_options=True)


def mesh_from_args(args):
    """The drops mesh of ``--devices``/``--distributed`` (``None``: run unsharded on one device).

    With ``--distributed``, calls :func:`jaxpass.parallel.initialize` first
    (once: the result is kept on ``args``, so later calls return the same mesh).
    ``--devices N``: the first ``N`` local devices, ``None`` for ``N = 1``;
    without it, :func:`jaxpass.parallel.drops_mesh` (all devices of all
    processes) when there are several devices, else ``None``.

    Raises:
      UserError: ``--devices`` below 1 or above the local device count, or
        ``jax.distributed`` could not start (one line).
    """
    if "_mesh" in vars(args):
        return args._mesh
    from jaxpass import parallel

    if getattr(args, "distributed", False):
        try:
            parallel.initialize()
        except (ValueError, RuntimeError) as err:
            raise UserError(f"--distributed: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    import jax

    n = getattr(args, "devices", None)
    local = jax.local_device_count()
    if n is None:
        mesh = parallel.drops_mesh() if jax.device_count() > 1 else None
    elif not 1 <= n <= local:
        raise UserError(f"--devices must be between 1 and {local} (the number of local "
                        f"{jax.local_devices()[0].platform} devices), got {n}")
    else:
        mesh = parallel.drops_mesh(n) if n > 1 else None
    args._mesh = mesh
    return mesh


def run_batched(fn, *args, mesh=None, in_axes=0, progress=None, what: str = "", repeats: int = 1, **static):
    """:func:`jaxpass.runtime.progress.compile_and_run` of a batched ``fn``, data-parallel over ``mesh``.

    ``mesh=None``: exactly ``compile_and_run``. Otherwise the batched
    arguments (``in_axes`` as in :func:`jaxpass.parallel.map_drops`) are padded
    and sharded over the mesh (:func:`jaxpass.parallel.shard_drops`), the
    others replicated, ``fn`` is compiled and timed on them (compile time apart,
    as one device), and the output is unpadded and gathered to this process.

    Returns ``(output, seconds, compile_s)`` as ``compile_and_run``.
    """
    from jaxpass import parallel
    from jaxpass.runtime.progress import compile_and_run

    if mesh is None:
        return compile_and_run(fn, *args, progress=progress, what=what, repeats=repeats, **static)
    placed, _, pad = parallel.place(mesh, args, in_axes)
    out, seconds, compile_s = compile_and_run(fn, *placed, progress=progress, what=what, repeats=repeats, **static)
    return parallel.gather(parallel.unpad(out, pad)), seconds, compile_s

"""The ``jaxpass`` command (also ``python -m jaxpass``).

User errors print one line to stderr and exit with status 2.

Output folder (``--out``): checked before any computation (a file, or a
folder that cannot be created or written, is a user error). A run's files
form one result set (:func:`jaxpass.runtime.io.result_set`): they are
staged in ``<out>/.jaxpass.tmp-<pid>-<random>/`` and moved into ``<out>``
together when the command succeeds, with the manifest ``<out>/run.json``
(command line, versions, device, seed, SHA-256 of each file) last. A failed
or interrupted run leaves the previous set as it was; temporaries of a
killed run (SIGKILL) are removed by the next run into the same folder.

Interrupts: SIGINT (Ctrl-C) and SIGTERM end any command, at any phase, with
one line on stderr, ``jaxpass <command>: interrupted; nothing written`` (or
``...; previous results kept`` when ``--out`` already held files; ``...;
results written`` if the signal came while the set was being moved in, which
finishes first), and exit status 130 (SIGINT) or 143 (SIGTERM): no
traceback. The handler removes the run's temporaries and leaves with
``os._exit``, skipping interpreter teardown (with XLA's threads still running
it could crash). Python runs signal handlers only in the main thread,
between bytecodes, so a long native call there (an XLA compilation, a device
computation) can delay the exit until it returns; on CPU it came within
0.2 s, also mid-compilation. ``main`` installs the handlers when it starts
(a Ctrl-C during ``import jaxpass``, before ``main``, is still Python's
``KeyboardInterrupt``), only in the main thread, and restores the previous
ones when it returns.

Paths: every path option (:data:`PATH_ARGS`: ``--out``, ``--checkpoint``,
``--users``, ``--learned-dir``, ``--short-term-net``, ``--short-term-dir``) is
made absolute (``~`` expanded, relative to the working directory) before the
command runs; an empty one is an error.

Devices and processes (``demo``, ``tune``, ``powermin``, ``ee``, ``reproduce``, ``ssca``, ``train``, ``evaluate``:
:func:`jaxpass.experiments.cli_args.add_parallel_options`): ``--devices N``
runs the drops data-parallel on the first ``N`` local devices (``1``: one
device, unsharded); without it, on all devices of all processes when there
are several (:func:`jaxpass.parallel.drops_mesh`). ``--distributed`` calls
:func:`jaxpass.parallel.initialize` before any other JAX call. Both are
checked after ``--out`` and before any computation (``--devices 0`` or more
than the local devices: a user error). Every process runs the command (each
takes part in the sharded computations), but only process 0 prints and
writes: on any other process the command runs with ``--quiet``, stdout
discarded and ``--out`` replaced by a private temporary folder that is
removed when it ends (no shared result folder is touched by two processes).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading

from jaxpass.experiments.cli_args import UserError, add_parallel_options, mesh_from_args
from jaxpass.experiments.cli_args import positive_int as _positive_int

#: experiment modules that add a subcommand through ``add_command(subparsers)``
#: (see :mod:`jaxpass.experiments.cli_args`); one per line, in help order.
COMMAND_MODULES = (
    "jaxpass.experiments.ee",
    "jaxpass.experiments.powermin",
    "jaxpass.experiments.reproduce",
    "jaxpass.experiments.tune",
    "jaxpass.experiments.two_timescale",
    "jaxpass.experiments.train",
)
#: command modules of an optional extra -> the commands they add (listed, and refused with the extra's
#: name, when the extra is not installed: ``jaxpass train`` without ``jaxpass[learn]``)
EXTRA_COMMANDS = {"jaxpass.experiments.train": ("train", "evaluate")}


def _cmd_demo(args) -> int:
    from jaxpass.experiments import demo

    if args.tune_steps < 0:
        raise UserError(f"--tune-steps must be >= 0, got {args.tune_steps}")
    try:
        cfg = demo.preset(args.preset, **({"power_dbm": args.power_dbm} if args.power_dbm is not None else {}))
    except (ValueError, TypeError) as err:
        raise UserError(str(err)) from None
    from jaxpass.experiments import memory
    from jaxpass.runtime import progress

    progress.set_quiet(args.quiet)
    K, N, L = cfg.num_users, cfg.num_waveguides, cfg.num_pinches
    shards = memory.shards(mesh_from_args(args))
    by_steps = (lambda t: memory.demo_bytes(K, N, L, args.drops, tune_steps=int(t), devices=shards), args.tune_steps)
    need = memory.check_fits(lambda d: memory.demo_bytes(K, N, L, d, tune_steps=args.tune_steps, devices=shards),
                             args.drops, flag="--drops", others={"--tune-steps": by_steps})
    print(f"jaxpass demo: preset {args.preset} (K={cfg.num_users}, N={cfg.num_waveguides}, "
          f"L={cfg.num_pinches}, P={float(cfg.power_dbm):g} dBm), {args.drops} drops, seed {args.seed}, "
          f"uniform pinch positions"
          + (", then tuned ones" if args.tune_steps and cfg.num_users <= cfg.num_waveguides else "")
          + memory.header_note(need), flush=True)
    if args.tune_steps and cfg.num_users > cfg.num_waveguides:
        print(f"note: no tuned-positions row (--tune-steps {args.tune_steps} ignored): tuning is for the sum-rate "
              f"problem with K <= N, and preset {args.preset} has K = {cfg.num_users} users on "
              f"N = {cfg.num_waveguides} waveguide(s)", flush=True)
    results, users, X, tuned = demo.run_demo(cfg, drops=args.drops, seed=args.seed,
                                             wmmse_iterations=args.wmmse_iterations, tune_steps=args.tune_steps,
                                             progress=True, mesh=mesh_from_args(args))
    print(demo.results_table(results))
    paths = demo.write_demo(cfg, results, users, X, args.out, preset_name=args.preset, seed=args.seed, tuned=tuned)
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from jaxpass.experiments.demo import PRESETS

    parser = argparse.ArgumentParser(
        prog="jaxpass",
        description="Differentiable simulator and optimiser for pinching-antenna systems (PASS), in JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="uniform positions with MRT, ZF, RZF and WMMSE, then tuned positions, on a preset: table + PNG",
        description="Evaluate MRT, ZF, RZF and WMMSE with uniform pinch positions on random user drops "
        "of a preset, then (when K <= N) tune the positions per drop for the ZF sum rate "
        "(jaxpass.optimize.tune_positions); print mean ± std sum rate and ms per drop; write demo.json, demo.md and demo.png.",
    )
    demo.add_argument("--preset", default="joint_beamforming", choices=sorted(PRESETS), help="scenario preset (default: %(default)s)")
    demo.add_argument("--drops", type=_positive_int, default=64, help="number of user drops (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="PRNG seed for the drops (default: %(default)s)")
    demo.add_argument("--power-dbm", type=float, default=None, help="override the preset's power budget [dBm]")
    demo.add_argument("--wmmse-iterations", type=_positive_int, default=100, help="WMMSE iterations (default: %(default)s)")
    demo.add_argument("--tune-steps", type=int, default=300,
                      help="gradient steps of the tuned-positions row (0 skips it; default: %(default)s)")
    demo.add_argument("--out", default="demo_out", help="output directory (default: %(default)s)")
    demo.add_argument("--quiet", action="store_true", help="no progress on stderr (stdout unchanged)")
    add_parallel_options(demo)
    demo.set_defaults(func=_cmd_demo)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:  # its extra is not installed: the commands say so when run
            if name not in EXTRA_COMMANDS:
                raise
            for command in EXTRA_COMMANDS[name]:
                _add_missing_extra_command(sub, command, err)
            continue
        module.add_command(sub)
    return parser


def _add_missing_extra_command(subparsers, command: str, err: ModuleNotFoundError) -> None:
    """``jaxpass COMMAND ...`` without its extra: listed, and one error line naming the extra (exit 2)."""
    p = subparsers.add_parser(command, help=str(err), add_help=False)

    def refuse(args):
        raise ModuleNotFoundError(str(err), name=err.name)

    p.set_defaults(func=refuse, missing_extra=True)  # its arguments are not parsed: the error names the extra


#: exit status of a command that ran to the end but whose check failed (``powermin --check-mc``): its
#: result set is still written; any other non-zero status discards it
CHECK_FAILED = 1

#: the one stderr line of an interrupted command, by what became of its results (io.abandon_open_sets)
INTERRUPTED = {"nothing": "interrupted; nothing written", "kept": "interrupted; previous results kept",
               "written": "interrupted; results written"}


@contextlib.contextmanager
def _interrupts_end_the_run(label: list):
    """SIGINT/SIGTERM -> remove the run's temporaries, one line on stderr, ``os._exit(128 + signum)``.

    ``label[0]`` names the command in the line. Only in the main thread (where
    Python runs signal handlers); the previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        io = sys.modules.get("jaxpass.runtime.io")
        if io is not None and getattr(io, "after_commit", None) and io.after_commit(lambda: handler(signum, None)):
            return  # a result set is being moved in: finish it first
        state = io.abandon_open_sets() if io is not None and getattr(io, "abandon_open_sets", None) else "nothing"
        line = f"{label[0]}: {INTERRUPTED[state]}\n"
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        try:
            tty = sys.stderr.isatty()
            sys.stderr.write(("\r\x1b[K" if tty else "") + line)  # on a terminal: over "^C" / a progress bar
            sys.stderr.flush()
        except Exception:  # e.g. a reentrant call while the main thread was writing to stderr
            with contextlib.suppress(OSError):
                os.write(2, line.encode())
        os._exit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


#: parsed arguments that hold paths (a str, or a list of them): made absolute before the command runs
PATH_ARGS = ("out", "checkpoint", "learned_dir", "users", "short_term_net", "short_term_dir")


def _absolute(flag: str, text) -> str:
    """``text`` as an absolute path (``~`` expanded, relative to the working directory); an empty one is refused."""
    from pathlib import Path

    if not str(text).strip():
        raise UserError(f"{flag} must name a path, got an empty string")
    return str(Path(str(text)).expanduser().resolve())


def resolve_paths(args) -> None:
    """Replace every path of :data:`PATH_ARGS` in ``args`` by its absolute form (:func:`_absolute`).

    At the boundary, so the library below (orbax checkpoints, result sets) never
    sees a relative path and a later ``chdir`` cannot move one.
    """
    for name in PATH_ARGS:
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, (list, tuple)):
            setattr(args, name, [_absolute(flag, v) for v in value])
        else:
            setattr(args, name, _absolute(flag, value))


def _run(args, argv) -> int:
    """Check ``--out`` (before any computation), then run the command inside one result set of it."""
    resolve = getattr(args, "resolve_out", None)  # a command whose default folder depends on other flags
    if resolve is not None:
        args.out = resolve(args)
    resolve_paths(args)
    out = getattr(args, "out", None)
    from jaxpass.runtime import io

    if out is not None:
        try:
            io.check_out_dir(out)
        except ValueError as err:
            raise UserError(f"--out {err}") from None
    if getattr(args, "parallel_options", False):  # --distributed: jax.distributed first; then --devices checked
        import jax

        mesh_from_args(args)
        if jax.process_index() != 0:
            return _run_silently(args)
    if out is None:
        return args.func(args)
    with io.result_set(out, args.command, argv=["jaxpass", *argv], seed=getattr(args, "seed", None)) as rs:
        code = args.func(args)
        if code not in (0, CHECK_FAILED):  # a completed run whose check failed keeps its results (the evidence)
            rs.cancel()
        return code


def _run_silently(args) -> int:
    """Process ``!= 0`` of a ``--distributed`` run: the command runs (it takes part in every collective) with
    ``--quiet``, its stdout discarded and ``--out`` replaced by a temporary folder removed afterwards."""
    import tempfile

    from jaxpass.runtime import progress

    args.quiet = True
    progress.set_quiet(True)
    with tempfile.TemporaryDirectory(prefix="jaxpass-process-") as tmp, open(os.devnull, "w") as sink, \
            contextlib.redirect_stdout(sink):
        if getattr(args, "out", None) is not None:
            args.out = os.path.join(tmp, "out")
        return args.func(args)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    label = ["jaxpass"]
    with _interrupts_end_the_run(label):
        return _main(argv, label)


def _command_parser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The (sub)parser of the command ``args`` selected (``jaxpass reproduce table1`` -> ``table1``'s)."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        if name not in (subs[0].choices if subs else {}):
            return parser
        parser = subs[0].choices[name]


def _main(argv, label) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "missing_extra", False):  # reported by the command's own parser: its usage, and "jaxpass evaluate: error: ..."
        _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    label[0] = f"jaxpass {args.command}"
    try:
        return _run(args, argv)
    except UserError as err:
        print(f"jaxpass {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (OSError, ModuleNotFoundError) as err:  # files; a missing optional extra (matplotlib for figures)
        print(f"jaxpass {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

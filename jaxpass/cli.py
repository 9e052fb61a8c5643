"""The ``jaxpass`` command (also ``python -m jaxpass``).

User errors print one line to stderr and exit with status 2; result files are
written atomically, so a failed run never leaves half a file behind.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from jaxpass.experiments.cli_args import UserError
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


def _cmd_demo(args) -> int:
    from jaxpass.experiments import demo

    if args.tune_steps < 0:
        raise UserError(f"--tune-steps must be >= 0, got {args.tune_steps}")
    try:
        cfg = demo.preset(args.preset, **({"power_dbm": args.power_dbm} if args.power_dbm is not None else {}))
    except (ValueError, TypeError) as err:
        raise UserError(str(err)) from None
    print(f"jaxpass demo: preset {args.preset} (K={cfg.num_users}, N={cfg.num_waveguides}, "
          f"L={cfg.num_pinches}, P={float(cfg.power_dbm):g} dBm), {args.drops} drops, seed {args.seed}, "
          f"uniform pinch positions"
          + (", then tuned ones" if args.tune_steps and cfg.num_users <= cfg.num_waveguides else ""), flush=True)
    results, users, X, tuned = demo.run_demo(cfg, drops=args.drops, seed=args.seed,
                                             wmmse_iterations=args.wmmse_iterations, tune_steps=args.tune_steps)
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
    demo.set_defaults(func=_cmd_demo)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_command(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"jaxpass {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (OSError, ModuleNotFoundError) as err:  # files; a missing optional extra (matplotlib for figures)
        print(f"jaxpass {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

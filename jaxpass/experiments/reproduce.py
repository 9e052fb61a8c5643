"""``jaxpass reproduce {table1,sweeps}``: the JB Table I optimisation rows and the Figs. 4-6 sweeps.

* ``jaxpass reproduce table1 [--quick]`` -> ``table1.json``, ``table1.md`` (default folder
  ``table1_out``, or ``table1_out/quick`` with ``--quick``: never the repository's committed
  ``benchmarks/results``, which ``python -m benchmarks`` writes), table on stdout,
  progress on stderr (:mod:`jaxpass.experiments.table1`).
* ``jaxpass reproduce sweeps [--quick]`` -> ``sweeps.json``, ``sweeps.md``, ``sweeps.png``
  (default folder ``sweeps_out``, or ``sweeps_out/quick``; :mod:`jaxpass.experiments.sweeps`).

Both take ``--devices N`` / ``--distributed``
(:func:`jaxpass.experiments.cli_args.add_parallel_options`): the drops run
data-parallel over the devices (and hosts); only process 0 prints and writes.
"""

from __future__ import annotations

import dataclasses
import os

from jaxpass.experiments import memory
from jaxpass.experiments.cli_args import UserError, add_parallel_options, mesh_from_args, positive_int
from jaxpass.runtime import progress

#: default output folder of ``reproduce TARGET`` (a folder per target; ``quick`` inside it with ``--quick``)
DEFAULT_OUT = "{target}_out"


def _out_dir(args) -> str:
    if args.out is not None:
        return args.out
    folder = DEFAULT_OUT.format(target=args.target)
    return os.path.join(folder, "quick") if args.quick else folder


def _given(args, **fields) -> dict:
    """The settings the user gave on the command line: ``{name: convert(value)}`` for set, non-empty flags."""
    out = {}
    for name, convert in fields.items():
        value = getattr(args, name)
        if value is not None and value != []:
            out[name] = convert(value) if convert else value
    return out


def _cmd_table1(args) -> int:
    from jaxpass.experiments import table1

    s = table1.quick_settings() if args.quick else table1.Settings()
    s = dataclasses.replace(s, seed=args.seed, **_given(args, drops=None, num_pinches=tuple, rows=tuple,
                                                        learned_dir=None))
    if args.train_steps is not None:
        s = dataclasses.replace(s, learn={**s.learn, "steps": args.train_steps})
    try:
        for L in s.num_pinches:
            table1.table_config(L, s.power_dbm)
    except (ValueError, TypeError) as err:
        raise UserError(str(err)) from None
    if s.learned_dir is not None and os.path.exists(s.learned_dir) and not os.path.isdir(s.learned_dir):
        raise UserError(f"--learned-dir {s.learned_dir} exists and is not a folder")
    if s.learned_dir is not None:
        try:  # the saved models' name, scenario and length against the request: metadata only, before any row runs
            table1.check_learned_dir(s)
        except ValueError as err:
            raise UserError(f"--learned-dir: {str(err).splitlines()[0]}") from None
    mesh = mesh_from_args(args)
    devices = memory.shards(mesh)
    need = memory.check_fits(lambda d: memory.table_bytes(4, 4, max(s.num_pinches), d, s.tune, devices=devices),
                             s.drops, flag="--drops")
    print(f"jaxpass reproduce table1: K = N = 4, L in {list(s.num_pinches)}, P = {s.power_dbm:g} dBm, "
          f"{s.drops} drops (seed {s.seed}){' [quick]' if args.quick else ''}" + memory.header_note(need), flush=True)
    with progress.quiet_stderr(args.quiet):
        results = table1.run_table1(s, mesh=mesh)
    print(table1.markdown(results))
    for kind, path in table1.write_outputs(results, _out_dir(args)).items():
        print(f"wrote {kind}: {path}")
    return 0


def _cmd_sweeps(args) -> int:
    from jaxpass.experiments import sweeps

    s = sweeps.quick_settings() if args.quick else sweeps.Settings()
    s = dataclasses.replace(s, seed=args.seed, **_given(args, drops=None, figures=tuple, methods=tuple))
    mesh = mesh_from_args(args)
    devices = memory.shards(mesh)
    need = memory.check_fits(lambda d: memory.table_bytes(4, 4, max(s.pinches), d, s.tune, devices=devices), s.drops,
                             flag="--drops")
    print(f"jaxpass reproduce sweeps: figures {', '.join(s.figures)}, {s.drops} drops (seed {s.seed})"
          f"{' [quick]' if args.quick else ''}" + memory.header_note(need), flush=True)
    with progress.quiet_stderr(args.quiet):
        results = sweeps.run_sweeps(s, mesh=mesh)
    print(sweeps.markdown(results))
    for kind, path in sweeps.write_outputs(results, _out_dir(args)).items():
        print(f"wrote {kind}: {path}")
    return 0


def add_command(subparsers) -> None:
    """``jaxpass reproduce``: paper tables and figures (JB Table I rows, JB Figs. 4-6 sweeps)."""
    from jaxpass.experiments import sweeps, table1

    p = subparsers.add_parser(
        "reproduce",
        help="reproduce JB Table I (optimisation rows) or the Figs. 4-6 sweeps",
        description="Reproduce paper results with jaxpass's optimisers. Results go to --out "
        "(default TARGET_out, e.g. table1_out, or TARGET_out/quick with --quick).",
    )
    sub = p.add_subparsers(dest="target", metavar="TARGET")
    sub.required = True

    t = sub.add_parser(
        "table1",
        help="JB Table I: uniform/tuned positions, MM-PDD, MIMO baselines; learned rows on request "
        "(table1.json, table1.md)",
        description="K = N = 4, L in {8, 16}, P = 10 dBm, 64 fixed-seed drops: uniform + ZF/WMMSE, gradient "
        "tuning with each beamformer, MM-PDD (JB Alg. 1), hybrid and digital MIMO; with --rows also the JB "
        "learning models (loaded from --learned-dir or trained) and jaxpass's aligned model (+ refinement). "
        "Mean ± std sum rate, time per drop (compile apart), the paper's numbers.",
    )
    t.add_argument("--quick", action="store_true", help="L = 8, 4 drops, short runs (smoke test, < 2 min on CPU)")
    t.add_argument("--drops", type=positive_int, default=None, help="number of test drops (default 64; 4 with --quick)")
    t.add_argument("--seed", type=int, default=0, help="PRNG seed of the drops (default: %(default)s)")
    t.add_argument("--num-pinches", type=positive_int, nargs="+", default=None, metavar="L",
                   help="pinches per waveguide (default: 8 16; 8 with --quick)")
    t.add_argument("--rows", nargs="+", choices=list(table1.ROWS), default=None,
                   help="rows to run (default: the optimisation rows; the learned rows "
                   f"{', '.join(table1.LEARNED_ROWS)} are trained here unless --learned-dir holds them)")
    t.add_argument("--learned-dir", default=None, metavar="DIR",
                   help="folder of trained models, DIR/<model>-L<L> (as `jaxpass train --data-seed 1000 --out "
                   "DIR/<model>-L<L>` writes: trained on drops other than the table's seed); a saved model's name, "
                   "scenario and steps must match the row and --train-steps; a model missing there "
                   "is trained and saved there")
    t.add_argument("--train-steps", type=positive_int, default=None,
                   help="training steps of each paper model trained here (default 1000; 4 with --quick)")
    t.add_argument("--out", default=None, help="output folder")
    t.add_argument("--quiet", action="store_true", help="no progress on stderr (stdout unchanged)")
    add_parallel_options(t)
    t.set_defaults(func=_cmd_table1, resolve_out=_out_dir)

    w = sub.add_parser(
        "sweeps",
        help="JB Figs. 4-6: sum rate vs P, vs L, vs S_x (sweeps.json, sweeps.md, sweeps.png)",
        description="Sum rate of uniform + WMMSE, gradient tuning, MM-PDD and the MIMO baselines against the "
        "power budget (10-24 dBm), the pinches per waveguide (8-32) and the waveguide length (5-25 m).",
    )
    w.add_argument("--quick", action="store_true", help="2 drops, 2 points per sweep, short runs (smoke test)")
    w.add_argument("--drops", type=positive_int, default=None, help="drops per point (default 16; 2 with --quick)")
    w.add_argument("--seed", type=int, default=0, help="PRNG seed of the drops (default: %(default)s)")
    w.add_argument("--figures", nargs="+", choices=list(sweeps.FIGURES), default=None,
                   help="which sweeps (default: all)")
    w.add_argument("--methods", nargs="+", choices=list(sweeps.METHODS), default=None,
                   help="which methods (default: all)")
    w.add_argument("--out", default=None, help="output folder")
    w.add_argument("--quiet", action="store_true", help="no progress on stderr (stdout unchanged)")
    add_parallel_options(w)
    w.set_defaults(func=_cmd_sweeps, resolve_out=_out_dir)

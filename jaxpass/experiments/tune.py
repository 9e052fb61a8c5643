"""``jaxpass tune``: tune pinch positions for given or sampled user drops.

Drops come from ``--users FILE`` or are sampled from ``--preset`` (``--drops``, ``--seed``):

* ``.npy``: an array ``(K, 2)`` (one drop) or ``(B, K, 2)`` [m];
* ``.csv`` (UTF-8 text, a leading byte-order mark as Excel writes it is
  skipped; comma-separated; ``#`` comments; an optional header naming the
  columns, ``x,y`` or ``x0,y0,x1,y1,...``, case and spaces ignored: any other
  non-numeric line is an error): ``K`` rows ``x,y`` (one drop), or ``B`` rows
  ``x0,y0,x1,y1,...`` (one drop per row). A ``.npy`` name on a text file is
  an error that says so.

With a file, ``K`` is taken from it (the preset's ``num_users`` is overridden),
``--drops`` is refused, and every user must lie in the preset's area
``[0, length_x] x [0, width_y]`` (an error names the first one outside).
Writes to ``--out``: ``tune.npz`` (``users``, ``positions``, ``W``, ``sum_rate``,
``history``, ``start_rate``), ``tune.json`` (scenario, options, per-drop rates,
summary, timing) and ``tune.png`` (the layout of ``--plot-drop`` with its
tuning history).
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np

from jaxpass.experiments.cli_args import UserError, add_options, add_parallel_options, options_from_args, positive_int
from jaxpass.optimize.positions import TuneOptions
from jaxpass.runtime.io import atomic_path, environment, write_json, writes_result_set

#: the tuning options the ``tune`` command exposes (defaults and help from :class:`TuneOptions`)
CLI_OPTIONS = ("beamformer", "steps", "starts", "learning_rate", "assignments", "assignment_search")


def load_users(path: str) -> np.ndarray:
    """Read user coordinates from ``.npy`` or ``.csv`` (module docstring); ``(B, K, 2)`` float array.

    A CSV header is recognised only when it names the columns (``x,y``, or
    ``x0,y0,x1,y1,...`` for one drop per row; case and spaces ignored); any
    other non-numeric line is an error quoting it. NPY arrays must be real
    (integer or float): complex, boolean, object and structured arrays are refused.

    Raises:
      UserError: unreadable file, unknown extension, wrong shape or non-finite values.
    """
    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        raise UserError(f"users file {path} is a directory; give a .npy or .csv file")
    if not os.path.exists(path):
        raise UserError(f"users file not found: {path}")
    if not os.path.isfile(path):
        raise UserError(f"users file {path} is not a regular file; give a .npy or .csv file")
    try:
        if ext == ".npy":
            with open(path, "rb") as fh:
                magic = fh.read(6)
            if magic != b"\x93NUMPY":
                raise UserError(f"users file {path} is not a NumPy .npy file (no .npy header); "
                                "a text file of 'x,y' rows must be named .csv")
            arr = np.load(path, allow_pickle=False)
        elif ext == ".csv":
            arr = _read_csv(path)
        else:
            raise UserError(f"users file must be .npy or .csv, got {path!r}")
    except UserError:
        raise
    except (ValueError, OSError) as err:
        raise UserError(f"cannot read users from {path}: {err}") from None
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iuf":
        raise UserError(f"users in {path} must be real numbers (int or float), got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    given = arr.shape
    if ext == ".csv" and arr.ndim == 2 and arr.shape[1] != 2:
        if arr.shape[1] % 2:
            raise UserError(f"CSV rows must be 'x,y' (one drop) or 'x0,y0,x1,y1,...' (one drop per row); "
                            f"got {arr.shape[1]} columns in {path}")
        arr = arr.reshape(arr.shape[0], -1, 2)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise UserError(f"users must have shape (K, 2) or (B, K, 2), got {given} from {path}")
    if not np.all(np.isfinite(arr)):
        raise UserError(f"users in {path} contain non-finite values")
    return arr


def _is_header(fields) -> bool:
    """``x,y`` (repeated) or ``x0,y0,x1,y1,...``, case and spaces ignored."""
    names = ["".join(f.split()).lower() for f in fields]
    if len(names) % 2:
        return False
    plain = names == ["x", "y"] * (len(names) // 2)
    indexed = names == [f"{a}{i}" for i in range(len(names) // 2) for a in "xy"]
    return plain or indexed


def _read_csv(path: str) -> np.ndarray:
    with open(path, encoding="utf-8-sig") as fh:  # -sig: a byte-order mark (Excel's "CSV UTF-8") is skipped
        lines = [(i, ln.strip()) for i, ln in enumerate(fh, 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise UserError(f"users file {path} is empty")
    rows = []
    for n, (lineno, text) in enumerate(lines):
        fields = text.split(",")
        try:
            rows.append([float(v) for v in fields])
        except ValueError:
            if n == 0 and _is_header(fields):
                continue
            what = "neither numbers nor a header naming the columns ('x,y')" if n == 0 else "not numeric"
            raise UserError(f"cannot read users from {path}: line {lineno} is {what}: {text!r}") from None
    if not rows:
        raise UserError(f"users file {path} has a header but no rows")
    if len({len(r) for r in rows}) != 1:
        raise UserError(f"users CSV {path} must have the same number of numeric columns on every row")
    return np.asarray(rows)


class _Given(argparse.Action):
    """Store the value and mark ``<dest>_given`` (to tell an explicit flag from its default)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, self.dest + "_given", True)


def _file_drops(args):
    """``(users (B, K, 2), cfg)`` from ``--users FILE``; refuses ``--drops`` and users outside the area."""
    from jaxpass._checks import check_users_in_area

    if getattr(args, "drops_given", False):
        raise UserError("--drops samples users from --preset; it cannot be combined with --users FILE "
                        "(the file sets the drops)")
    users = load_users(args.users)
    cfg = _config(args, users.shape[1])
    try:
        check_users_in_area(cfg, users, "users")
    except ValueError as err:
        raise UserError(f"--users {args.users}: {err}") from None
    return users, cfg


def _config(args, num_users=None):
    from jaxpass.experiments.demo import preset

    overrides = {}
    if num_users is not None and args.num_users is not None and args.num_users != num_users:
        raise UserError(f"--num-users {args.num_users} does not match the {num_users} users per drop in --users")
    if num_users is not None:
        overrides["num_users"] = int(num_users)
    elif args.num_users is not None:
        overrides["num_users"] = args.num_users
    if args.num_waveguides is not None:
        overrides["num_waveguides"] = args.num_waveguides
    if args.num_pinches is not None:
        overrides["num_pinches"] = args.num_pinches
    if args.power_dbm is not None:
        overrides["power_dbm"] = args.power_dbm
    try:
        return preset(args.preset, **overrides)
    except (ValueError, TypeError) as err:
        raise UserError(str(err)) from None


def _cmd_tune(args) -> int:
    import jax.numpy as jnp

    from jaxpass.experiments import memory
    from jaxpass.experiments.cli_args import mesh_from_args, run_batched
    from jaxpass.geometry import is_feasible, sample_users
    from jaxpass.optimize.positions import tune_batch, tuning_inputs
    from jaxpass.runtime import progress

    progress.set_quiet(args.quiet)
    mem_opts = options_from_args(args, TuneOptions, CLI_OPTIONS)

    devices = memory.shards(mesh_from_args(args))

    def fits(c, drops, flag):  # the memory estimate, before anything compiles (refuses what cannot fit)
        L = c.num_users, c.num_waveguides, c.num_pinches
        by_steps = (lambda t: memory.tune_command_bytes(*L, drops, mem_opts.replace(steps=int(t)), devices=devices),
                    mem_opts.steps)
        return memory.check_fits(lambda d: memory.tune_command_bytes(*L, d, mem_opts, devices=devices), drops,
                                 flag=flag, others={"--steps": by_steps})

    if args.users is not None:
        users, cfg = _file_drops(args)
        source = args.users
        need = fits(cfg, users.shape[0], "drops in --users")
    else:
        cfg = _config(args)
        need = fits(cfg, args.drops, "--drops")
        users = np.asarray(sample_users(jax.random.key(args.seed), cfg, (args.drops,)))
        source = f"preset {args.preset}, {args.drops} drops, seed {args.seed}"
    if not 0 <= args.plot_drop < users.shape[0]:
        raise UserError(f"--plot-drop must be in [0, {users.shape[0] - 1}], got {args.plot_drop}")
    opts = options_from_args(args, TuneOptions, CLI_OPTIONS)
    options = opts.asdict()
    try:
        keys, batch = tuning_inputs(cfg, jnp.asarray(users, jnp.result_type(float)), jax.random.key(args.seed), opts)
    except (ValueError, TypeError) as err:
        raise UserError(str(err)) from None
    B = users.shape[0]
    print(f"jaxpass tune: {source}; K={cfg.num_users}, N={cfg.num_waveguides}, L={cfg.num_pinches}, "
          f"P={float(cfg.power_dbm):g} dBm; beamformer {args.beamformer}, {args.starts} starts x {args.steps} steps"
          + memory.header_note(need), flush=True)
    with progress.Progress("tune") as bar:
        res, seconds, compile_s = run_batched(tune_batch, keys, cfg, batch, mesh=mesh_from_args(args),
                                              in_axes=(0, None, 0), options=opts, progress=bar, what=f"{B} drops")
    rates = np.asarray(res.sum_rate, np.float64)
    feasible = np.asarray(is_feasible(cfg, res.positions))
    print(f"sum rate {rates.mean():.2f} ± {rates.std():.2f} bps/Hz (min {rates.min():.2f}, max {rates.max():.2f}); "
          f"best start {float(np.mean(res.start_rate)):.2f}; feasible {int(feasible.sum())}/{B}; "
          f"{seconds / B * 1e3:.3g} ms/drop, compile {compile_s:.1f} s", flush=True)
    paths = write_tune(cfg, users, res, args.out, options=options, source=source, seconds=seconds,
                       compile_s=compile_s, plot_drop=args.plot_drop, preset_name=args.preset)
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return 0


@writes_result_set("tune")
def write_tune(cfg, users, res, out_dir, *, options, source, seconds, compile_s, plot_drop=0,
               preset_name="joint_beamforming") -> dict:
    """Write ``tune.npz``, ``tune.json`` and ``tune.png`` (atomically) for a batched result."""
    from jaxpass.geometry import is_feasible
    from jaxpass.plotting import plot_layout, plt, save_figure

    os.makedirs(out_dir, exist_ok=True)
    rates = np.asarray(res.sum_rate, np.float64)
    feasible = np.asarray(is_feasible(cfg, res.positions))
    npz_path = os.path.join(out_dir, "tune.npz")
    with atomic_path(npz_path) as tmp:
        np.savez(tmp, users=np.asarray(users), positions=np.asarray(res.positions), W=np.asarray(res.W),
                 sum_rate=rates, history=np.asarray(res.history), start_rate=np.asarray(res.start_rate))
    B = len(rates)
    summary = {
        "source": source, "preset": preset_name,
        "K": cfg.num_users, "N": cfg.num_waveguides, "L": cfg.num_pinches,
        "power_dbm": float(cfg.power_dbm), "noise_dbm": float(cfg.noise_dbm), "length_x": float(cfg.length_x),
        "options": options, "drops": B,
        "sum_rate": {"mean": float(rates.mean()), "std": float(rates.std()), "min": float(rates.min()),
                     "max": float(rates.max()), "per_drop": [float(r) for r in rates]},
        "start_rate_mean": float(np.mean(np.asarray(res.start_rate))),
        "all_feasible": bool(feasible.all()),
        "ms_per_drop": 1e3 * seconds / B, "compile_s": compile_s,
        "env": environment(),
    }
    paths = {"npz": npz_path, "json": write_json(os.path.join(out_dir, "tune.json"), summary)}
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    plot_layout(cfg, np.asarray(res.positions)[plot_drop], np.asarray(users)[plot_drop], ax=ax0,
                title=f"drop {plot_drop}: tuned positions, {rates[plot_drop]:.2f} bps/Hz")
    hist = np.asarray(res.history)[plot_drop]
    ax1.plot(np.arange(len(hist)), hist, lw=1)
    ax1.set_xlabel("step")
    ax1.set_ylabel("sum rate [bps/Hz]")
    ax1.set_title(f"drop {plot_drop}: kept start's trajectory ({options['beamformer']})")
    ax1.grid(alpha=0.3)
    paths["figure"] = save_figure(fig, os.path.join(out_dir, "tune.png"))
    return paths


def add_command(subparsers) -> None:
    """``jaxpass tune``: gradient tuning of pinch positions (NPZ + JSON + PNG)."""
    from jaxpass.experiments.demo import PRESETS

    p = subparsers.add_parser(
        "tune",
        help="tune pinch positions for user drops from a file or a preset (tune.npz, tune.json, tune.png)",
        description="Gradient tuning of pinch positions (jaxpass.optimize.tune_positions) for drops read from "
        "--users (CSV: 'x,y' rows = one drop, or 'x0,y0,x1,y1,...' rows = one drop each; NPY: (K, 2) or "
        "(B, K, 2)) or sampled from --preset.",
    )
    p.add_argument("--users", default=None, metavar="FILE",
                   help="CSV or NPY file of user coordinates [m], inside the preset's area [0, S_x] x [0, S_y]")
    p.add_argument("--preset", default="joint_beamforming", choices=sorted(PRESETS),
                   help="scenario preset (default: %(default)s)")
    p.add_argument("--drops", type=positive_int, default=8, action=_Given,
                   help="sampled drops; not with --users FILE (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed for drops and random starts (default: %(default)s)")
    p.add_argument("--num-users", type=positive_int, default=None,
                   help="override K, users per drop (with --users FILE it must match the file)")
    p.add_argument("--num-waveguides", type=positive_int, default=None, help="override N, waveguides")
    p.add_argument("--num-pinches", type=positive_int, default=None, help="override L, pinches per waveguide")
    p.add_argument("--power-dbm", type=float, default=None, help="override the power budget [dBm]")
    add_options(p, TuneOptions, CLI_OPTIONS)
    p.add_argument("--plot-drop", type=int, default=0, help="drop shown in tune.png (default: %(default)s)")
    p.add_argument("--out", default="tune_out", help="output folder (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr (stdout unchanged)")
    add_parallel_options(p)
    p.set_defaults(func=_cmd_tune)

"""``jaxpass train`` and ``jaxpass evaluate``: train a learned model, evaluate a checkpoint.

``jaxpass train --model NAME --steps N --batch-size B --out DIR [--resume] [--float64] ...``
trains :data:`jaxpass.learn.models.ARCHITECTURES` ``[NAME]`` (size kwargs with
``--model-arg NAME=VALUE``) on drops of ``--preset`` with
:func:`jaxpass.learn.train.train` (data-parallel over all devices) and writes to
``DIR``: ``checkpoints/`` (orbax, exact resume with ``--resume``),
``metrics.jsonl`` (one JSON record per logged step), ``train.json`` (summary)
and ``train.png`` (sum rate vs step; needs matplotlib, skipped with a note
otherwise). Progress goes to stderr: a bar on a terminal, an occasional plain line
otherwise (none with ``--quiet``).

``--devices N`` trains on the first ``N`` local devices (the data mesh of
:func:`jaxpass.learn.train.train`, ``devices=N``; default: all devices of all
processes) and ``--distributed`` starts ``jax.distributed`` first
(:func:`jaxpass.experiments.cli_args.add_parallel_options`); only process 0
prints and writes its summary files.

``--resume`` continues the latest checkpoint in ``DIR/checkpoints`` with the
same options; only the length's spelling (``--steps``/``--epochs`` giving the
same total), evaluation, logging and checkpoint cadence may change. Another
total step count is refused (the learning-rate schedule is laid out over it).
Nothing is printed before every check has passed.

``jaxpass evaluate --checkpoint DIR [--step S] [--drops N --seed S] [--devices N] [--quiet]``
prints the mean ± std sum rate of a checkpoint on held-out drops (default: the
run's own test drops) and the inference time per 64 drops (network, decoding
and beamformer). Its memory estimate
(:func:`jaxpass.experiments.memory.evaluate_bytes`) is checked before the model
is loaded: too many ``--drops`` is an error naming a count that fits.

Paths (``--out``, ``--checkpoint``) may be relative to the working directory or
start with ``~``: the CLI makes them absolute (:func:`jaxpass.cli.resolve_paths`).
"""

from __future__ import annotations

import os

import numpy as np

from jaxpass.experiments.cli_args import (
    UserError,
    add_options,
    add_parallel_options,
    mesh_from_args,
    options_from_args,
    positive_int,
)
from jaxpass.learn.train import TrainOptions

#: the TrainOptions the ``train`` command exposes as flags (model_kwargs: ``--model-arg``)
CLI_OPTIONS = ("model", "steps", "epochs", "batch_size", "learning_rate", "warmup_steps", "decay",
               "final_lr_fraction", "weight_decay", "grad_clip", "train_drops", "test_drops", "data_seed",
               "test_seed", "init_seed", "stream", "float64", "eval_every", "log_every", "checkpoint_every",
               "keep_checkpoints")


def parse_model_args(items) -> dict:
    """``["width=64", "dropout=0.0", "cross_attention=false"]`` -> ``{"width": 64, "dropout": 0.0, ...}``."""
    out = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not name.strip().isidentifier():
            raise UserError(f"--model-arg must be NAME=VALUE (e.g. d_model=64), got {item!r}")
        text = text.strip()
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        else:
            try:
                value = int(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    value = text
        out[name.strip()] = value
    return out


def model_label(model: str, model_kwargs) -> str:
    """``"kdl-resnet"``, or ``"kdl-resnet {'width': 32}"`` with size kwargs (one space, none trailing)."""
    kwargs = dict(model_kwargs or {})
    return f"{model} {kwargs}" if kwargs else model


def _config(args):
    from jaxpass.experiments.demo import preset

    overrides = {k: getattr(args, k) for k in ("num_users", "num_waveguides", "num_pinches", "power_dbm")
                 if getattr(args, k) is not None}
    try:
        return preset(args.preset, **overrides)
    except (ValueError, TypeError) as err:
        raise UserError(str(err)) from None


def _cmd_train(args) -> int:
    from jaxpass.learn import checkpoint as ckpt
    from jaxpass.learn.train import check_same_length, train
    from jaxpass.runtime.io import environment, write_json

    opts = options_from_args(args, TrainOptions, CLI_OPTIONS)
    try:
        opts = opts.replace(model_kwargs=parse_model_args(args.model_arg)).check_combination()
    except (TypeError, ValueError) as err:
        raise UserError(str(err)) from None
    cfg = _config(args)
    quiet = args.quiet
    from jaxpass.experiments import memory

    K, N, L = cfg.num_users, cfg.num_waveguides, cfg.num_pinches
    shards = memory.shards(mesh_from_args(args))  # --devices/--distributed, checked before anything runs
    need = memory.check_fits(lambda b: memory.train_bytes(K, N, L, b, opts.train_drops, opts.test_drops,
                                                          stream=opts.stream, float64=opts.float64, devices=shards),
                             opts.batch_size, flag="--batch-size")
    if args.resume:  # the cheap checks of a resume first (the rest, model and state, inside train())
        try:
            saved = ckpt.read_metadata(os.path.join(args.out, "checkpoints"))
            check_same_length(saved, opts, directory=os.path.join(args.out, "checkpoints"))
        except ckpt.CheckpointError as err:
            raise UserError(str(err)) from None

    def started(step):  # after every check of train(): nothing is printed before a refusal
        if not quiet:
            print(f"jaxpass train: {model_label(opts.model, opts.model_kwargs)} on preset {args.preset} "
                  f"(K={cfg.num_users}, N={cfg.num_waveguides}, L={cfg.num_pinches}, P={float(cfg.power_dbm):g} dBm); "
                  f"{opts.total_steps} steps of {opts.batch_size} drops, "
                  f"{'a stream of drops' if opts.stream else f'{opts.train_drops} training drops'}, "
                  f"{opts.test_drops} test drops; {'float64' if opts.float64 else 'float32'}"
                  + memory.header_note(need), flush=True)
        if step:
            print(f"resumed from step {step} ({os.path.join(args.out, 'checkpoints')})", flush=True)

    def report(record):
        if not quiet and "test_sum_rate_mean" in record:
            sps = record.get("samples_per_s")
            print(f"step {record['step']} (epoch {record['epoch']}): loss {record['loss']:.4g}, "
                  f"test sum rate {record['test_sum_rate_mean']:.2f} ± {record['test_sum_rate_std']:.2f} bps/Hz"
                  + (f", {sps:.0f} samples/s" if sps is not None and np.isfinite(sps) else ""), flush=True)

    progress = not quiet  # a bar on a terminal, an occasional plain line otherwise
    try:
        res = train(cfg, opts, out_dir=args.out, resume=args.resume, progress=progress, callback=report,
                    on_start=started, devices=args.devices)  # None: all devices of all processes (the default)
    except ckpt.CheckpointError as err:
        raise UserError(str(err)) from None
    except (TypeError, ValueError) as err:  # model kwargs the model refuses, batch vs device count
        raise UserError(str(err).splitlines()[0]) from None
    evals = [r for r in res.history if "test_sum_rate_mean" in r]
    last = evals[-1] if evals else {}
    print(f"step {res.step}: test sum rate {last.get('test_sum_rate_mean', float('nan')):.2f} ± "
          f"{last.get('test_sum_rate_std', float('nan')):.2f} bps/Hz on {opts.test_drops} drops; "
          f"{res.samples_per_s:.1f} samples/s on {res.devices} device(s); {res.train_seconds:.1f} s", flush=True)
    summary = {
        "model": opts.model, "model_kwargs": dict(opts.model_kwargs), "preset": args.preset,
        "cfg": ckpt.cfg_to_dict(cfg), "options": opts.asdict(), "step": res.step,
        "test_sum_rate_mean": last.get("test_sum_rate_mean"), "test_sum_rate_std": last.get("test_sum_rate_std"),
        "samples_per_s": res.samples_per_s, "train_seconds": res.train_seconds, "devices": res.devices,
        "env": environment(),
    }
    paths = {"metrics": os.path.join(args.out, "metrics.jsonl"),
             "summary": write_json(os.path.join(args.out, "train.json"), summary)}
    try:
        paths["figure"] = plot_history(res.history, os.path.join(args.out, "train.png"), title=opts.model)
    except ModuleNotFoundError as err:
        print(f"note: no figure ({err})")
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return 0


def plot_history(history, path, title=""):
    """Sum rate vs step (training batches and test drops) from metrics records; saved atomically as PNG."""
    from jaxpass.plotting import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 3.8))
    tr = [(r["step"], r["train_sum_rate"]) for r in history if r.get("train_sum_rate") is not None]
    te = [(r["step"], r["test_sum_rate_mean"], r["test_sum_rate_std"]) for r in history
          if r.get("test_sum_rate_mean") is not None]
    if tr:
        ax.plot(*zip(*tr), lw=1, alpha=0.6, label="training batches")
    if te:
        s, m, sd = (np.asarray(v) for v in zip(*te))
        ax.errorbar(s, m, yerr=sd, marker="o", ms=3, capsize=2, label="test drops (mean ± std)")
    ax.set_xlabel("step")
    ax.set_ylabel("sum rate [bps/Hz]")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def _cmd_evaluate(args) -> int:
    import contextlib

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxpass.experiments import memory
    from jaxpass.learn import checkpoint as ckpt
    from jaxpass.learn import data
    from jaxpass.learn.decode import predict
    from jaxpass.learn.train import canonical_cfg, evaluate, load_checkpoint
    from jaxpass.runtime import progress
    from jaxpass.runtime.io import compile_and_run

    progress.set_quiet(args.quiet)
    try:
        meta = ckpt.read_metadata(_checkpoint_folder(args.checkpoint), args.step)  # reads the JSON only
        cfg = ckpt.cfg_from_dict(meta["cfg"])
        opts = meta["options"]
        seed = opts["test_seed"] if args.seed is None else args.seed
        drops = opts["test_drops"] if args.drops is None else args.drops
    except ckpt.CheckpointError as err:
        raise UserError(str(err)) from None
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"checkpoint {args.checkpoint} has unusable metadata: {err}") from None
    float64 = meta.get("dtype") == "float64"
    shards = memory.shards(mesh_from_args(args))  # --devices/--distributed, checked before anything runs
    memory.check_fits(lambda d: memory.evaluate_bytes(cfg.num_users, cfg.num_waveguides, cfg.num_pinches, d,
                                                      float64=float64, devices=shards), drops, flag="--drops")
    try:
        model, cfg, meta = load_checkpoint(args.checkpoint, meta["step"], devices=args.devices)
    except ckpt.CheckpointError as err:
        raise UserError(str(err)) from None
    which = ("the run's held-out test drops" if seed == opts["test_seed"] and drops == opts["test_drops"]
             else "WARNING: the training drops" if seed == opts["data_seed"] and not opts["stream"] else "held-out drops")
    with jax.enable_x64(True) if float64 else contextlib.nullcontext():
        dtype = np.float64 if float64 else np.float32
        users = data.sample_drops(seed, cfg, drops, dtype)
        rates = np.asarray(evaluate(model, cfg, users, devices=args.devices), np.float64)
        graphdef, state = nnx.split(model)
        run = jax.jit(lambda state, cfg, u: predict(nnx.merge(graphdef, state), cfg, u))
        bench = jnp.asarray(data.sample_drops(seed, cfg, 64, dtype))
        _, seconds, compile_s = compile_and_run(run, state, canonical_cfg(cfg), bench, repeats=5)
    print(f"jaxpass evaluate: {model_label(meta['model'], meta['model_kwargs'])} at step {meta['step']} "
          f"({meta['dtype']}), K={cfg.num_users}, N={cfg.num_waveguides}, L={cfg.num_pinches}, "
          f"P={float(cfg.power_dbm):g} dBm")
    print(f"sum rate {rates.mean():.2f} ± {rates.std():.2f} bps/Hz on {drops} drops (seed {seed}, {which}); "
          f"inference {seconds * 1e3:.3g} ms per 64 drops (network + decode + beamformer, compile {compile_s:.1f} s)")
    return 0


def _checkpoint_folder(path) -> str:
    """The checkpoints folder of ``--checkpoint``: ``path/checkpoints`` when there is one (a run's ``--out``), else
    ``path``; a missing path or a file is refused (:func:`jaxpass.learn.checkpoint.check_folder`)."""
    from jaxpass.learn import checkpoint as ckpt

    path = ckpt.check_folder(path)
    sub = os.path.join(path, "checkpoints")
    return sub if os.path.isdir(sub) else path


def add_command(subparsers) -> None:
    """``jaxpass train`` and ``jaxpass evaluate``."""
    from jaxpass.experiments.demo import PRESETS

    p = subparsers.add_parser(
        "train",
        help="train a learned model (checkpoints, metrics.jsonl, train.json, train.png)",
        description="Train a model of jaxpass.learn.models.ARCHITECTURES unsupervised (minus the mean sum rate) with "
        "Adam, warm-up and decay, data-parallel over all devices; exact resume from orbax checkpoints.",
    )
    p.add_argument("--preset", default="joint_beamforming", choices=sorted(PRESETS),
                   help="scenario preset (default: %(default)s)")
    p.add_argument("--num-users", type=positive_int, default=None, help="override K, users")
    p.add_argument("--num-waveguides", type=positive_int, default=None, help="override N, waveguides")
    p.add_argument("--num-pinches", type=positive_int, default=None, help="override L, pinches per waveguide")
    p.add_argument("--power-dbm", type=float, default=None, help="override the power budget [dBm]")
    add_options(p, TrainOptions, CLI_OPTIONS)
    p.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="a model size kwarg, e.g. --model-arg d_model=64 (repeatable)")
    p.add_argument("--out", default="train_out", help="output folder (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress line and no per-evaluation lines")
    add_parallel_options(p)
    p.set_defaults(func=_cmd_train)

    e = subparsers.add_parser(
        "evaluate",
        help="sum rate of a trained checkpoint on held-out drops, and its inference time",
        description="Load a checkpoint written by 'jaxpass train' and print the mean ± std sum rate on held-out "
        "drops (default: the run's test drops) and the inference ms per 64 drops.",
    )
    e.add_argument("--checkpoint", required=True, help="the --out folder of a run (or its checkpoints/ folder)")
    e.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    e.add_argument("--drops", type=positive_int, default=None, help="number of drops (default: the run's test drops)")
    e.add_argument("--seed", type=int, default=None, help="seed of the drops (default: the run's test seed)")
    e.add_argument("--quiet", action="store_true", help="no progress on stderr (stdout unchanged)")
    add_parallel_options(e)
    e.set_defaults(func=_cmd_evaluate)


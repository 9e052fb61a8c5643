"""Training of the learned models: options, the pure step, data-parallel driver, checkpoints.

Three layers, as every solver (``docs/execution_model.md``):

* :func:`loss_and_grads` / :func:`train_step`: pure functions of
  ``(model, optimizer, cfg, users, loss_fn)`` that work under ``nnx.jit`` or
  ``nnx.split``/``nnx.merge`` + ``jax.jit``. The default loss is the
  unsupervised one, minus the mean sum rate of the batch under the true channel
  (:func:`jaxpass.learn.decode.sum_rate_loss`, JB §IV); any
  ``loss_fn(model, cfg, users) -> (loss, aux)`` can replace it (e.g. with a
  supervised or teacher term).
* :class:`TrainOptions`: model, schedule (optax Adam/AdamW, linear warm-up
  then cosine or linear decay, global-norm clipping), data (a fixed
  train/test split, 30 000 / 64 drops as the authors, JB §V, or a fresh stream),
  seeds, dtype, evaluation / logging / checkpoint cadence.
* :func:`train`: the driver. Data-parallel over all devices with
  ``jax.sharding``: a 1-D mesh ``("data",)`` from :func:`jax.make_mesh`, each
  batch sharded ``NamedSharding(mesh, P("data"))``, parameters and optimiser
  state replicated (XLA inserts the gradient all-reduce). The same code runs on
  one device, on ``n`` local devices, and on several hosts after
  ``jax.distributed.initialize()`` (every host builds the same global batch
  from the seeds and contributes its addressable shards,
  :func:`jax.make_array_from_callback`). Evaluation on the test drops every
  ``eval_every`` steps (default: once per epoch), a JSON-lines metrics log,
  a progress line on stderr (a terminal only), and orbax checkpoints with
  exact resume (:mod:`jaxpass.learn.checkpoint`): parameters, optimiser
  state, RNG state and data position are restored, and batch ``s`` depends
  only on the seeds and ``s`` (:mod:`jaxpass.learn.data`), so a run interrupted
  after ``k`` steps and resumed ends bit-identical to an uninterrupted one.

float64: ``float64=True`` runs the whole training under ``jax.enable_x64``
with the model's floating parameters (and so the optimiser moments) cast to
float64 after initialisation; drops are drawn in float32 and cast, so float32
and float64 runs see the same drops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpass import _checks, parallel
from jaxpass._options import Options, option
from jaxpass.config import PassConfig
from jaxpass.learn import checkpoint as ckpt
from jaxpass.learn import data

DECAYS = ("cosine", "linear", "constant")

#: options that may change when a run is resumed (length, logging and checkpoint cadence)
RESUMABLE_OPTIONS = ("steps", "epochs", "eval_every", "log_every", "checkpoint_every", "keep_checkpoints")


def model_names() -> tuple:
    """The registered model names (keys of :data:`jaxpass.learn.models.ARCHITECTURES`)."""
    from jaxpass.learn.models import ARCHITECTURES

    return tuple(ARCHITECTURES)


def _kwargs_tuple(value) -> tuple:
    if isinstance(value, dict):
        value = value.items()
    try:
        pairs = tuple((str(k), v) for k, v in value)
    except (TypeError, ValueError):
        raise TypeError(f"model_kwargs must be a dict or (name, value) pairs, got {value!r}") from None
    return tuple(sorted(pairs))


@dataclasses.dataclass(frozen=True)
class TrainOptions(Options):
    """Options of :func:`train` (defaults: JB §V, Adam lr 1e-4 with warm-up, batch 64, 30 000 / 64 drops).

    ``validate`` checks each field; :meth:`check_combination` the rules between
    fields (``batch_size <= train_drops``, ``test_seed != data_seed``, no
    ``epochs`` with ``stream``), which :func:`train` runs.
    """

    model: str = option("kdl-transformer", help="model name, a key of jaxpass.learn.models.ARCHITECTURES")
    model_kwargs: tuple = option((), help="model size kwargs as (name, value) pairs or a dict (default: the papers')")
    steps: int = option(1000, help="optimiser steps (ignored when epochs > 0)")
    epochs: int = option(0, help="passes over the training split; > 0 overrides steps (fixed split only)")
    batch_size: int = option(64, help="drops per step (global batch, a multiple of the device count)")
    learning_rate: float = option(1e-4, help="peak learning rate of Adam(W)")
    warmup_steps: int = option(100, help="linear warm-up steps from 0 to the peak learning rate")
    decay: str = option("cosine", help="learning-rate decay after warm-up", choices=DECAYS)
    final_lr_fraction: float = option(0.0, help="final learning rate as a fraction of the peak (cosine, linear)")
    weight_decay: float = option(0.0, help="decoupled weight decay of AdamW (0: Adam)")
    grad_clip: float = option(1.0, help="clip gradients to this global norm (0: off)")
    train_drops: int = option(30000, help="drops in the fixed training split (and the epoch length of a stream)")
    test_drops: int = option(64, help="held-out test drops")
    data_seed: int = option(0, help="seed of the training drops and their order")
    test_seed: int = option(1, help="seed of the test drops (must differ from data_seed)")
    init_seed: int = option(0, help="seed of the model initialisation and dropout")
    stream: bool = option(False, help="fresh drops every step instead of the fixed training split")
    float64: bool = option(False, help="train in float64 (jax.enable_x64) instead of float32")
    eval_every: int = option(0, help="evaluate on the test drops every this many steps (0: once per epoch)")
    log_every: int = option(10, help="write a metrics line every this many steps")
    checkpoint_every: int = option(500, help="save a checkpoint every this many steps (and at the end; 0: end only)")
    keep_checkpoints: int = option(3, help="most recent checkpoints kept")

    def __post_init__(self):
        object.__setattr__(self, "model_kwargs", _kwargs_tuple(self.model_kwargs))
        super().__post_init__()

    def validate(self) -> None:
        if not isinstance(self.model, str):
            raise TypeError(f"model must be a model name (str), got {self.model!r}")
        names = model_names()
        if self.model not in names:
            raise ValueError(f"model must be one of {names}, got {self.model!r}")
        _checks.check_nonnegative_int("steps", self.steps)
        _checks.check_nonnegative_int("epochs", self.epochs)
        if self.steps == 0 and self.epochs == 0:
            raise ValueError("steps must be >= 1 when epochs is 0, got 0")
        _checks.check_int("batch_size", self.batch_size, low=1, unit="drops")
        _checks.check_number("learning_rate", self.learning_rate, low=0.0, low_open=True)
        _checks.check_nonnegative_int("warmup_steps", self.warmup_steps)
        _checks.check_choice("decay", self.decay, DECAYS)
        _checks.check_number("final_lr_fraction", self.final_lr_fraction, low=0.0, high=1.0)
        _checks.check_number("weight_decay", self.weight_decay, low=0.0)
        _checks.check_number("grad_clip", self.grad_clip, low=0.0)
        _checks.check_int("train_drops", self.train_drops, low=1, unit="drops")
        _checks.check_int("test_drops", self.test_drops, low=1, unit="drops")
        for name in ("data_seed", "test_seed", "init_seed"):
            _checks.check_int(name, getattr(self, name), low=0)
        for name in ("stream", "float64"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        _checks.check_nonnegative_int("eval_every", self.eval_every)
        _checks.check_int("log_every", self.log_every, low=1, unit="steps")
        _checks.check_nonnegative_int("checkpoint_every", self.checkpoint_every)
        _checks.check_int("keep_checkpoints", self.keep_checkpoints, low=1)

    def check_combination(self) -> TrainOptions:
        """Checks between fields (run by :func:`train` and the CLI, not per field, so that
        ``--data-seed 1`` alone is not refused for the default ``test_seed``); returns self."""
        if self.batch_size > self.train_drops:
            raise ValueError(f"batch_size must be <= train_drops = {self.train_drops} [drops], got {self.batch_size}")
        if self.test_seed == self.data_seed:
            raise ValueError(f"test_seed must differ from data_seed = {self.data_seed} (held-out drops), "
                             f"got {self.test_seed}")
        if self.stream and self.epochs:
            raise ValueError(f"epochs must be 0 with stream=True (a stream has no epochs; use steps), got {self.epochs}")
        return self

    # ------------------------------------------------------------- derived
    @property
    def steps_per_epoch(self) -> int:
        """Steps per pass over the training split (``train_drops // batch_size``)."""
        return data.steps_per_epoch(self.train_drops, self.batch_size)

    @property
    def total_steps(self) -> int:
        """``epochs * steps_per_epoch`` when ``epochs > 0``, else ``steps``."""
        return self.epochs * self.steps_per_epoch if self.epochs else self.steps

    @property
    def eval_interval(self) -> int:
        return self.eval_every or self.steps_per_epoch


def learning_rate_schedule(options: TrainOptions) -> Callable:
    """The optax schedule: linear warm-up to ``learning_rate``, then ``decay`` to the final value.

    Warm-up: step ``s < warmup_steps`` uses ``learning_rate * (s + 1) / warmup_steps``
    (no wasted zero step); then cosine or linear decay over the remaining steps
    to ``final_lr_fraction * learning_rate``, or constant.
    """
    total = options.total_steps
    warm = min(options.warmup_steps, total)
    peak = options.learning_rate
    end = peak * options.final_lr_fraction
    rest = max(total - warm, 1)
    if options.decay == "cosine":
        after = optax.cosine_decay_schedule(peak, rest, alpha=options.final_lr_fraction)
    elif options.decay == "linear":
        after = optax.linear_schedule(peak, end, rest)
    else:
        after = optax.constant_schedule(peak)
    if warm == 0:
        return after
    ramp = optax.constant_schedule(peak) if warm == 1 else optax.linear_schedule(peak / warm, peak, warm - 1)
    return optax.join_schedules([ramp, after], [warm])


def make_optimizer(options: TrainOptions) -> optax.GradientTransformation:
    """Global-norm clipping (if ``grad_clip > 0``) then Adam (``weight_decay == 0``) or AdamW."""
    schedule = learning_rate_schedule(options)
    opt = (optax.adamw(schedule, weight_decay=options.weight_decay) if options.weight_decay
           else optax.adam(schedule))
    return optax.chain(optax.clip_by_global_norm(options.grad_clip), opt) if options.grad_clip else opt


def build_model(cfg: PassConfig, options: TrainOptions, dtype=None) -> nnx.Module:
    """``ARCHITECTURES[options.model](cfg, **options.model_kwargs, rngs=nnx.Rngs(options.init_seed))``, params cast to ``dtype``."""
    from jaxpass.learn.models import ARCHITECTURES

    try:
        model = ARCHITECTURES[options.model](cfg, **dict(options.model_kwargs), rngs=nnx.Rngs(options.init_seed))
    except TypeError as err:
        raise TypeError(f"model {options.model!r}: bad model_kwargs {dict(options.model_kwargs)}: {err}") from None
    return cast_params(model, dtype or jnp.float32)


def cast_params(model: nnx.Module, dtype) -> nnx.Module:
    """Cast the model's floating parameters to ``dtype`` in place (returns the model)."""
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, params))
    return model


def canonical_cfg(cfg: PassConfig) -> PassConfig:
    """``cfg`` with every traced leaf as a (strongly typed) JAX array of the default float dtype.

    A config rebuilt from JSON (Python floats, weakly typed) and a preset (NumPy
    scalars) then trace to the same abstract values and share one compilation.
    """
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.result_type(float)), cfg)


def _default_loss():
    from jaxpass.learn.decode import sum_rate_loss

    return sum_rate_loss


# ------------------------------------------------------------------ pure step
def loss_and_grads(model: nnx.Module, cfg: PassConfig, users, loss_fn=None):
    """``((loss, aux), grads)`` of ``loss_fn(model, cfg, users)`` with respect to the model's ``nnx.Param``s.

    ``users`` ``(B, K, 2)`` [m]; ``loss_fn`` defaults to
    :func:`jaxpass.learn.decode.sum_rate_loss` (minus the mean sum rate, bps/Hz).
    The model's RNG streams advance (dropout), as in :func:`train_step`.
    """
    loss_fn = loss_fn or _default_loss()
    return nnx.value_and_grad(lambda m: loss_fn(m, cfg, users), has_aux=True)(model)


def train_step(model: nnx.Module, optimizer: nnx.Optimizer, cfg: PassConfig, users, loss_fn=None):
    """One optimiser step on the batch ``users`` ``(B, K, 2)`` [m]; updates ``model`` and ``optimizer`` in place.

    Pure in the nnx sense (works under ``nnx.jit`` or split/merge + ``jax.jit``).
    Returns ``(loss, aux)`` of the batch *before* the update.
    """
    (loss, aux), grads = loss_and_grads(model, cfg, users, loss_fn)
    optimizer.update(model, grads)
    return loss, aux


def _mean_sum_rate(aux):
    rate = aux.get("sum_rate") if isinstance(aux, dict) else None
    return jnp.mean(rate) if rate is not None else jnp.nan


def _jit_step(graphdef, state, cfg, users, options, loss_fn, replicated):
    """``state = (model state, optimizer state)``; the optax transformation is rebuilt from the (hashable)
    options inside the trace, so equal options share one compilation across :func:`train` calls."""
    model = nnx.merge(graphdef, state[0])
    model.train()
    optimizer = nnx.Optimizer(model, make_optimizer(options), wrt=nnx.Param)
    nnx.update(optimizer, state[1])
    loss, aux = train_step(model, optimizer, cfg, users, loss_fn)
    new_state = jax.lax.with_sharding_constraint((nnx.state(model), nnx.state(optimizer)), replicated)
    return new_state, loss, _mean_sum_rate(aux)


_step_jit = jax.jit(_jit_step, static_argnames=("graphdef", "options", "loss_fn", "replicated"))


def _eval_rates(graphdef, state, cfg, users, eval_fn):
    model = nnx.merge(graphdef, state)
    model.eval()
    _, aux = eval_fn(model, cfg, users)
    return aux["sum_rate"]


_eval_jit = jax.jit(_eval_rates, static_argnames=("graphdef", "eval_fn"))


def evaluate(model: nnx.Module, cfg: PassConfig, users, *, eval_fn=None, devices=None):
    """Per-drop sum rates ``(B,)`` [bps/Hz] of ``model`` in eval mode (no dropout) on ``users`` ``(B, K, 2)`` [m].

    ``eval_fn(model, cfg, users) -> (loss, {"sum_rate": (B,)})`` defaults to
    :func:`jaxpass.learn.decode.sum_rate_loss`. Data-parallel as :func:`train`
    (the drops sharded over ``devices``, default all); the caller's model is not modified.
    """
    _checks.check_array("users", users, (None, cfg.num_users, 2))
    _checks.check_users_in_area(cfg, users)
    mesh = data_mesh(devices)
    graphdef, state = nnx.split(model)
    users = np.asarray(users)
    dtype = users.dtype if np.issubdtype(users.dtype, np.floating) else jnp.result_type(float)
    return parallel.gather(_eval_jit(graphdef, _replicate(state, mesh), canonical_cfg(cfg),
                                     shard_batch(users, mesh, dtype), eval_fn or _default_loss()))


# ------------------------------------------------------------------ driver
@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
      model: the trained model (in eval mode).
      optimizer: its ``nnx.Optimizer`` (state after the last step).
      history: the metrics records (one dict per log line, as in ``metrics.jsonl``).
      step: optimiser steps done (including those of a resumed checkpoint).
      options: the resolved :class:`TrainOptions`.
      samples_per_s: training throughput of this call, compilation and evaluation excluded.
      train_seconds: wall time of this call's training steps (compilation included).
      devices: number of devices of the data mesh.
      metadata: the checkpoint metadata of the final state.
    """

    model: Any
    optimizer: Any
    history: list
    step: int
    options: TrainOptions
    samples_per_s: float
    train_seconds: float
    devices: int
    metadata: dict


def data_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D mesh ``("data",)`` over ``devices`` (default: all devices of all processes).

    :func:`jaxpass.parallel.drops_mesh` with the axis named ``"data"`` (``devices``:
    ``None``, an int for the first local ones, or a sequence of devices).
    The axis is ``AxisType.Auto`` (XLA's sharding propagation): the models and
    decoders need no sharding annotations, and the gradient all-reduce is inserted
    by the compiler.
    """
    return parallel.drops_mesh(devices, axis="data")


def shard_batch(batch: np.ndarray, mesh, dtype=None) -> jax.Array:
    """A global ``(B, ...)`` host array sharded over the mesh's ``"data"`` axis (replicated if ``B`` does not divide).

    Every process holds the same global ``batch`` (drawn from the seeds) and
    contributes the shards of its addressable devices, so this works unchanged
    on several hosts.
    """
    batch = np.asarray(batch, dtype or batch.dtype)
    spec = P("data") if batch.shape[0] % mesh.devices.size == 0 else P()
    sharding = NamedSharding(mesh, spec)
    return jax.make_array_from_callback(batch.shape, sharding, lambda idx: batch[idx])


def _replicate(tree, mesh):
    """Every leaf replicated on every device of ``mesh``, also on several hosts (each process puts its
    addressable copies, :func:`jax.make_array_from_callback`; PRNG keys through their raw key data)."""
    sharding = NamedSharding(mesh, P())

    def put(x):
        host = np.asarray(jax.random.key_data(x) if ckpt._is_key(x) else x)
        out = jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])
        return jax.random.wrap_key_data(out, impl=jax.random.key_impl(x)) if ckpt._is_key(x) else out

    return jax.tree.map(put, tree)


def _Progress(total: int, enabled: bool):
    """The shared stderr progress bar (:class:`jaxpass.runtime.progress.Progress`) over training steps."""
    from jaxpass.runtime.progress import Progress

    return Progress("train", total, enabled=enabled, unit="step")


def _metadata(cfg_json, options, model_name, state, dtype) -> dict:
    meta = {
        "model": model_name,
        "model_kwargs": dict(options.model_kwargs),
        "cfg": cfg_json,
        "options": options.asdict(),
        "resumable": list(RESUMABLE_OPTIONS),
        "dtype": np.dtype(dtype).name,
        "leaves": ckpt.leaf_specs(state),
    }
    return json.loads(json.dumps(meta))  # as it reads back from the checkpoint (tuples -> lists)


def read_metrics(path, upto: int) -> list:
    """The records of a run's ``metrics.jsonl`` (one dict per line) with ``step <= upto``; ``[]`` if there is none."""
    records = []
    if os.path.isfile(path):
        with open(path) as fh:
            for line in fh:
                line = line.strip()
                if line:
                    rec = json.loads(line)
                    if rec.get("step", 0) <= upto:
                        records.append(rec)
    return records


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def train(cfg: PassConfig, options: TrainOptions | None = None, *, seed: int | None = None, loss_fn=None,
          eval_fn=None, model: nnx.Module | None = None, out_dir=None, resume: bool = False, devices=None,
          progress: bool | None = None, callback=None, on_start=None, **changes) -> TrainResult:
    """Train ``options.model`` on drops of ``cfg``; see the module docstring.

    Args:
      cfg: the scenario (concrete ``PassConfig``).
      options: :class:`TrainOptions` (default ``TrainOptions()``), updated by ``changes``.
      seed: shorthand for ``init_seed`` (model initialisation and dropout).
      loss_fn: ``loss_fn(model, cfg, users) -> (loss, aux)``, minimised (default
        :func:`jaxpass.learn.decode.sum_rate_loss`); ``aux["sum_rate"]`` (B,), if
        present, is logged as the training sum rate.
      eval_fn: the same signature, for the test drops; its ``aux["sum_rate"]`` is
        reported (default :func:`~jaxpass.learn.decode.sum_rate_loss`: the true sum rate).
      model: a model to train instead of ``ARCHITECTURES[options.model](cfg, **model_kwargs)``
        (its parameters are cast to the run's dtype).
      out_dir: folder for ``checkpoints/`` and ``metrics.jsonl`` (None: nothing is written); a relative
        folder is taken relative to the working directory.
      resume: continue from the latest checkpoint in ``out_dir/checkpoints``
        (refused with :class:`~jaxpass.learn.checkpoint.CheckpointError` if it is
        missing, corrupt or of another model / size / scenario / data setup, or
        if ``options.total_steps`` differs from the saved run's: the learning-rate
        schedule's warm-up and decay are laid out over the total, so a resume
        keeps it). Without ``resume``, a folder that already holds checkpoints is refused.
      devices: devices of the data mesh (default: all).
      progress: a progress line on stderr (default: when stderr is a terminal).
      callback: ``callback(record)`` after each metrics record is written (and
        after its checkpoint, if any); an exception it raises stops the run
        (the checkpoints written so far stay valid, e.g. to resume).
      on_start: ``on_start(step)`` once every check has passed (and a resumed
        state is restored), before the first step; ``step`` is the step the run
        starts from (0, or the resumed checkpoint's).

    Returns:
      :class:`TrainResult`.
    """
    options = TrainOptions.resolve(options, **changes)
    if seed is not None:
        options = options.replace(init_seed=seed)
    options.check_combination()
    if not isinstance(cfg, PassConfig):
        raise TypeError(f"cfg must be a PassConfig, got {type(cfg).__name__}")
    ctx = jax.enable_x64(True) if options.float64 else contextlib.nullcontext()
    if out_dir is not None:
        out_dir = ckpt.absolute(out_dir)
    with ctx:
        return _train(cfg, options, loss_fn=loss_fn, eval_fn=eval_fn, model=model, out_dir=out_dir,
                      resume=resume, devices=devices, progress=progress, callback=callback, on_start=on_start)


def check_same_length(saved: dict, options: TrainOptions, *, directory="checkpoint") -> None:
    """Refuse to resume a checkpoint whose run had another total step count than ``options``.

    The schedule (:func:`learning_rate_schedule`) spreads warm-up and decay over
    ``total_steps``, so resuming with another ``steps`` / ``epochs`` would jump the
    learning rate at the resume. ``steps`` and ``epochs`` may change as long as the
    total stays (e.g. ``epochs=2`` for ``steps=6`` at 3 steps per epoch).

    Raises:
      CheckpointError: one line naming both totals.
    """
    fields = {f.name for f in dataclasses.fields(TrainOptions)}
    try:
        before = TrainOptions(**{k: v for k, v in saved.get("options", {}).items() if k in fields}).total_steps
    except (TypeError, ValueError) as err:
        raise ckpt.CheckpointError(f"checkpoint {directory} has unusable options: {err}") from None
    if before != options.total_steps:
        raise ckpt.CheckpointError(
            f"checkpoint {directory} belongs to a run of {before} steps; this run asks for {options.total_steps} "
            f"(--steps/--epochs): the learning-rate schedule is laid out over the total, so a resume must keep "
            f"--steps {before}; to train longer, start a new run in another folder")


def _train(cfg, options, *, loss_fn, eval_fn, model, out_dir, resume, devices, progress, callback, on_start=None):
    dtype = np.float64 if options.float64 else np.float32
    cfg_json = ckpt.cfg_to_dict(cfg)
    cfg = canonical_cfg(cfg)
    loss_fn = loss_fn or _default_loss()
    eval_fn = eval_fn or _default_loss()
    mesh = data_mesh(devices)
    ndev = mesh.devices.size
    if options.batch_size % ndev:
        raise ValueError(f"batch_size must be a multiple of the {ndev} devices of the data mesh, "
                         f"got {options.batch_size}")
    model = build_model(cfg, options, dtype) if model is None else cast_params(model, dtype)
    optimizer = nnx.Optimizer(model, make_optimizer(options), wrt=nnx.Param)
    graphdef, model_state = nnx.split(model)
    model.eval()  # the eval-mode graph: shared with evaluate() on a trained or loaded model (one compilation)
    eval_graphdef = nnx.split(model)[0]
    model.train()
    state = (model_state, nnx.state(optimizer))
    replicated = NamedSharding(mesh, P())
    state = _replicate(state, mesh)
    meta = _metadata(cfg_json, options, options.model, state, dtype)
    total = options.total_steps
    per_epoch = options.steps_per_epoch

    # ---- checkpoints: check everything before writing anything
    ck_dir = os.path.join(os.fspath(out_dir), "checkpoints") if out_dir is not None else None
    main_process = jax.process_index() == 0  # one metrics file and progress line for a multi-host run
    metrics_path = os.path.join(os.fspath(out_dir), "metrics.jsonl") if out_dir is not None else None
    start, history = 0, []
    if ck_dir is not None:
        steps = ckpt.checkpoint_steps(ck_dir)
        if resume:
            saved = ckpt.read_metadata(ck_dir)  # raises on a missing / corrupt folder
            ckpt.check_compatible(saved, meta, directory=ck_dir)
            check_same_length(saved, options, directory=ck_dir)
            state = ckpt.restore_state(ck_dir, saved["step"], state)
            start = int(saved["step"])
            history = read_metrics(metrics_path, start)
        elif steps:
            raise ckpt.CheckpointError(f"{ck_dir} already holds checkpoints (latest step {steps[-1]}); "
                                       "resume it or choose another output folder")
    elif resume:
        raise ValueError("resume=True needs out_dir (the folder of the run to resume)")
    if start > total:
        raise ckpt.CheckpointError(f"checkpoint {ck_dir} is at step {start}, beyond this run's {total} steps")

    # ---- data
    test_users = shard_batch(data.sample_drops(options.test_seed, cfg, options.test_drops), mesh, dtype)
    train_users = None if options.stream else data.sample_drops(options.data_seed, cfg, options.train_drops)

    order = {}  # the current epoch's permutation (data.batch_indices without recomputing it every step)

    def batch(step):
        if options.stream:
            b = data.stream_batch(step, cfg, data_seed=options.data_seed, batch_size=options.batch_size)
        else:
            epoch, i = data.position(step, per_epoch)
            if order.get("epoch") != epoch:
                order.update(epoch=epoch, perm=data.epoch_permutation(options.data_seed, epoch, options.train_drops))
            b = train_users[order["perm"][i * options.batch_size:(i + 1) * options.batch_size]]
        return shard_batch(b, mesh, dtype)

    schedule = learning_rate_schedule(options)
    writer = ckpt.CheckpointWriter(ck_dir, keep=options.keep_checkpoints) if ck_dir is not None else None
    if not main_process:
        metrics_path = None
    if metrics_path is not None:
        os.makedirs(os.fspath(out_dir), exist_ok=True)
        with open(metrics_path, "w") as fh:  # the kept history (all of it on a fresh run: nothing)
            fh.writelines(json.dumps(r) + "\n" for r in history)
    bar = _Progress(total, main_process and (sys.stderr.isatty() if progress is None else bool(progress)))

    def log(record):
        record = {k: _jsonable(v) for k, v in record.items()}  # non-finite -> None, as in the file
        history.append(record)
        if metrics_path is not None:
            with open(metrics_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        return record

    def run_eval(step, record):
        rates = np.asarray(parallel.gather(_eval_jit(eval_graphdef, state[0], cfg, test_users, eval_fn)), np.float64)
        record.update(test_sum_rate_mean=float(rates.mean()), test_sum_rate_std=float(rates.std()))
        return record

    def save(step):
        epoch, pos = data.position(step, per_epoch)
        meta.update(step=step, epoch=epoch, position=pos)
        writer.save(step, state, meta)

    if on_start is not None:
        on_start(start)
    t_run = time.perf_counter()
    timed_steps, timed_s = 0, 0.0
    losses, rates = [], []
    try:
        if start == 0:
            log(run_eval(0, {"step": 0, "epoch": 0, "lr": float(schedule(0))}))
        t_mark, mark_steps = None, 0
        for step in range(start, total):
            users = batch(step)
            state, loss, rate = _step_jit(graphdef, state, cfg, users, options, loss_fn, replicated)
            losses.append(loss)
            rates.append(rate)
            done = step + 1
            if t_mark is None:  # the first step compiles: time from its end
                jax.block_until_ready(loss)
                t_mark, mark_steps = time.perf_counter(), 0
            else:
                mark_steps += 1
            is_eval = done % options.eval_interval == 0 or done == total
            is_ckpt = writer is not None and (done == total or (options.checkpoint_every
                                                                and done % options.checkpoint_every == 0))
            if done % options.log_every == 0 or is_eval or is_ckpt:
                vals = np.asarray(jnp.stack([jnp.stack(losses), jnp.stack(rates)]), np.float64)
                now = time.perf_counter()
                sps = mark_steps * options.batch_size / (now - t_mark) if mark_steps else float("nan")
                timed_steps, timed_s = timed_steps + mark_steps, timed_s + (now - t_mark)
                epoch, pos = data.position(done, per_epoch)
                record = {"step": done, "epoch": epoch, "loss": float(vals[0].mean()),
                          "train_sum_rate": float(vals[1].mean()), "lr": float(schedule(step)),
                          "samples_per_s": sps}
                losses, rates = [], []
                if is_eval:
                    run_eval(done, record)
                record = log(record)
                bar.update(done, f"loss {record['loss']:.3f}"
                           + (f" test {record['test_sum_rate_mean']:.2f} bps/Hz" if is_eval else "")
                           + (f" {sps:.0f} samples/s" if math.isfinite(sps) else ""))
                if is_ckpt:
                    save(done)
                if callback is not None:
                    callback(record)
                t_mark, mark_steps = time.perf_counter(), 0
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    train_seconds = time.perf_counter() - t_run
    model = nnx.merge(graphdef, state[0])
    optimizer = nnx.Optimizer(model, make_optimizer(options), wrt=nnx.Param)
    nnx.update(optimizer, state[1])
    model.eval()
    meta.update(step=total, epoch=data.position(total, per_epoch)[0], position=data.position(total, per_epoch)[1])
    return TrainResult(model=model, optimizer=optimizer, history=history, step=total, options=options,
                       samples_per_s=timed_steps * options.batch_size / timed_s if timed_s else float("nan"),
                       train_seconds=train_seconds, devices=ndev, metadata=meta)


def load_checkpoint(directory, step: int | None = None, *, devices=None):
    """``(model, cfg, metadata)`` from a checkpoint folder (``out_dir`` of a run, or its ``checkpoints/``).

    The model is rebuilt from the saved name and size kwargs (which must be in
    :data:`jaxpass.learn.models.ARCHITECTURES`), its state restored, and put in eval mode.

    Raises:
      CheckpointError: missing, corrupt or unknown checkpoint (one line).
    """
    directory = ckpt.check_folder(directory)  # absolute; a file or a missing folder is refused here
    sub = os.path.join(directory, "checkpoints")
    if os.path.isdir(sub):
        directory = sub
    meta = ckpt.read_metadata(directory, step)
    try:
        cfg = ckpt.cfg_from_dict(meta["cfg"])
        fields = {f.name for f in dataclasses.fields(TrainOptions)}
        options = TrainOptions(**{k: v for k, v in meta["options"].items() if k in fields})
    except (KeyError, TypeError, ValueError) as err:
        raise ckpt.CheckpointError(f"checkpoint {directory} has unusable metadata: {err}") from None
    float64 = meta.get("dtype") == "float64"
    ctx = jax.enable_x64(True) if float64 else contextlib.nullcontext()
    with ctx:
        dtype = np.float64 if float64 else np.float32
        model = build_model(cfg, options, dtype)
        optimizer = nnx.Optimizer(model, make_optimizer(options), wrt=nnx.Param)
        graphdef, model_state = nnx.split(model)
        state = _replicate((model_state, nnx.state(optimizer)), data_mesh(devices))
        ckpt.check_compatible(meta, {**meta, "leaves": ckpt.leaf_specs(state)}, directory=directory)
        state = ckpt.restore_state(directory, meta["step"], state)
        model = nnx.merge(graphdef, state[0])
    model.eval()
    return model, cfg, meta

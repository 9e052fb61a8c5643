"""Training checkpoints with orbax-checkpoint: exact resume, checked before anything is written.

Layout of a checkpoint folder (one ``orbax.checkpoint.CheckpointManager``
directory, one sub-folder per saved step)::

    DIR/<step>/state/   the training state: model variables (parameters, dropout
                        RNG keys and counters, batch statistics) and the optimiser
                        state (Adam moments, step count), one array per leaf,
                        named by its path (e.g. ``0.encoder.layers.0.kernel.value``)
    DIR/<step>/meta/    JSON: format, model name and size kwargs, the scenario
                        (every ``PassConfig`` field), the training options, the
                        step / epoch / batch position, each leaf's shape and
                        dtype, and the evaluation history so far

Typed PRNG keys are stored as their ``uint32`` key data and re-wrapped with the
template's key implementation on restore, so the restored state (parameters,
optimiser state, RNG) is bit-identical to the saved one.

Errors are :class:`CheckpointError` with a one-line message: a missing folder,
a folder without checkpoints, an unreadable (corrupt) step, or a checkpoint of
another model, other model sizes, another scenario or other data options
(:func:`check_compatible`). Metadata is read and compared *before* the caller
writes anything, and reading never modifies the folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os

import jax
import numpy as np

from jaxpass.config import PassConfig

#: the ``meta["format"]`` written by this module; other formats are refused
FORMAT = "jaxpass-train/1"


class CheckpointError(ValueError):
    """A missing, corrupt or incompatible checkpoint (one-line message)."""


# ------------------------------------------------------------------ scenario <-> JSON
def cfg_to_dict(cfg: PassConfig) -> dict:
    """Every field of a concrete (unstacked) ``PassConfig`` as JSON values (floats, ints, str, lists, None)."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value is None or isinstance(value, str):
            out[f.name] = value
        elif isinstance(value, (bool, int, np.integer)) and not isinstance(value, bool) and f.name.startswith("num_"):
            out[f.name] = int(value)
        else:
            if isinstance(value, jax.core.Tracer):
                raise TypeError(f"cfg.{f.name} is traced; checkpoints need a concrete PassConfig")
            arr = np.asarray(value, np.float64)
            if f.name != "waveguide_y" and arr.ndim:
                raise ValueError(f"checkpoints need an unstacked PassConfig; cfg.{f.name} has shape {arr.shape}")
            out[f.name] = arr.tolist()
    return out


def cfg_from_dict(values: dict) -> PassConfig:
    """The ``PassConfig`` saved by :func:`cfg_to_dict`."""
    values = dict(values)
    if values.get("waveguide_y") is not None:
        values["waveguide_y"] = tuple(values["waveguide_y"])
    return PassConfig(**values)


# ------------------------------------------------------------------ state <-> named arrays
def _key_name(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:  # pragma: no cover - other key types
            parts.append(str(k))
    return ".".join(parts)


def _is_key(x) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def named_leaves(tree) -> dict:
    """``{path name: leaf}`` of a pytree (an ``nnx.State``, optax state, ...), typed PRNG keys as key data."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    out = {}
    for path, leaf in flat:
        name = _key_name(path)
        if name in out:  # pragma: no cover - would need two paths with the same printed keys
            raise ValueError(f"two state leaves share the checkpoint name {name!r}")
        out[name] = jax.random.key_data(leaf) if _is_key(leaf) else leaf
    return out


def leaf_specs(tree) -> dict:
    """``{path name: [shape, dtype]}`` of a state (as stored in the metadata; keys as their key data)."""
    shapes = jax.eval_shape(lambda t: jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, t), tree)
    return {name: [list(x.shape), str(np.dtype(x.dtype))] for name, x in
            zip(named_leaves(tree), jax.tree_util.tree_leaves(shapes), strict=True)}


def _from_named(template, arrays: dict):
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for path, leaf in flat:
        value = arrays[_key_name(path)]
        leaves.append(jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf)) if _is_key(leaf) else value)
    return jax.tree_util.tree_unflatten(treedef, leaves)


# ------------------------------------------------------------------ the manager
@contextlib.contextmanager
def _quiet_absl():
    """Silence orbax's informational absl warnings (read-only manager, directory notes)."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _drop_closed_loop_noise() -> None:
    """After a failed orbax read, tensorstore completes the other pending reads into the
    already closed asyncio loop; each prints ``RuntimeError: Event loop is closed`` through
    ``sys.unraisablehook``. Filter exactly those (installed once per process, before a
    restore), so a corrupt checkpoint gives the user one line."""
    import sys

    previous = sys.unraisablehook
    if getattr(previous, "_jaxpass_filter", False):
        return

    def hook(unraisable):
        err = unraisable.exc_value
        if isinstance(err, RuntimeError) and str(err) == "Event loop is closed":
            return
        previous(unraisable)

    hook._jaxpass_filter = True
    sys.unraisablehook = hook


def _ocp():
    from jaxpass._extras import require

    return require("orbax.checkpoint", "learn", "jaxpass checkpoints")


def absolute(directory) -> str:
    """``directory`` as an absolute path (``~`` expanded, relative to the working directory, links resolved).

    orbax needs absolute paths ("Checkpoint path should be absolute"); every entry
    point of this module goes through this, so relative folders work everywhere.
    """
    from pathlib import Path

    return str(Path(os.fspath(directory)).expanduser().resolve())


def unfinished_saves(directory) -> list[str]:
    """Names of orbax's temporary step folders in ``directory`` (``<step>.orbax-checkpoint-tmp...``): saves
    that never completed (the run was stopped while writing them)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [n for n in names if ".orbax-checkpoint-tmp" in n]


def checkpoint_steps(directory) -> list[int]:
    """The saved (finalized) steps in ``directory`` (sorted), ``[]`` when it is missing or holds none.

    Reads the folder only (``orbax.checkpoint.step.checkpoint_steps``, no
    ``CheckpointManager``), so one process of a multi-host job may call it alone
    (a manager synchronises all processes).
    """
    directory = absolute(directory)
    if not os.path.isdir(directory):
        return []
    ocp = _ocp()
    with _quiet_absl():
        try:
            return sorted(int(s) for s in ocp.step.checkpoint_steps(directory))
        except Exception as err:  # noqa: BLE001 - orbax raises many types; report one line
            raise CheckpointError(f"cannot read checkpoint folder {directory}: {_one_line(err)}") from None


def _one_line(err, limit: int = 300) -> str:
    """``Type: message``, first line, without tensorstore's spec dump, at most ``limit`` characters."""
    text = f"{type(err).__name__}: {err}".strip()
    text = (text.splitlines()[0] if text else type(err).__name__).split(" [tensorstore_spec")[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_folder(directory) -> str:
    """``directory`` (absolute) if it exists and is a folder; else a :class:`CheckpointError` saying what it is."""
    directory = absolute(directory)
    if not os.path.exists(directory):
        raise CheckpointError(f"no checkpoint: folder {directory} does not exist")
    if not os.path.isdir(directory):
        raise CheckpointError(f"no checkpoint: {directory} is a file, not a checkpoint folder (give the --out "
                              "folder of a `jaxpass train` run, or its checkpoints/ folder)")
    return directory


def _no_saved_step(directory) -> CheckpointError:
    """The error for a folder without a finished step, with what it holds instead (a step folder, an unfinished save)."""
    name = os.path.basename(directory)
    if name.isdigit() and os.path.isdir(os.path.join(directory, "meta")):
        run = os.path.dirname(directory)
        if os.path.basename(run) == "checkpoints":
            run = os.path.dirname(run)
        return CheckpointError(f"no checkpoint in {directory}: it is the folder of one saved step; give the run's "
                               f"folder {run} and --step {int(name)}")
    tmp = unfinished_saves(directory)
    if tmp:
        return CheckpointError(f"no checkpoint in {directory} (no saved step): it holds only the unfinished save "
                               f"{tmp[-1]} (the run stopped before its first checkpoint completed); start the run "
                               "again without --resume")
    return CheckpointError(f"no checkpoint in {directory} (no saved step)")


def _resolve_step(directory, step):
    directory = check_folder(directory)
    steps = checkpoint_steps(directory)
    if not steps:
        raise _no_saved_step(directory)
    if step is None:
        return steps[-1]
    if step not in steps:
        raise CheckpointError(f"no checkpoint for step {step} in {directory}; saved steps: {steps}")
    return int(step)


def read_metadata(directory, step: int | None = None) -> dict:
    """The JSON metadata of ``step`` (default: the latest) in ``directory``; reads only.

    Raises:
      CheckpointError: missing folder or step, unreadable metadata, or another format.
    """
    ocp = _ocp()
    directory = absolute(directory)
    step = _resolve_step(directory, step)
    with _quiet_absl():
        mngr = ocp.CheckpointManager(directory,
                                     options=ocp.CheckpointManagerOptions(read_only=True, create=False))
        try:
            meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as err:  # noqa: BLE001
            raise CheckpointError(f"corrupt checkpoint {directory} step {step}: cannot read its metadata "
                                  f"({_one_line(err)})") from None
        finally:
            mngr.close()
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"checkpoint {directory} step {step} is not a jaxpass training checkpoint "
                              f"(format {found!r}, expected {FORMAT!r})")
    if meta.get("step") != step:
        raise CheckpointError(f"corrupt checkpoint {directory} step {step}: its metadata says step {meta.get('step')}")
    return meta


def check_compatible(saved: dict, expected: dict, *, directory="checkpoint") -> None:
    """Refuse a checkpoint of another model, model size, scenario, data or optimiser setup.

    ``saved`` and ``expected`` are metadata dicts; compared: ``model``,
    ``model_kwargs``, ``cfg`` (every field), ``options`` except those in
    ``expected["resumable"]`` (steps, logging and checkpoint cadence) and the
    state's ``leaves`` (names, shapes, dtypes).

    Raises:
      CheckpointError: one line naming the first differences.
    """
    diffs = []
    for key in ("model", "model_kwargs"):
        if saved.get(key) != expected.get(key):
            diffs.append(f"{key} {saved.get(key)!r} (this run: {expected.get(key)!r})")
    for name in sorted(set(saved.get("cfg", {})) | set(expected.get("cfg", {}))):
        a, b = saved.get("cfg", {}).get(name), expected.get("cfg", {}).get(name)
        if a != b:
            diffs.append(f"cfg.{name} {a!r} (this run: {b!r})")
    skip = set(expected.get("resumable", ()))
    so, eo = saved.get("options", {}), expected.get("options", {})
    for name in sorted((set(so) | set(eo)) - skip):
        if so.get(name) != eo.get(name):
            diffs.append(f"option {name} {so.get(name)!r} (this run: {eo.get(name)!r})")
    if not diffs:
        sl, el = saved.get("leaves", {}), expected.get("leaves", {})
        missing = sorted(set(el) - set(sl))
        extra = sorted(set(sl) - set(el))
        if missing or extra:
            diffs.append(f"state leaves differ (missing {missing[:2]}, unexpected {extra[:2]})")
        else:
            for name in sorted(el):
                if sl[name] != el[name]:
                    diffs.append(f"{name} shape/dtype {sl[name]} (this run: {el[name]})")
                    break
    if diffs:
        more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
        raise CheckpointError(f"checkpoint {directory} does not match this run: " + "; ".join(diffs[:3]) + more)


def restore_state(directory, step: int, template):
    """The training state of ``step``, with the structure, dtypes and shardings of ``template``.

    ``template`` is a pytree of arrays (e.g. ``nnx.split((model, optimizer))[1]``
    of a freshly built run); each restored array gets the template leaf's
    sharding (replicated parameters stay replicated).

    Raises:
      CheckpointError: an unreadable step or arrays that do not fit the template.
    """
    ocp = _ocp()
    directory = absolute(directory)

    def abstract(x):
        shape = jax.eval_shape(jax.random.key_data, x) if _is_key(x) else x
        return jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=getattr(x, "sharding", None))

    target = {name: abstract(leaf) for name, leaf in zip(named_leaves(template),
                                                         jax.tree_util.tree_leaves(template), strict=True)}
    path = os.path.join(directory, str(step), "state")
    _drop_closed_loop_noise()  # before reading: the noise of a failed read can come before the exception
    with _quiet_absl():
        checkpointer = ocp.StandardCheckpointer()
        try:
            arrays = checkpointer.restore(path, target)
        except Exception as err:  # noqa: BLE001
            raise CheckpointError(f"corrupt checkpoint {directory} step {step}: cannot read its arrays "
                                  f"({_one_line(err)})") from None
        finally:
            checkpointer.close()
    for name, t in target.items():
        got = arrays.get(name)
        if got is None or got.shape != t.shape or got.dtype != t.dtype:
            raise CheckpointError(f"corrupt checkpoint {directory} step {step}: array {name} is "
                                  f"{None if got is None else (got.shape, str(got.dtype))}, expected "
                                  f"{(t.shape, str(t.dtype))}")
    return _from_named(template, arrays)


class CheckpointWriter:
    """Saves training steps into ``directory`` (created): state arrays + JSON metadata, asynchronously.

    ``keep`` most recent steps are kept. Call :meth:`close` (or use it as a
    context manager) to wait for the last save.
    """

    def __init__(self, directory, *, keep: int = 3):
        ocp = _ocp()
        self.directory = absolute(directory)
        with _quiet_absl():
            self._mngr = ocp.CheckpointManager(
                self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=int(keep), create=True))

    def save(self, step: int, state, metadata: dict) -> None:
        """Save ``state`` (a pytree of arrays) and ``metadata`` (JSON-able, ``step`` set) as ``step``."""
        ocp = _ocp()
        meta = {**metadata, "format": FORMAT, "step": int(step)}
        self._mngr.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(named_leaves(state)), meta=ocp.args.JsonSave(meta)), force=True)

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""Data parallelism over drops: one 1-D device mesh, sharded batches, several hosts (``jax.sharding``).

Every batched job in jaxpass is a function of a batch of independent drops with
a leading drop axis ``(B, ...)``. This module runs such a function
data-parallel over devices and hosts with plain ``jax.sharding``; the solvers
are unchanged (docs/execution_model.md: pure kernels, thin drivers)::

    import jax, jaxpass as jp
    from jaxpass import parallel
    mesh = parallel.drops_mesh()                        # all devices of all processes
    users = jp.sample_users(jax.random.key(0), cfg, (13,))
    res = jp.optimize.tune_positions(cfg, users, key=jax.random.key(1), mesh=mesh)

* :func:`drops_mesh`: the 1-D mesh ``("drops",)`` (``AxisType.Auto``: XLA's
  sharding propagation partitions the vmapped kernels, no annotation inside
  them). :func:`jaxpass.learn.train.data_mesh` is the same mesh with axis ``"data"``.
* :func:`shard_drops`: arrays ``(B, ...)`` padded to a multiple of the device
  count (repeating the last drop, so the padding is a valid drop and a batched
  ``while_loop`` runs no longer than without it) and placed with
  ``NamedSharding(mesh, P("drops"))``; :func:`unpad` removes the padding again.
* :func:`map_drops`: pad, shard, call the jitted batch function, unpad (and on
  several processes gather the result to every host). The drops, keys and
  order are those of the unsharded call, so results equal it (each drop runs
  the same per-drop program; XLA may vectorise a different batch size
  differently, so agreement is to rounding where not bit for bit).
* :func:`initialize`: ``jax.distributed.initialize`` from the usual
  environment (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
  ``JAX_PROCESS_ID``, or SLURM / Open MPI / TPU auto-detection); a no-op on a
  single process.

Several processes (multi-controller): every process runs the same program on
the same *global* inputs (drawn from the same seeds); each contributes the
shards of its own devices (:func:`jax.make_array_from_callback`) and gets the
full result back (:func:`jax.experimental.multihost_utils.process_allgather`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "drops"


# ------------------------------------------------------------------ mesh
def drops_mesh(devices=None, *, axis: str = AXIS) -> jax.sharding.Mesh:
    """A 1-D mesh ``(axis,)`` (default ``("drops",)``) for data parallelism over drops.

    Args:
      devices: ``None``: all devices of all processes (``jax.devices()``); an
        int ``n``: the first ``n`` local devices (``jax.local_devices()[:n]``);
        or a sequence of devices.
      axis: the mesh axis name.

    Returns:
      ``jax.sharding.Mesh`` of shape ``(D,)`` with ``AxisType.Auto``.

    Raises:
      ValueError: no device, more than exist, repeated or unknown devices.
      TypeError: ``devices`` of another type.
    """
    if devices is None:
        devs = jax.devices()
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        local = jax.local_devices()
        if not 1 <= devices <= len(local):
            raise ValueError(f"devices must be between 1 and the {len(local)} local device(s), got {int(devices)}")
        devs = local[: int(devices)]
    elif isinstance(devices, (str, bytes, bool)) or not isinstance(devices, Sequence | np.ndarray):
        raise TypeError(f"devices must be None, an int or a sequence of devices, got {devices!r}")
    else:
        devs = list(devices)
        if not devs:
            raise ValueError("devices must hold at least one device, got an empty sequence")
        if len(set(devs)) != len(devs):
            raise ValueError(f"devices must be distinct, got {devs}")
        known = set(jax.devices())
        unknown = [d for d in devs if d not in known]
        if unknown:
            raise ValueError(f"devices must be devices of this JAX runtime (jax.devices()), got {unknown}")
    return jax.make_mesh((len(devs),), (axis,), axis_types=(jax.sharding.AxisType.Auto,), devices=devs)


def _check_mesh(mesh) -> jax.sharding.Mesh:
    if not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh (jaxpass.parallel.drops_mesh()), got {type(mesh).__name__}")
    return mesh


def _spec(mesh) -> P:
    """The drop axis over every mesh axis (``P("drops")`` on a 1-D mesh)."""
    names = tuple(mesh.axis_names)
    return P(names[0] if len(names) == 1 else names)


def _local(mesh) -> bool:
    """Whether this process addresses every device of ``mesh``."""
    return not mesh.is_multi_process


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _is_array(x) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic)


def _place(mesh, x, spec: P):
    """Global ``jax.Array`` with ``NamedSharding(mesh, spec)`` from a value every process holds in full."""
    sharding = NamedSharding(mesh, spec)
    if _local(mesh):
        return jax.device_put(x, sharding)
    if _is_key(x):
        data = _place(mesh, jax.random.key_data(x), spec)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def replicate(mesh, tree):
    """``tree`` with its array leaves replicated on every device of ``mesh`` (``P()``).

    Python scalars and non-array leaves are returned as they are (``jax.jit``
    takes them as they are, weak types kept).
    """
    _check_mesh(mesh)
    return jax.tree.map(lambda x: _place(mesh, x, P()) if _is_array(x) else x, tree)


# ------------------------------------------------------------------ padding and sharding
def padded_size(size: int, devices: int) -> int:
    """The smallest multiple of ``devices`` that is ``>= size``."""
    return -(-size // devices) * devices


def _pad(x, pad: int):
    if pad == 0:
        return x
    last = x[-1:]
    reps = (pad,) + (1,) * (x.ndim - 1)
    if isinstance(x, np.ndarray):
        return np.concatenate([x, np.tile(last, reps)])
    return jnp.concatenate([x, jnp.tile(last, reps)])


def _batch_size(arrays) -> int:
    sizes = {int(np.shape(x)[0]) if np.ndim(x) else None for x in arrays}
    if None in sizes:
        raise ValueError("batched arrays must have a leading drop axis, got a 0-d array")
    if len(sizes) != 1:
        raise ValueError(f"batched arrays must share their leading drop axis, got sizes {sorted(sizes)}")
    (size,) = sizes
    if size < 1:
        raise ValueError("batched arrays must hold at least one drop, got 0")
    return size


def shard_drops(mesh, *arrays):
    """Pad ``(B, ...)`` arrays to a multiple of the device count and shard the drop axis.

    The padding repeats the last drop (a valid drop: no NaN, no longer batched
    loop). Every array (pytrees too; ``None`` leaves stay ``None``) must have the
    same leading size ``B``. On several processes each process passes the full
    global batch (same seeds) and contributes the shards of its own devices.

    Args:
      mesh: a mesh from :func:`drops_mesh` (any mesh: the drop axis is sharded over all its axes).
      *arrays: arrays or pytrees of arrays with leading drop axis ``B``.

    Returns:
      ``(sharded, pad)``: the arrays padded to ``(B + pad, ...)`` and placed
      with ``NamedSharding(mesh, P("drops"))`` (a tuple, one per argument), and the
      number of padding drops (``unpad(result, pad)`` removes them).
    """
    _check_mesh(mesh)
    leaves = [x for x in jax.tree.leaves(arrays)]
    if not leaves:
        raise ValueError("shard_drops needs at least one array with a leading drop axis")
    size = _batch_size(leaves)
    pad = padded_size(size, mesh.devices.size) - size
    spec = _spec(mesh)
    sharded = jax.tree.map(lambda x: _place(mesh, _pad(x if isinstance(x, jax.Array) else np.asarray(x), pad), spec),
                           arrays)
    return sharded, pad


def unpad(tree, pad: int):
    """Drop the last ``pad`` entries of the leading (drop) axis of every array leaf of ``tree``."""
    if pad == 0:
        return tree
    return jax.tree.map(lambda x: x[: x.shape[0] - pad], tree)


def gather(tree):
    """Every array leaf as a fully addressable array on this process (a no-op on one process).

    On several processes a global (sharded) array is not readable by NumPy;
    this all-gathers it (``process_allgather(tiled=True)``) to the full array on every host.
    """
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return jnp.asarray(multihost_utils.process_allgather(x, tiled=True))
        return x

    return jax.tree.map(one, tree)


def _axes(in_axes, n: int) -> tuple:
    if in_axes in (0, None):
        return (in_axes,) * n
    axes = tuple(in_axes)
    if len(axes) != n or any(a not in (0, None) for a in axes):
        raise ValueError(f"in_axes must be 0, None or a tuple of {n} entries 0/None (one per argument), "
                         f"got {in_axes!r}")
    return axes


def _jitted(fn):
    """``fn`` if it is already ``jax.jit``-compiled (or a ``functools.partial`` of one), else ``jax.jit(fn)``."""
    inner = getattr(fn, "func", fn)
    return fn if hasattr(inner, "lower") else jax.jit(fn)


def map_drops(fn: Callable, *args, mesh=None, in_axes=0, batched_kwargs=(), **kwargs):
    """Run the batched ``fn`` data-parallel over ``mesh``; the result equals ``fn(*args, **kwargs)``.

    ``fn`` maps arrays with a leading drop axis ``(B, ...)`` to outputs whose
    every leaf has a leading drop axis ``(B, ...)`` (it is already batched,
    e.g. a ``jax.vmap`` of a per-drop kernel). The batched arguments are padded
    to a multiple of the device count and sharded (:func:`shard_drops`), the
    others replicated, ``fn`` runs under ``jax.jit`` (XLA partitions it along
    the drop axis), the padding is dropped and, on several processes, the
    outputs are gathered to every host (:func:`gather`).

    Pass a module-level jitted function (or a ``functools.partial`` of one
    with static keywords) to reuse its compilation cache; any other callable
    is wrapped in a fresh ``jax.jit`` (compiled on every call).

    Args:
      fn: the batched function.
      *args: its positional arguments.
      mesh: a mesh from :func:`drops_mesh` (default: all devices).
      in_axes: ``0`` (every positional argument batched), ``None`` or a tuple of
        ``0``/``None`` per positional argument, as ``jax.vmap``'s.
      batched_kwargs: names of the keyword arguments with a leading drop axis
        (``None`` values allowed); other keywords are broadcast (array leaves
        replicated, other values, e.g. static options, passed as they are).
      **kwargs: keyword arguments of ``fn``.

    Returns:
      ``fn``'s outputs, leading drop axis ``B`` (the unpadded batch).
    """
    mesh = drops_mesh() if mesh is None else _check_mesh(mesh)
    axes = _axes(in_axes, len(args))
    names = (batched_kwargs,) if isinstance(batched_kwargs, str) else tuple(batched_kwargs)
    unknown = sorted(set(names) - set(kwargs))
    if unknown:
        raise ValueError(f"batched_kwargs must name keyword arguments of this call, got unknown {unknown}")
    batched = [a for a, ax in zip(args, axes, strict=True) if ax == 0] + [kwargs[k] for k in names]
    if not jax.tree.leaves(batched):
        raise ValueError("map_drops needs at least one batched array (in_axes 0 or batched_kwargs)")
    args, kwargs, pad = place(mesh, args, axes, kwargs, names)
    out = _jitted(fn)(*args, **kwargs)
    return gather(unpad(out, pad))


def place(mesh, args, in_axes=0, kwargs=None, batched_kwargs=()):
    """Shard the batched arguments over ``mesh`` (padded, :func:`shard_drops`) and replicate the others.

    ``in_axes`` as in :func:`map_drops`; ``batched_kwargs`` names the batched
    entries of ``kwargs``. Returns ``(args, kwargs, pad)``: the placed
    positional and keyword arguments and the number of padding drops.
    """
    axes = _axes(in_axes, len(args))
    kwargs = {} if kwargs is None else kwargs
    batched = [a for a, ax in zip(args, axes, strict=True) if ax == 0] + [kwargs[k] for k in batched_kwargs]
    sharded, pad = shard_drops(mesh, *batched)
    it = iter(sharded)
    args = tuple(next(it) if ax == 0 else replicate(mesh, a) for a, ax in zip(args, axes, strict=True))
    pos = dict(zip(batched_kwargs, it, strict=True))
    kwargs = {k: pos[k] if k in pos else replicate(mesh, v) for k, v in kwargs.items()}
    return args, kwargs, pad


def batch_call(fn: Callable, *args, mesh=None, in_axes=0, batched_kwargs=(), **kwargs):
    """``fn(*args, **kwargs)`` when ``mesh`` is ``None``, else :func:`map_drops` over ``mesh`` (the drivers' switch)."""
    if mesh is None:
        return fn(*args, **kwargs)
    return map_drops(fn, *args, mesh=mesh, in_axes=in_axes, batched_kwargs=batched_kwargs, **kwargs)


# ------------------------------------------------------------------ several processes
def _env_int(name: str):
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def _cluster_processes():
    """Process count announced by a cluster launcher (SLURM, Open MPI, GKE TPU), or None."""
    for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if (n := _env_int(name)) is not None:
            return n
    hosts = os.environ.get("TPU_PROCESS_ADDRESSES") or os.environ.get("TPU_WORKER_HOSTNAMES")
    return len(hosts.split(",")) if hosts else None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, **kwargs) -> bool:
    """Start ``jax.distributed`` when this is one of several processes; return whether it did.

    Reads ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0),
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` when the arguments are
    ``None``; otherwise lets JAX auto-detect a SLURM (``srun``), Open MPI
    (``mpirun``) or TPU-slice launch (``SLURM_NTASKS``, ``OMPI_COMM_WORLD_SIZE``,
    ``TPU_WORKER_HOSTNAMES``). Does nothing (returns ``False``) for a single
    process, when no such setting is found, or when ``jax.distributed`` is
    already initialised. Call it first, before any JAX computation. Other
    keywords go to :func:`jax.distributed.initialize` (e.g.
    ``local_device_ids``, ``cluster_detection_method="mpi4py"`` to force
    auto-detection, ``initialization_timeout``).
    """
    if jax.distributed.is_initialized():
        return False
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None:
        num_processes = _env_int("JAX_NUM_PROCESSES")
    if process_id is None:
        process_id = _env_int("JAX_PROCESS_ID")
    announced = num_processes if num_processes is not None else _cluster_processes()
    if "cluster_detection_method" not in kwargs:
        if announced is None and coordinator_address is None:
            return False
        if announced == 1:
            return False
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)
    return True


__all__ = ["AXIS", "batch_call", "drops_mesh", "gather", "initialize", "map_drops", "padded_size", "place", "replicate",
           "shard_drops", "unpad"]

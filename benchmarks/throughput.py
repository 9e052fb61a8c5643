"""Throughput of the jaxpass core on ``PassConfig.joint_beamforming()`` (K = N = 4, L = 8), float32.

Run ``python -m benchmarks.throughput [--quick] [--out DIR]`` (or ``python -m
benchmarks``). Everything is compiled first and timed with
``jax.block_until_ready`` (see ``benchmarks.common``); every comparison is made
side by side in the same process, so read the *ratios*, not the absolute times.

Compilation: every row is compiled with plain ``jax.jit`` and no
per-compilation options, jaxpass's own code included: the ``jaxpass`` rows
measure what a user composing jaxpass under their own ``jax.jit(jax.vmap(...))``
gets. Importing jaxpass sets XLA's CPU flag
``--xla_cpu_experimental_ynn_fusion_type=`` process-wide (see
``jaxpass.compile``); whether it is in effect in the benchmark's process is
recorded as ``config["xla_defaults_active"]``. The one exception is the
``jp_jit`` rows of the channel and grad sections: the same jaxpass code
compiled with the explicit per-compilation option
``jaxpass.compile._CPU_OPTIONS`` (``{"xla_cpu_experimental_ynn_fusion_type":
""}``), the way ``jp.jit`` compiled before the flag was set process-wide. They
exist on the CPU backend with a jaxlib that knows the flag
(``jaxpass.compile._jaxlib_knows_flag()``) and are skipped elsewhere. Their
ratio to the plain ``jax.jit`` rows (``<what>_jax_jit_over_jp_jit``, ~1 when
the process-wide flag works) checks that a user's plain ``jax.jit`` gets the
fast path. Each record carries the options it was compiled with.

Sections (ids used in the JSON ``records``):

* ``channel``: ``jax.jit(jax.vmap(effective_channel))`` (impl ``jaxpass``) at
  each batch size, next to ``naive_jax`` (``jnp.exp(-1j * kappa * r)``
  straight from docs/model.md §2, no cycle reduction, jitted + vmapped),
  ``numpy_loop`` (a per-drop Python loop over NumPy float64, ``np.exp`` of the
  complex phase; timed on a subset) and ``jp_jit`` (see above), all timed
  interleaved per batch. Accuracy of the float32 paths against the NumPy
  float64 loop is recorded.
* ``grad``: ``jax.jit(jax.vmap(jax.value_and_grad(loss)))`` with ``loss(X, users)
  = sum_rate(H, zf(H, P), sigma^2)``, ``H = effective_channel(cfg, X, users)``:
  one "drop-step" is one loss value plus its gradient w.r.t. the ``(N, L)``
  positions. Own batch list (``grad_batches``, includes 4096, the acceptance
  size); timed interleaved with its ``jp_jit`` row at every batch.
* ``channel_vs_L`` / ``channel_vs_K``: channel forward at one batch size
  for L in {8, 16, 32, 64} and K = N in {2, 4, 8}.
* ``wmmse``: ``jp.beamforming.wmmse(H, P, sigma^2, iterations=I)`` next to
  ``plain`` (the textbook WMMSE written here: ``jnp.linalg.inv`` per iteration,
  bisection on the power multiplier by re-solving), both vmapped and jitted,
  same ZF-type start, same iteration count.
* ``ceiling``: the machine's reference speeds: NumPy ``np.sin`` and XLA
  ``jnp.sin`` on float32 arguments in [0, 1e4) rad (elements/s),
  ``jaxpass.phase.cis_cycles`` alone (elements/s, one cos/sin pair per
  element), all three on ``ceiling_elements`` = as many elements as the
  channel has path elements at the largest batch, and a jitted float32 matmul
  (FLOP/s, ``2 n^3`` per product); timed interleaved with the channel at the
  largest batch (impl ``channel_jaxpass``).

Several devices: when more than one device is present (several GPUs, a TPU
slice, or ``--xla_force_host_platform_device_count``), the drop-batched rows
(``channel``, ``grad``, ``channel_vs_L``/``_K``, ``wmmse``) run sharded over all
of them: their inputs are padded to a multiple of the device count and placed
with :func:`jaxpass.parallel.shard_drops` (``NamedSharding(mesh, P("drops"))``;
XLA partitions the jitted batch), throughputs count the unpadded batch, and
``memory`` per drop counts the ``ceil(B / D)`` drops of one device. The NumPy
reference and the ceiling's kernels stay on one device. ``config["devices"]``
records the device count. Every run ends with a per-device memory table
(``device_memory`` in the JSON, one entry per local device): the peak from
``device.memory_stats()`` (``peak_bytes_in_use``, GPU/TPU) where the backend
reports it, else (CPU: ``memory_stats()`` is None) the estimate of
:mod:`jaxpass.experiments.memory` for the largest batch share of one device,
marked ``"source": "estimate"``.

A run ends with an informational "acceptance" block (never an assert, never a
non-zero exit), each target marked PASS or BELOW (``not measured`` where the
run did not time that size, e.g. ``--quick``, or has no ``jp_jit`` row):
channel forward path-elements/s at batch 16384 (>= 500 M/s), grad
drop-steps/s at batch 4096 (>= 400 k/s), the WMMSE jaxpass/plain ratio at
batch 4096 (>= 3x), channel ``jax.jit``/``jp.jit`` at batch 16384 (>= 0.9x),
grad ``jax.jit``/``jp.jit`` at batch 4096 (>= 0.9x) and channel
path-elements/s over NumPy ``np.sin`` elements/s at batch 16384 (same array
size; >= 0.35x).

JSON layout (``<out>/throughput-<device>.json``, schema_version 1)::

    {
      "benchmark": "throughput", "schema_version": 1, "quick": bool,
      "env":    {"device", "platform", "jax_version", "jaxlib_version", "numpy_version",
                 "cpu_count", "xla_flags", "date_utc", "git", ...},
      "config": {"preset", "dtype", "K", "N", "L", "batches", "grad_batches", "L_values",
                 "K_values", "sweep_batch", "numpy_drops", "wmmse_batch", "wmmse_iterations",
                 "ceiling_elements", "xla_defaults_active": bool,
                 "jp_jit_compiler_options": {"xla_cpu_experimental_ynn_fusion_type": ""} or null,
                                              # null: no jp_jit rows in this run
                 ...},
      "records": [
        {"id": "channel/jaxpass/B=1024",      # unique: section/impl/params
         "section": "channel", "impl": "jaxpass",
         "params":  {"batch": 1024, "K": 4, "N": 4, "L": 8},
         "repeats": 17,                       # timed calls behind the statistics
         "compiler_options": null,            # per-compilation options: null = plain jax.jit
                                              # (or not compiled: numpy); jp_jit rows carry theirs
         "metrics": {"median_s", "min_s", "max_s", "q1_s", "q3_s", "compile_s",
                     "drops_per_s", "path_elements_per_s", ...},
         "memory":   {"peak_bytes_per_drop", "temp_bytes_per_drop", ...} or null,
         "accuracy": {"max_rel_err", ...} or null},
        ...
      ],
      "ratios": {"channel_jaxpass_over_numpy_loop": 123.4, ...},
      "acceptance": [                         # informational, see above
        {"name": "channel forward path-elements/s@B=16384", "section": "channel", "batch": 16384,
         "key": "path_elements_per_s", "value": 6.1e8 or null, "target": 5e8,
         "unit": "path-elem/s", "status": "PASS" | "BELOW" | "not measured"},
        ...],
      "wall_s": 123.4
    }

Contract (what the tests check): every value in each record's ``metrics``
and in ``ratios`` is a positive finite float; ``memory`` and ``accuracy``
values, when present, are finite and non-negative. Throughput keys by
section: ``channel*`` -> ``drops_per_s``, ``path_elements_per_s`` (K*N*L per
drop); ``grad`` -> ``drop_steps_per_s``; ``wmmse`` -> ``drops_per_s``;
``ceiling`` -> ``elements_per_s`` or ``flops_per_s``. ``numpy_loop`` and the
NumPy ceiling have no ``compile_s``. Ratio keys are ``<what>_<a>_over_<b>``
(``a``'s throughput divided by ``b``'s; > 1 means ``a`` is faster), with an
``@B=<batch>`` suffix for per-batch values: ``channel_jaxpass_over_{naive_jax,
numpy_loop}[@B=..]``, ``channel_jax_jit_over_jp_jit@B=..`` and
``grad_jax_jit_over_jp_jit@B=..`` (the ``jaxpass`` row over the ``jp_jit`` row;
> 1 means plain ``jax.jit`` is faster; only where ``jp_jit`` rows exist),
``wmmse_jaxpass_over_plain``,
``channel_path_elements_over_{numpy_sin,jax_sin,jaxpass_cis}``,
``channel_path_elements_per_matmul_flop``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxpass as jp
import jaxpass.compile as jp_compile
from benchmarks import common
from benchmarks.common import fmt_num, fmt_ratio, fmt_time, log, markdown_table
from jaxpass import parallel

NAME = "throughput"

FULL = dict(
    batches=(1, 64, 1024, 16384),
    grad_batches=(1, 64, 1024, 4096, 16384),
    L_values=(8, 16, 32, 64),
    K_values=(2, 4, 8),
    sweep_batch=16384,
    numpy_drops=256,
    wmmse_batch=4096,
    wmmse_iterations=100,
    plain_bisection_steps=30,
    matmul_n=2048,
    repeats=5,
    min_time=1.0,
    max_time=30.0,
)
QUICK = dict(
    batches=(1, 64),
    grad_batches=(1, 64),
    L_values=(8, 16),
    K_values=(2, 4),
    sweep_batch=64,
    numpy_drops=16,
    wmmse_batch=64,
    wmmse_iterations=10,
    plain_bisection_steps=30,
    matmul_n=256,
    repeats=3,
    min_time=0.02,
    max_time=2.0,
)


# ---------------------------------------------------------------- inputs
def base_config(**overrides) -> jp.PassConfig:
    """The benchmarked scenario: JB preset (K = N = 4, L = 8) with overrides."""
    return jp.PassConfig.joint_beamforming(**overrides)


def make_drops(cfg: jp.PassConfig, batch: int, seed: int = 0):
    """``batch`` random drops in float32: users ``(B, K, 2)`` and feasible positions ``(B, N, L)``.

    Positions are the uniform layout plus Gaussian jitter (std = a quarter of
    the uniform spacing), projected onto the feasible set.
    """
    k_users, k_jitter = jax.random.split(jax.random.key(seed))
    users = jp.sample_users(k_users, cfg, (batch,)).astype(jnp.float32)
    X0 = jp.uniform_positions(cfg, jnp.float32)
    spacing = float(cfg.length_x) / cfg.num_pinches
    jitter = 0.25 * spacing * jax.random.normal(k_jitter, (batch,) + X0.shape, jnp.float32)
    X = jax.jit(lambda Z: jp.project_positions(cfg, Z))(X0 + jitter)
    return jax.block_until_ready(X), jax.block_until_ready(users)


def paths_per_drop(cfg: jp.PassConfig) -> int:
    return cfg.num_users * cfg.num_waveguides * cfg.num_pinches


# ------------------------------------------------------------ functions
def jaxpass_channel(cfg: jp.PassConfig):
    """Batched ``effective_channel``: ``(B, N, L), (B, K, 2) -> (B, K, N)``."""
    return jax.vmap(lambda X, users: jp.effective_channel(cfg, X, users))


def _physics(cfg: jp.PassConfig) -> dict:
    """The docs/model.md §2 constants as Python floats (float64 on the host)."""
    N, L = cfg.num_waveguides, cfg.num_pinches
    f = float(cfg.carrier_freq)
    if cfg.waveguide_y is None:
        lanes = (np.arange(N) + 0.5) * float(cfg.width_y) / N
    else:
        lanes = np.asarray(cfg.waveguide_y, np.float64)
    if cfg.radiation != "equal":
        raise NotImplementedError("reference channels cover radiation='equal' only")
    return dict(
        kappa=2.0 * math.pi * f / jp.units.SPEED_OF_LIGHT,
        sqrt_beta=math.sqrt(float(cfg.beta)),
        n_eff=float(cfg.n_eff),
        height=float(cfg.height),
        lanes=lanes,
        amplitude=1.0 / math.sqrt(L),
        alpha_db=float(cfg.loss_db_per_m),
    )


def naive_jax_channel(cfg: jp.PassConfig):
    """docs/model.md §2 written directly in JAX: ``jnp.exp(-1j * kappa * r)``, no cycle reduction.

    Batched like ``jaxpass_channel``. In float32 ``kappa * r ~ 1e4`` rad keeps
    only ~5e-4 rad of phase resolution, and XLA's CPU sin/cos reduce the
    argument generically.
    """
    p = _physics(cfg)
    lanes = jnp.asarray(p["lanes"], jnp.float32)

    def one(X, users):
        dx = X[None, :, :] - users[:, 0, None, None]  # (K, N, L)
        dy = lanes[None, :, None] - users[:, 1, None, None]
        r = jnp.sqrt(dx**2 + dy**2 + p["height"] ** 2)
        h = p["sqrt_beta"] * jnp.exp(-1j * p["kappa"] * r) / r
        g = (p["amplitude"] * jnp.exp(-1j * p["kappa"] * p["n_eff"] * X)
             * 10.0 ** (-p["alpha_db"] * X / 20.0))
        return jnp.sum(h * g[None], axis=-1)

    return jax.vmap(one)


def numpy_channel_loop(cfg: jp.PassConfig):
    """docs/model.md §2 in plain NumPy float64, one drop per Python iteration (the reference)."""
    p = _physics(cfg)
    lanes = p["lanes"]

    def run(X, users):
        X = np.asarray(X, np.float64)
        users = np.asarray(users, np.float64)
        B, N, L = X.shape
        K = users.shape[1]
        out = np.empty((B, K, N), np.complex128)
        for b in range(B):
            Xb, ub = X[b], users[b]
            dx = Xb[None, :, :] - ub[:, 0, None, None]
            dy = lanes[None, :, None] - ub[:, 1, None, None]
            r = np.sqrt(dx**2 + dy**2 + p["height"] ** 2)
            h = p["sqrt_beta"] * np.exp(-1j * p["kappa"] * r) / r
            g = p["amplitude"] * np.exp(-1j * p["kappa"] * p["n_eff"] * Xb) * 10.0 ** (-p["alpha_db"] * Xb / 20.0)
            out[b] = np.sum(h * g[None], axis=-1)
        return out

    return run


def zf_sum_rate_wrt_positions(cfg: jp.PassConfig):
    """``loss(X, users) = sum_rate(H, zf(H, P), sigma^2)`` with ``H = effective_channel(cfg, X, users)``."""

    def loss(X, users):
        H = jp.effective_channel(cfg, X, users)
        return jp.sum_rate(H, jp.beamforming.zf(H, cfg.power), cfg.noise_power)

    return loss


def plain_wmmse(H, power, noise_power, *, iterations: int = 100, bisection_steps: int = 30):
    """Textbook WMMSE for one drop (Shi et al. 2011 / JB (11)-(14)), written straightforwardly.

    ZF start ``H^H (H H^H)^{-1}`` at full power; per iteration: MMSE receivers
    ``u_k``, weights ``1/e_k``, then ``W(mu) = inv(A + mu I) B`` with ``mu`` found
    by ``bisection_steps`` bisection steps on ``[0, ||B||_F / sqrt(P)]``, each
    re-solving with ``jnp.linalg.inv``. Raw (un-normalised) units.
    """
    K, N = H.shape
    Hh = jnp.conj(H).T
    W = Hh @ jnp.linalg.inv(H @ Hh)
    W = W * jnp.sqrt(power / jnp.sum(jnp.abs(W) ** 2))
    eye = jnp.eye(N, dtype=H.dtype)

    def iteration(W, _):
        Y = H @ W  # [k, i] = h_k w_i
        J = jnp.sum(jnp.abs(Y) ** 2, axis=1) + noise_power
        s = jnp.diagonal(Y)
        u = s / J
        weight = 1.0 / (1.0 - jnp.abs(s) ** 2 / J)
        A = (Hh * (weight * jnp.abs(u) ** 2)[None, :]) @ H
        B = Hh * (weight * jnp.conj(u))[None, :]

        def solve(mu):
            return jnp.linalg.inv(A + mu * eye) @ B

        def halve(_, bracket):
            lo, hi = bracket
            mid = 0.5 * (lo + hi)
            too_much = jnp.sum(jnp.abs(solve(mid)) ** 2) > power
            return jnp.where(too_much, mid, lo), jnp.where(too_much, hi, mid)

        hi = jnp.sqrt(jnp.sum(jnp.abs(B) ** 2) / power)
        _, hi = jax.lax.fori_loop(0, bisection_steps, halve, (jnp.zeros_like(hi), hi))
        return solve(hi), None

    W, _ = jax.lax.scan(iteration, W, None, length=iterations)
    return W


# ---------------------------------------------------------------- helpers
def jp_jit_options() -> dict | None:
    """The per-compilation XLA options of the ``jp_jit`` rows, or ``None`` when those rows are skipped.

    ``jaxpass.compile._CPU_OPTIONS`` (``{"xla_cpu_experimental_ynn_fusion_type": ""}``)
    on the CPU backend with a jaxlib that knows the flag: the option
    ``jp.jit`` passed to every compilation before jaxpass set the same flag
    process-wide at import. Elsewhere (GPU, TPU, older jaxlib) there is no such
    option and ``None`` is returned.
    """
    if jax.default_backend() != "cpu" or not jp_compile._jaxlib_knows_flag():
        return None
    return dict(jp_compile._CPU_OPTIONS)


_ID_KEYS = {"channel": ("batch", "paired_batch"), "grad": ("batch",), "channel_vs_L": ("L",),
            "channel_vs_K": ("K",), "wmmse": ("batch",), "ceiling": ()}
_ID_ABBREV = {"batch": "B", "paired_batch": "with_B"}


def _record(section, impl, params, timing=None, metrics=None, memory=None, accuracy=None):
    rid = "/".join([section, impl] + [f"{_ID_ABBREV.get(k, k)}={params[k]}" for k in _ID_KEYS[section]
                                  if k in params])
    out_metrics = dict(timing.metrics()) if timing is not None else {}
    out_metrics.update(metrics or {})
    return {
        "id": rid,
        "section": section,
        "impl": impl,
        "params": dict(params),
        "repeats": timing.repeats if timing is not None else None,
        "compiler_options": timing.compiler_options if timing is not None else None,
        "metrics": out_metrics,
        "memory": memory,
        "accuracy": accuracy,
    }


def _rel_errors(H, H_ref) -> dict:
    """Per drop ``max |H - H_ref| / max |H_ref|``: median and max over drops."""
    H = np.asarray(H, np.complex128)
    err = np.max(np.abs(H - H_ref), axis=(-2, -1)) / np.max(np.abs(H_ref), axis=(-2, -1))
    return {"median_rel_err": float(np.median(err)), "max_rel_err": float(np.max(err))}


def ceiling_elements(cfg: jp.PassConfig, s: dict) -> int:
    """Array size of the ceiling's elementwise kernels: the channel's path elements at the largest batch."""
    return max(s["batches"]) * paths_per_drop(cfg)


def _timing_kw(s):
    return dict(repeats=s["repeats"], min_time=s["min_time"], max_time=s["max_time"])


# ---------------------------------------------------------------- devices
def bench_mesh():
    """The ``("drops",)`` mesh over all devices when there are several (:func:`jaxpass.parallel.drops_mesh`), else None."""
    return parallel.drops_mesh() if jax.device_count() > 1 else None


def on_devices(mesh, *arrays) -> tuple:
    """``arrays`` (leading drop axis) padded and sharded over ``mesh`` (:func:`jaxpass.parallel.shard_drops`);
    unchanged for ``mesh=None``."""
    if mesh is None:
        return arrays
    sharded, _ = parallel.shard_drops(mesh, *arrays)
    return sharded


def per_device_drops(mesh, batch: int) -> int:
    """Drops one device holds: ``ceil(batch / D)`` on a ``D``-device mesh (the padded share), ``batch`` without one."""
    from jaxpass.experiments import memory

    return batch if mesh is None else memory.per_device(batch, mesh.devices.size)


def device_memory(estimate_bytes: int | None = None) -> list[dict]:
    """Per local device: its memory as the backend reports it, else ``estimate_bytes`` (marked an estimate).

    ``device.memory_stats()`` (GPU, TPU): ``peak_bytes_in_use`` (the process's peak on that device so far),
    ``bytes_in_use`` and ``bytes_limit``, ``"source": "memory_stats"``. Where it returns None or raises
    (CPU), ``peak_bytes`` is ``estimate_bytes`` (:mod:`jaxpass.experiments.memory`), ``"source": "estimate"``.
    """
    rows = []
    for d in jax.local_devices():
        try:
            stats = d.memory_stats()
        except Exception:  # noqa: BLE001 - an optional backend feature
            stats = None
        row = {"device": f"{d.platform}:{d.id}", "kind": d.device_kind}
        if stats and "peak_bytes_in_use" in stats:
            row.update(source="memory_stats", peak_bytes=int(stats["peak_bytes_in_use"]),
                       bytes_in_use=int(stats.get("bytes_in_use", 0)), bytes_limit=stats.get("bytes_limit"))
        else:
            row.update(source="estimate", peak_bytes=None if estimate_bytes is None else int(estimate_bytes))
        rows.append(row)
    return rows


def device_memory_report(rows: list[dict]) -> str:
    """The per-device memory table (markdown), saying which numbers are estimates."""
    from jaxpass.experiments.memory import format_bytes

    def show(v):
        return "n/a" if v is None else format_bytes(v)

    table = markdown_table(["device", "peak", "in use", "limit", "source"],
                           [[r["device"], show(r["peak_bytes"]), show(r.get("bytes_in_use")), show(r.get("bytes_limit")),
                             "device.memory_stats()" if r["source"] == "memory_stats"
                             else "ESTIMATE (jaxpass.experiments.memory; memory_stats() is None on this backend)"]
                            for r in rows])
    return f"### per-device memory ({len(rows)} local device(s))\n\n" + table


def memory_estimate(cfg: jp.PassConfig, s: dict, mesh=None) -> int:
    """Estimated peak of one device [bytes]: :func:`jaxpass.experiments.memory.demo_bytes` (evaluation) for the
    largest batch share of one device over the sections (``K N L`` of each sweep point)."""
    from jaxpass.experiments import memory

    D = 1 if mesh is None else mesh.devices.size
    K, N, L = cfg.num_users, cfg.num_waveguides, cfg.num_pinches
    big = max(max(s["batches"]), max(s["grad_batches"]), s["wmmse_batch"])
    sizes = [(K, N, L, big), (K, N, max(s["L_values"]), s["sweep_batch"]),
             (max(s["K_values"]), max(s["K_values"]), L, s["sweep_batch"])]
    return max(memory.demo_bytes(k, n, l_, b, tune_steps=0, devices=D) for k, n, l_, b in sizes)


# ---------------------------------------------------------------- sections
def bench_channel(cfg, s, records, ratios, mesh=None):
    """(a) + (c): channel forward next to its references (interleaved per batch), then (b) the gradient.

    Every row is compiled with plain ``jax.jit`` except ``jp_jit``: the same
    jaxpass code compiled with ``jp_jit_options()`` (only where that is not None).
    ``mesh``: the JAX rows' drops sharded over its devices (:func:`on_devices`).
    """
    P = paths_per_drop(cfg)
    opts = jp_jit_options()
    with_jp_jit = opts is not None
    chan = jaxpass_channel(cfg)
    naive = naive_jax_channel(cfg)
    params0 = dict(K=cfg.num_users, N=cfg.num_waveguides, L=cfg.num_pinches)

    # NumPy loop on a fixed subset (slow, cost linear in drops); accuracy on the same subset
    n_ref = s["numpy_drops"]
    Xr, ur = make_drops(cfg, n_ref, seed=1)
    Xr_np, ur_np = np.asarray(Xr), np.asarray(ur)
    ref_fn = numpy_channel_loop(cfg)
    H_ref = ref_fn(Xr_np, ur_np)
    acc = {"jaxpass": _rel_errors(jax.jit(chan)(Xr, ur), H_ref),
           "naive_jax": _rel_errors(jax.jit(naive)(Xr, ur), H_ref)}
    if with_jp_jit:
        acc["jp_jit"] = _rel_errors(jax.jit(chan).lower(Xr, ur).compile(opts)(Xr, ur), H_ref)
    for B in s["batches"]:
        X, users = on_devices(mesh, *make_drops(cfg, B))
        log(f"[throughput] channel B={B}: jaxpass | naive_jax | numpy_loop ({n_ref} drops)"
            + (" | jp_jit" if with_jp_jit else "") + ", interleaved")
        cases = {
            "jaxpass": common.Case(chan, (X, users)),
            "naive_jax": common.Case(naive, (X, users)),
            "numpy_loop": common.Case(ref_fn, (Xr_np, ur_np), jit=False),
        }
        if with_jp_jit:
            cases["jp_jit"] = common.Case(chan, (X, users), compiler_options=opts)
        t = common.time_interleaved(cases, **_timing_kw(s))
        rate = {k: v.per_second(B if k != "numpy_loop" else n_ref) for k, v in t.items()}
        for impl in [k for k in cases if k != "numpy_loop"]:
            records.append(_record("channel", impl, dict(batch=B, **params0), t[impl],
                                   dict(drops_per_s=rate[impl], path_elements_per_s=rate[impl] * P),
                                   common.memory_per_item(t[impl].compiled, per_device_drops(mesh, B)), acc[impl]))
        records.append(_record("channel", "numpy_loop", dict(batch=n_ref, paired_batch=B, **params0),
                               t["numpy_loop"],
                               dict(drops_per_s=rate["numpy_loop"], path_elements_per_s=rate["numpy_loop"] * P)))
        ratios[f"channel_jaxpass_over_naive_jax@B={B}"] = rate["jaxpass"] / rate["naive_jax"]
        ratios[f"channel_jaxpass_over_numpy_loop@B={B}"] = rate["jaxpass"] / rate["numpy_loop"]
        if with_jp_jit:
            ratios[f"channel_jax_jit_over_jp_jit@B={B}"] = rate["jaxpass"] / rate["jp_jit"]

    Bmax = max(s["batches"])
    ratios["channel_jaxpass_over_numpy_loop"] = ratios[f"channel_jaxpass_over_numpy_loop@B={Bmax}"]
    ratios["channel_jaxpass_over_naive_jax"] = ratios[f"channel_jaxpass_over_naive_jax@B={Bmax}"]

    grad = jax.vmap(jax.value_and_grad(zf_sum_rate_wrt_positions(cfg)))
    for B in s["grad_batches"]:
        X, users = on_devices(mesh, *make_drops(cfg, B))
        log(f"[throughput] grad B={B}: jaxpass" + (" | jp_jit, interleaved" if with_jp_jit else ""))
        cases = {"jaxpass": common.Case(grad, (X, users))}
        if with_jp_jit:
            cases["jp_jit"] = common.Case(grad, (X, users), compiler_options=opts)
        t = common.time_interleaved(cases, **_timing_kw(s))
        for impl, ti in t.items():
            value, g = (a[:B] for a in ti.output)  # without the padding drops of a sharded batch
            records.append(_record("grad", impl, dict(batch=B, **params0), ti,
                                   dict(drop_steps_per_s=ti.per_second(B)),
                                   common.memory_per_item(ti.compiled, per_device_drops(mesh, B)),
                                   {"mean_sum_rate": float(jnp.mean(value)),
                                    "nonfinite_grads": float(jnp.sum(~jnp.isfinite(g)))}))
        if with_jp_jit:
            ratios[f"grad_jax_jit_over_jp_jit@B={B}"] = t["jaxpass"].per_second(B) / t["jp_jit"].per_second(B)


def bench_sweeps(s, records, ratios, mesh=None):
    """(d): channel forward vs L (K = N = 4) and vs K = N (L = 8) at one batch size (each sweep interleaved)."""
    B = s["sweep_batch"]
    for section, key, values in (("channel_vs_L", "L", s["L_values"]), ("channel_vs_K", "K", s["K_values"])):
        cases, cfgs = {}, {}
        for v in values:
            cfg = base_config(num_pinches=v) if key == "L" else base_config(num_users=v, num_waveguides=v)
            cfgs[v] = cfg
            cases[v] = common.Case(jaxpass_channel(cfg), on_devices(mesh, *make_drops(cfg, B)))
        log(f"[throughput] {section}: {key} in {tuple(values)}, B={B}, interleaved")
        timings = common.time_interleaved(cases, **_timing_kw(s))
        for v, t in timings.items():
            cfg = cfgs[v]
            rate = t.per_second(B)
            records.append(_record(section, "jaxpass",
                                   dict(batch=B, K=cfg.num_users, N=cfg.num_waveguides, L=cfg.num_pinches), t,
                                   dict(drops_per_s=rate, path_elements_per_s=rate * paths_per_drop(cfg)),
                                   common.memory_per_item(t.compiled, per_device_drops(mesh, B))))


def bench_wmmse(cfg, s, records, ratios, mesh=None):
    """(e): jaxpass WMMSE vs the plain textbook version, same batch and iteration count, interleaved."""
    B, iters = s["wmmse_batch"], s["wmmse_iterations"]
    X, users = on_devices(mesh, *make_drops(cfg, B, seed=2))
    H = jax.block_until_ready(jax.jit(jaxpass_channel(cfg))(X, users))
    power, noise = cfg.power, cfg.noise_power
    rate_fn = jax.jit(jax.vmap(lambda H, W: jp.sum_rate(H, W, noise)))
    params = dict(batch=B, K=cfg.num_users, N=cfg.num_waveguides, iterations=iters)
    log(f"[throughput] wmmse B={B} iterations={iters}: jaxpass | plain, interleaved")
    timings = common.time_interleaved({
        "jaxpass": common.Case(jax.vmap(lambda H: jp.beamforming.wmmse(H, power, noise, iterations=iters)), (H,)),
        "plain": common.Case(jax.vmap(lambda H: plain_wmmse(H, power, noise, iterations=iters,
                                                            bisection_steps=s["plain_bisection_steps"])), (H,)),
    }, **_timing_kw(s))
    out = {}
    for impl, t in timings.items():
        sr = np.asarray(rate_fn(H, t.output))[:B]  # without the padding drops of a sharded batch
        acc = {"mean_sum_rate": float(np.nanmean(sr)), "nonfinite_drops": float(np.sum(~np.isfinite(sr)))}
        out[impl] = t.per_second(B)
        records.append(_record("wmmse", impl, params, t, dict(drops_per_s=out[impl]),
                               common.memory_per_item(t.compiled, per_device_drops(mesh, B)), acc))
    ratios["wmmse_jaxpass_over_plain"] = out["jaxpass"] / out["plain"]


def bench_ceiling(cfg, s, records, ratios):
    """(f): NumPy/XLA sine, jaxpass's cis kernel and a float32 matmul, interleaved with the channel itself.

    The elementwise kernels run on as many elements as the channel has path
    elements at the largest batch (``ceiling_elements(cfg, s)``), so
    ``channel_path_elements_over_numpy_sin`` compares equal array sizes.
    """
    n = ceiling_elements(cfg, s)
    x = np.random.default_rng(0).uniform(0.0, 1e4, n).astype(np.float32)
    buf = np.empty_like(x)
    xd = jax.device_put(x)
    cycles = jax.device_put((x / (2 * np.pi)).astype(np.float32))
    m = s["matmul_n"]
    ka, kb = jax.random.split(jax.random.key(3))
    a = jax.random.normal(ka, (m, m), jnp.float32)
    b = jax.random.normal(kb, (m, m), jnp.float32)
    B = max(s["batches"])
    log(f"[throughput] ceiling: np.sin | jnp.sin | cis_cycles ({n} float32) | matmul {m}^2 | channel B={B}")
    t = common.time_interleaved({
        "numpy_sin": common.Case(lambda: np.sin(x, out=buf), jit=False),
        "jax_sin": common.Case(jnp.sin, (xd,)),
        "jaxpass_cis": common.Case(lambda c: jp.phase.cis_cycles(c), (cycles,)),
        "jax_matmul": common.Case(jnp.matmul, (a, b)),
        "channel_jaxpass": common.Case(jaxpass_channel(cfg), make_drops(cfg, B)),
    }, **_timing_kw(s))
    for impl in ("numpy_sin", "jax_sin", "jaxpass_cis"):
        params = dict(n=n) if impl != "jaxpass_cis" else dict(n=n, method=jp.phase.resolve_method(jnp.float32))
        records.append(_record("ceiling", impl, params, t[impl], dict(elements_per_s=t[impl].per_second(n))))
    records.append(_record("ceiling", "jax_matmul", dict(n=m), t["jax_matmul"],
                           dict(flops_per_s=t["jax_matmul"].per_second(2.0 * m**3))))
    rate = t["channel_jaxpass"].per_second(B)
    records.append(_record("ceiling", "channel_jaxpass",
                           dict(batch=B, K=cfg.num_users, N=cfg.num_waveguides, L=cfg.num_pinches),
                           t["channel_jaxpass"],
                           dict(drops_per_s=rate, path_elements_per_s=rate * paths_per_drop(cfg))))


def _find(records, section, impl, **params):
    for r in records:
        if r["section"] == section and r["impl"] == impl and all(r["params"].get(k) == v for k, v in params.items()):
            return r
    return None


def ceiling_ratios(records, s, ratios):
    """Channel path-elements/s (the copy timed interleaved with the ceiling kernels) over each kernel."""
    chan = _find(records, "ceiling", "channel_jaxpass")
    if chan is None:
        return
    pe = chan["metrics"]["path_elements_per_s"]
    for impl, key in (("numpy_sin", "numpy_sin"), ("jax_sin", "jax_sin"), ("jaxpass_cis", "jaxpass_cis")):
        r = _find(records, "ceiling", impl)
        if r is not None:
            ratios[f"channel_path_elements_over_{key}"] = pe / r["metrics"]["elements_per_s"]
    mm = _find(records, "ceiling", "jax_matmul")
    if mm is not None:
        ratios["channel_path_elements_per_matmul_flop"] = pe / mm["metrics"]["flops_per_s"]


# ---------------------------------------------------------------- report
def _compile_note(records, config) -> str:
    opts = next((r["compiler_options"] for r in records if r["impl"] == "jp_jit"), None)
    active = config["xla_defaults_active"]
    note = ("Compilation: every row with plain `jax.jit` (no per-compilation options; "
            f"`jaxpass.compile.xla_defaults_active()` = {active}: "
            + ("jaxpass set XLA's CPU fusion flag process-wide at import" if active
               else "jaxpass's process-wide XLA flag is NOT in effect in this process") + ")")
    if opts:
        note += (f", except `jp_jit`: the same jaxpass code compiled with the explicit per-compilation "
                 f"option `{json.dumps(opts)}`, as `jp.jit` did before that flag was set process-wide.")
    else:
        note += ". No `jp_jit` rows: there is no per-compilation option for this backend/jaxlib."
    return note


def _jit_pair_table(records, ratios, what, key, unit) -> str:
    """``jax.jit`` (the ``jaxpass`` rows) beside ``jp_jit`` per batch, with their ratio."""
    rows = []
    for r in records:
        if r["section"] == what and r["impl"] == "jaxpass":
            b = r["params"]["batch"]
            other = _find(records, what, "jp_jit", batch=b)
            if other is None:
                continue
            rows.append([b, fmt_num(r["metrics"][key]), fmt_num(other["metrics"][key]),
                         fmt_ratio(ratios.get(f"{what}_jax_jit_over_jp_jit@B={b}"))])
    if not rows:
        return "\n(no `jp_jit` rows on this backend/jaxlib: only plain `jax.jit` is timed)"
    return (f"\n{what}: plain `jax.jit` beside `jp_jit` (same code, explicit per-compilation option), "
            "timed interleaved; > 1 means plain jax.jit is faster\n\n"
            + markdown_table(["batch", f"jax.jit {unit}", f"jp.jit {unit}", "jax.jit/jp.jit"], rows))


#: (name, section, impl, batch, metric or ratio key, target, unit) of the informational acceptance block
ACCEPTANCE = (
    ("channel forward path-elements/s", "channel", "jaxpass", 16384, "path_elements_per_s", 500e6,
     "path-elem/s"),
    ("grad drop-steps/s", "grad", "jaxpass", 4096, "drop_steps_per_s", 400e3, "drop-steps/s"),
    ("WMMSE jaxpass/plain", "wmmse", "jaxpass", 4096, "ratio:wmmse_jaxpass_over_plain", 3.0, "x"),
    ("channel jax.jit/jp.jit", "channel", "jp_jit", 16384, "ratio:channel_jax_jit_over_jp_jit@B=16384", 0.9,
     "x"),
    ("grad jax.jit/jp.jit", "grad", "jp_jit", 4096, "ratio:grad_jax_jit_over_jp_jit@B=4096", 0.9, "x"),
    ("channel path-elements/s over np.sin elements/s", "ceiling", "channel_jaxpass", 16384,
     "ratio:channel_path_elements_over_numpy_sin", 0.35, "x"),
)


def acceptance(records, ratios) -> list[dict]:
    """The acceptance targets next to this run's numbers: ``status`` PASS / BELOW / not measured.

    Informational only (absolute numbers depend on the machine): never asserted.
    """
    out = []
    for name, section, impl, batch, key, target, unit in ACCEPTANCE:
        rec = _find(records, section, impl, batch=batch)
        value = None
        if rec is not None:
            value = ratios.get(key[len("ratio:"):]) if key.startswith("ratio:") else rec["metrics"].get(key)
        status = "not measured" if value is None else ("PASS" if value >= target else "BELOW")
        out.append({"name": f"{name}@B={batch}", "section": section, "batch": batch,
                    "key": key.removeprefix("ratio:"), "value": value, "target": target, "unit": unit,
                    "status": status})
    return out


def acceptance_report(rows, quick: bool) -> str:
    """The acceptance block as markdown (informational; no exit code depends on it)."""
    def show(v, unit):
        return "n/a" if v is None else (fmt_ratio(v) if unit == "x" else f"{fmt_num(v)} {unit}")

    out = ["### acceptance (informational: never asserted, the exit code does not depend on it)\n"]
    if quick:
        out.append("Quick run: the acceptance sizes are not timed here; run without `--quick`.\n")
    out.append(markdown_table(["target", "measured", "required", "status"],
                              [[r["name"], show(r["value"], r["unit"]), ">= " + show(r["target"], r["unit"]),
                                r["status"]] for r in rows]))
    return "\n".join(out)


def report(records, ratios, s, config) -> str:
    """Markdown tables of every record and ratio."""
    out = []
    rows = []
    for r in records:
        if r["section"] != "channel":
            continue
        m, acc = r["metrics"], r["accuracy"] or {}
        batch = r["params"]["batch"]
        if "paired_batch" in r["params"]:
            batch = f"{batch} (with B={r['params']['paired_batch']})"
        rows.append([r["impl"], batch, fmt_num(m["drops_per_s"]), fmt_num(m["path_elements_per_s"]),
                     fmt_time(m["median_s"]), f"{fmt_time(m['min_s'])} .. {fmt_time(m['max_s'])}",
                     fmt_time(m.get("compile_s")),
                     fmt_ratio(ratios.get(f"channel_jaxpass_over_naive_jax@B={r['params']['batch']}"))
                     if r["impl"] == "jaxpass" else "",
                     fmt_ratio(ratios.get(f"channel_jaxpass_over_numpy_loop@B={r['params']['batch']}"))
                     if r["impl"] == "jaxpass" else "",
                     f"{acc['max_rel_err']:.2g}" if "max_rel_err" in acc else ""])
    out.append(f"{_compile_note(records, config)}\n")
    out.append("### (a, c) effective channel forward, float32 (numpy_loop: float64, per-drop Python loop; "
               "the rows of one batch timed interleaved)\n")
    out.append(markdown_table(["impl", "batch", "drops/s", "path-elem/s", "median", "min .. max", "compile",
                               "jaxpass/naive", "jaxpass/numpy", "max rel err vs f64"],
                              rows))
    out.append(_jit_pair_table(records, ratios, "channel", "path_elements_per_s", "path-elem/s"))

    rows = []
    for r in records:
        if r["section"] == "grad":
            m, b = r["metrics"], r["params"]["batch"]
            rows.append([r["impl"], b, fmt_num(m["drop_steps_per_s"]), fmt_time(m["median_s"]),
                         f"{fmt_time(m['min_s'])} .. {fmt_time(m['max_s'])}", fmt_time(m["compile_s"]),
                         f"{r['accuracy']['mean_sum_rate']:.4g}"])
    out.append("\n### (b) value_and_grad of ZF sum rate w.r.t. positions (the rows of one batch timed interleaved)\n")
    out.append(markdown_table(["impl", "batch", "drop-steps/s", "median", "min .. max", "compile",
                               "mean sum rate"], rows))
    out.append(_jit_pair_table(records, ratios, "grad", "drop_steps_per_s", "drop-steps/s"))

    for section, key in (("channel_vs_L", "L"), ("channel_vs_K", "K")):
        rows = []
        for r in records:
            if r["section"] == section:
                m, p = r["metrics"], r["params"]
                rows.append([p[key] if key == "L" else f"{p['K']} (N={p['N']})", p["K"] * p["N"] * p["L"],
                             fmt_num(m["drops_per_s"]), fmt_num(m["path_elements_per_s"]),
                             fmt_time(m["median_s"]), fmt_time(m["compile_s"])])
        out.append(f"\n### (d) channel forward vs {key} at batch {s['sweep_batch']}\n")
        out.append(markdown_table([key, "paths/drop", "drops/s", "path-elem/s", "median", "compile"], rows))

    rows = []
    for r in records:
        if r["section"] == "wmmse":
            m, acc = r["metrics"], r["accuracy"]
            rows.append([r["impl"], r["params"]["batch"], r["params"]["iterations"], fmt_num(m["drops_per_s"]),
                         fmt_time(m["median_s"]), f"{fmt_time(m['min_s'])} .. {fmt_time(m['max_s'])}",
                         fmt_time(m["compile_s"]), f"{acc['mean_sum_rate']:.4g}"])
    out.append("\n### (e) WMMSE\n")
    out.append(markdown_table(["impl", "batch", "iterations", "drops/s", "median", "min .. max", "compile",
                               "mean sum rate"], rows))
    if "wmmse_jaxpass_over_plain" in ratios:
        out.append(f"\njaxpass / plain WMMSE: {fmt_ratio(ratios['wmmse_jaxpass_over_plain'])}")

    rows = []
    chan = _find(records, "ceiling", "channel_jaxpass")
    pe = chan["metrics"]["path_elements_per_s"] if chan else None
    for r in records:
        if r["section"] == "ceiling" and r["impl"] != "channel_jaxpass":
            m = r["metrics"]
            if "elements_per_s" in m:
                rows.append([r["impl"], f"{r['params']['n']}", f"{fmt_num(m['elements_per_s'])} elem/s",
                             fmt_ratio(pe / m["elements_per_s"]) if pe else "n/a"])
            else:
                rows.append([r["impl"], f"{r['params']['n']}^2", f"{m['flops_per_s'] / 1e9:.3g} GFLOP/s",
                             f"{pe / m['flops_per_s']:.3g} path-elem/FLOP" if pe else "n/a"])
    if pe:
        rows.append([f"channel (jaxpass, B={chan['params']['batch']})", "", f"{fmt_num(pe)} path-elem/s", "1x"])
    out.append("\n### (f) machine ceiling vs channel path-elements/s (all timed interleaved; elementwise "
               "kernels on as many elements as the channel's path elements)\n")
    out.append(markdown_table(["kernel", "size", "throughput", "channel path-elem/s ÷ this"], rows))
    if "channel_path_elements_over_numpy_sin" in ratios:
        out.append(f"\nchannel path-elements/s over NumPy np.sin elements/s (same array size): "
                   f"{fmt_ratio(ratios['channel_path_elements_over_numpy_sin'])}")

    rows = []
    for r in records:
        if r["memory"] and r["section"] in ("channel", "grad", "wmmse", "channel_vs_L", "channel_vs_K"):
            mem = r["memory"]
            rows.append([r["id"], f"{mem['peak_bytes_per_drop']:.4g}", f"{mem['temp_bytes_per_drop']:.4g}",
                         f"{mem['argument_bytes_per_drop']:.4g}", f"{mem['output_bytes_per_drop']:.4g}"])
    out.append("\n### (g) memory per drop from compiled.memory_analysis() [bytes]\n")
    out.append(markdown_table(["record", "peak", "temp", "args", "outputs"], rows) if rows
               else "(not reported by this backend)")

    out.append("\n### ratios (a/b throughput; > 1 means a is faster)\n")
    out.append(markdown_table(["ratio", "value"], [[k, f"{v:.4g}"] for k, v in ratios.items()]))
    return "\n".join(out)


def plot(records, s, path: Path) -> Path | None:
    """(h): drops/s vs batch, path-elements/s vs L and vs K."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import EngFormatter, NullFormatter, NullLocator
    except ImportError:  # pragma: no cover - matplotlib is a dependency, but stay graceful
        log("[throughput] matplotlib missing; no figure")
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
    ax = axes[0]
    for section, impl, key, label, style in (
        ("channel", "jaxpass", "drops_per_s", "channel (jaxpass, jax.jit)", "o-"),
        ("channel", "jp_jit", "drops_per_s", "channel (jaxpass, jp.jit option)", "o:"),
        ("channel", "naive_jax", "drops_per_s", "channel (naive JAX)", "s--"),
        ("grad", "jaxpass", "drop_steps_per_s", "value_and_grad ZF sum rate (jax.jit)", "^-"),
        ("grad", "jp_jit", "drop_steps_per_s", "value_and_grad ZF sum rate (jp.jit option)", "^:"),
    ):
        pts = sorted((r["params"]["batch"], r["metrics"][key]) for r in records
                     if r["section"] == section and r["impl"] == impl)
        if pts:
            ax.plot(*zip(*pts), style, label=label)
    ref = [r["metrics"]["drops_per_s"] for r in records if r["section"] == "channel" and r["impl"] == "numpy_loop"]
    if ref:
        ax.axhline(float(np.median(ref)), color="gray", ls=":", label="channel (NumPy loop, f64)")
    ax.set(xscale="log", yscale="log", xlabel="batch (drops)", ylabel="drops/s", title="throughput vs batch")
    ax.yaxis.set_major_formatter(EngFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    batches = sorted(set(s["batches"]) | set(s["grad_batches"]))
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.legend(fontsize=8)
    for ax, section, key, xlabel in ((axes[1], "channel_vs_L", "L", "L (pinches per waveguide), K = N = 4"),
                                     (axes[2], "channel_vs_K", "K", "K = N (users = waveguides), L = 8")):
        pts = sorted((r["params"][key], r["metrics"]["path_elements_per_s"]) for r in records
                     if r["section"] == section)
        ax.set_xscale("log", base=2)
        if pts:
            ax.plot(*zip(*pts), "o-")
            ax.set_xticks([p[0] for p in pts], [str(p[0]) for p in pts])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(EngFormatter())
        ax.set(xlabel=xlabel, ylabel="path-elements/s", title=f"channel forward, batch {s['sweep_batch']}")
        ax.set_ylim(bottom=0)
    fig.suptitle(f"jaxpass throughput on {common.device_name()} (float32)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------- driver
def run(quick: bool = False, out_dir: Path | None = None) -> dict:
    """Run every section, print the tables, write JSON + PNG; return the JSON payload's parts."""
    s = dict(QUICK if quick else FULL)
    out_dir = Path(out_dir) if out_dir is not None else common.default_out_dir(quick)
    cfg = base_config()
    t_start = time.perf_counter()
    records: list = []
    ratios: dict = {}
    mesh = bench_mesh()
    if mesh is not None:
        log(f"[throughput] {mesh.devices.size} devices: the drop-batched rows run sharded over all of them")
    bench_channel(cfg, s, records, ratios, mesh)
    bench_sweeps(s, records, ratios, mesh)
    bench_wmmse(cfg, s, records, ratios, mesh)
    bench_ceiling(cfg, s, records, ratios)
    ceiling_ratios(records, s, ratios)
    wall = time.perf_counter() - t_start

    config = dict(preset="joint_beamforming", dtype="float32", K=cfg.num_users, N=cfg.num_waveguides,
                  L=cfg.num_pinches, cis_method=jp.phase.resolve_method(jnp.float32),
                  xla_defaults_active=jp_compile.xla_defaults_active(), jp_jit_compiler_options=jp_jit_options(),
                  ceiling_elements=ceiling_elements(cfg, s), devices=1 if mesh is None else mesh.devices.size, **s)
    accept = acceptance(records, ratios)
    memory_rows = device_memory(memory_estimate(cfg, s, mesh))
    json_path = common.write_result(NAME, config=config, records=records, ratios=ratios, out_dir=out_dir,
                                    quick=quick, extra={"acceptance": accept, "device_memory": memory_rows,
                                                        "wall_s": wall})
    png_path = plot(records, s, common.result_path(out_dir, NAME, "png"))

    env = common.environment()
    print(f"## jaxpass throughput — {env['device']} ({env['cpu_model'] or env['device_kind']}), "
          f"jax {env['jax_version']}, {'quick' if quick else 'full'} run\n")
    print(f"Config: JB preset K=N={cfg.num_users}, L={cfg.num_pinches}, float32, cis method "
          f"'{config['cis_method']}'; timings: compile first, then >= {s['repeats']} calls and "
          f">= {s['min_time']} s (median; spread = min .. max).\n")
    print(report(records, ratios, s, config))
    print("\n" + device_memory_report(memory_rows))
    print(f"\nwall time {wall:.1f} s; wrote {json_path}" + (f" and {png_path}" if png_path else ""))
    print("\n" + acceptance_report(accept, quick))
    return {"config": config, "records": records, "ratios": ratios, "acceptance": accept, "json": json_path,
            "png": png_path, "device_memory": memory_rows}


def main(argv=None) -> int:
    return common.standalone_main("benchmarks.throughput", run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Data-parallel scaling over simulated CPU devices: drops/s on 1, 2, 4, 8 devices (``jaxpass.parallel``).

Run ``python -m benchmarks.scaling [--quick] [--out DIR]``. It is not in the
``python -m benchmarks`` suite (``SUITE``): it starts one process per device
count and compiles every kernel four times.

A JAX process fixes its device count when its backend starts, so every device
count ``D`` runs in its own subprocess with
``--xla_force_host_platform_device_count=D`` (CPU devices simulated by XLA:
they share the machine's cores). Each process builds the ``("drops",)`` mesh
(:func:`jaxpass.parallel.drops_mesh`), shards a batch of drops over it
(:func:`jaxpass.parallel.shard_drops`; the batch sizes are multiples of 8, so
no padding) and times, compile first, then ``jax.block_until_ready`` per call
(``benchmarks.common.time_fn``):

* ``channel``: ``jax.jit(jax.vmap(effective_channel))`` on ``(B, N, L)``
  positions and ``(B, K, 2)`` users (drops/s);
* ``grad``: one ZF-sum-rate value-and-gradient step w.r.t. the positions,
  ``jax.vmap(jax.value_and_grad(loss))`` (drop-steps/s);
* ``tune``: :func:`jaxpass.optimize.tune_positions`'s compiled batch
  (``tune_batch``) with short options (drops/s).

Reported per section and device count: drops/s, the speed-up over 1 device
and the per-device efficiency ``speed-up / D``; and per device count, each
device's memory (``benchmarks.throughput.device_memory``): the peak from
``device.memory_stats()`` where the backend reports it (GPU, TPU), else (CPU,
where it is None) the estimate of :mod:`jaxpass.experiments.memory` for the
largest batch share of one device, marked as an estimate. On a machine with fewer cores
than simulated devices (e.g. the 2-core CI VM) the devices only split the same
cores: the numbers then show the sharding overhead, not a speed-up. Real
scaling needs real devices (several GPUs, a TPU slice, several hosts: README,
"Scaling out").

JSON (``<out>/scaling-<device>.json``, schema_version 1): the common envelope
(``benchmarks.common.write_result``) with ``records`` ``{"id":
"<section>/devices=<D>", "section", "impl": "sharded", "params": {"devices",
"batch", ...}, "repeats", "metrics": {"median_s", ..., "compile_s",
"drops_per_s", "speedup", "efficiency"}}``, ``config["cpu_count"]`` and
``device_memory`` ``{"<D>": [{"device", "kind", "source": "memory_stats" |
"estimate", "peak_bytes", ...}, ...]}`` per device count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

NAME = "scaling"
DEVICE_COUNTS = (1, 2, 4, 8)
SECTIONS = ("channel", "grad", "tune")
FULL = dict(batch={"channel": 16384, "grad": 4096, "tune": 64}, tune_steps=50, repeats=5, min_time=1.0,
            max_time=20.0)
QUICK = dict(batch={"channel": 1024, "grad": 256, "tune": 8}, tune_steps=5, repeats=3, min_time=0.1,
             max_time=2.0)
TUNE_OPTIONS = dict(starts=2, assignments=4, spacings=(0.0,), random_starts=1)


# ------------------------------------------------------------------ one device count (a subprocess)
def memory_estimate(devices: int, quick: bool) -> int:
    """Estimated peak of one device [bytes] (:mod:`jaxpass.experiments.memory`): the largest of the sections'
    estimates (evaluation for channel and grad, tuning for tune) for one device's share of each batch."""
    from benchmarks.throughput import base_config
    from jaxpass.experiments import memory

    s = QUICK if quick else FULL
    cfg = base_config()
    K, N, L = cfg.num_users, cfg.num_waveguides, cfg.num_pinches
    tune = dict(TUNE_OPTIONS, steps=s["tune_steps"])
    return max(memory.demo_bytes(K, N, L, max(s["batch"]["channel"], s["batch"]["grad"]), tune_steps=0,
                                 devices=devices),
               memory.tune_command_bytes(K, N, L, s["batch"]["tune"], tune, devices=devices))


def worker(devices: int, quick: bool) -> dict:
    """Time every section on a ``devices``-device mesh: ``{"records": [...] (without speed-up),
    "device_memory": [...]}`` (``benchmarks.throughput.device_memory``)."""
    import jax
    import jax.numpy as jnp

    import jaxpass as jp
    from benchmarks import common
    from benchmarks.throughput import (
        base_config,
        device_memory,
        jaxpass_channel,
        make_drops,
        zf_sum_rate_wrt_positions,
    )
    from jaxpass import parallel
    from jaxpass.optimize import positions

    assert jax.device_count() == devices, (jax.device_count(), devices)
    s = QUICK if quick else FULL
    mesh = parallel.drops_mesh()
    cfg = base_config()
    kw = dict(repeats=s["repeats"], min_time=s["min_time"], max_time=s["max_time"])
    records = []

    def record(section, timing, batch, **params):
        metrics = dict(timing.metrics(), drops_per_s=timing.per_second(batch))
        records.append({"id": f"{section}/devices={devices}", "section": section, "impl": "sharded",
                        "params": {"devices": devices, "batch": batch, **params}, "repeats": timing.repeats,
                        "metrics": metrics})
        common.log(f"[scaling] {section}, {devices} device(s): {metrics['drops_per_s']:.4g} drops/s "
                   f"(compile {timing.compile_s:.1f} s)")

    B = s["batch"]["channel"]
    X, users = make_drops(cfg, B)
    (Xs, Us), _ = parallel.shard_drops(mesh, X, users)
    record("channel", common.time_fn(jaxpass_channel(cfg), Xs, Us, **kw), B)

    B = s["batch"]["grad"]
    X, users = make_drops(cfg, B)
    (Xs, Us), _ = parallel.shard_drops(mesh, X, users)
    step = jax.vmap(jax.value_and_grad(zf_sum_rate_wrt_positions(cfg)))
    record("grad", common.time_fn(step, Xs, Us, **kw), B)

    B = s["batch"]["tune"]
    opts = positions.TuneOptions(steps=s["tune_steps"], **TUNE_OPTIONS)
    users = jp.sample_users(jax.random.key(0), cfg, (B,)).astype(jnp.float32)
    keys = jax.random.split(jax.random.key(1), B)
    (Ks, Us), _ = parallel.shard_drops(mesh, keys, users)
    run = lambda k, u: positions.tune_batch(k, cfg, u, opts)  # noqa: E731
    record("tune", common.time_fn(run, Ks, Us, **kw), B, steps=opts.steps, starts=opts.starts)
    return {"records": records, "device_memory": device_memory(memory_estimate(devices, quick))}


def _spawn(devices: int, quick: bool) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"))
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "benchmarks.scaling", "--worker", str(devices)] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"scaling worker with {devices} device(s) failed (exit status {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the suite entry
def memory_report(device_memory: dict) -> str:
    """Per device count, each device's peak memory and where the number comes from (markdown)."""
    from benchmarks import common
    from jaxpass.experiments.memory import format_bytes

    rows = []
    for count, devs in device_memory.items():
        for d in devs:
            peak = "n/a" if d["peak_bytes"] is None else format_bytes(d["peak_bytes"])
            rows.append([count, d["device"], peak, "device.memory_stats()" if d["source"] == "memory_stats"
                         else "ESTIMATE (jaxpass.experiments.memory; memory_stats() is None on this backend)"])
    return "### per-device memory\n\n" + common.markdown_table(["devices", "device", "peak", "source"], rows)


def report(records: list, cpu_count: int) -> str:
    from benchmarks import common

    rows = [[r["section"], r["params"]["devices"], r["params"]["batch"], common.fmt_num(r["metrics"]["drops_per_s"]),
             common.fmt_ratio(r["metrics"]["speedup"]), f"{100 * r['metrics']['efficiency']:.0f} %",
             common.fmt_time(r["metrics"].get("compile_s"))] for r in records]
    table = common.markdown_table(["section", "devices", "batch", "drops/s", "speed-up", "per-device efficiency",
                                   "compile"], rows)
    note = (f"\n\nThis machine has {cpu_count} CPU core(s): simulated devices beyond that share the same cores, so "
            "these numbers show the sharding overhead, not a speed-up (README, \"Scaling out\").")
    return table + (note if cpu_count < max(DEVICE_COUNTS) else "")


def run(quick: bool = False, out_dir: Path | None = None) -> dict:
    """Time every section on 1, 2, 4, 8 devices (one subprocess each); print the table, write the JSON."""
    from benchmarks import common

    s = QUICK if quick else FULL
    out_dir = Path(out_dir) if out_dir is not None else common.default_out_dir(quick)
    t_start = time.perf_counter()
    records, device_memory = [], {}
    for devices in DEVICE_COUNTS:
        out = _spawn(devices, quick)
        records += out["records"]
        device_memory[str(devices)] = out["device_memory"]
    base = {r["section"]: r["metrics"]["drops_per_s"] for r in records if r["params"]["devices"] == 1}
    for r in records:
        speedup = r["metrics"]["drops_per_s"] / base[r["section"]]
        r["metrics"].update(speedup=speedup, efficiency=speedup / r["params"]["devices"])
    ratios = {f"{r['section']}_efficiency_{r['params']['devices']}": r["metrics"]["efficiency"] for r in records}
    wall = time.perf_counter() - t_start
    cpu_count = os.cpu_count() or 1
    config = dict(preset="joint_beamforming", dtype="float32", device_counts=list(DEVICE_COUNTS),
                  simulated_devices="xla_force_host_platform_device_count", cpu_count=cpu_count,
                  tune_options=dict(TUNE_OPTIONS, spacings=list(TUNE_OPTIONS["spacings"]), steps=s["tune_steps"]),
                  **{k: v for k, v in s.items() if k != "tune_steps"})
    path = common.write_result(NAME, config=config, records=records, ratios=ratios, out_dir=out_dir, quick=quick,
                               extra={"device_memory": device_memory, "wall_s": wall})
    env = common.environment()
    print(f"## jaxpass data-parallel scaling — {env['device']}, jax {env['jax_version']}, "
          f"{'quick' if quick else 'full'} run\n")
    print(report(records, cpu_count))
    print("\n" + memory_report(device_memory))
    print(f"\nwall time {wall:.1f} s; wrote {path}")
    return {"config": config, "records": records, "ratios": ratios, "device_memory": device_memory, "json": path}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--worker" in argv:  # internal: one device count, records as one JSON line on stdout
        devices = int(argv[argv.index("--worker") + 1])
        print(json.dumps(worker(devices, "--quick" in argv)))
        return 0
    from benchmarks import common

    return common.standalone_main("benchmarks.scaling", run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

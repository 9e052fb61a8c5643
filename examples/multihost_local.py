"""Several JAX processes on this machine: ``jax.distributed`` + a global ``("drops",)`` mesh (a CPU rehearsal).

This script starts ``--processes`` copies of itself (default 2), each with
``--devices-per-process`` simulated CPU devices (default 2: 4 global devices)
and gloo collectives, as a cluster launcher (SLURM ``srun``, ``mpirun``, a
Kubernetes Job) would start one process per host. Every process runs the same
program: ``jaxpass.parallel.initialize()`` reads ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, draws the same drops from the same
seed, and ``tune_positions(..., mesh=drops_mesh())`` tunes them data-parallel
over all 4 devices (each process computes the drops of its own devices; the
result is gathered to every process). It then scores a ``jaxpass reproduce
table1`` row (uniform + ZF on the table's drops) over the same mesh, and
trains a small KDL-ResNet for 4 steps data-parallel over the 4 devices
(:func:`jaxpass.learn.train.train`, batch 8 sharded, orbax checkpoints at steps
2 and 4 written by both processes into one folder); then a 6-step run is
stopped after its step-4 checkpoint (as a killed job) and resumed from it on
both processes, and compared with the same run uninterrupted (bit-identical).
Process 0 runs the training on one local device too (4 and 6 steps,
uninterrupted, no files) and compares: the tuning and the row are identical, the trained and the
resumed parameters equal to float32 rounding.

Run: python examples/multihost_local.py [--processes 2] [--devices-per-process 2] [--drops 6]
On a real cluster drop the launcher part: start the worker code (``worker()``)
once per host with the JAX_* variables set (README, "Scaling out").
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time


def worker(args) -> None:
    """One process of the job (the code every host runs)."""
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", args.devices_per_process)  # before the first computation
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # cross-process collectives on CPU

    import numpy as np
    from flax import nnx

    import jaxpass as jp
    from jaxpass import parallel
    from jaxpass.experiments import table1

    parallel.initialize()  # JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID
    mesh = parallel.drops_mesh()  # all devices of all processes
    cfg = jp.PassConfig.joint_beamforming(num_users=2, num_waveguides=2, num_pinches=4)
    users = jp.sample_users(jax.random.key(0), cfg, (args.drops,))  # the same drops on every process
    opts = dict(steps=args.steps, starts=1, assignments=2, spacings=(0.0,), random_starts=1)
    t0 = time.perf_counter()
    res = jp.optimize.tune_positions(cfg, users, key=jax.random.key(1), mesh=mesh, **opts)
    seconds = time.perf_counter() - t0
    ts = table1.Settings(num_pinches=(4,), drops=args.drops, wmmse_iterations=2)  # a table1 row, sharded
    t_cfg = table1.table_config(4)
    t_users = table1.table_drops(t_cfg, args.drops)
    row = table1.run_row("uniform_zf", t_cfg, t_users, ts, mesh=mesh)
    # training, data-parallel over the 4 global devices (each process feeds its devices' shards of every batch),
    # with orbax checkpoints written by both processes into one shared folder
    from jaxpass.learn import checkpoint as ckpt
    from jaxpass.learn import train as tr

    topts = tr.TrainOptions(model="kdl-resnet", model_kwargs=dict(width=8, hidden=16, num_blocks=1), steps=4,
                            batch_size=8, train_drops=32, test_drops=4, eval_every=2, log_every=2, checkpoint_every=2)
    train_dir = args.train_dir or os.path.join(os.getcwd(), "multihost-train")
    trained = tr.train(cfg, topts, out_dir=train_dir, progress=False)
    # a 6-step run stopped after its step-4 checkpoint (as a job killed there), then restarted: every process
    # resumes the same folder from step 4 to step 6
    topts6, resume_dir = topts.replace(steps=6), train_dir + "-resume"

    def stop_at_4(record):
        if record["step"] == 4:
            raise _Stopped

    try:
        tr.train(cfg, topts6, out_dir=resume_dir, progress=False, callback=stop_at_4)
    except _Stopped:
        pass
    stopped_at = ckpt.checkpoint_steps(os.path.join(resume_dir, "checkpoints"))
    resumed = tr.train(cfg, topts6, out_dir=resume_dir, resume=True, progress=False)
    uninterrupted = tr.train(cfg, topts6, progress=False)  # the same 6 steps on the same 4 devices, no stop
    rank = jax.process_index()
    resume_identical = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
        *(jax.tree.leaves(nnx.state(m.model, nnx.Param)) for m in (resumed, uninterrupted)), strict=True))
    out = {"resume_bit_identical": resume_identical, "process": rank, "process_count": jax.process_count(), "global_devices": jax.device_count(),
           "local_devices": jax.local_device_count(), "drops": args.drops, "seconds": seconds,
           "sum_rate": np.asarray(res.sum_rate).tolist(), "positions": np.asarray(res.positions).tolist(),
           "table1_uniform_zf": np.asarray(row.rates).tolist()}
    if rank == 0:  # the same call on one local device: the single-process result
        ref = jp.optimize.tune_positions(cfg, users, key=jax.random.key(1), **opts)
        diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                 for a, b in zip(jax.tree.leaves(res), jax.tree.leaves(ref), strict=True)]
        one = table1.run_row("uniform_zf", t_cfg, t_users, ts)
        diffs.append(float(np.max(np.abs(np.asarray(row.rates) - np.asarray(one.rates)))))
        out["max_abs_diff_vs_one_device"] = max(diffs)
        out["identical_to_one_device"] = all(d == 0.0 for d in diffs)
        one = jax.local_devices()[:1]
        alone = tr.train(cfg, topts, devices=one, progress=False)  # one device, no files
        # (no out_dir: an orbax checkpoint manager is collective, one process alone would wait for the other)
        alone6 = tr.train(cfg, topts6, devices=one, progress=False)  # 6 steps uninterrupted, one device
        out["train_max_rel_diff_vs_one_device"] = _max_rel_diff(trained.model, alone.model)
        out["resumed_max_rel_diff_vs_one_device"] = _max_rel_diff(resumed.model, alone6.model)
        out["resumed_step"] = int(resumed.step)
        out["checkpoint_steps"] = ckpt.checkpoint_steps(os.path.join(train_dir, "checkpoints"))
        out["stopped_at_checkpoints"] = stopped_at
        out["checkpoint_steps_after_resume"] = ckpt.checkpoint_steps(os.path.join(resume_dir, "checkpoints"))
    print(f"process {rank}/{jax.process_count()}: {jax.device_count()} global devices "
          f"({jax.local_device_count()} local), {args.drops} drops tuned in {seconds:.1f} s (with compilation), "
          f"mean sum rate {float(np.mean(out['sum_rate'])):.3f} bps/Hz, table1 uniform + ZF row "
          f"{float(np.mean(out['table1_uniform_zf'])):.3f} bps/Hz"
          + (f"; identical to one device: {out['identical_to_one_device']}; training on 4 devices vs one: max "
             f"relative parameter difference {out['train_max_rel_diff_vs_one_device']:.1e}, checkpoints at steps "
             f"{out['checkpoint_steps']}; a 6-step run stopped at step 4 and resumed: bit-identical to the "
             f"uninterrupted run: {resume_identical}, vs 6 steps on one device: "
             f"{out['resumed_max_rel_diff_vs_one_device']:.1e}" if rank == 0 else ""),
          flush=True)
    if args.json:
        with open(args.json.format(process=rank), "w") as fh:
            json.dump(out, fh)


class _Stopped(Exception):
    """Raised by a training callback: the job "dies" after a checkpoint."""


def _max_rel_diff(a, b) -> float:
    """Largest parameter difference of two models, relative to the largest parameter of ``b``."""
    import jax
    import numpy as np
    from flax import nnx

    pa, pb = (jax.tree.leaves(nnx.state(m, nnx.Param)) for m in (a, b))
    scale = max(float(np.max(np.abs(np.asarray(y)))) for y in pb)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(pa, pb, strict=True)) / scale


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(args) -> int:
    """Start the processes (what srun / mpirun / a Kubernetes Job does on a cluster); their worst exit status."""
    address = f"localhost:{free_port()}"
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--devices-per-process",
           str(args.devices_per_process), "--drops", str(args.drops), "--steps", str(args.steps)]
    if args.json:
        cmd += ["--json", args.json]
    cmd += ["--train-dir", args.train_dir or os.path.join(os.getcwd(), f"multihost-train-{address.split(':')[1]}")]
    procs = []
    for rank in range(args.processes):
        env = dict(os.environ, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES=str(args.processes),
                   JAX_PROCESS_ID=str(rank), JAX_PLATFORMS="cpu")
        procs.append(subprocess.Popen(cmd, env=env))
    deadline = time.monotonic() + args.timeout
    codes = []
    try:
        for p in procs:
            codes.append(p.wait(timeout=max(deadline - time.monotonic(), 1.0)))
    except subprocess.TimeoutExpired:
        print(f"timed out after {args.timeout} s", file=sys.stderr)
        return 124
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return max(codes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=2, help="JAX processes (hosts) to start")
    ap.add_argument("--devices-per-process", type=int, default=2, help="simulated CPU devices per process")
    ap.add_argument("--drops", type=int, default=6, help="drops tuned (need not divide the device count)")
    ap.add_argument("--steps", type=int, default=5, help="tuning steps per start")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before the processes are stopped")
    ap.add_argument("--json", help="write each process's result to this path ({process} is its index)")
    ap.add_argument("--train-dir", help="folder of the training run's checkpoints (default: a new one here)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    return launch(args)


if __name__ == "__main__":
    sys.exit(main())

"""jaxpass.parallel: the drops mesh, padding and sharding, and every wired driver sharded = unsharded.

The device count of a JAX process is fixed when its backend starts, so the
8-device checks run in a subprocess with ``--xla_force_host_platform_device_count=8``
and the multi-process check starts 2 processes (2 CPU devices each, gloo
collectives) through ``examples/multihost_local.py``. The batches hold 13
drops (not a multiple of 8 or 4: the padding is exercised).
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from conftest import optimised_env

from jaxpass import parallel

ROOT = pathlib.Path(__file__).parent.parent

PRELUDE = textwrap.dedent("""
    import dataclasses
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    import jaxpass as jp
    from jaxpass import parallel
    assert jax.device_count() == 8, jax.devices()
    mesh = parallel.drops_mesh()
    stats = {"bitwise": 0, "leaves": 0}

    def same(a, b, rtol=1e-6, atol=0.0):
        la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
        assert len(la) == len(lb) and la, (len(la), len(lb))
        for x, y in zip(la, lb):
            x, y = np.asarray(x), np.asarray(y)
            assert x.shape == y.shape and x.dtype == y.dtype, (x.shape, y.shape, x.dtype, y.dtype)
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)
            stats["leaves"] += 1
            stats["bitwise"] += bool(np.array_equal(x, y, equal_nan=True))
""")

CORE = textwrap.dedent("""
    assert mesh.devices.size == 8 and mesh.axis_names == ("drops",) and parallel.drops_mesh(3).devices.size == 3
    for bad in (0, 9):
        try:
            parallel.drops_mesh(bad)
        except ValueError as err:
            assert str(err) == f"devices must be between 1 and the 8 local device(s), got {bad}", str(err)
        else:
            raise AssertionError(bad)
    x = np.arange(13 * 3, dtype=np.float32).reshape(13, 3)
    (xs,), pad = parallel.shard_drops(mesh, x)
    assert pad == 3 and xs.shape == (16, 3) and xs.sharding.spec == P("drops"), (pad, xs.shape, xs.sharding)
    assert len(xs.addressable_shards) == 8 and all(s.data.shape == (2, 3) for s in xs.addressable_shards)
    np.testing.assert_array_equal(np.asarray(xs)[13:], np.tile(x[-1:], (3, 1)))  # the last drop repeated
    np.testing.assert_array_equal(np.asarray(parallel.unpad(xs, pad)), x)

    # the channel + ZF sum rate of a batch through map_drops
    cfg = jp.PassConfig.joint_beamforming(num_users=2, num_waveguides=2, num_pinches=4)
    users = jp.sample_users(jax.random.key(0), cfg, (13,))
    X = jp.uniform_positions(cfg)

    @jax.jit
    def rates(users):
        def one(u):
            H = jp.effective_channel(cfg, X, u)
            return jp.sum_rate(H, jp.beamforming.zf(H, cfg.power), cfg.noise_power)
        return jax.vmap(one)(users)

    (us,), _ = parallel.shard_drops(mesh, users)
    r16 = rates(us)  # XLA partitions the batch: the output stays sharded over the 8 devices
    assert r16.sharding.spec == P("drops") and len(r16.sharding.device_set) == 8, r16.sharding
    r8 = parallel.map_drops(rates, users, mesh=mesh)
    same(r8, rates(users))

    # tune_positions: same drops, same keys per drop, same results
    opts = dict(steps=4, starts=2, assignments=2, spacings=(0.0,), random_starts=1)
    one = jp.optimize.tune_positions(cfg, users, key=jax.random.key(1), **opts)
    eight = jp.optimize.tune_positions(cfg, users, key=jax.random.key(1), mesh=mesh, **opts)
    same(eight, one)
    single = jp.optimize.tune_positions(cfg, users[5], key=jax.random.key(1), mesh=mesh, **opts)  # one drop
    assert single.positions.shape == (2, 4), single.positions.shape

    # SSCA and its held-out rate: the blocks are the batch (3 blocks on 8 devices: 5 padding blocks)
    from jaxpass.optimize import ssca
    from jaxpass.experiments import sweeps, table1, two_timescale as tt
    placed, place = [], parallel.place
    def counted(mesh, *args, **kwargs):  # every sharded call goes through parallel.place: (devices, padding)
        out = place(mesh, *args, **kwargs)
        placed.append((mesh.devices.size, out[2]))
        return out
    parallel.place = counted
    tc = jp.PassConfig.two_timescale(num_users=2, num_waveguides=2, num_pinches=3)
    homes = tt.block_homes(tc, 3, 0)
    so = ssca.SscaOptions(iterations=2, slots_per_iteration=4, init="uniform", short_term="rzf")
    s8 = ssca.ssca(tc, homes, so, key=jax.random.key(1), mesh=mesh)
    assert s8.positions.shape == (3, 2, 3) and s8.X.shape == (3, 2, 2, 3), s8.X.shape
    same(s8, ssca.ssca(tc, homes, so, key=jax.random.key(1)))
    ho = dict(key=jax.random.key(2), num_slots=4)
    h8 = ssca.held_out_rate(tc, s8.positions, homes, so, mesh=mesh, **ho)
    assert h8.shape == (3,), h8.shape
    same(h8, ssca.held_out_rate(tc, s8.positions, homes, so, **ho))

    # a `jaxpass reproduce table1` row and a `reproduce sweeps` point: 3 drops sharded = one device
    ts = table1.Settings(num_pinches=(4,), drops=3, wmmse_iterations=2)
    c1 = table1.table_config(4)
    u1 = table1.table_drops(c1, 3)
    a, b = table1.run_row("uniform_zf", c1, u1, ts, mesh=mesh), table1.run_row("uniform_zf", c1, u1, ts)
    assert a.rates.shape == (3,) and a.row == "uniform_zf"
    same((a.rates, a.feasible), (b.rates, b.feasible))
    ws = sweeps.Settings(figures=("power",), methods=("uniform_wmmse",), drops=3, powers_dbm=(10.0,),
                         wmmse_iterations=2)
    a, b = (sweeps.run_sweeps(ws, mesh=m)["figures"]["power"]["methods"]["uniform_wmmse"] for m in (mesh, None))
    same((a["mean"], a["std"]), (b["mean"], b["std"]))
    assert placed == [(8, 5)] * 4, placed  # ssca, held_out_rate, the table1 row, the sweeps point
    print("OK", stats)
""")

PRELUDE_SOLVERS = textwrap.dedent("""
    from jaxpass.optimize import energy as E, mimo, mm_pdd, power_min as pm
""")

SOLVERS = PRELUDE_SOLVERS + textwrap.dedent("""

    cfg = jp.PassConfig.joint_beamforming(num_users=2, num_waveguides=2, num_pinches=3)
    users = jp.sample_users(jax.random.key(0), cfg, (13,))
    kw = dict(max_outer=2, max_inner=3)
    # MM-PDD's working precision is float64 (float32 iterates agree to ~4e-6 only); its residual B_inf
    # (~1e-5, differences of phases ~2.6e4 rad) agrees to ~1e-9 absolute. The final state's duals are
    # left out: they are residual / rho, so rounding differences are amplified by 1 / rho (1e4).
    core = lambda r: r._replace(state=(r.state.X, r.state.D))  # noqa: E731
    with jax.enable_x64(True):
        u64 = jnp.asarray(np.asarray(users), jnp.float64)
        same(core(mm_pdd.mm_pdd(cfg, u64, mesh=mesh, **kw)), core(mm_pdd.mm_pdd(cfg, u64, **kw)), atol=1e-8)
        X0 = jnp.broadcast_to(jp.uniform_positions(cfg, jnp.float64), (13, 2, 3))
        same(core(mm_pdd.mm_pdd(cfg, u64, X0=X0, D0="mrt", mesh=mesh, **kw)),
             core(mm_pdd.mm_pdd(cfg, u64, X0=X0, D0="mrt", **kw)), atol=1e-8)
    same(mimo.digital(cfg, users, mesh=mesh, wmmse_iterations=5), mimo.digital(cfg, users, wmmse_iterations=5))
    hk = dict(key=jax.random.key(2), iterations=3, initial_wmmse_iterations=3)
    same(mimo.hybrid(cfg, users, mesh=mesh, **hk), mimo.hybrid(cfg, users, **hk))

    print("OK", stats)
""")

SOLVERS_X64 = PRELUDE_SOLVERS + textwrap.dedent("""
    # float64 below: in float32 one ulp of a 10 m position turns a 28 GHz phase by ~5e-3 rad, so
    # two compilations (batch 13 on one device, 2 per device on 8) give beamformers ~1e-2 apart
    with jax.enable_x64(True):
        pb = jp.PassConfig.power_min_blockage()
        pu = jnp.asarray(np.asarray(jp.sample_users(jax.random.key(4), pb, (13,))), jnp.float64)
        same(pm.pgd(pb, pu, 10.0, iterations=5, mesh=mesh), pm.pgd(pb, pu, 10.0, iterations=5))
        lk = dict(key=jax.random.key(5), starts=2, iterations=4)
        same(pm.projected_lbfgs(pb, pu, 10.0, mesh=mesh, **lk), pm.projected_lbfgs(pb, pu, 10.0, **lk))
        ek = dict(grid=11, refine=1, refine_points=5, noise_power=np.full((13,), 1e-12))
        same(pm.exhaustive_search(pb, pu, 10.0, mesh=mesh, **ek), pm.exhaustive_search(pb, pu, 10.0, **ek))

        ee = jp.PassConfig.energy_efficiency(num_pinches=4, num_users=2)
        fit = jnp.asarray(np.asarray(jp.sample_users(jax.random.key(6), ee, (3,))), jnp.float64)
        fresh = jnp.asarray(np.asarray(jp.sample_users(jax.random.key(7), ee, (13,))), jnp.float64)
        fa = E.fixed_antenna(ee, fit)
        dyn = dataclasses.replace(fa, kind="dynamic", split=np.full((4,), 0.4), positions=np.zeros((3, 4)))
        for design, opts in ((fa, {}), (dyn, dict(grid_points=33, outer_iterations=1))):
            a, b = E.held_out(ee, design, fresh, mesh=mesh, **opts), E.held_out(ee, design, fresh, **opts)
            assert a.ee.shape == (13,) and a.scored_on == "held-out"
            same((a.positions, a.power, a.ee, a.se), (b.positions, b.power, b.ee, b.se))
            np.testing.assert_allclose(a.history, b.history, rtol=1e-6)
    print("OK", stats)
""")


def run_8(body: str):
    env = optimised_env(dict(os.environ))  # the optimised code users run, compared to 1e-6
    env.update(XLA_FLAGS=env["XLA_FLAGS"] + " --xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", PRELUDE + body], env=env, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_place_shards_batched_arguments_and_replicates_the_rest():
    mesh = parallel.drops_mesh(1)
    X, w, k = np.arange(6.0).reshape(3, 2), np.float32(2.0), np.arange(3.0)
    (Xp, wp), kw, pad = parallel.place(mesh, (X, w), (0, None), {"k": k, "c": w}, ("k",))
    assert pad == 0 and set(kw) == {"k", "c"}
    np.testing.assert_array_equal(np.asarray(Xp), X)
    np.testing.assert_array_equal(np.asarray(kw["k"]), k)
    assert float(wp) == 2.0 and float(kw["c"]) == 2.0
    assert Xp.sharding.spec[0] is not None and wp.sharding.is_fully_replicated  # the drop axis is the sharded one


def test_mesh_errors_and_padding_in_process():
    n = jax.local_device_count()
    for bad in (0, n + 1, -1):
        with pytest.raises(ValueError) as err:
            parallel.drops_mesh(bad)
        assert str(err.value) == f"devices must be between 1 and the {n} local device(s), got {bad}"
    with pytest.raises(ValueError, match="^devices must hold at least one device, got an empty sequence$"):
        parallel.drops_mesh([])
    with pytest.raises(TypeError, match="^devices must be None, an int or a sequence of devices, got 'gpu'$"):
        parallel.drops_mesh("gpu")
    mesh = parallel.drops_mesh(1)
    assert mesh.axis_names == ("drops",) and mesh.devices.size == 1
    from jaxpass.learn import train

    assert train.data_mesh().axis_names == ("data",)  # the training mesh is the same helper
    with pytest.raises(TypeError, match="^mesh must be a jax.sharding.Mesh"):
        parallel.batch_call(jax.jit(lambda a: a), np.zeros((4, 2)), mesh=8)
    x = np.arange(10.0).reshape(5, 2)
    (xs, ys), pad = parallel.shard_drops(mesh, x, {"y": np.arange(5), "z": None})
    assert pad == 0 and ys["z"] is None and xs.shape == (5, 2)
    with pytest.raises(ValueError, match=r"^batched arrays must share their leading drop axis, got sizes \[4, 5\]$"):
        parallel.shard_drops(mesh, x, np.zeros(4))
    assert parallel.padded_size(13, 8) == 16 and parallel.padded_size(16, 8) == 16
    np.testing.assert_array_equal(parallel.unpad(np.arange(16), 3), np.arange(13))
    assert parallel.map_drops(jax.jit(lambda a, s: a * s), x, 2.0, mesh=mesh, in_axes=(0, None)).shape == (5, 2)
    with pytest.raises(ValueError, match="^batched_kwargs must name keyword arguments of this call"):
        parallel.map_drops(jax.jit(lambda a: a), x, mesh=mesh, batched_kwargs=("b",))


def test_initialize_is_a_no_op_on_one_process(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_NTASKS",
                 "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES"):
        monkeypatch.delenv(name, raising=False)
    assert parallel.initialize() is False
    monkeypatch.setenv("SLURM_NTASKS", "1")  # a one-task SLURM job
    assert parallel.initialize() is False
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="^environment variable JAX_NUM_PROCESSES must be an integer, got 'two'$"):
        parallel.initialize()


@pytest.mark.slow
def test_tune_positions_and_map_drops_on_8_devices_match_one():
    out = run_8(CORE)
    print(out)


@pytest.mark.slow
def test_mm_pdd_and_mimo_on_8_devices_match_one():
    out = run_8(SOLVERS)
    print(out)


@pytest.mark.slow
def test_power_min_and_energy_on_8_devices_match_one():
    out = run_8(SOLVERS_X64)
    print(out)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    """2 processes x 2 CPU devices (jax.distributed, gloo): tune_positions and a table1 row on 6 drops = one device;
    training with checkpoints, and a stopped run resumed by both processes."""
    script = ROOT / "examples" / "multihost_local.py"
    out = tmp_path / "process-{process}.json"
    proc = subprocess.run([sys.executable, str(script), "--json", str(out), "--timeout", "240"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    if proc.returncode != 0 and "gloo" in proc.stderr.lower() and "not" in proc.stderr.lower():
        pytest.fail("gloo CPU collectives unavailable: " + proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    results = [json.loads((tmp_path / f"process-{i}.json").read_text()) for i in range(2)]
    for i, r in enumerate(results):
        assert (r["process"], r["process_count"], r["global_devices"], r["local_devices"], r["drops"]) == (i, 2, 4, 2, 6)
        assert len(r["sum_rate"]) == 6 and np.all(np.isfinite(r["sum_rate"]))
        assert len(r["table1_uniform_zf"]) == 6 and np.all(np.isfinite(r["table1_uniform_zf"]))
    assert results[0]["table1_uniform_zf"] == results[1]["table1_uniform_zf"]
    assert results[0]["sum_rate"] == results[1]["sum_rate"] and results[0]["positions"] == results[1]["positions"]
    assert results[0]["max_abs_diff_vs_one_device"] <= 1e-6 * max(abs(v) for v in results[0]["sum_rate"]), results[0]
    assert "identical to one device" in proc.stdout
    # training data-parallel over the 2 processes' 4 devices = one device (float32 rounding); both checkpoints kept
    assert results[0]["train_max_rel_diff_vs_one_device"] <= 1e-4, results[0]
    assert results[0]["checkpoint_steps"] == [2, 4], results[0]
    # a 6-step run stopped after its step-4 checkpoint and resumed by both processes: bit-identical to the same
    # run uninterrupted on every process, float32 rounding from one device
    assert results[0]["resume_bit_identical"] and results[1]["resume_bit_identical"], results
    assert results[0]["stopped_at_checkpoints"] == [2, 4] and results[0]["checkpoint_steps_after_resume"] == [2, 4, 6]
    assert results[0]["resumed_step"] == 6 and results[0]["resumed_max_rel_diff_vs_one_device"] <= 1e-4, results[0]


def test_memory_estimate_is_per_device_when_the_batch_is_sharded():
    """jaxpass.experiments.memory: a batch sharded over D memories counts ceil(B / D) drops (the padded share)."""
    from types import SimpleNamespace

    from jaxpass.experiments import memory

    assert [memory.per_device(13, d) for d in (1, 2, 8, 13, 16)] == [13, 7, 2, 1, 1]
    with pytest.raises(ValueError, match="^devices must be >= 1, got 0$"):
        memory.per_device(13, 0)
    tune = dict(steps=10, starts=2)
    assert memory.table_bytes(4, 4, 8, 64, tune, devices=8) == memory.table_bytes(4, 4, 8, 8, tune)
    assert memory.table_bytes(4, 4, 8, 13, tune, devices=8) == memory.table_bytes(4, 4, 8, 2, tune)
    assert memory.tune_command_bytes(4, 4, 8, 80, tune, devices=8) == memory.tune_command_bytes(4, 4, 8, 10, tune)
    assert memory.demo_bytes(4, 4, 8, 80, tune_steps=5, devices=8) == memory.demo_bytes(4, 4, 8, 10, tune_steps=5)
    assert memory.powermin_bytes(4, 4, 80, devices=8) == memory.powermin_bytes(4, 4, 10)
    assert memory.ssca_bytes(4, 4, 8, 16, 50, tune, devices=8) == memory.ssca_bytes(4, 4, 8, 2, 50, tune)
    assert (memory.train_bytes(4, 4, 8, 64, 100, 64, devices=8)
            == memory.train_bytes(4, 4, 8, 8, 100, 8))  # the batch and test drops; the host's training drops stay
    one = memory.tune_command_bytes(4, 4, 8, 10**6, tune)
    assert memory.tune_command_bytes(4, 4, 8, 10**6, tune, devices=8) - memory.BASE_BYTES == pytest.approx(
        (one - memory.BASE_BYTES) / 8, rel=1e-6)  # the working set divided by the device count, the runtime not
    # how many memories a mesh splits a batch over: accelerators each, CPU devices share their host's
    gpus = SimpleNamespace(devices=np.array([SimpleNamespace(platform="gpu", process_index=i // 4) for i in range(8)]))
    cpus = SimpleNamespace(devices=np.array([SimpleNamespace(platform="cpu", process_index=i // 4) for i in range(8)]))
    assert memory.shards(None) == 1 and memory.shards(gpus) == 8 and memory.shards(cpus) == 2
    assert memory.shards(parallel.drops_mesh(1)) == 1

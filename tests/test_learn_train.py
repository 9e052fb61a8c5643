"""Training pipeline (jaxpass.learn.train, .data, .checkpoint; ``jaxpass train`` / ``jaxpass evaluate``).

A tiny nnx model following the jaxpass.learn interface (registered in ARCHITECTURES
as "tiny-test" for the duration of a test) keeps every test fast, through the
library and through the CLI (``jaxpass train`` / ``evaluate``) alike. A real
registered model (``kdl-resnet``, tiny sizes) is trained by the same driver in
tests/test_table1_learned.py.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxpass as jp
from jaxpass.learn import checkpoint as ckpt
from jaxpass.learn import data
from jaxpass.learn import train as T

TINY = "tiny-test"


class TinyModel(nnx.Module):
    """users (B, K, 2) -> MLP -> pinch logits (B, N, L) and W (B, N, K, 2); follows the jaxpass.learn interface."""

    def __init__(self, cfg, *, hidden: int = 16, dropout: float = 0.1, rngs: nnx.Rngs):
        self.num_users, self.num_waveguides, self.num_pinches = cfg.num_users, cfg.num_waveguides, cfg.num_pinches
        self.K, self.N, self.L = self.num_users, self.num_waveguides, self.num_pinches
        self.length_x, self.width_y = float(cfg.length_x), float(cfg.width_y)
        self.inp = nnx.Linear(2 * self.K, hidden, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(hidden, self.N * self.L + 2 * self.N * self.K, rngs=rngs)

    def __call__(self, users):
        B = users.shape[0]
        z = (2.0 * users / jnp.asarray([self.length_x, self.width_y], users.dtype) - 1.0).reshape(B, -1)
        h = self.out(self.drop(jax.nn.tanh(self.inp(z.astype(self.inp.kernel[...].dtype)))))
        NL = self.N * self.L
        return {"x": h[:, :NL].reshape(B, self.N, self.L), "w": h[:, NL:].reshape(B, self.N, self.K, 2)}

    def decode(self, cfg, raw):
        # pinch l of each waveguide inside its own bin [l, l + 1) S_x / L, at least min_spacing from the next
        bin_ = self.length_x / self.L
        X = (jnp.arange(self.L) * bin_ + cfg.min_spacing / 2
             + jax.nn.sigmoid(raw["x"]) * (bin_ - cfg.min_spacing))
        w = raw["w"][..., 0] + 1j * raw["w"][..., 1]
        W = w * jnp.sqrt(cfg.power / jnp.sum(jnp.abs(w) ** 2, axis=(-2, -1), keepdims=True))
        return X, W


def rate_loss(model, cfg, users):
    """-mean sum rate of the decoded (X, W) under the true channel, aux {"sum_rate": (B,)}."""
    X, W = model.decode(cfg, model(users))
    H = jax.vmap(lambda x, u: jp.effective_channel(cfg, x, u))(X, users)
    r = jax.vmap(lambda h, w: jp.sum_rate(h, w, cfg.noise_power))(H, W)
    return -jnp.mean(r), {"sum_rate": r}


CFG = jp.PassConfig.joint_beamforming(num_users=2, num_waveguides=2, num_pinches=2)
SMALL = dict(model=TINY, steps=6, batch_size=8, train_drops=24, test_drops=8, warmup_steps=2,
             learning_rate=3e-3, log_every=1, checkpoint_every=2)


@pytest.fixture
def tiny(monkeypatch):
    from jaxpass.learn.models import ARCHITECTURES

    monkeypatch.setitem(ARCHITECTURES, TINY, TinyModel)
    return T.TrainOptions(**SMALL)


def run(opts, out_dir=None, **kw):
    """train() with the default loss (jaxpass.learn.decode.sum_rate_loss, via the model's decode)."""
    return T.train(CFG, opts, out_dir=out_dir, progress=False, **kw)


def leaves(tree):
    return [np.asarray(jax.random.key_data(x) if ckpt._is_key(x) else x) for x in jax.tree.leaves(tree)]


def tree_digest(path):
    """{relative path: sha256} of every file under ``path``."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


# ------------------------------------------------------------------ options and data
def test_options_validate(tiny):
    with pytest.raises(ValueError, match="model must be one of"):
        T.TrainOptions(model="nope")
    with pytest.raises(ValueError, match="test_seed must differ from data_seed = 3"):
        tiny.replace(data_seed=3, test_seed=3).check_combination()
    with pytest.raises(ValueError, match="batch_size must be <= train_drops = 24"):
        tiny.replace(batch_size=32).check_combination()
    with pytest.raises(ValueError, match="epochs must be 0 with stream=True"):
        T.train(CFG, tiny.replace(stream=True, epochs=2))
    assert tiny.replace(data_seed=1).test_seed == 1  # per-field checks alone: the CLI checks flags one by one
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        tiny.replace(learning_rate=0.0)
    assert tiny.replace(epochs=2).total_steps == 2 * (24 // 8)
    assert tiny.replace(model_kwargs={"hidden": 8}).model_kwargs == (("hidden", 8),)
    hash(tiny.replace(model_kwargs={"hidden": 8}))  # options stay hashable


def test_schedule_warmup_and_decay(tiny):
    for decay in ("cosine", "linear"):
        s = T.learning_rate_schedule(tiny.replace(steps=10, warmup_steps=4, decay=decay, final_lr_fraction=0.1))
        lr = np.array([float(s(i)) for i in range(11)])
        assert lr[0] == pytest.approx(3e-3 / 4, rel=1e-5) and np.all(np.diff(lr[:4]) > 0)
        assert lr[3] == pytest.approx(3e-3, rel=1e-5)
        assert lr[4] == pytest.approx(3e-3, rel=1e-5)
        assert np.all(np.diff(lr[4:]) < 0) and lr[10] == pytest.approx(3e-4, rel=1e-5)


def test_data_order_and_split():
    a = data.batch_indices(5, data_seed=0, train_drops=24, batch_size=8)
    assert np.array_equal(a, data.batch_indices(5, data_seed=0, train_drops=24, batch_size=8))
    epoch = [data.batch_indices(s, data_seed=0, train_drops=24, batch_size=8) for s in range(3)]
    assert sorted(np.concatenate(epoch)) == list(range(24))  # one epoch visits each drop once
    nxt = np.concatenate([data.batch_indices(s, data_seed=0, train_drops=24, batch_size=8) for s in range(3, 6)])
    assert not np.array_equal(np.concatenate(epoch), nxt)  # reshuffled each epoch
    u = data.sample_drops(0, CFG, 16)
    assert u.shape == (16, 2, 2) and u.dtype == np.float32
    assert np.all((u >= 0) & (u <= np.array([CFG.length_x, CFG.width_y])))
    assert not np.allclose(u, data.sample_drops(1, CFG, 16))
    s = data.stream_batch(7, CFG, data_seed=0, batch_size=4)
    assert np.array_equal(s, data.stream_batch(7, CFG, data_seed=0, batch_size=4))
    assert not np.allclose(s, data.stream_batch(8, CFG, data_seed=0, batch_size=4))


# ------------------------------------------------------------------ training
def test_loss_decreases_on_fixed_batch(tiny):
    model = TinyModel(CFG, rngs=nnx.Rngs(0))  # as build_model makes it: train() and evaluate() share compilations
    opt = nnx.Optimizer(model, T.make_optimizer(tiny.replace(warmup_steps=0, decay="constant", learning_rate=2e-2)),
                        wrt=nnx.Param)
    users = jnp.asarray(data.sample_drops(0, CFG, 8))
    step = nnx.jit(T.train_step, static_argnums=4)
    losses = [float(step(model, opt, CFG, users, rate_loss)[0]) for _ in range(15)]
    assert losses[-1] < losses[0] - 0.5, losses
    rates = T.evaluate(model, CFG, users)  # the default evaluation: decode.sum_rate_loss, same physics
    assert rates.shape == (8,) and float(jnp.mean(rates)) > -losses[0]


def test_train_metrics_float64_and_resume_bit_identical(tiny, tmp_path):
    full = run(tiny.replace(float64=True), tmp_path / "full")
    assert full.step == 6
    params = nnx.state(full.model, nnx.Param)
    assert {x.dtype for x in jax.tree.leaves(params)} == {np.dtype(np.float64)}
    assert {x.dtype for x in jax.tree.leaves(nnx.state(full.optimizer)) if jnp.issubdtype(x.dtype, jnp.floating)} \
        == {np.dtype(np.float64)}
    lines = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(7))
    assert "test_sum_rate_mean" in lines[0] and "test_sum_rate_mean" in lines[-1]  # start, epoch ends, end
    assert "test_sum_rate_mean" in lines[3] and "test_sum_rate_mean" not in lines[2]  # epoch = 24 // 8 = 3 steps
    for r in lines[1:]:
        assert {"loss", "train_sum_rate", "lr", "samples_per_s", "epoch"} <= set(r)
        assert r["loss"] == pytest.approx(-r["train_sum_rate"])
    assert lines == full.history

    class Interrupt(Exception):
        pass

    def stop_at_4(record):
        if record["step"] == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(tiny.replace(float64=True), tmp_path / "cut", callback=stop_at_4)
    assert ckpt.checkpoint_steps(tmp_path / "cut" / "checkpoints") == [2, 4]
    resumed = run(tiny.replace(float64=True), tmp_path / "cut", resume=True)
    a, b = leaves(nnx.state((full.model, full.optimizer))), leaves(nnx.state((resumed.model, resumed.optimizer)))
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))  # params, Adam state, RNG
    cut = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in cut] == list(range(7))
    drop = ("samples_per_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in cut] == \
        [{k: v for k, v in r.items() if k not in drop} for r in lines]
    model, cfg, meta = T.load_checkpoint(tmp_path / "cut")
    assert meta["step"] == 6 and ckpt.cfg_to_dict(cfg) == ckpt.cfg_to_dict(CFG)
    assert all(np.array_equal(x, y) for x, y in zip(leaves(nnx.state(model, nnx.Param)), leaves(params)))


def test_checkpoint_errors_leave_files_untouched(tiny, tmp_path):
    out = tmp_path / "run"
    run(tiny.replace(steps=2), out)
    before = tree_digest(out)
    msgs = []

    def refused(**kw):
        opts = kw.pop("opts", tiny.replace(steps=2))
        with pytest.raises(ckpt.CheckpointError) as err:
            T.train(kw.pop("cfg", CFG), opts, out_dir=kw.pop("out", out), progress=False, **kw)
        msg = str(err.value)
        assert "\n" not in msg
        msgs.append(msg)
        assert tree_digest(out) == before
        return msg

    assert "already holds checkpoints" in refused()  # a fresh run never overwrites
    assert "model_kwargs" in refused(resume=True, opts=tiny.replace(steps=2, model_kwargs={"hidden": 8}))
    assert "cfg.num_pinches 2 (this run: 3)" in refused(resume=True, cfg=CFG.replace(num_pinches=3))
    assert "option batch_size" in refused(resume=True, opts=tiny.replace(steps=2, batch_size=4))
    assert "no checkpoint" in refused(resume=True, out=tmp_path / "empty")
    assert not (tmp_path / "empty").exists()
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint: folder .* does not exist"):
        T.load_checkpoint(tmp_path / "missing")
    # another model: register a second name for the same class
    from jaxpass.learn.models import ARCHITECTURES

    ARCHITECTURES["tiny-other"] = TinyModel
    try:
        assert "model 'tiny-test' (this run: 'tiny-other')" in refused(
            resume=True, opts=tiny.replace(steps=2, model="tiny-other"))
    finally:
        del ARCHITECTURES["tiny-other"]
    # corrupt arrays: garble the start of the step's array data (the OCDBT data files under state/d/)
    data_dir = out / "checkpoints" / "2" / "state" / "d"
    assert list(data_dir.iterdir())
    for f in data_dir.iterdir():
        with open(f, "r+b") as fh:
            fh.write(b"garbage" * 8)
    before = tree_digest(out)
    assert "corrupt checkpoint" in refused(resume=True)
    with pytest.raises(ckpt.CheckpointError, match="corrupt checkpoint"):
        T.load_checkpoint(out)
    # corrupt metadata
    (out / "checkpoints" / "2" / "meta" / "metadata").write_text("{not json")
    before = tree_digest(out)
    assert "corrupt checkpoint" in refused(resume=True)


def test_data_parallel_8_devices_matches_one(tmp_path):
    """One step on 8 simulated CPU devices (batch sharded over a ("data",) mesh) = one device.

    Compared in float64 (to 1e-9): in float32 the sum rate is ill-conditioned in the
    positions (one ulp of a 20 m coordinate turns the phase by ~3e-4 cycles), so two
    compilations of the same loss differ at the 1e-4 level.
    """
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import jax, jax.numpy as jnp, numpy as np
        from flax import nnx
        from jax.sharding import PartitionSpec as P
        from test_learn_train import CFG, SMALL, TINY, TinyModel, rate_loss, leaves
        from jaxpass.learn import train as T, data
        from jaxpass.learn.models import ARCHITECTURES
        ARCHITECTURES[TINY] = TinyModel
        assert jax.device_count() == 8
        with jax.enable_x64(True):
            users = data.sample_drops(0, CFG, 16, np.float64)
            model = T.cast_params(TinyModel(CFG, dropout=0.0, rngs=nnx.Rngs(0)), np.float64)
            graphdef, state = nnx.split(model)
            f = jax.jit(lambda state, users: T.loss_and_grads(nnx.merge(graphdef, state), CFG, users, rate_loss))
            one = jax.devices()[0]
            (l1, _), g1 = f(jax.device_put(state, one), jax.device_put(users, one))
            mesh = T.data_mesh()
            xs = T.shard_batch(users, mesh)
            assert xs.sharding.spec == P("data") and len(xs.addressable_shards) == 8
            assert xs.addressable_shards[0].data.shape == (2, 2, 2)
            (l8, _), g8 = f(T._replicate(state, mesh), xs)
            assert len(l8.sharding.device_set) == 8 and len(l1.sharding.device_set) == 1
            np.testing.assert_allclose(float(l8), float(l1), rtol=1e-9)
            for a, b in zip(jax.tree.leaves(g8), jax.tree.leaves(g1), strict=True):
                assert np.abs(b).max() > 0
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-7, atol=1e-9 * np.abs(b).max())
            # the driver: one step of train() on the 8-device mesh; its loss = the one-device loss of batch 0
            opts = T.TrainOptions(**{{**SMALL, "steps": 1, "batch_size": 16, "train_drops": 32, "float64": True,
                                      "model_kwargs": {{"dropout": 0.0}}}})
            r8 = T.train(CFG, opts, loss_fn=rate_loss, eval_fn=rate_loss, progress=False)
            assert r8.devices == 8
            b0 = data.sample_drops(0, CFG, 32, np.float64)[data.batch_indices(0, data_seed=0, train_drops=32,
                                                                               batch_size=16)]
            (l0, _), _ = f(jax.device_put(state, one), jax.device_put(b0, one))
            assert abs(r8.history[1]["loss"] - float(l0)) <= 1e-9 * abs(float(l0)), (r8.history[1], float(l0))
            for p in jax.tree.leaves(nnx.state(r8.model, nnx.Param)):
                assert p.dtype == np.float64 and p.sharding.is_fully_replicated and len(p.sharding.device_set) == 8
        print("OK", float(l1), float(l8))
    """)
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"),
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


# ------------------------------------------------------------------ CLI
def test_cli_bad_flags(capsys, tmp_path):
    from jaxpass.cli import main

    for argv, needle in [
        (["train", "--batch-size", "0"], "batch_size must be >= 1"),
        (["train", "--model", "nope"], "model must be one of"),
        (["train", "--learning-rate", "-1"], "learning_rate must be a finite number > 0"),
        (["train", "--decay", "step"], "invalid choice"),
        (["evaluate"], "--checkpoint"),
        (["evaluate", "--checkpoint", "x", "--drops", "0"], "positive integer"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert needle in capsys.readouterr().err
    for argv, needle in [
        (["train", "--data-seed", "1", "--test-seed", "1", "--out", str(tmp_path / "a")],
         "test_seed must differ from data_seed = 1"),
        (["train", "--model-arg", "width", "--out", str(tmp_path / "b")], "--model-arg must be NAME=VALUE"),
        (["evaluate", "--checkpoint", str(tmp_path / "nothing")], "no checkpoint"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_train_resume_evaluate(tiny, tmp_path, monkeypatch, capsys):
    """``jaxpass train`` (the tiny model, the same options as ``SMALL``) stopped after its step-2 checkpoint,
    ``--resume``, ``jaxpass evaluate``; every path relative to the working directory (orbax needs absolute
    ones: the CLI resolves them); a resume with another ``--steps`` is refused before anything is printed."""
    from jaxpass.cli import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    common = ["train", "--model", TINY, "--model-arg", "hidden=16", "--num-users", "2", "--num-waveguides", "2",
              "--num-pinches", "2", "--batch-size", "8", "--train-drops", "24", "--test-drops", "8",
              "--warmup-steps", "2", "--learning-rate", "3e-3", "--log-every", "1", "--checkpoint-every", "2",
              "--out", "run", "--quiet"]

    class Stop(Exception):
        pass

    real_train = T.train

    def stopped_at_2(*args, callback=None, **kw):  # an interrupted run: its step-2 checkpoint is saved
        def cb(record):
            callback(record)
            if record["step"] == 2:
                raise Stop
        return real_train(*args, callback=cb, **kw)

    monkeypatch.setattr(T, "train", stopped_at_2)
    with pytest.raises(Stop):
        main(common + ["--steps", "3"])
    monkeypatch.setattr(T, "train", real_train)
    assert ckpt.checkpoint_steps(out / "checkpoints") == [2]
    capsys.readouterr()
    before = tree_digest(out)
    assert main(common + ["--steps", "4", "--resume"]) == 2  # the schedule is laid out over 3 steps
    o, err = capsys.readouterr()
    assert "belongs to a run of 3 steps; this run asks for 4" in err and len(err.strip().splitlines()) == 1, err
    assert "resumed" not in o and tree_digest(out) == before
    assert main(common + ["--steps", "3", "--resume"]) == 0
    text = capsys.readouterr().out
    assert "resumed from step 2" in text and "samples/s" in text
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 1, 2, 3]
    summary = json.loads((out / "train.json").read_text())
    assert summary["step"] == 3 and summary["model"] == TINY and summary["model_kwargs"] == {"hidden": 16}
    assert (out / "train.png").stat().st_size > 1000
    assert ckpt.checkpoint_steps(out / "checkpoints") == [2, 3]
    assert main(["evaluate", "--checkpoint", "run", "--quiet", "--devices", "1"]) == 0
    text = capsys.readouterr().out
    assert f"{lines[-1]['test_sum_rate_mean']:.2f} ± {lines[-1]['test_sum_rate_std']:.2f} bps/Hz on 8 drops" in text
    assert "ms per 64 drops" in text and "step 3" in text and "the run's held-out test drops" in text
    assert main(common + ["--steps", "3"]) == 2  # a fresh run into a used folder is refused
    assert "already holds checkpoints" in capsys.readouterr().err


def test_cli_evaluate_refusals(tiny, tmp_path, monkeypatch, capsys):
    """``jaxpass evaluate``: too many drops for the memory, a file or a step folder as ``--checkpoint``, an unknown
    flag: one line each, naming the subcommand, before anything is computed."""
    from jaxpass.cli import main
    from jaxpass.experiments.train import model_label

    monkeypatch.chdir(tmp_path)
    run(tiny.replace(steps=2), "run")  # relative: resolved by train()
    (tmp_path / "net.npz").write_bytes(b"PK")
    for argv, needle in [
        (["--checkpoint", "run", "--drops", "1000000000"], "--drops 1000000000 needs ~"),
        (["--checkpoint", "net.npz"], f"{tmp_path / 'net.npz'} is a file, not a checkpoint folder"),
        (["--checkpoint", "run/checkpoints/2"], f"give the run's folder {tmp_path / 'run'} and --step 2"),
    ]:
        assert main(["evaluate", *argv]) == 2, argv
        o, err = capsys.readouterr()
        assert needle in err and len(err.strip().splitlines()) == 1 and o == "", err
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--checkpoint", "run", "--bogus"])
    assert exc.value.code == 2
    assert "jaxpass evaluate: error: unrecognized arguments: --bogus" in capsys.readouterr().err
    assert model_label("kdl-resnet", {}) == "kdl-resnet"  # no double space before " on preset"
    assert model_label("kdl-resnet", (("width", 8),)) == "kdl-resnet {'width': 8}"


def test_cli_train_interrupted_before_its_first_checkpoint(tiny, tmp_path, capsys):
    """A run stopped while its first checkpoint was being written leaves only orbax's temporary folder:
    ``--resume`` says so and how to go on; the plain rerun works (and removes it) without absl noise."""
    from jaxpass.cli import main

    tmp = tmp_path / "run" / "checkpoints" / "2.orbax-checkpoint-tmp-1234"
    (tmp / "state").mkdir(parents=True)
    common = ["train", "--model", TINY, "--num-users", "2", "--num-waveguides", "2", "--num-pinches", "2",
              "--batch-size", "8", "--train-drops", "24", "--test-drops", "8", "--steps", "2",
              "--out", str(tmp_path / "run"), "--quiet"]
    assert main(common + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "holds only the unfinished save 2.orbax-checkpoint-tmp-1234 (the run stopped before its first " \
           "checkpoint completed); start the run again without --resume" in err and len(err.splitlines()) == 1, err
    assert main(common) == 0
    err = capsys.readouterr().err
    assert err == "", err
    assert ckpt.checkpoint_steps(tmp_path / "run" / "checkpoints") == [2]

"""jaxpass.learn.short_term: the two-timescale short-term network, its training and its scores (tiny sizes)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpass import PassConfig
from jaxpass import beamforming as bf
from jaxpass.experiments import two_timescale as tt
from jaxpass.geometry import uniform_positions
from jaxpass.learn import ShortTermNet, duals_fn
from jaxpass.learn import short_term as st
from jaxpass.metrics import sum_rate
from jaxpass.optimize import ssca
from jaxpass.slots import draw_slots

K, N, L = 3, 2, 2
CFG = PassConfig.two_timescale(num_users=K, num_waveguides=N, num_pinches=L, power_dbm=20.0)
TINY = st.ShortTermOptions(width=8, layers=1, steps=12, batch_size=16, blocks=2, slots_per_block=8, screen_slots=2,
                           assignments=2, teacher_iterations=4, supervised_steps=4, warmup_steps=2,
                           learning_rate=3e-3)


def _channels(key, B):
    k1, k2 = jax.random.split(key)
    return (1e-4 * (jax.random.normal(k1, (B, K, N)) + 1j * jax.random.normal(k2, (B, K, N)))).astype(jnp.complex64)


def _params(model):
    return [np.asarray(v) for v in jax.tree.leaves(nnx.state(model, nnx.Param))]


@pytest.mark.parametrize("architecture", ("gram", "transformer"))
def test_duals_feasible_budget_met_and_invariant(architecture):
    opts = TINY.replace(architecture=architecture, width=8, heads=2)
    model = st.build_short_term(CFG, opts, nnx.Rngs(3))
    assert isinstance(model, ShortTermNet)
    H = _channels(jax.random.key(0), 5)
    lam, share = model.duals(CFG, H)
    assert lam.shape == share.shape == (5, K)
    assert bool(jnp.all(lam >= 0)) and bool(jnp.all(share > 0))
    np.testing.assert_allclose(np.asarray(share.sum(-1)), 1.0, rtol=1e-5)
    W = jax.vmap(lambda h, a, s: bf.kkt(h, a, s, CFG.power))(H, lam, share)
    np.testing.assert_allclose(np.asarray(jnp.sum(jnp.abs(W) ** 2, axis=(-2, -1))), float(CFG.power), rtol=1e-4)
    # huge logits cannot give a zero share (bounded logits: no sqrt(0) in the KKT map's gradient)
    raw = model(H * 1e3, jnp.full((5,), 1e9))
    assert float(jnp.max(jnp.abs(raw))) <= opts.logit_bound + 1e-4
    if architecture == "gram":  # the rate invariances: per-user phases and a unitary on the right
        D = jnp.exp(1j * jnp.arange(K) * 0.7)[:, None].astype(H.dtype)
        U = jnp.linalg.qr(_channels(jax.random.key(5), 1)[0, :N, :N])[0].astype(H.dtype)
        lam2, share2 = model.duals(CFG, D[None] * H @ U)
        np.testing.assert_allclose(np.asarray(lam2), np.asarray(lam), rtol=2e-3)
        np.testing.assert_allclose(np.asarray(share2), np.asarray(share), rtol=2e-3, atol=1e-6)


def test_teacher_equals_wmmse_duals_and_per_slot_power():
    H = _channels(jax.random.key(1), 4)
    p = jnp.asarray([12.0, 16.0, 24.0, 28.0])
    lam, share, rate = jax.jit(st.teacher, static_argnums=3)(CFG, H, p, 6)

    @jax.jit
    def reference(h, p):
        c = CFG.replace(power_dbm=p)
        lam_i, share_i = ssca.wmmse_duals(c, h, 6)
        return lam_i, share_i, sum_rate(h, bf.wmmse(h, c.power, c.noise_power, iterations=6), c.noise_power)

    for i in range(4):
        lam_i, share_i, rate_i = reference(H[i], p[i])
        np.testing.assert_allclose(np.asarray(lam[i]), np.asarray(lam_i), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(share[i]), np.asarray(share_i), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(float(rate[i]), float(rate_i), rtol=1e-5)
    # the network's duals at a per-slot power equal model.duals at that power
    model = st.build_short_term(CFG, TINY, nnx.Rngs(0))
    lam_n, share_n = st.network_duals(model, CFG, H, p)
    lam_2, share_2 = model.duals(CFG.replace(power_dbm=28.0), H[3:])
    np.testing.assert_allclose(np.asarray(lam_n[3]), np.asarray(lam_2[0]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(share_n[3]), np.asarray(share_2[0]), rtol=1e-5)


def test_a_few_steps_lower_the_loss_and_fit_is_reproducible():
    pool = _channels(jax.random.key(2), 64)
    batch, p = pool[:32], jnp.linspace(12.0, 28.0, 32)

    @nnx.jit
    def _loss(model):
        return st.short_term_loss(model, CFG, batch, p, TINY, 0.0)[0]

    def loss(model):
        return float(_loss(model))

    untrained = st.build_short_term(CFG, TINY, nnx.Rngs(params=jax.random.split(jax.random.key(7), 3)[1]))
    fit = st.fit_short_term(jax.random.key(7), K, TINY, cfg=CFG, channels=pool, steps=20)
    assert fit.history.shape == (20, 4) and np.all(np.isfinite(fit.history))
    assert loss(fit.model) < loss(untrained) - 0.01
    again = st.fit_short_term(jax.random.key(7), K, TINY, cfg=CFG, channels=pool, steps=20)
    np.testing.assert_array_equal(fit.history, again.history)
    for a, b in zip(_params(fit.model), _params(again.model)):
        np.testing.assert_array_equal(a, b)
    other = st.fit_short_term(jax.random.key(8), K, TINY, cfg=CFG, channels=pool, steps=20)
    assert not np.array_equal(fit.history, other.history)


def test_black_box_meets_the_budget_has_no_duals_and_learns():
    opts = TINY.replace(architecture="blackbox", supervised_steps=0, layers=2)
    model = st.build_short_term(CFG, opts, nnx.Rngs(3))
    assert isinstance(model, st.BlackBoxShortTermNet) and not isinstance(model, ShortTermNet)
    H, p = _channels(jax.random.key(0), 5), jnp.linspace(12.0, 28.0, 5)
    W, duals = st.network_beamformers(model, CFG, H, p)
    assert duals is None and W.shape == (5, N, K)
    np.testing.assert_allclose(np.asarray(jnp.sum(jnp.abs(W) ** 2, axis=(-2, -1))), 1e-3 * 10 ** (np.asarray(p) / 10),
                               rtol=1e-4)  # every slot at its own budget
    pool = _channels(jax.random.key(2), 64)
    batch, pb = pool[:32], jnp.linspace(12.0, 28.0, 32)
    loss_aux = nnx.jit(lambda m: st.short_term_loss(m, CFG, batch, pb, opts, 1.0))
    loss, aux = loss_aux(model)
    assert float(aux["supervised"]) == 0.0 and np.isfinite(float(loss))  # end-to-end: no teacher term
    calls = []
    fit = st.fit_short_term(jax.random.key(7), K, opts, cfg=CFG, channels=pool, steps=12, callback_every=5,
                            callback=lambda t, m, row: calls.append(t))
    assert calls == [0, 5, 10, 11] and np.all(np.isfinite(fit.history))
    start = st.build_short_term(CFG, opts, nnx.Rngs(params=jax.random.split(jax.random.key(7), 3)[1]))  # fit's init
    assert float(loss_aux(fit.model)[0]) < float(loss_aux(start)[0]) - 0.005  # it learns
    # beamformer_fn: the same beamformer one slot at a time, for the black box and for a KKT network
    one = st.beamformer_fn(fit.model)(CFG, H[0])
    np.testing.assert_allclose(np.asarray(one), np.asarray(st.network_beamformers(
        fit.model, CFG, H[:1], jnp.asarray([CFG.power_dbm]))[0][0]), rtol=1e-5, atol=1e-9)
    kkt_net = st.build_short_term(CFG, TINY, nnx.Rngs(1))
    lam, share = kkt_net.duals(CFG, H[:1])
    np.testing.assert_allclose(np.asarray(st.beamformer_fn(kkt_net)(CFG, H[0])),
                               np.asarray(bf.kkt(H[0], lam[0], share[0], CFG.power)), rtol=1e-4, atol=1e-9)
    score = st.score_channels(fit.model, CFG, pool[:8], wmmse_iterations=2)
    assert 0 < score["net"] and 0 < score["wmmse"]
    with pytest.raises(TypeError, match="ShortTermNet"):  # no duals: it cannot be the KDL row's solver
        st.held_duals_fn(fit.model)
    s = dataclasses.replace(tt.quick_settings(), users=(K,), rows=("tt_kdl",))
    with pytest.raises(ValueError, match="KKT"):
        tt.short_term_models(s, {K: fit.model})
    with pytest.raises(ValueError, match="callback_every"):
        st.fit_short_term(jax.random.key(7), K, opts, cfg=CFG, channels=pool, steps=2, callback_every=0)


def test_training_pool_from_blocks():
    H = st.training_channels(jax.random.key(0), CFG, TINY, chunk=2)
    assert H.shape == (TINY.blocks * TINY.slots_per_block, K, N) and bool(jnp.all(jnp.isfinite(jnp.abs(H))))
    again = st.training_channels(jax.random.key(0), CFG, TINY, chunk=2)
    np.testing.assert_array_equal(np.asarray(H), np.asarray(again))
    _, p_dbm, _ = st.block_channels(jax.random.key(3), CFG, TINY)
    assert 12.0 <= float(p_dbm) <= 28.0


@pytest.mark.parametrize(("change", "field", "error"), [
    (dict(steps=0), "steps", ValueError),
    (dict(architecture="mlp"), "architecture", ValueError),
    (dict(power_range_dbm=(28.0, 12.0)), "power_range_dbm", ValueError),
    (dict(power_range_dbm=(12.0,)), "power_range_dbm", ValueError),
    (dict(aligned_fraction=1.5), "aligned_fraction", ValueError),
    (dict(learning_rate=0.0), "learning_rate", ValueError),
    (dict(logit_bound=-1.0), "logit_bound", ValueError),
    (dict(architecture="transformer", width=10, heads=4), "width", ValueError),
    (dict(normalise="yes"), "normalise", TypeError),
])
def test_bad_options_name_the_field(change, field, error):
    with pytest.raises(error, match=f"^{field}"):
        st.ShortTermOptions(**change)


def test_bad_driver_inputs():
    with pytest.raises(ValueError, match="^num_users must equal cfg.num_users = 3, got 4"):
        st.fit_short_term(jax.random.key(0), 4, TINY, cfg=CFG)
    with pytest.raises(ValueError, match=r"^channels must have shape \('\?', 3, 2\), got \(4, 2, 2\)"):
        st.fit_short_term(jax.random.key(0), K, TINY, cfg=CFG, channels=jnp.zeros((4, 2, 2), jnp.complex64))
    model = st.build_short_term(CFG, TINY)
    with pytest.raises(TypeError, match="^model must be a ShortTermNet"):
        st.short_term_score(object(), CFG, jnp.zeros((N, L)), jnp.zeros((2, K, 2)))
    with pytest.raises(ValueError, match=r"^cfg has \(num_users, num_waveguides, num_pinches\) = \(4, 2, 2\)"):
        st.short_term_score(model, CFG.replace(num_users=4), jnp.zeros((N, L)), jnp.zeros((2, 4, 2)))


def test_score_save_load_and_ssca_solver(tmp_path):
    model = st.build_short_term(CFG, TINY, nnx.Rngs(1))
    homes = jnp.asarray([[[3.0, 2.0], [10.0, 7.0], [15.0, 4.0]]])
    X = uniform_positions(CFG)
    slots = jax.vmap(lambda k: draw_slots(k, CFG, homes[0], 6))(jax.random.split(jax.random.key(1), 1))
    score = st.short_term_score(model, CFG, X[None], slots, wmmse_iterations=5)
    assert score["ratio"] == pytest.approx(score["net"] / score["wmmse"])
    assert len(score["net_per_block"]) == 1 and 0 < score["net"] and 0 < score["wmmse"]
    path = st.save_short_term(tmp_path / "net.npz", model, TINY, CFG, note="x")
    loaded, meta = st.load_short_term(path, CFG)
    assert meta["note"] == "x" and meta["num_users"] == K
    for a, b in zip(_params(model), _params(loaded)):
        np.testing.assert_array_equal(a, b)
    assert st.short_term_score(loaded, CFG, X[None], slots, wmmse_iterations=5) == score
    with pytest.raises(ValueError, match="holds a network for"):
        st.load_short_term(path, CFG.replace(num_users=4))
    # the same duals through ssca.kkt_solver (what the two-timescale row plugs in)
    H = _channels(jax.random.key(4), 1)
    W, (lam, share) = ssca.kkt_solver(duals_fn(loaded))(CFG, H[0])
    lam2, share2 = loaded.duals(CFG, H[:1])
    np.testing.assert_allclose(np.asarray(lam), np.asarray(lam2[0]), rtol=1e-6)
    # the two-timescale row's solver: the same duals, held constant under differentiation
    lam3, _ = st.held_duals_fn(loaded)(CFG, H[0])
    np.testing.assert_array_equal(np.asarray(lam3), np.asarray(lam))

    def total(duals):
        return jax.grad(lambda h: jnp.sum(duals(CFG, h)[0]) * 1e-12)(H[0])

    assert float(jnp.max(jnp.abs(total(st.held_duals_fn(loaded))))) == 0.0
    assert float(jnp.max(jnp.abs(total(duals_fn(loaded))))) > 0.0


def test_two_timescale_row_uses_the_network_or_is_skipped(tmp_path):
    s = dataclasses.replace(tt.quick_settings(), users=(K,), powers_dbm=(20.0,), blocks=1, held_out_slots=3,
                            rows=("tt_kdl", "tt_uniform", "uniform_wmmse"),
                            ssca=ssca.SscaOptions(iterations=2, slots_per_iteration=2, wmmse_iterations=2,
                                                  assignments=2))
    nets, notes = tt.short_term_models(s)
    assert nets == {} and notes == [f"tt_kdl skipped at K = {K}: no trained short-term network "
                                    "(Settings.short_term_nets, short_term_dir; jaxpass ssca --short-term-net / "
                                    "--short-term-dir)"]
    model = st.build_short_term(CFG, TINY, nnx.Rngs(1))
    path = st.save_short_term(tmp_path / "net.npz", model, TINY, CFG)
    homes = tt.block_homes(CFG, 1, 0)
    out = tt.run_point(CFG, homes, s, short_term=st.load_short_term(path, CFG)[0])
    row = out["tt_kdl"]
    assert set(row) >= {"mean", "per_block", "same_positions", "feasible"} and row["feasible"] is True
    # scored with the network (the deployed system), and with WMMSE and RZF at the same positions
    assert row["scored_with"] == "ssca_short_term" and row["per_block"] == row["same_positions"]["ssca_short_term"]
    assert set(row["same_positions"]) == {"wmmse", "rzf", "ssca_short_term"} and row["mean"] > 0
    assert all(np.all(np.isfinite(v)) for v in row["same_positions"].values())
    # SSCA from evenly spread pinches: scored with WMMSE like uniform_wmmse, on the same slots
    uni = out["tt_uniform"]
    assert uni["scored_with"] == "wmmse" and uni["feasible"] and uni["per_block"] == uni["same_positions"]["wmmse"]
    assert "tt_kdl" not in tt.run_point(CFG, homes, s)
    checks = tt.checks({K: {20.0: {"tt_kdl": {"mean": 2.0}, "ssca_thp": {"mean": 1.0}, "digital_mimo": {"mean": 3.0},
                                   "uniform_wmmse": {"mean": 1.0}, "single_timescale": {"mean": 2.5}}}})
    got = {c["check"]: c["holds"] for c in checks if c["check"].startswith("tt_kdl")}
    assert got == {"tt_kdl >= ssca_thp": True, "tt_kdl >= digital_mimo": False, "tt_kdl >= uniform_wmmse": True,
                   "tt_kdl <= single_timescale": True}


def test_short_term_dir_trains_once_then_loads(tmp_path, capsys):
    s = dataclasses.replace(tt.quick_settings(), users=(K,), rows=("tt_kdl",), short_term_dir=str(tmp_path / "nets"),
                            short_term_options=TINY.replace(steps=2, supervised_steps=1), short_term_seed=5)
    nets, notes = tt.short_term_models(s)
    path = tt.short_term_file(s.short_term_dir, K)
    assert notes == [] and list(nets) == [K] and (tmp_path / "nets" / f"short_term-K{K}.npz").is_file()
    meta = st.read_meta(path)
    assert meta["num_users"] == K and meta["train_seed"] == 5 and meta["options"]["steps"] == 2
    assert "training a short-term network" in capsys.readouterr().err
    again, _ = tt.short_term_models(s)  # the file is there now: loaded, not trained
    assert "loaded from" in capsys.readouterr().err
    for a, b in zip(_params(nets[K]), _params(again[K])):
        np.testing.assert_array_equal(a, b)


def test_read_meta_rejects_other_files(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        st.read_meta(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_text("not a network")
    with pytest.raises(ValueError, match="not a short-term network"):
        st.read_meta(bad)
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="not a short-term network"):
        st.read_meta(tmp_path / "other.npz")


def test_ssca_refuses_a_short_term_net_for_another_k(tmp_path, capsys):
    """``ssca --short-term-net`` of a K = 3 network in a K = 4 run: an error naming both K, before anything runs
    (it used to skip the row as if no network were given and write an empty table)."""
    from jaxpass.cli import main

    path = st.save_short_term(tmp_path / "short_term-K3.npz", st.build_short_term(tt.scenario(K), TINY, nnx.Rngs(1)),
                              TINY, tt.scenario(K))
    assert main(["ssca", "--quick", "--num-users", "4", "--rows", "tt_kdl", "--short-term-net", str(path),
                 "--out", str(tmp_path / "o")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert f"--short-term-net: {path} is a network for K = 3 users, but this run has K in [4]" in err
    assert not (tmp_path / "o").exists()

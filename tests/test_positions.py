"""Gradient tuning of pinch positions (jaxpass.optimize.positions)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpass as jp
from jaxpass import beamforming as bf
from jaxpass.optimize import positions as pos
from jaxpass.optimize import tune_positions

SMALL = dict(num_users=2, num_waveguides=2, num_pinches=4)
FAST = dict(steps=40, starts=3, spacings=(0.0, 0.05), random_starts=1)


@pytest.fixture(scope="module")
def small():
    cfg = jp.PassConfig.joint_beamforming(**SMALL)
    users = jp.sample_users(jax.random.key(3), cfg, (3,))
    res = tune_positions(cfg, users, key=jax.random.key(0), **FAST)
    return cfg, users, res


def _rates(cfg, X, users, W):
    """Sum rates of a batch, recomputed outside the tuner (jit: one dispatch)."""
    def one(X, u, W):
        return jp.sum_rate(jp.effective_channel(cfg, X, u), W, cfg.noise_power)
    return jax.jit(jax.vmap(one))(X, users, W)


def _channels(cfg, X, users):
    return jax.jit(jax.vmap(lambda X, u: jp.effective_channel(cfg, X, u)))(X, users)


def _uniform_zf(cfg, users):
    X = jp.uniform_positions(cfg)

    def one(u):
        H = jp.effective_channel(cfg, X, u)
        return jp.sum_rate(H, bf.zf(H, cfg.power), cfg.noise_power)

    return np.asarray(jax.jit(jax.vmap(one))(users))


def test_result_is_feasible_and_self_consistent(small):
    cfg, users, res = small
    B, K, N, L = 3, cfg.num_users, cfg.num_waveguides, cfg.num_pinches
    assert res.positions.shape == (B, N, L) and res.W.shape == (B, N, K)
    assert res.history.shape == (B, FAST["steps"] + 1) and res.sum_rate.shape == (B,)
    assert bool(jnp.all(jp.is_feasible(cfg, res.positions)))
    np.testing.assert_allclose(jnp.sum(jnp.abs(res.W) ** 2, axis=(1, 2)), cfg.power, rtol=1e-5)
    again = _rates(cfg, res.positions, users, res.W)
    # float32 contract (docs/model.md §2): 1e-3 relative; ZF at SNR ~1e7 feels the last bits of H
    np.testing.assert_allclose(again, res.sum_rate, rtol=1e-3)
    # ZF: the returned point is the best iterate of the kept trajectory
    np.testing.assert_allclose(res.sum_rate, jnp.max(res.history, axis=1), rtol=1e-3)
    assert np.all(np.asarray(res.sum_rate) >= np.asarray(res.history[:, 0]) - 1e-4)
    assert np.all(np.asarray(res.start_rate) >= np.asarray(res.history[:, 0]) - 1e-4)
    labels = pos.candidate_labels(cfg, spacings=FAST["spacings"], random_starts=FAST["random_starts"])
    assert np.all((np.asarray(res.start) >= 0) & (np.asarray(res.start) < len(labels)))
    assert res.lam is None and res.share is None


def test_tuning_beats_uniform_positions_by_far(small):
    cfg, users, res = small
    assert np.all(np.asarray(res.sum_rate) > _uniform_zf(cfg, users) + 3.0)


def test_gradient_steps_improve_every_drop_from_uniform_and_random_starts(small):
    cfg, users, _ = small
    res = tune_positions(cfg, users, key=jax.random.key(1), steps=40, starts=3, assignments=0, random_starts=2)
    assert bool(jnp.all(jp.is_feasible(cfg, res.positions)))
    gain = np.asarray(res.sum_rate - res.history[:, 0])
    assert np.all(gain > 0.05), gain


def test_one_compile_per_configuration_and_single_drop_shapes(small, monkeypatch):
    cfg, users, _ = small
    counted = jax.jit(chex.assert_max_traces(pos._tune_batch, n=1), static_argnames="options")
    monkeypatch.setattr(pos, "tune_batch", counted)
    try:
        a = tune_positions(cfg, users[0], key=jax.random.key(0), **FAST)
        # other users, power, noise and length: traced config fields, so no new trace
        b = tune_positions(cfg.replace(power_dbm=20.0, length_x=15.0), users[1] * 0.5, key=jax.random.key(5), **FAST)
        b0 = tune_positions(cfg.replace(length_x=15.0), users[1] * 0.5, key=jax.random.key(5), **FAST)
        tune_positions(cfg.replace(noise_dbm=-80.0, height=3.0), users[2], key=jax.random.key(6), **FAST)
    finally:
        chex.clear_trace_counter()
    K, N, L = cfg.num_users, cfg.num_waveguides, cfg.num_pinches
    assert a.positions.shape == (N, L) and a.W.shape == (N, K) and a.sum_rate.shape == ()
    assert a.history.shape == (FAST["steps"] + 1,)
    # 10 dB more power on the same drop: at high SNR each of the K ZF streams gains log2(10);
    # measured 6.643852 vs K log2(10) = 6.643856 (same positions), on 3 drops
    np.testing.assert_allclose(float(b.sum_rate - b0.sum_rate), K * np.log2(10.0), atol=0.01)
    assert bool(jp.is_feasible(cfg.replace(length_x=15.0), b.positions))
    assert float(jnp.max(b.positions)) <= 15.0 + 1e-5


@pytest.mark.parametrize("beamformer", ["rzf", "wmmse", "kkt"])
def test_other_beamformers(small, beamformer):
    cfg, users, res_zf = small
    res = tune_positions(cfg, users, key=jax.random.key(0), beamformer=beamformer, steps=10, starts=2,
                         spacings=(0.0,), random_starts=0, final_wmmse_iterations=20)
    assert bool(jnp.all(jp.is_feasible(cfg, res.positions)))
    assert np.all(np.asarray(res.sum_rate) > _uniform_zf(cfg, users) + 3.0)
    np.testing.assert_allclose(jnp.sum(jnp.abs(res.W) ** 2, axis=(1, 2)), cfg.power, rtol=1e-4)
    H = _channels(cfg, res.positions, users)
    again = _rates(cfg, res.positions, users, res.W)
    np.testing.assert_allclose(again, res.sum_rate, rtol=1e-3)
    if beamformer == "rzf":
        W = jax.vmap(lambda h: bf.rzf(h, cfg.power, cfg.num_users * cfg.noise_power / cfg.power))(H)
        np.testing.assert_allclose(W, res.W, atol=1e-3 * np.sqrt(cfg.power))
        assert res.lam is None
    else:
        np.testing.assert_allclose(jnp.sum(res.share, axis=-1), 1.0, rtol=1e-5)
        assert np.all(np.asarray(res.lam) > 0)
    if beamformer == "kkt":
        W = jax.vmap(lambda h, lam, share: bf.kkt(h, lam, share, cfg.power))(H, res.lam, res.share)
        np.testing.assert_allclose(W, res.W, atol=1e-3 * np.sqrt(cfg.power))
    if beamformer == "wmmse":  # the final WMMSE updates never lower the tracked rate
        assert np.all(np.asarray(res.sum_rate) >= np.asarray(jnp.max(res.history, axis=1)) - 1e-3)


def test_aligned_start_is_coherent_at_the_assigned_users(x64):
    cfg = jp.PassConfig.joint_beamforming()
    users = jnp.array([[3.0, 1.0], [12.0, 5.0], [17.5, 8.0], [9.0, 3.0]], jnp.float64)
    assignment = jnp.array([0, 3, 1, 2])
    a = 1.0 / np.sqrt(cfg.num_pinches)
    aligned = jax.jit(lambda s: pos.aligned_positions(cfg, users, assignment, s))
    for spacing in (0.0, 0.1):
        X = aligned(spacing)
        assert X.dtype == jnp.float64 and bool(jp.is_feasible(cfg, X))
        H = np.asarray(jp.effective_channel(cfg, X, users))
        r = np.asarray(jp.distances(cfg, X, users))
        for n, k in enumerate(np.asarray(assignment)):
            coherent = np.sqrt(cfg.beta) * a * np.sum(1.0 / r[k, n])  # all phases aligned
            assert abs(H[k, n]) > 0.999 * coherent, (spacing, n, abs(H[k, n]) / coherent)
            assert abs(np.mean(X[n]) - users[k, 0]) < 0.05 + 0.6 * spacing * cfg.num_pinches
    # the uniform layout is far from coherent
    H0 = np.abs(np.asarray(jp.effective_channel(cfg, jp.uniform_positions(cfg, jnp.float64), users)))
    assert H0.max() < 0.5 * np.sqrt(cfg.beta * cfg.num_pinches) / cfg.height


def test_assignment_table_shapes():
    t = pos.assignment_table(3, 3)
    assert t.shape == (6, 3) and len({tuple(r) for r in t}) == 6
    assert all(sorted(r) == [0, 1, 2] for r in t)
    t = pos.assignment_table(4, 2)  # more waveguides than users: every user gets two
    assert all(np.bincount(r, minlength=2).tolist() == [2, 2] for r in t) and len({tuple(r) for r in t}) == len(t)
    t = pos.assignment_table(2, 3)  # more users than waveguides: distinct users served
    assert t.shape == (6, 2) and all(r[0] != r[1] for r in t)


def test_candidates_follow_their_labels():
    cfg = jp.PassConfig.joint_beamforming(**SMALL)
    users = jp.sample_users(jax.random.key(0), cfg)
    opts = pos.TuneOptions(spacings=(0.0, 0.03, 0.2), random_starts=3)
    C = jax.jit(lambda u, k: pos._candidates(cfg, opts, u, k))(users, jax.random.key(0))
    labels = pos.candidate_labels(cfg, spacings=(0.0, 0.03, 0.2), random_starts=3)
    assert C.shape == (len(labels), cfg.num_waveguides, cfg.num_pinches) and len(labels) == 2 * 3 + 1 + 3
    assert bool(jnp.all(jp.is_feasible(cfg, C)))
    np.testing.assert_allclose(C[labels.index("uniform")], jp.uniform_positions(cfg))
    r = pos.random_positions(jax.random.key(4), cfg)
    assert bool(jp.is_feasible(cfg, r)) and not np.allclose(r, pos.random_positions(jax.random.key(5), cfg))


def test_kkt_objective_gradient_matches_finite_differences(x64):
    cfg = jp.PassConfig.joint_beamforming(**SMALL)
    users = jp.sample_users(jax.random.key(2), cfg).astype(jnp.float64)
    opts = pos.TuneOptions(beamformer="kkt")
    X = pos.aligned_positions(cfg, users, jnp.array([0, 1]), 0.0) + 3e-4
    params = (X, (jnp.array([0.3, -0.2]), jnp.array([0.1, -0.4])))

    def f(p):
        return pos._objective(cfg, opts, users, p, None, 1)[0]

    f = jax.jit(f)
    g = jax.jit(jax.grad(f))(params)
    direction = jax.tree.map(lambda a: jax.random.normal(jax.random.key(a.size), a.shape, a.dtype), params)
    direction = (direction[0] * 1e-3, direction[1])  # metres vs log-units
    eps = 1e-6
    plus = jax.tree.map(lambda a, d: a + eps * d, params, direction)
    minus = jax.tree.map(lambda a, d: a - eps * d, params, direction)
    fd = (f(plus) - f(minus)) / (2 * eps)
    an = sum(jnp.vdot(a, d) for a, d in zip(jax.tree.leaves(g), jax.tree.leaves(direction)))
    assert abs(float(an)) > 1e-3
    np.testing.assert_allclose(float(an), float(fd), rtol=1e-5)
    for leaf in jax.tree.leaves(g[1]):  # the duals get their own, non-zero gradient
        assert float(jnp.max(jnp.abs(leaf))) > 0


@pytest.mark.parametrize(
    "kwargs,exc,needle",
    [
        (dict(beamformer="mrt"), ValueError, "beamformer"),
        (dict(steps=0), ValueError, "steps"),
        (dict(steps=2.5), TypeError, "steps"),
        (dict(starts=0), ValueError, "starts"),
        (dict(learning_rate=-1e-3), ValueError, "learning_rate"),
        (dict(final_learning_rate=float("nan")), ValueError, "final_learning_rate"),
        (dict(spacings=(-0.1,)), ValueError, "spacings"),
        (dict(spacings=()), ValueError, "spacings"),
        (dict(random_starts=-1), ValueError, "random_starts"),
        (dict(key=None), TypeError, "key"),
    ],
)
def test_bad_arguments(kwargs, exc, needle):
    cfg = jp.PassConfig.joint_beamforming(**SMALL)
    users = jp.sample_users(jax.random.key(0), cfg)
    kwargs = {"key": jax.random.key(0), **kwargs}
    with pytest.raises(exc, match=needle):
        tune_positions(cfg, users, **kwargs)


def test_bad_users_and_zf_with_more_users_than_waveguides():
    cfg = jp.PassConfig.joint_beamforming(**SMALL)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="users must have shape"):
        tune_positions(cfg, jnp.zeros((3, 2)), key=key)
    with pytest.raises(ValueError, match="users must have shape"):
        tune_positions(cfg, jnp.zeros((2, 2, 2, 2)), key=key)
    with pytest.raises(ValueError, match="non-finite"):
        tune_positions(cfg, jnp.array([[1.0, 2.0], [jnp.nan, 1.0]]), key=key)
    with pytest.raises(ValueError, match="K <= N"):
        tune_positions(cfg.replace(num_users=3), jnp.ones((3, 2)), key=key)
    with pytest.raises(TypeError, match="PassConfig"):
        tune_positions({"num_users": 2}, jnp.ones((2, 2)), key=key)


def test_tune_drop_under_a_users_jit_and_vmap_equals_the_driver(small):
    """The pure kernel composes with the caller's jax.jit(jax.vmap(...)), cfg traced, and matches tune_positions."""
    cfg, users, res = small
    opts = pos.TuneOptions(**FAST)
    keys = jax.random.split(jax.random.key(0), users.shape[0])  # the driver's per-drop keys
    mine = jax.jit(jax.vmap(lambda k, c, u: pos.tune_drop(k, c, u, opts), in_axes=(0, None, 0)))(keys, cfg, users)
    np.testing.assert_allclose(mine.sum_rate, res.sum_rate, rtol=1e-5)
    np.testing.assert_allclose(mine.positions, res.positions, atol=1e-6)
    np.testing.assert_array_equal(mine.start, res.start)


def test_refine_drop_is_tune_drop_from_one_given_start(small):
    """refine_drop(X0 = the candidate tune_drop kept) is tune_drop with starts=1; from uniform it only improves."""
    cfg, users, _ = small
    opts = pos.TuneOptions(**{**FAST, "starts": 1})
    keys = jax.random.split(jax.random.key(0), users.shape[0])
    tuned = jax.jit(jax.vmap(lambda k, u: pos.tune_drop(k, cfg, u, opts)))(keys, users)
    starts = jax.vmap(lambda k, u, i: pos._candidates(cfg, opts, u, k)[i])(keys, users, tuned.start)
    refine = jax.jit(jax.vmap(lambda u, X: pos.refine_drop(cfg, u, X, opts)))
    refined = refine(users, starts)
    np.testing.assert_allclose(refined.positions, tuned.positions, atol=1e-6)
    np.testing.assert_allclose(refined.history, tuned.history, rtol=1e-5)
    np.testing.assert_array_equal(refined.start, 0)
    X0 = jnp.broadcast_to(jp.uniform_positions(cfg), (users.shape[0], cfg.num_waveguides, cfg.num_pinches))
    up = refine(users, X0)
    np.testing.assert_allclose(up.start_rate, _uniform_zf(cfg, users), rtol=1e-3)  # float32 ZF at SNR ~1e7
    assert bool(jnp.all(jp.is_feasible(cfg, up.positions)))
    assert np.all(np.asarray(up.sum_rate - up.start_rate) > 0.05)
    with pytest.raises(ValueError, match="X0"):
        pos.refine_drop(cfg, users[0], jnp.zeros((cfg.num_waveguides, cfg.num_pinches + 1)), opts)


def test_stacked_configs_vmap_over_power_levels(small):
    """PassConfig.stack + vmap: one compiled call over scenarios equals one call per scenario."""
    cfg, users, _ = small
    opts = pos.TuneOptions(steps=5, starts=1, spacings=(0.0,), random_starts=0, assignments=2)
    powers = (0.0, 10.0, 20.0)
    stacked = jp.PassConfig.stack([cfg.replace(power_dbm=p) for p in powers])
    key = jax.random.key(2)
    rates = jax.jit(jax.vmap(lambda c: pos.tune_drop(key, c, users[0], opts).sum_rate))(stacked)
    one = jax.jit(lambda c: pos.tune_drop(key, c, users[0], opts).sum_rate)
    each = [float(one(cfg.replace(power_dbm=p))) for p in powers]
    # float32: the batched and the single program round differently (measured 2e-4 relative)
    np.testing.assert_allclose(rates, each, rtol=1e-3)
    assert np.all(np.diff(np.asarray(rates)) > 0)  # more power, more rate


def test_options_are_hashable_values_and_validate():
    a, b = pos.TuneOptions(spacings=[0.0, 0.1]), pos.TuneOptions(spacings=(0.0, 0.1))
    assert a == b and hash(a) == hash(b) and a.spacings == (0.0, 0.1)
    assert a.replace(steps=7).steps == 7 and a.steps == 300
    with pytest.raises(TypeError, match="no option"):
        a.replace(step=7)
    with pytest.raises(ValueError, match=r"learning_rate must be a finite number > 0 \[m\], got -1"):
        pos.TuneOptions(learning_rate=-1)
    with pytest.raises(ValueError, match="K <= N"):
        pos.tune_drop(jax.random.key(0), jp.PassConfig.joint_beamforming(num_users=5), jnp.ones((5, 2)))

"""Two-timescale design: slot statistics (jaxpass.slots) and SSCA (jaxpass.optimize.ssca)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

import jaxpass as jp
from jaxpass import beamforming as bf
from jaxpass import slots
from jaxpass.optimize import ssca as S

SMALL = dict(num_users=2, num_waveguides=2, num_pinches=4)
FAST = dict(iterations=12, slots_per_iteration=8, wmmse_iterations=3, init="uniform")


def _homes(cfg, B, seed=1):
    return jax.vmap(lambda k: slots.sample_homes(k, cfg))(jax.random.split(jax.random.key(seed), B))


@pytest.fixture(scope="module")
def small():
    cfg = jp.PassConfig.two_timescale(**SMALL)
    homes = _homes(cfg, 3)
    res = S.ssca(cfg, homes, key=jax.random.key(0), **FAST)
    return cfg, homes, res


# ------------------------------------------------------------------ slots
def test_slot_statistics():
    cfg = jp.PassConfig.two_timescale(**SMALL)
    homes = jnp.array([[10.0, 5.0], [0.2, 9.9]])
    u = slots.sample_slots(jax.random.key(0), cfg, homes, 4000, 0.5)
    assert u.shape == (4000, 2, 2)
    assert float(u[..., 0].min()) >= 0 and float(u[..., 0].max()) <= 20.0
    assert float(u[..., 1].min()) >= 0 and float(u[..., 1].max()) <= 10.0
    np.testing.assert_allclose(u[:, 0].mean(0), homes[0], atol=0.05)  # interior home: unbiased
    np.testing.assert_allclose(u[:, 0].std(0), [0.5, 0.5], rtol=0.05)
    assert float(jnp.mean(u[:, 1, 1] == 10.0)) > 0.3  # near the edge: clipped onto it
    np.testing.assert_array_equal(slots.sample_slots(jax.random.key(0), cfg, homes, 3, 0.0), jnp.broadcast_to(homes, (3, 2, 2)))
    iid = slots.sample_uniform_slots(jax.random.key(1), cfg, 500)
    assert iid.shape == (500, 2, 2) and float(iid[..., 0].max()) > 15 and float(iid[..., 1].max()) <= 10
    h = slots.sample_homes(jax.random.key(2), cfg)
    assert h.shape == (2, 2) and bool(jnp.all((h >= 0) & (h <= jnp.array([20.0, 10.0]))))
    # pure: under the caller's jit/vmap with cfg and sigma_u traced
    draw = jax.jit(jax.vmap(lambda k, c, s: slots.sample_slots(k, c, homes, 5, s), in_axes=(0, None, None)))
    batch = draw(jax.random.split(jax.random.key(3), 4), cfg.replace(length_x=5.0), 2.0)
    assert batch.shape == (4, 5, 2, 2) and float(batch[..., 0].max()) <= 5.0
    np.testing.assert_array_equal(slots.draw_slots(jax.random.key(4), cfg, homes, 6, "uniform"),
                                  slots.sample_uniform_slots(jax.random.key(4), cfg, 6))


@pytest.mark.parametrize(
    "call,exc,needle",
    [
        (lambda c, h: slots.sample_slots(jax.random.key(0), c, h, 0), ValueError, "num_slots"),
        (lambda c, h: slots.sample_slots(jax.random.key(0), c, h, 2.5), TypeError, "num_slots"),
        (lambda c, h: slots.sample_slots(jax.random.key(0), c, h[:1], 3), ValueError, "homes"),
        (lambda c, h: slots.sample_slots(jax.random.key(0), c, h, 3, -0.1), ValueError, "sigma_u"),
        (lambda c, h: slots.draw_slots(jax.random.key(0), c, h, 3, "levy"), ValueError, "model"),
        (lambda c, h: slots.sample_homes(jax.random.key(0), {"num_users": 2}), TypeError, "PassConfig"),
    ],
)
def test_slot_sampler_bad_arguments(call, exc, needle):
    cfg = jp.PassConfig.two_timescale(**SMALL)
    with pytest.raises(exc, match=needle):
        call(cfg, jnp.ones((2, 2)))


# -------------------------------------------------------------- gradients
def _kkt_point(cfg, seed):
    """A float64 slot near a coherent layout, with WMMSE's duals there."""
    users = jp.sample_users(jax.random.key(seed), cfg).astype(jnp.float64)

    @jax.jit
    def point(cfg, users):
        X = jp.optimize.positions.aligned_positions(cfg, users, jnp.array([0, 1]), 0.02) + 2e-4
        X = jp.project_positions(cfg, X)
        H = jp.effective_channel(cfg, X, users)
        info = bf.wmmse(H, cfg.power, cfg.noise_power, iterations=30, return_info=True)
        return X, users, info.lam, info.share

    return point(cfg, users)


def _fd_check(f, X):
    g = jax.grad(f)(X)
    d = jax.random.normal(jax.random.key(7), X.shape, X.dtype) * 1e-3  # metres
    eps = 1e-6
    fd = (f(X + eps * d) - f(X - eps * d)) / (2 * eps)
    an = jnp.vdot(g, d)
    assert abs(float(an)) > 1e-3
    np.testing.assert_allclose(float(an), float(fd), rtol=1e-5)


def test_slot_gradient_through_the_kkt_beamformer_matches_finite_differences(x64):
    cfg = jp.PassConfig.two_timescale(**SMALL)
    X, users, lam, share = _kkt_point(cfg, 2)
    # duals from WMMSE, held fixed: the gradient flows through the KKT map and the channel
    fixed = S.kkt_solver(lambda c, H: (lam, share))
    _fd_check(jax.jit(lambda X: S.slot_objective(cfg, X, users, solver=fixed)), X)

    # duals that depend on the channel (as a trained network's do): the gradient flows through them too
    def duals(c, H):
        g = jnp.sum(jnp.abs(H) ** 2, axis=1)
        return lam * jnp.sum(g) / jnp.sum(jnp.abs(jax.lax.stop_gradient(H)) ** 2), g / jnp.sum(g)

    _fd_check(jax.jit(lambda X: S.slot_objective(cfg, X, users, solver=S.kkt_solver(duals))), X)


@pytest.mark.parametrize("short_term", ["wmmse", "rzf", "kkt"])
def test_explicit_plus_implicit_gradient_is_the_total_gradient(x64, short_term):
    cfg = jp.PassConfig.two_timescale(**SMALL)
    X, _, _, _ = _kkt_point(cfg, 3)
    homes = slots.sample_homes(jax.random.key(4), cfg, jnp.float64)
    batch = slots.sample_slots(jax.random.key(5), cfg, homes, 6)
    opts = S.SscaOptions(short_term=short_term, wmmse_iterations=4)
    envelope = opts.replace(mode="envelope")

    @jax.jit
    def run(cfg, X, batch):
        split = S.objective_and_gradients(cfg, X, batch, opts)
        total = jax.value_and_grad(S.minibatch_objective, argnums=1)(cfg, X, batch, opts)
        # the explicit part is the gradient with W held fixed
        W = jax.vmap(lambda u: S.short_term_beamformer(cfg, jp.effective_channel(cfg, X, u), opts)[0])(batch)
        explicit = jax.grad(lambda X: -jnp.mean(jax.vmap(
            lambda u, W: jp.sum_rate(jp.effective_channel(cfg, X, u), W, cfg.noise_power))(batch, W)))(X)
        return split, total, explicit, S.objective_and_gradients(cfg, X, batch, envelope)

    (value, gx, gw), (v_total, total), explicit, (v2, gx2, gw2) = run(cfg, X, batch)
    np.testing.assert_allclose(gx + gw, total, rtol=1e-9, atol=1e-9 * float(jnp.max(jnp.abs(total))))
    np.testing.assert_allclose(value, v_total, rtol=1e-12)
    assert float(jnp.max(jnp.abs(gw))) > 1e-6 * float(jnp.max(jnp.abs(gx)))  # W(X) is not stationary: f_W != 0
    np.testing.assert_allclose(gx, explicit, rtol=1e-9, atol=1e-9 * float(jnp.max(jnp.abs(explicit))))
    # envelope mode: the same explicit part, no implicit one
    np.testing.assert_allclose(gx2, gx, rtol=1e-9, atol=1e-9 * float(jnp.max(jnp.abs(gx))))
    assert float(jnp.max(jnp.abs(gw2))) == 0.0 and float(v2) == pytest.approx(float(value), rel=1e-12)


def test_nonfinite_slots_are_left_out_and_counted():
    cfg = jp.PassConfig.two_timescale(**SMALL)
    X = jp.uniform_positions(cfg)
    batch = slots.sample_slots(jax.random.key(5), cfg, _homes(cfg, 1)[0], 4)
    bad = batch.at[1].set(jnp.nan)
    opts = S.SscaOptions(short_term="rzf")
    v, gx, gw, n = jax.jit(lambda b: S.objective_gradients_count(cfg, X, b, opts))(bad)
    ref = jax.jit(lambda b: S.objective_gradients_count(cfg, X, b, opts))(batch[jnp.array([0, 2, 3])])
    assert int(n) == 1 and int(ref[3]) == 0
    for a, b in zip((v, gx, gw), ref[:3]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(b))))


def test_ssca_never_returns_a_layout_below_its_start_on_the_validation_slots():
    """The quick ``jaxpass ssca`` settings (4 iterations x 4 slots): the layout returned scores at least its
    start on the validation mini-batch (slots of validation_key, never ascended on), recomputed here."""
    from jaxpass._checks import drop_keys
    from jaxpass.experiments import two_timescale as tt

    opts = tt.quick_settings().ssca
    cfg = tt.scenario(4, 28.0)
    homes = tt.block_homes(cfg, 2, 0)
    key = jax.random.key(1)
    res = S.ssca(cfg, homes, opts, key=key)
    score = jax.jit(jax.vmap(lambda k, X, h: S.evaluate(S.validation_key(k), cfg, X, h, opts.validation_slots, opts)))
    keys = drop_keys(key, (2,))
    start, final, kept = (np.asarray(score(keys, X, homes)) for X in (res.initial, res.final, res.positions))
    np.testing.assert_allclose(np.asarray(res.validation_rate), np.stack([start, final], -1), rtol=1e-5)
    assert np.all(kept >= start) and np.all(kept >= final - 1e-4 * np.abs(final))
    np.testing.assert_array_equal(np.asarray(res.kept_final), final >= start)
    # without the validation slots: the last iterate, wherever it lands (the pure kernel, no SSCA rerun)
    X, kept, rates = S.keep_better(key, cfg, homes[0], res.initial[0], res.final[0], opts.replace(validation_slots=0))
    np.testing.assert_array_equal(X, res.final[0])
    assert bool(kept) and bool(jnp.all(jnp.isnan(rates)))


# ------------------------------------------------------------------- SSCA
def test_every_iterate_is_feasible_and_shapes(small):
    cfg, homes, res = small
    B, T, N, L = 3, FAST["iterations"], cfg.num_waveguides, cfg.num_pinches
    assert res.positions.shape == (B, N, L) and res.X.shape == (B, T, N, L)
    assert res.avg_rate.shape == (B, T) and res.rate.shape == (B, T)
    assert bool(jnp.all(jp.is_feasible(cfg, res.X))) and bool(jnp.all(jp.is_feasible(cfg, res.positions)))
    np.testing.assert_allclose(res.initial, jnp.broadcast_to(jp.uniform_positions(cfg), (B, N, L)), atol=1e-6)
    assert bool(jnp.all(jnp.isfinite(res.rate))) and bool(jnp.all(res.rate > 0))
    # rho^0 = 1: the first average is the first mini-batch's rate
    np.testing.assert_allclose(res.avg_rate[:, 0], res.rate[:, 0], rtol=1e-6)
    assert float(jnp.max(jnp.abs(res.final - res.initial))) > 0  # it moved
    kept = np.asarray(res.kept_final)[:, None, None]
    np.testing.assert_array_equal(res.positions, np.where(kept, res.final, res.initial))  # the kept one
    assert res.nonfinite_slots.shape == (B,) and int(jnp.sum(res.nonfinite_slots)) == 0


def test_fixed_key_is_reproducible(small):
    cfg, homes, res = small
    again = S.ssca(cfg, homes, key=jax.random.key(0), **FAST)
    for a, b in zip(res, again):
        np.testing.assert_array_equal(a, b)
    other = S.ssca(cfg, homes, key=jax.random.key(1), **FAST)
    assert not np.array_equal(other.positions, res.positions)


def test_step_sizes_satisfy_the_papers_conditions(x64):
    opts = S.SscaOptions()
    t = np.arange(1_000_000)
    rho, gamma = (np.asarray(a, np.float64) for a in S.step_sizes(t, opts))
    assert rho[0] == 1.0 and gamma[0] == 1.0  # 10 / 10^0.9 > 1 is clipped into (0, 1]
    np.testing.assert_allclose(rho[20], 10 / 30**0.9, rtol=1e-6)
    np.testing.assert_allclose(gamma[20], 15 / 35, rtol=1e-6)
    assert np.all(rho > 0) and np.all(rho <= 1) and np.all(gamma > 0) and np.all(gamma <= 1)
    assert np.all(np.diff(rho) <= 0) and np.all(np.diff(gamma) <= 0)
    assert rho[-1] < 0.01 and gamma[-1] < 1e-4  # -> 0
    decades = [(10**k, 10 ** (k + 1)) for k in range(1, 6)]
    for seq in (rho, gamma):  # sums diverge: each decade adds at least as much as the one before
        part = [seq[a:b].sum() for a, b in decades]
        assert all(q >= 0.99 * p for p, q in zip(part, part[1:])), part
        sq = [(seq[a:b] ** 2).sum() for a, b in decades]  # squares summable: decades shrink geometrically
        assert all(q < 0.3 * p for p, q in zip(sq, sq[1:])), sq
    ratio = gamma / rho  # gamma / rho -> 0 (it peaks at t = 35, where 1/(15+t) = 0.9/(10+t))
    assert np.all(np.diff(ratio[36:]) < 0) and ratio[-1] < 0.5 * ratio[100]


def test_first_step_is_capped_then_tau_stays_constant(small):
    cfg, homes, res = small
    cap = S.SscaOptions().max_first_step
    # the driver's run: tau raised at t = 0 at most, then held; the first step (gamma^0 = 1) moves
    # no pinch by more than the cap (the projection onto a convex set containing X^0 only shortens it)
    assert bool(jnp.all(res.tau >= S.SscaOptions().tau))
    assert float(jnp.max(jnp.abs(res.X[:, 1] - res.X[:, 0]))) <= cap + 1e-5  # float32 at 20 m: ulp 2e-6
    opts = S.SscaOptions(**FAST)
    state = S.ssca_init(cfg, jp.uniform_positions(cfg), opts)
    assert float(state.tau) == opts.tau
    g = jnp.full((cfg.num_waveguides, cfg.num_pinches), 1e3).at[0, 0].set(-8e6)  # bps/Hz per m
    tau0 = S.calibrated_tau(g, state, opts)
    np.testing.assert_allclose(float(tau0), 8e6 / (2 * cap), rtol=1e-6)  # max|g| / (2 tau) = cap
    small_g = S.calibrated_tau(g * 1e-6, state, opts)                    # small gradient: the given tau
    assert float(small_g) == opts.tau
    later = state._replace(t=jnp.asarray(5, jnp.int32), tau=jnp.asarray(3e7, state.X.dtype))
    assert float(S.calibrated_tau(g * 100, later, opts)) == 3e7            # constant after t = 0
    assert float(S.calibrated_tau(g, state, opts.replace(max_first_step=0.0))) == opts.tau  # off
    assert float(S.calibrated_tau(g.at[1, 1].set(jnp.nan), state, opts)) == opts.tau    # non-finite: kept


def test_ssca_improves_the_held_out_rate_over_the_uniform_start():
    """Quasi-static users (sigma_u = 3 mm < lambda = 1 cm): the averaged landscape keeps its phase
    structure and SSCA (WMMSE short-term) must climb it. With sigma_u >> lambda the phase terms
    average out and the mini-batch gradient at the uniform layout is mostly noise; that regime is
    what the aligned start is for (examples/two_timescale.py)."""
    cfg = jp.PassConfig.two_timescale(**SMALL)
    homes = _homes(cfg, 2, seed=8)
    opts = S.SscaOptions(iterations=60, slots_per_iteration=12, wmmse_iterations=5, sigma_u=0.003, init="uniform")
    res = S.ssca(cfg, homes, opts, key=jax.random.key(0))
    key = jax.random.key(123)  # held-out slots: not a key the optimisation used
    before = S.held_out_rate(cfg, res.initial, homes, opts, key=key, num_slots=200)
    after = S.held_out_rate(cfg, res.final, homes, opts, key=key, num_slots=200)  # the last iterate X^T
    assert bool(jnp.all(after > before + 0.2)), (before, after)


def test_ssca_step_under_a_users_jit_and_vmap_equals_the_driver(small):
    cfg, homes, res = small
    opts = S.SscaOptions(**FAST)
    B = homes.shape[0]
    runs = [jax.random.split(jax.random.split(k)[1], opts.iterations) for k in jax.random.split(jax.random.key(0), B)]
    keys = jnp.stack(runs, axis=1)  # (T, B): the driver's per-block iteration keys
    state = jax.vmap(lambda h: S.ssca_init(cfg, jp.uniform_positions(cfg), opts))(homes)
    step = jax.jit(jax.vmap(lambda k, c, h, s: S.ssca_step(k, c, h, s, opts), in_axes=(0, None, 0, 0)))
    for t in range(opts.iterations):
        state, m = step(keys[t], cfg, homes, state)
        if t < 3:
            # float32: the step-by-step program and the driver's scan round differently, and a
            # 1-ulp (1e-6 m) difference in X changes the next gradient (the rate turns on a mm
            # scale), so the two drift apart by ~4x per iteration: compare the first iterations
            np.testing.assert_allclose(m.X, res.X[:, t], atol=1e-5)
            np.testing.assert_allclose(m.rate, res.rate[:, t], rtol=1e-4)
    assert int(state.t[0]) == opts.iterations and bool(jnp.all(jp.is_feasible(cfg, state.X)))
    # the whole block kernel under the user's jit(vmap) is the driver's program: equal throughout
    mine = jax.jit(jax.vmap(lambda k, c, h: S.ssca_block(k, c, h, None, opts), in_axes=(0, None, 0)))(
        jax.random.split(jax.random.key(0), B), cfg, homes)
    np.testing.assert_allclose(mine.positions, res.positions, atol=1e-5)
    np.testing.assert_allclose(mine.rate, res.rate, rtol=1e-5)


def test_power_sweep_and_new_network_parameters_compile_once(small, monkeypatch):
    cfg, homes, _ = small
    counted = jax.jit(chex.assert_max_traces(S._ssca_batch, n=1), static_argnames="options")
    monkeypatch.setattr(S, "ssca_batch", counted)
    opts = S.SscaOptions(iterations=3, slots_per_iteration=4, wmmse_iterations=2, init="uniform")
    try:
        for p in (12.0, 20.0, 28.0):  # one block (no leading axis): single-block shapes
            r = S.ssca(cfg.replace(power_dbm=p, noise_dbm=-90.0 + p / 10), homes[0], opts, key=jax.random.key(0))
            assert bool(jnp.all(jp.is_feasible(cfg, r.positions)))
    finally:
        chex.clear_trace_counter()
    N, L = cfg.num_waveguides, cfg.num_pinches
    assert r.positions.shape == (N, L) and r.rate.shape == (3,) and r.X.shape == (3, N, L)

    # a pluggable KKT solver whose duals come from "parameters" bound in a Partial: traced, no retrace
    def duals(params, c, H):
        return params[0] * jnp.ones(H.shape[0], H.real.dtype), jax.nn.softmax(params[1] * jnp.arange(H.shape[0]))

    counted = jax.jit(chex.assert_max_traces(S._ssca_batch, n=1), static_argnames="options")
    monkeypatch.setattr(S, "ssca_batch", counted)
    try:
        outs = [S.ssca(cfg, homes, opts, key=jax.random.key(0), solver=S.kkt_solver(Partial(duals, jnp.array([a, b]))))
                for a, b in ((1e9, 0.0), (1e11, 0.5))]
    finally:
        chex.clear_trace_counter()
    assert not np.array_equal(outs[0].rate, outs[1].rate)


def test_named_kkt_equals_the_plugged_kkt_solver_with_wmmse_duals(small):
    cfg, homes, _ = small
    opts = S.SscaOptions(**{**FAST, "iterations": 4}, short_term="kkt")
    named = S.ssca(cfg, homes, opts, key=jax.random.key(2))
    plugged = S.ssca(cfg, homes, opts.replace(short_term="rzf"), key=jax.random.key(2),
                     solver=S.kkt_solver(functools.partial(S.wmmse_duals, iterations=opts.wmmse_iterations)))
    np.testing.assert_allclose(named.rate, plugged.rate, rtol=1e-6)
    np.testing.assert_allclose(named.positions, plugged.positions, atol=1e-6)


def test_aligned_start_and_held_out_evaluation(small):
    cfg, homes, _ = small
    opts = S.SscaOptions(**{**FAST, "init": "aligned"}, spacings=(0.0, 0.1))
    res = S.ssca(cfg, homes, opts, key=jax.random.key(0))
    k_inits = jnp.stack([jax.random.split(k)[0] for k in jax.random.split(jax.random.key(0), 3)])

    @jax.jit
    def screen(keys, cfg, homes):
        X0 = jax.vmap(lambda k, h: S.initial_positions(k, cfg, h, opts))(keys, homes)
        # the screening mini-batch is drawn with the same key
        batch = jax.vmap(lambda k, h: slots.sample_slots(k, cfg, h, opts.slots_per_iteration, opts.sigma_u))(keys, homes)
        rate = jax.vmap(lambda X, b: -S.minibatch_objective(cfg, X, b, opts))
        return X0, rate(X0, batch), rate(jnp.broadcast_to(jp.uniform_positions(cfg), X0.shape), batch)

    X0, r0, ru = screen(k_inits, cfg, homes)
    assert bool(jnp.all(jp.is_feasible(cfg, X0)))
    np.testing.assert_allclose(res.initial, X0, atol=1e-6)  # the driver's start
    assert bool(jnp.all(r0 >= ru - 1e-4))  # the uniform layout is a candidate: the kept one is at least as good
    assert not np.allclose(X0, jp.uniform_positions(cfg))
    # the driver of the evaluation equals the pure kernel under the user's jit(vmap)
    keys = jax.random.split(jax.random.key(9), 3)
    driver = S.held_out_rate(cfg, res.positions, homes, opts, key=jax.random.key(9), num_slots=32)
    mine = jax.jit(jax.vmap(lambda k, c, x, h: S.evaluate(k, c, x, h, 32, opts), in_axes=(0, None, 0, 0)))(
        keys, cfg, res.positions, homes)
    np.testing.assert_allclose(driver, mine, rtol=1e-5)
    assert driver.shape == (3,) and bool(jnp.all(driver > 0))
    iid = S.held_out_rate(cfg, res.positions, homes, opts, key=jax.random.key(9), num_slots=32, slot_model="uniform")
    assert iid.shape == (3,) and bool(jnp.all(jnp.isfinite(iid))) and not np.allclose(iid, driver)


@pytest.mark.parametrize(
    "kwargs,exc,needle",
    [
        (dict(iterations=0), ValueError, "iterations"),
        (dict(iterations=2.5), TypeError, "iterations"),
        (dict(slots_per_iteration=0), ValueError, "slots_per_iteration"),
        (dict(tau=0.0), ValueError, "tau"),
        (dict(tau=float("nan")), ValueError, "tau"),
        (dict(max_first_step=-1e-3), ValueError, "max_first_step"),
        (dict(short_term="zf"), ValueError, "short_term"),
        (dict(wmmse_iterations=0), ValueError, "wmmse_iterations"),
        (dict(mode="implicit"), ValueError, "mode"),
        (dict(init="random"), ValueError, "init"),
        (dict(rho_exponent=1.0), ValueError, "rho_exponent"),
        (dict(rho_exponent=0.5), ValueError, "rho_exponent"),
        (dict(rho_offset=-1.0), ValueError, "rho_offset"),
        (dict(gamma_offset=0.0), ValueError, "gamma_offset"),
        (dict(slot_model="levy"), ValueError, "slot_model"),
        (dict(sigma_u=-0.5), ValueError, "sigma_u"),
        (dict(assignments=-1), ValueError, "assignments"),
        (dict(spacings=()), ValueError, "spacings"),
        (dict(step=3), TypeError, "no option"),
        (dict(key=None), TypeError, "key"),
        (dict(solver=3), TypeError, "solver"),
        (dict(X0=jnp.zeros((3, 4))), ValueError, "X0"),
        (dict(X0=jnp.full((2, 4), jnp.nan)), ValueError, "X0"),
    ],
)
def test_bad_arguments(kwargs, exc, needle):
    cfg = jp.PassConfig.two_timescale(**SMALL)
    kwargs = {"key": jax.random.key(0), "iterations": 1, "slots_per_iteration": 2, **kwargs}
    with pytest.raises(exc, match=needle):
        S.ssca(cfg, jnp.ones((2, 2)), **kwargs)


def test_bad_homes_config_and_evaluation_arguments():
    cfg = jp.PassConfig.two_timescale(**SMALL)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="homes must have shape"):
        S.ssca(cfg, jnp.ones((3, 2)), key=key)
    with pytest.raises(ValueError, match="homes must have shape"):
        S.ssca(cfg, jnp.ones((1, 1, 2, 2)), key=key)
    with pytest.raises(ValueError, match="homes must lie in the area"):
        S.ssca(cfg, jnp.array([[1.0, 2.0], [25.0, 1.0]]), key=key)
    with pytest.raises(ValueError, match="homes.*non-finite"):
        S.ssca(cfg, jnp.array([[1.0, 2.0], [jnp.nan, 1.0]]), key=key)
    with pytest.raises(TypeError, match="PassConfig"):
        S.ssca({"num_users": 2}, jnp.ones((2, 2)), key=key)
    with pytest.raises(TypeError, match="options must be a SscaOptions"):
        S.ssca(cfg, jnp.ones((2, 2)), jp.optimize.positions.TuneOptions(), key=key)
    with pytest.raises(ValueError, match="num_slots"):
        S.held_out_rate(cfg, jp.uniform_positions(cfg), jnp.ones((2, 2)), key=key, num_slots=0)
    with pytest.raises(ValueError, match="X must have shape"):
        S.held_out_rate(cfg, jnp.ones((2, 2, 4)), jnp.ones((3, 2, 2)), key=key)


def test_options_are_hashable_values():
    a, b = S.SscaOptions(spacings=[0.0, 0.1]), S.SscaOptions(spacings=(0.0, 0.1))
    assert a == b and hash(a) == hash(b) and a.spacings == (0.0, 0.1)
    assert a.replace(tau=5.0).tau == 5.0 and a.slots_per_iteration == 100
    assert S.SscaOptions.resolve(None, iterations=7).iterations == 7

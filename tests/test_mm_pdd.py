"""MM-PDD (JB Alg. 1, docs/model.md §3.3): block optimality, AL monotonicity, convergence, best iterate.

All checks run in float64 (scoped ``jax.enable_x64``): the phases theta are ~1e4 rad, so
float32 cannot resolve the residual to the paper's eps = 1e-6 (module docstring, "Precision").
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpass as jp
from jaxpass.optimize import mm_pdd as M

CFG = jp.PassConfig.joint_beamforming(num_users=2, num_waveguides=2, num_pinches=3)


def _perturbed_state(seed, units):
    """A generic (inconsistent) state: random duals, perturbed auxiliaries, MRT beamformer."""
    users = jp.sample_users(jax.random.key(seed), CFG)
    prob, st = M.init_state(CFG, users, D0="mrt", rho0=1e-3, units=units)
    keys = jax.random.split(jax.random.key(100 + seed), 10)
    shp = st.U.shape
    K = CFG.num_users

    def cn(k, shape, scale):
        a, b = jax.random.normal(k, (2,) + shape, jnp.float64)
        return scale * (a + 1j * b)

    u_scale = float(jnp.max(jnp.abs(st.U)))
    q_scale = float(jnp.max(jnp.abs(st.Q)))
    st = st._replace(
        U=st.U + cn(keys[0], shp, 0.1 * u_scale),
        theta=st.theta + 0.3 * jax.random.normal(keys[1], shp, jnp.float64),
        S=st.S + 0.01 * jax.random.normal(keys[2], shp, jnp.float64),
        Q=st.Q + cn(keys[3], (K, K), 0.1 * q_scale),
        lam_u=cn(keys[4], shp, 1e-2 * u_scale / 1e-3),
        lam_theta=1.0 * jax.random.normal(keys[5], shp, jnp.float64),
        lam_s=0.1 * jax.random.normal(keys[6], shp, jnp.float64),
        lam_q=cn(keys[7], (K, K), 1e-2 * q_scale / 1e-3),
    )
    return users, prob, M.update_v_alpha(prob, st)


@pytest.fixture(scope="module")
def states():
    with jax.enable_x64(True):  # scoped: exits before the tests run (they re-enter it)
        return [_perturbed_state(seed, units) for seed in (0, 1) for units in ("normalized", "physical")]


def _rel(a, b):
    return (float(a) - float(b)) / max(abs(float(b)), 1.0)


def test_every_block_update_does_not_increase_the_augmented_lagrangian(states):
    with jax.enable_x64(True):
        for _users, prob, st in states:
            for sweep in range(3):
                for name in M.BLOCKS:
                    before = M.augmented_lagrangian(prob, st)
                    st = M.block_update(CFG, prob, st, name)
                    after = M.augmented_lagrangian(prob, st)
                    assert _rel(after, before) <= 1e-12, (sweep, name, float(before), float(after))
            new, rise = M.bcd_sweep(CFG, prob, st)
            assert float(rise) <= 1e-12
            assert float(M.augmented_lagrangian(prob, new)) <= float(M.augmented_lagrangian(prob, st)) + 1e-12


def _grad_norms(f, x):
    g = jax.grad(f)(x)
    return float(jnp.max(jnp.abs(g)))


def test_v_alpha_and_u_updates_are_stationary_points(states):
    with jax.enable_x64(True):
        for _, prob, st in states:
            st = M.update_v_alpha(prob, st)
            al = lambda **kw: M.augmented_lagrangian(prob, st._replace(**kw))  # noqa: E731
            scale = float(jnp.max(st.alpha))
            assert _grad_norms(lambda v: al(v=v), st.v) <= 1e-8 * scale / float(jnp.min(jnp.abs(st.v)))
            assert _grad_norms(lambda a: al(alpha=a), st.alpha) <= 1e-10
            st = M.update_u(prob, st)
            g = jax.grad(lambda U: M.augmented_lagrangian(prob, st._replace(U=U)))(st.U)
            typical = jax.grad(lambda U: M.augmented_lagrangian(prob, st._replace(U=U)))(st.U * 1.01)
            assert float(jnp.max(jnp.abs(g))) <= 1e-8 * float(jnp.max(jnp.abs(typical)))


def test_dq_update_satisfies_its_kkt_conditions(states):
    with jax.enable_x64(True):
        for _, prob, st in states:
            st = M.update_dq(prob, st)
            al = lambda **kw: M.augmented_lagrangian(prob, st._replace(**kw))  # noqa: E731
            gq = jax.grad(lambda Q: al(Q=Q))(st.Q)
            gq_typ = jax.grad(lambda Q: al(Q=Q))(st.Q * 1.01)
            assert float(jnp.max(jnp.abs(gq))) <= 1e-8 * float(jnp.max(jnp.abs(gq_typ)))
            # D: G + 2 mu D = 0 with mu >= 0, ||D||^2 <= P, mu (||D||^2 - P) = 0 (G: real gradient)
            G = jnp.conj(jax.grad(lambda D: al(D=D))(st.D))
            power = float(jnp.sum(jnp.abs(st.D) ** 2))
            P = float(prob.power)
            assert power <= P * (1 + 1e-9)
            mu = -float(jnp.real(jnp.vdot(st.D, G))) / (2 * power)
            resid = float(jnp.max(jnp.abs(G + 2 * mu * st.D)))
            G_typ = jnp.conj(jax.grad(lambda D: al(D=D))(st.D * 0.9))
            assert resid <= 1e-7 * float(jnp.max(jnp.abs(G_typ)))
            assert mu >= -1e-9 * float(jnp.max(jnp.abs(G_typ)))
            if power < P * (1 - 1e-6):  # slack budget: unconstrained minimum
                assert abs(mu) <= 1e-7 * float(jnp.max(jnp.abs(G_typ)))


def _x_part(prob, st, X):
    return M.augmented_lagrangian(prob, st._replace(X=X))


def test_x_surrogate_majorises_the_al_and_is_tight(states):
    with jax.enable_x64(True):
        for _, prob, st in states:
            weight, centre = M.x_surrogate(prob, st)
            X0 = st.X

            def surrogate(X):
                return 0.5 * jnp.sum(weight * (X - centre) ** 2)

            # majoriser up to a constant: S(X) - S(X0) >= AL(X) - AL(X0), equality at X0, same gradient
            g_al = jax.grad(lambda X: _x_part(prob, st, X))(X0)
            g_s = jax.grad(surrogate)(X0)
            np.testing.assert_allclose(g_s, g_al, rtol=1e-6, atol=1e-6 * float(jnp.max(jnp.abs(g_al))))
            assert float(jnp.max(jnp.abs(g_al))) > 0
            base_al, base_s = _x_part(prob, st, X0), surrogate(X0)
            for i, step in enumerate((1e-6, 1e-4, 1e-2, 0.5)):
                d = step * jax.random.normal(jax.random.key(i), X0.shape, jnp.float64)
                dal = float(_x_part(prob, st, X0 + d) - base_al)
                ds = float(surrogate(X0 + d) - base_s)
                # rounding: both are differences of O(|AL|) numbers
                tol = 1e-13 * (abs(float(base_al)) + abs(float(base_s))) + 1e-9 * max(abs(dal), abs(ds))
                assert ds >= dal - tol, (step, ds, dal, float(base_al))


def test_x_update_is_the_exact_constrained_minimiser_of_its_surrogate(states):
    with jax.enable_x64(True):
        for _, prob, st in states:
            weight, centre = M.x_surrogate(prob, st)
            X = M.update_x(CFG, prob, st).X
            assert bool(jp.is_feasible(CFG, X))
            grad = weight * (X - centre)
            # variational inequality <grad, Y - X> >= 0 for every feasible Y (first-order optimality)
            Ys = [jp.project_positions(CFG, X + s * jax.random.normal(jax.random.key(i), X.shape, jnp.float64))
                  for i, s in enumerate((1e-4, 1e-3, 1e-2, 0.1, 1.0, 5.0) * 3)]
            Ys.append(jp.uniform_positions(CFG, jnp.float64))
            # rounding floor: the weights are ~kappa^2 n_eff^2 / rho, X is accurate to ~eps |X|
            noise = 8 * np.finfo(np.float64).eps * float(jnp.sum(weight * (jnp.abs(centre) + 1.0)))
            for Y in Ys:
                vi = float(jnp.sum(grad * (Y - X)))
                assert vi >= -noise * float(jnp.max(jnp.abs(Y - X))), (vi, noise)
            # and the constraint binds where the gradient does not vanish (not an interior point)
            assert float(jnp.max(jnp.abs(grad))) > 1e3 * noise or bool(jnp.allclose(X, centre))


def test_theta_s_update_is_stationary_for_its_surrogate_and_exact_in_s(states):
    with jax.enable_x64(True):
        for _, prob, st in states:
            g, varrho = M.theta_s_surrogate(prob, st)
            theta0 = st.theta
            new = M.update_theta_s(prob, st)

            def surrogate_al(theta, S):
                # AL with -phi Re{(lam_u + u r / rho) e^{j theta}} replaced by its Lipschitz surrogate (22a)
                s2 = st._replace(theta=theta, S=S)
                r = M.distances(prob, st.X)
                c = prob.phi * (st.lam_u + st.U * r / st.rho)
                exact = -jnp.sum(jnp.real(c * jnp.exp(1j * theta)))
                surr = jnp.sum(g * theta + 0.5 * varrho * (theta - theta0) ** 2)
                return M.augmented_lagrangian(prob, s2) - exact + surr

            gt, gs = jax.grad(surrogate_al, argnums=(0, 1))(new.theta, new.S)
            gt_typ, gs_typ = jax.grad(surrogate_al, argnums=(0, 1))(theta0 + 0.1, st.S + 0.01)
            assert float(jnp.max(jnp.abs(gt))) <= 1e-6 * float(jnp.max(jnp.abs(gt_typ)))
            assert float(jnp.max(jnp.abs(gs))) <= 1e-6 * float(jnp.max(jnp.abs(gs_typ)))
            # the surrogate majorises the exponential term (Lemma 2)
            c = prob.phi * (st.lam_u + st.U * M.distances(prob, st.X) / st.rho)
            for dt in (0.01, 0.5, 3.0):
                th = theta0 + dt
                exact = -jnp.real(c * jnp.exp(1j * th)) + jnp.real(c * jnp.exp(1j * theta0))
                surr = g * dt + 0.5 * varrho * dt**2
                assert bool(jnp.all(surr >= exact - 1e-9 * (jnp.abs(c) + 1)))


@pytest.fixture(scope="module")
def run_small():
    with jax.enable_x64(True):
        users = jp.sample_users(jax.random.key(3), CFG, (2,))
        X0 = jp.project_positions(CFG, jnp.sort(jax.random.uniform(jax.random.key(4), (2, 2, 3), jnp.float64)
                                                * CFG.length_x, axis=-1))

        @chex.assert_max_traces(n=1)
        def one(u, x0):
            return M.mm_pdd(CFG, u, X0=x0, D0="mrt", max_outer=60, max_inner=30)

        run = jp.jit(jax.vmap(one))
        res = run(users, X0)
        run(users + 0.01, X0)  # same shapes: no retrace
        return users, X0, jax.device_get(res)


def test_run_ends_below_eps_with_a_monotone_inner_loop(run_small):
    _, _, res = run_small
    assert np.all(res.converged)
    assert np.all(res.B_inf <= 1e-6)
    assert np.all(res.outer_iterations <= 60)
    rise = res.history["al_rise"]
    assert np.nanmax(rise) <= 1e-10
    for b in range(2):
        T = int(res.outer_iterations[b])
        h = {k: np.asarray(v[b]) for k, v in res.history.items()}
        assert np.all(np.isfinite(h["B_inf"][:T])) and np.all(np.isnan(h["B_inf"][T:]))
        assert h["B_inf"][T - 1] <= 1e-6
        # the penalty only shrinks, by 0.85 exactly when the duals were not updated
        rho = h["rho"][:T]
        ratio = rho[1:] / rho[:-1]
        np.testing.assert_allclose(ratio, np.where(h["dual_update"][: T - 1] > 0, 1.0, 0.85), rtol=1e-12)


def test_returned_point_is_feasible_and_the_best_visited(run_small):
    users, _, res = run_small
    with jax.enable_x64(True):
        for b in range(2):
            X, W = jnp.asarray(res.positions[b]), jnp.asarray(res.W[b])
            assert bool(jp.is_feasible(CFG, X))
            assert float(jnp.sum(jnp.abs(W) ** 2)) <= CFG.power * (1 + 1e-9)
            rate = float(jp.sum_rate(jp.effective_channel(CFG, X, users[b]), W, CFG.noise_power))
            np.testing.assert_allclose(rate, res.sum_rate[b], rtol=1e-10)
            visited = np.asarray(res.history["sum_rate"][b])
            assert res.sum_rate[b] >= np.nanmax(visited) - 1e-9
            assert res.sum_rate[b] >= res.initial_sum_rate[b] - 1e-9
            assert res.sum_rate[b] >= res.final_sum_rate[b] - 1e-9
            # the MRT start is improved on (the D-block is a WMMSE-type step)
            assert res.sum_rate[b] > res.initial_sum_rate[b] + 1.0
            assert bool(jp.is_feasible(CFG, jnp.asarray(res.final_positions[b])))


def test_float32_runs_without_nans():
    users = jp.sample_users(jax.random.key(5), CFG)
    res = M.mm_pdd(CFG, users, max_outer=3, max_inner=3)
    assert res.positions.dtype == jnp.float32
    assert np.isfinite(float(res.sum_rate)) and bool(jp.is_feasible(CFG, res.positions))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rho0=0.0), "rho0"),
        (dict(eps=-1.0), "eps"),
        (dict(max_outer=0), "max_outer"),
        (dict(max_inner=0), "max_inner"),
        (dict(D0="svd"), "D0"),
        (dict(D0=jnp.ones((3, 3))), "D0"),
        (dict(X0=jnp.ones((2, 4))), "X0"),
        (dict(units="watts"), "units"),
        (dict(aux_init="random"), "aux_init"),
        (dict(inner_tol=0.0), "inner_tol"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    users = jp.sample_users(jax.random.key(0), CFG)
    with pytest.raises(ValueError, match=match):
        M.mm_pdd(CFG, users, **kwargs)


def test_rejects_models_outside_jb_and_bad_users():
    users = jp.sample_users(jax.random.key(0), CFG)
    with pytest.raises(ValueError, match="radiation"):
        M.mm_pdd(CFG.replace(radiation="coupled"), users)
    with pytest.raises(ValueError, match="loss"):
        M.mm_pdd(CFG.replace(loss_db_per_m=0.08), users)
    with pytest.raises(ValueError, match="users"):
        M.mm_pdd(CFG, users[:1])


# ------------------------------------------- execution model: kernel vs driver
def test_kernel_under_user_jit_vmap_matches_driver():
    with jax.enable_x64(True):
        users = jp.sample_users(jax.random.key(8), CFG, (2,)).astype(jnp.float64)
        opts = M.MmPddOptions(D0="mrt", max_outer=3, max_inner=4)
        run = jax.jit(jax.vmap(lambda c, u: M.mm_pdd_drop(c, u, opts), in_axes=(None, 0)))
        mine = run(CFG, users)
        driver = M.mm_pdd(CFG, users, opts)
        assert driver.positions.shape == (2, 2, 3) and driver.history["B_inf"].shape == (2, 3)
        for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(driver)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)
        one = M.mm_pdd(CFG, users[1], D0="mrt", max_outer=3, max_inner=4)  # keyword changes, one drop
        np.testing.assert_allclose(one.sum_rate, driver.sum_rate[1], rtol=1e-9)


def test_power_sweep_compiles_once():
    users = jp.sample_users(jax.random.key(9), CFG, (2,))
    opts = M.MmPddOptions(max_outer=2, max_inner=2)

    @chex.assert_max_traces(n=1)
    def solve(c, u):
        return M.mm_pdd_drop(c, u, opts).sum_rate

    run = jax.jit(jax.vmap(solve, in_axes=(None, 0)))
    rates = [run(CFG.replace(power_dbm=p), users) for p in (0.0, 10.0, 20.0)]  # traced field: no retrace
    assert np.all(np.isfinite(np.asarray(rates)))
    assert np.all(np.asarray(rates[2]) > np.asarray(rates[0]))
    chex.clear_trace_counter()


def test_options_are_static_and_validated():
    assert M.MmPddOptions.resolve(None, rho0=1e-3) == M.MmPddOptions(rho0=1e-3)
    with pytest.raises(ValueError, match=r"eta0 must be a number > 0"):
        M.MmPddOptions(eta0=0.0)
    with pytest.raises(ValueError, match="D0='zf' needs K <= N"):
        M.mm_pdd(jp.PassConfig.joint_beamforming(num_users=3, num_waveguides=2, num_pinches=2),
                 jnp.zeros((3, 2)), D0="zf")

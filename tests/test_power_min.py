"""PB power minimisation under probabilistic LoS blockage (docs/model.md §6): jaxpass.blockage, jaxpass.optimize.power_min."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpass as jp
from jaxpass import blockage as bl
from jaxpass.optimize import power_min as pm

PB = jp.PassConfig.power_min_blockage  # N = 2, L = 1, K = 4, D = 10 m, beta_b = 0.1


def _drops(cfg, seed, count, dtype=None):
    ku, kx = jax.random.split(jax.random.key(seed))
    users = jp.sample_users(ku, cfg, (count,))
    X = jax.random.uniform(kx, (count, cfg.num_waveguides, 1)) * cfg.length_x
    if dtype is not None:
        users, X = users.astype(dtype), X.astype(dtype)
    return users, X


# ------------------------------------------------------------------ covariance
def test_independent_covariance_equals_channel_module_and_phase_free_moments(x64):
    cfg = PB(num_users=5, num_waveguides=3)
    users, X = _drops(cfg, 0, 3, jnp.float64)
    for u, x in zip(users, X):
        R = bl.channel_covariance(cfg, x, u)
        np.testing.assert_allclose(R, jp.blockage_covariance(cfg, x, u), rtol=1e-12, atol=0)
        # same spectrum as the real phase-free matrix M (docs/model.md §7)
        M = bl.moment_matrices(cfg, x, u)
        np.testing.assert_allclose(np.linalg.eigvalsh(np.asarray(R)), np.linalg.eigvalsh(np.asarray(M)),
                                   rtol=1e-10, atol=1e-24)
        np.testing.assert_allclose(bl.link_amplitudes(cfg, x, u), np.abs(jp.effective_channel(cfg, x, u)[:, :]),
                                   rtol=1e-12)


def test_correlated_covariance_is_pb_eq_19(x64):
    cfg = PB(num_users=2, num_waveguides=3)
    users, X = _drops(cfg, 1, 1, jnp.float64)
    u, x = users[0], X[0]
    rho = np.array([[1.0, 0.3, 0.1], [0.3, 1.0, 0.5], [0.1, 0.5, 1.0]])
    p = np.asarray(jp.los_probability(cfg, x, u))[..., 0]
    hbar = np.asarray(jp.effective_channel(cfg, x, u))
    R = np.asarray(bl.channel_covariance(cfg, x, u, rho))
    for k in range(2):
        s = np.sqrt(p[k] * (1 - p[k]))
        cov = rho * np.outer(s, s)
        a = p[k] * hbar[k]
        ref = np.outer(a.conj(), a) + cov * np.outer(hbar[k].conj(), hbar[k])  # (p o h)(p o h)^H + Cov o (h h^H)
        np.testing.assert_allclose(R[k], ref, rtol=1e-12, atol=0)
    # rho = 0 is the independent case
    np.testing.assert_allclose(bl.channel_covariance(cfg, x, u, 0.0), jp.blockage_covariance(cfg, x, u), rtol=1e-12)


def test_max_eigenvalue_all_paths_match_eigvalsh_and_have_finite_gradients(x64):
    rng = np.random.default_rng(0)
    for N in (1, 2, 3, 4):
        A = rng.uniform(0.1, 1.0, (5, N, N))
        M = jnp.asarray(A @ np.swapaxes(A, -1, -2)) * 1e-9  # PSD, positive entries, tiny gains
        np.testing.assert_allclose(pm.max_eigenvalue(M), np.linalg.eigvalsh(np.asarray(M))[:, -1], rtol=1e-12)
        # gradient = u u^T (Hellmann-Feynman), also through the N >= 3 stop-gradient path
        g = jax.grad(lambda m: pm.max_eigenvalue(m)[0])(M)
        w, V = np.linalg.eigh(np.asarray(M[0]))
        np.testing.assert_allclose(g[0], np.outer(V[:, -1], V[:, -1]), atol=1e-8)
    # unblocked links: rank-one M with repeated zero eigenvalues, gradient must stay finite
    a = jnp.asarray([1.0, 2.0, 0.5, 1.5])
    g = jax.grad(lambda a: pm.max_eigenvalue(jnp.outer(a, a)))(a)
    np.testing.assert_allclose(g, 2 * a, rtol=1e-12)


# ------------------------------------------------------------- closed form
def test_closed_form_beamformer_meets_each_target_with_equality(x64):
    cfg = PB(num_users=6, num_waveguides=3, blockage_rate=0.2)
    users, X = _drops(cfg, 2, 3, jnp.float64)
    gamma = jnp.asarray([1.0, 3.0, 10.0, 30.0, 100.0, 0.5])
    for corr in (None, 0.3):
        for u, x in zip(users, X):
            W = pm.closed_form_beamformer(cfg, x, u, gamma, corr)
            assert W.shape == (3, 6) and jnp.iscomplexobj(W)
            R = bl.channel_covariance(cfg, x, u, corr)
            snr = jnp.stack([jp.expected_snr(R[k], W[:, k], cfg.noise_power) for k in range(6)])
            np.testing.assert_allclose(snr, gamma, rtol=1e-10)
            power = jnp.sum(jnp.abs(W) ** 2, axis=0)
            np.testing.assert_allclose(power, pm.per_user_power(cfg, x, u, gamma, corr), rtol=1e-10)
            np.testing.assert_allclose(jnp.sum(power), pm.reduced_objective(cfg, x, u, gamma, corr), rtol=1e-10)
            # minimal: any other direction meeting the same target needs more power
            rng = np.random.default_rng(3)
            v = rng.normal(size=(50, 3)) + 1j * rng.normal(size=(50, 3))
            q = np.real(np.einsum("sn,nm,sm->s", v.conj(), np.asarray(R[0]), v)) / float(cfg.noise_power)
            need = float(gamma[0]) / q * np.sum(np.abs(v) ** 2, axis=1)
            assert np.all(need >= float(power[0]) * (1 - 1e-12))


def test_single_pinch_objective_matches_reduced_objective(x64):
    cfg = PB(num_waveguides=1, blockage_rate=0.3, loss_db_per_m=0.08)
    users, X = _drops(cfg, 4, 4, jnp.float64)
    for u, x in zip(users, X):
        np.testing.assert_allclose(pm.single_pinch_objective(cfg, x, u, 7.0), pm.reduced_objective(cfg, x, u, 7.0),
                                   rtol=1e-12)


# --------------------------------------------------------------- Monte Carlo
# Family-wise false-alarm rate of each statistical check below: 1e-3, split over its
# comparisons (Bonferroni). Two-sided per comparison: |z| < Phi^-1(1 - FAMILY_ALPHA / (2 m)).
FAMILY_ALPHA = 1e-3


def bonferroni_z(num_comparisons, alpha=FAMILY_ALPHA):
    from scipy.stats import norm

    return float(norm.isf(alpha / (2 * num_comparisons)))


def _mc_setup(corr):
    cfg = PB(num_users=4, blockage_rate=0.15)
    users, _ = _drops(cfg, 5, 1)
    X = jnp.asarray([[2.5], [6.0]])
    return cfg, X, users[0], pm.closed_form_beamformer(cfg, X, users[0], 10.0, corr)


@pytest.mark.parametrize("corr", [None, 0.35], ids=["independent", "correlated"])
def test_monte_carlo_mean_snr_matches_formula_bonferroni_over_users(corr):
    """|z| < 3.66 for each of the K = 4 users (family-wise false alarm 1e-3).

    Measured over 2000 keys (40 000 samples each): |z| < 3 for every user fails on
    1.0 % (independent) / 0.9 % (correlated) of keys; the Bonferroni bound 3.66 on
    0.1 % / 0.1 %; the z-scores have standard deviation 0.97-1.02 per user.
    """
    cfg, X, u, W = _mc_setup(corr)
    check = jp.jit(lambda key, X, u, W: bl.monte_carlo_snr(key, cfg, X, u, W, num_samples=40_000, correlation=corr))
    res = check(jax.random.key(11), X, u, W)
    np.testing.assert_allclose(res.expected, 10.0, rtol=1e-4)  # closed form meets the target
    assert np.all(np.asarray(res.std_err) > 0)
    z_max = bonferroni_z(cfg.num_users)
    assert np.all(np.abs(np.asarray(res.z_scores())) < z_max), (res.mean, res.expected, res.std_err)
    # the check has power: the independent formula is off by many standard errors for correlated links
    if corr is not None:
        R0 = jp.blockage_covariance(cfg, X, u)
        wrong = jnp.stack([jp.expected_snr(R0[k], W[:, k], cfg.noise_power) for k in range(4)])
        z_wrong = np.abs(np.asarray((res.mean - wrong) / res.std_err))  # measured 4.0, 14.0, 14.6, 4.8
        assert np.all(z_wrong > z_max) and z_wrong.max() > 3 * z_max


@pytest.mark.parametrize("corr", [None, 0.35], ids=["independent", "correlated"])
def test_monte_carlo_z_scores_are_standard_normal_over_200_keys(corr):
    """The false-alarm rate of the check above, verified: 200 keys x 4 users, 5000 samples each.

    The z-scores are ~N(0, 1) (mean within 0.15, standard deviation within 0.88-1.12: 4
    standard errors of 800 draws) and at most 3 of the 200 keys trip the Bonferroni bound
    (expected 0.2; P(>= 4) < 1e-4). Measured here: 1 (independent) and 2 (correlated) of the
    200 keys, mean 0.07 / 0.01, std 1.012 / 1.008; over 2000 other keys: 0 % / 0.05 % of keys
    (at 20 000 samples: 0 % / 0.15 %), std 0.99-1.01.
    """
    cfg, X, u, W = _mc_setup(corr)
    z_of = jp.jit(jax.vmap(lambda key: bl.monte_carlo_snr(key, cfg, X, u, W, num_samples=5000,
                                                          correlation=corr).z_scores()))
    z = np.asarray(z_of(jax.random.split(jax.random.key(2026), 200)), np.float64)
    assert z.shape == (200, 4)
    assert abs(z.mean()) < 0.15 and 0.88 < z.std() < 1.12, (z.mean(), z.std())
    assert np.sum(np.abs(z).max(axis=1) >= bonferroni_z(cfg.num_users)) <= 3


def test_copula_sampler_has_requested_marginals_and_pairwise_correlation():
    p = jnp.asarray([[0.3, 0.6, 0.45], [0.5, 0.5, 0.8]])
    rho = np.array([[1.0, 0.4, 0.2], [0.4, 1.0, 0.3], [0.2, 0.3, 1.0]])
    S = 60_000
    g = np.asarray(bl.sample_los(jax.random.key(7), p, rho, S))
    assert g.shape == (S, 2, 3) and set(np.unique(g)) <= {0.0, 1.0}
    se_p = np.sqrt(np.asarray(p) * (1 - np.asarray(p)) / S)
    z_max = bonferroni_z(12)  # 6 marginals + 6 correlations, family-wise false alarm 1e-3
    assert np.all(np.abs(g.mean(0) - np.asarray(p)) < z_max * se_p)
    for k in range(2):
        C = np.corrcoef(g[:, k, :].T)
        for n, m in ((0, 1), (0, 2), (1, 2)):
            se = (1 - rho[n, m] ** 2) / np.sqrt(S)
            assert abs(C[n, m] - rho[n, m]) < z_max * se + 2e-3, (k, n, m, C[n, m])
    # independent draws: no correlation; deterministic links stay deterministic
    g0 = np.asarray(bl.sample_los(jax.random.key(8), jnp.asarray([[1.0, 0.5, 0.0]]), None, 4000))
    assert np.all(g0[:, 0, 0] == 1) and np.all(g0[:, 0, 2] == 0)
    assert abs(np.corrcoef(np.asarray(bl.sample_los(jax.random.key(9), p, None, S))[:, 0, :2].T)[0, 1]) < 3 / np.sqrt(S)


def test_bivariate_normal_cdf_and_frechet_bounds(x64):
    from scipy.stats import multivariate_normal

    for a, b, c in [(0.3, -0.5, 0.6), (1.2, 1.2, 0.99), (-1.0, 2.0, -0.7), (2.0, -1.5, 0.999), (0.0, 0.0, 0.0)]:
        ref = multivariate_normal(mean=[0, 0], cov=[[1, c], [c, 1]]).cdf([a, b])
        np.testing.assert_allclose(bl.bivariate_normal_cdf(a, b, c), ref, rtol=1e-9, atol=1e-12)
    p_i, p_j = jnp.asarray([0.3, 0.5, 0.9]), jnp.asarray([0.6, 0.5, 0.2])  # bounds hi: 0.53, 1, 0.17
    lo, hi = bl.correlation_bounds(p_i, p_j)
    np.testing.assert_allclose(bl.copula_correlation(p_i, p_j, 1.0), hi, atol=1e-9)
    np.testing.assert_allclose(bl.copula_correlation(p_i, p_j, -1.0), lo, atol=1e-9)
    np.testing.assert_allclose(hi[1], 1.0)  # p_i = p_j = 0.5: the bounds are +-1
    np.testing.assert_allclose(lo[1], -1.0)
    C = bl.calibrate_copula(jnp.stack([p_i, p_j], axis=-1), 0.25)
    np.testing.assert_allclose(bl.copula_correlation(p_i, p_j, C[:, 0, 1]), [0.25, 0.25, hi[2]], atol=1e-9)
    assert float(C[2, 0, 1]) > 1 - 1e-9  # unreachable request ends at the Frechet bound (c = 1)


# ------------------------------------------------------- single pinch (N = 1)
@pytest.fixture(scope="module")
def single_pinch_runs():
    with jax.enable_x64(True):
        cfg = PB(num_waveguides=1, num_users=3, blockage_rate=0.2)
        users, _ = _drops(cfg, 6, 6, jnp.float64)
        gamma = jnp.asarray([1.0, 10.0, 100.0])
        pgd = jax.jit(jax.vmap(lambda u: pm.pgd(cfg, u, gamma, iterations=40)))(users)
        grid = jnp.linspace(0.0, 10.0, 20001)
        vals = jax.jit(jax.vmap(lambda u: jax.vmap(lambda x: pm.reduced_objective(cfg, x[None, None], u, gamma))(grid)))(users)
        yield cfg, users, pgd, grid, vals


def test_single_pinch_objective_is_convex_on_a_fine_grid(single_pinch_runs):
    _, _, _, grid, vals = single_pinch_runs
    v = np.asarray(vals)
    second = v[:, 2:] - 2 * v[:, 1:-1] + v[:, :-2]
    assert np.all(second >= -1e-12 * v[:, 1:-1]), second.min()
    assert np.all(second.max(axis=1) > 0)  # not flat


def test_pgd_lands_within_1e_6_of_the_grid_optimum_and_in_the_box(single_pinch_runs):
    cfg, users, res, grid, vals = single_pinch_runs
    best = np.asarray(vals).min(axis=1)
    rel = np.asarray(res.power) / best - 1
    assert np.all(np.abs(rel) <= 1e-6), rel
    x = np.asarray(res.positions)[:, 0, 0]
    assert np.all((x >= 0) & (x <= 10))
    # and the optimum lies within the users' x-range (LoS probability falls with distance)
    assert np.all(x >= np.asarray(users)[:, :, 0].min(1) - 1e-9) and np.all(x <= np.asarray(users)[:, :, 0].max(1) + 1e-9)
    assert np.all(np.diff(np.asarray(res.history), axis=1) <= 1e-15 * np.asarray(res.history)[:, :-1])


# ---------------------------------------------------------- multi-pinch (N = 2)
@pytest.fixture(scope="module")
def n2_runs():
    cfg = PB(blockage_rate=0.2)
    users, _ = _drops(cfg, 7, 12)
    keys = jax.random.split(jax.random.key(1), 12)
    lbfgs = jax.jit(jax.vmap(lambda u, k: pm.projected_lbfgs(cfg, u, 10.0, key=k, starts=3, iterations=20)))
    exh = jax.jit(jax.vmap(lambda u: pm.exhaustive_search(cfg, u, 10.0, grid=101, refine=2)))
    center = jax.jit(jax.vmap(lambda u: pm.evaluate_positions(cfg, pm.center_positions(cfg), u, 10.0)))
    return cfg, users, lbfgs(users, keys), exh(users), center(users)


def test_lbfgs_matches_exhaustive_and_beats_center(n2_runs):
    cfg, users, lb, ex, ce = n2_runs
    rel = np.asarray(lb.power) / np.asarray(ex.power) - 1
    assert np.all(rel <= 0.01), rel
    assert np.all(np.asarray(lb.power) <= np.asarray(ce.power) * (1 + 1e-6))
    for res in (lb, ex):
        x = np.asarray(res.positions)
        assert x.shape == (12, 2, 1) and np.all((x >= 0) & (x <= cfg.length_x))
    h = np.asarray(lb.history)
    assert np.all(np.diff(h, axis=1) <= 1e-6 * h[:, :-1])  # monotone (float32)
    assert np.all(np.diff(np.asarray(ex.history), axis=1) <= 0)
    np.testing.assert_allclose(h[:, -1], lb.power)
    # the returned beamformer is the closed form at the returned positions
    W0 = pm.closed_form_beamformer(cfg, lb.positions[0], users[0], 10.0)
    np.testing.assert_allclose(lb.beamformer[0], W0, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("user_x,edge", [(0.0, 0.0), (-2.0, 0.0), (12.0, 10.0)])
def test_lbfgs_respects_the_box_when_the_optimum_is_on_it(user_x, edge):
    # both users at x = user_x, one per lane; outside [0, D] the unconstrained optimum is outside
    # the box, so the line search's projection must hold the pinches on the bound
    cfg = PB(num_users=2, blockage_rate=0.3)
    users = jnp.asarray([[user_x, 2.5], [user_x, 7.5]])
    res = jax.jit(lambda u: pm.projected_lbfgs(cfg, u, 10.0, key=jax.random.key(0), starts=2, iterations=15))(users)
    np.testing.assert_allclose(res.positions[:, 0], edge, atol=1e-6)


def test_gradient_of_reduced_objective_matches_finite_differences(x64):
    for N, corr in ((2, None), (3, None), (3, 0.4)):
        cfg = PB(num_users=4, num_waveguides=N, blockage_rate=0.15)
        users, X = _drops(cfg, 8 + N, 1, jnp.float64)
        f = jax.jit(lambda X: pm.reduced_objective(cfg, X, users[0], 10.0, corr))
        g = jax.jit(jax.grad(f))(X[0])
        assert np.all(np.isfinite(g)) and np.max(np.abs(g)) > 0
        eps = 1e-6
        for n in range(N):
            e = jnp.zeros_like(X[0]).at[n, 0].set(eps)
            fd = (f(X[0] + e) - f(X[0] - e)) / (2 * eps)
            np.testing.assert_allclose(g[n, 0], fd, rtol=1e-6, atol=1e-9 * abs(float(f(X[0]))))


def test_no_nans_without_blockage_and_with_users_under_a_pinch():
    cfg = PB(blockage_rate=0.0, num_users=3, num_waveguides=3)
    users = jnp.asarray([[5.0, cfg.width_y / 6], [5.0, cfg.width_y / 6], [1.0, 9.0]])  # two users coincide
    X = jnp.full((3, 1), 5.0)  # a pinch right above them
    val, g = jax.jit(jax.value_and_grad(lambda X: pm.reduced_objective(cfg, X, users, 10.0)))(X)
    assert np.isfinite(val) and np.all(np.isfinite(g))
    res = jax.jit(lambda u: pm.projected_lbfgs(cfg, u, 10.0, key=jax.random.key(0), starts=2, iterations=5))(users)
    assert np.all(np.isfinite(res.positions)) and np.isfinite(res.power) and np.all(np.isfinite(res.beamformer))


# ------------------------------------------------------------ monotonicity
def test_positive_link_correlation_never_raises_the_power():
    """PB Lemma 2 on random drops, positions and non-negative correlation matrices (per user, and at the optimum)."""
    rng = np.random.default_rng(1)
    for N in (2, 3):
        cfg = PB(num_users=4, num_waveguides=N, blockage_rate=0.2)
        users, X = _drops(cfg, 20 + N, 32)
        A = rng.uniform(0, 1, (32, N, N))
        rho = np.clip((A + np.swapaxes(A, 1, 2)) / 2, 0, 1)
        rho[::2, 0, 1] = rho[::2, 1, 0] = 0.0  # some pairs uncorrelated
        rho[:, np.arange(N), np.arange(N)] = 1.0
        power = jax.jit(jax.vmap(lambda x, u, r: pm.per_user_power(cfg, x, u, 10.0, r)))
        indep = np.asarray(power(X, users, jnp.broadcast_to(jnp.eye(N), (32, N, N))))
        corr = np.asarray(power(X, users, jnp.asarray(rho, jnp.float32)))
        assert np.all(corr <= indep * (1 + 1e-6)), (corr, indep)
        assert np.mean(corr < indep * (1 - 1e-3)) > 0.25  # and clearly lower for many users
    cfg = PB(blockage_rate=0.2)
    users, _ = _drops(cfg, 30, 1)
    solve = jax.jit(lambda u, c: pm.projected_lbfgs(cfg, u, 10.0, starts=1, iterations=20, correlation=c).power)
    opt = [float(solve(users[0], c)) for c in (0.0, 0.3, 0.6)]
    assert opt[0] >= opt[1] >= opt[2]


def test_power_increases_with_blockage_rate_at_fixed_positions():
    cfg = PB(num_waveguides=3)
    users, X = _drops(cfg, 40, 8)
    powers = [np.asarray(jax.vmap(lambda u, x: pm.reduced_objective(cfg.replace(blockage_rate=b), x, u, 10.0))(users, X))
              for b in (0.05, 0.1, 0.2, 0.3)]
    assert np.all(np.diff(np.stack(powers), axis=0) > 0)


def test_lbfgs_is_traced_once_per_configuration():
    cfg = PB(num_users=2)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def solve(u, gamma):
        return pm.projected_lbfgs(cfg, u, gamma, starts=1, iterations=3).power

    u = jnp.asarray([[1.0, 2.0], [7.0, 8.0]])
    a, b = solve(u, 10.0), solve(u, 100.0)  # new target value, no retrace
    np.testing.assert_allclose(b, 10 * a, rtol=1e-4)  # equal targets: power is linear in Gamma
    chex.clear_trace_counter()


# ------------------------------------------- execution model: kernels vs drivers
def _assert_same(a, b, rtol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-12 * float(np.max(np.abs(y))))


@pytest.fixture(scope="module")
def drops3():
    cfg = PB(blockage_rate=0.2)
    users, X = _drops(cfg, 50, 3)
    return cfg, users, X


def test_pgd_kernel_under_user_jit_vmap_matches_driver(drops3):
    cfg, users, _ = drops3
    opts = pm.PgdOptions(iterations=15)
    run = jax.jit(jax.vmap(lambda c, u: pm.pgd_drop(c, u, 10.0, opts), in_axes=(None, 0)))
    mine = run(cfg, users)
    driver = pm.pgd(cfg, users, 10.0, opts)
    assert driver.positions.shape == (3, 2, 1) and driver.history.shape == (3, 16)
    _assert_same(mine, driver)
    _assert_same(pm.pgd(cfg, users[1], 10.0, iterations=15), jax.tree.map(lambda a: a[1], driver))  # one drop


def test_projected_lbfgs_kernel_under_user_jit_vmap_matches_driver(drops3):
    cfg, users, _ = drops3
    opts = pm.LbfgsOptions(starts=3, iterations=10)
    key = jax.random.key(5)
    keys = jax.random.split(key, 3)  # the driver's split of one key over 3 drops
    run = jax.jit(jax.vmap(lambda k, c, u: pm.projected_lbfgs_drop(k, c, u, 10.0, opts), in_axes=(0, None, 0)))
    mine = run(keys, cfg, users)
    _assert_same(mine, pm.projected_lbfgs(cfg, users, 10.0, opts, key=key))
    _assert_same(mine, pm.projected_lbfgs(cfg, users, 10.0, key=keys, starts=3, iterations=10))  # per-drop keys
    one = pm.projected_lbfgs(cfg, users[2], 10.0, opts, key=keys[2])
    _assert_same(one, jax.tree.map(lambda a: a[2], mine))


def test_exhaustive_search_kernel_under_user_jit_vmap_matches_driver(drops3):
    cfg, users, _ = drops3
    opts = pm.ExhaustiveOptions(grid=41, refine=1)
    run = jax.jit(jax.vmap(lambda c, u: pm.exhaustive_search_drop(c, u, 10.0, opts), in_axes=(None, 0)))
    _assert_same(run(cfg, users), pm.exhaustive_search(cfg, users, 10.0, grid=41, refine=1))


def test_closed_form_beamformer_kernel_under_user_jit_vmap_matches_driver(drops3):
    cfg, users, X = drops3
    gamma = jnp.asarray([1.0, 3.0, 10.0, 30.0])
    run = jax.jit(jax.vmap(lambda c, x, u: pm.closed_form_beamformer_drop(c, x, u, gamma, 0.3), in_axes=(None, 0, 0)))
    W = pm.closed_form_beamformer(cfg, X, users, gamma, 0.3)
    assert W.shape == (3, 2, 4)
    _assert_same(run(cfg, X, users), W)
    _assert_same(pm.closed_form_beamformer(cfg, X[0], users[0], gamma, 0.3), W[0])


def test_noise_and_snr_sweeps_compile_once(drops3):
    cfg, users, _ = drops3
    opts = pm.LbfgsOptions(starts=1, iterations=4)

    @chex.assert_max_traces(n=1)
    def solve(c, u, gamma):
        return pm.projected_lbfgs_drop(None, c, u, gamma, opts).power

    run = jax.jit(jax.vmap(solve, in_axes=(None, 0, None)))
    base = run(cfg, users, 10.0)
    for noise in (-80.0, -70.0):  # traced config field: no retrace; power is linear in sigma^2
        np.testing.assert_allclose(run(cfg.replace(noise_dbm=noise), users, 10.0),
                                   base * 10 ** ((noise + 90.0) / 10), rtol=2e-3)
    np.testing.assert_allclose(run(cfg, users, 100.0), 10 * base, rtol=1e-4)  # SNR sweep: no retrace
    chex.clear_trace_counter()
    # the driver's module-level jit: one compilation for the whole noise / SNR sweep
    pm.pgd(cfg, users, 10.0, iterations=3)
    before = pm._pgd_batch._cache_size()
    for noise, gamma in ((-85.0, 10.0), (-75.0, 3.0), (-95.0, 30.0)):
        pm.pgd(cfg.replace(noise_dbm=noise), users, gamma, iterations=3)
    assert pm._pgd_batch._cache_size() == before


def test_options_validate_and_resolve():
    assert pm.LbfgsOptions.resolve(None, starts=2) == pm.LbfgsOptions(starts=2)
    assert hash(pm.PgdOptions()) == hash(pm.PgdOptions(iterations=100))
    with pytest.raises(ValueError, match=r"memory must be >= 1 \[curvature pairs\], got 0"):
        pm.LbfgsOptions(memory=0)
    with pytest.raises(TypeError, match="has no option"):
        pm.pgd(PB(), jnp.zeros((4, 2)), 1.0, starts=2)
    with pytest.raises(TypeError, match="options must be a PgdOptions"):
        pm.pgd(PB(), jnp.zeros((4, 2)), 1.0, pm.LbfgsOptions())


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: pm.reduced_objective(PB(num_pinches=2), jnp.zeros((2, 2)), jnp.zeros((4, 2)), 1.0), "num_pinches == 1"),
        (lambda: pm.reduced_objective(PB(), jnp.zeros((2, 1)), jnp.zeros((3, 2)), 1.0), "users must have shape"),
        (lambda: pm.reduced_objective(PB(), jnp.zeros((3, 1)), jnp.zeros((4, 2)), 1.0), "X .positions. must have shape"),
        (lambda: pm.reduced_objective(PB(), jnp.zeros((2, 1)), jnp.zeros((4, 2)), -1.0), "snr_target"),
        (lambda: pm.reduced_objective(PB(), jnp.zeros((2, 1)), jnp.zeros((4, 2)), jnp.ones(3)), "snr_target must be"),
        (lambda: pm.reduced_objective(PB(), jnp.zeros((2, 1)), jnp.zeros((4, 2)), 1.0, 1.5), r"\[-1, 1\]"),
        (lambda: pm.reduced_objective(PB(), jnp.zeros((2, 1)), jnp.zeros((4, 2)), 1.0, jnp.asarray([[1.0, 0.2], [0.3, 1.0]])),
         "symmetric"),
        (lambda: pm.reduced_objective(PB(), jnp.zeros((2, 1)), jnp.zeros((4, 2)), 1.0, jnp.asarray([[0.5, 0.2], [0.2, 1.0]])),
         "unit diagonal"),
        (lambda: pm.projected_lbfgs(PB(), jnp.zeros((4, 2)), 1.0, starts=3), "needs a jax.random key"),
        (lambda: pm.projected_lbfgs(PB(), jnp.zeros((4, 2)), 1.0, iterations=0), "iterations must be >= 1"),
        (lambda: pm.pgd(PB(), jnp.full((4, 2), jnp.nan), 1.0), "non-finite"),
        (lambda: pm.exhaustive_search(PB(), jnp.zeros((4, 2)), 1.0, grid=1), "grid must be >= 2"),
        (lambda: pm.exhaustive_search(PB(num_waveguides=8), jnp.zeros((4, 2)), 1.0, grid=201), "too many"),
        (lambda: pm.evaluate_positions(PB(), jnp.full((2, 1), 11.0), jnp.zeros((4, 2)), 1.0), r"lie in \[0, 10\] m"),
        (lambda: pm.single_pinch_objective(PB(), jnp.zeros((2, 1)), jnp.zeros((4, 2)), 1.0), "num_waveguides == 1"),
        (lambda: bl.sample_los(jax.random.key(0), jnp.asarray([[0.1, 0.9]]), 0.9, 10), "not realisable"),
        (lambda: bl.sample_los(jax.random.key(0), jnp.asarray([[0.1, 1.2]]), None, 10), r"must lie in \[0, 1\]"),
        (lambda: bl.sample_los(jax.random.key(0), jnp.asarray([[0.5, 0.5]]), None, 0), "num_samples must be >= 1"),
        (lambda: bl.monte_carlo_snr(jax.random.key(0), PB(), jnp.zeros((2, 1)), jnp.zeros((4, 2)), jnp.zeros((4, 2))),
         "W must have shape"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_unrealisable_joint_correlation_is_rejected():
    # pairwise fine, jointly impossible: rho = -0.9 between all three links
    rho = np.full((3, 3), -0.9)
    np.fill_diagonal(rho, 1.0)
    with pytest.raises(ValueError, match="positive semidefinite"):
        bl.sample_los(jax.random.key(0), jnp.asarray([[0.5, 0.5, 0.5]]), rho, 10)

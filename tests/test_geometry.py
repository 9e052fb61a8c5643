import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.extend.core import jaxprs_in_params
from jax.test_util import check_grads
from scipy.optimize import nnls

import jaxpass as jp
from jaxpass.geometry import _isotonic_regression


def pav_reference(y, w):
    """Independent weighted pool-adjacent-violators (pure Python, float64)."""
    blocks = []  # [value, weight, count]
    for yi, wi in zip(y, w):
        blocks.append([yi, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return np.concatenate([[v] * c for v, _, c in blocks])


def isotonic_minmax(y, w):
    """The projection's former isotonic regression, kept as a float64 reference (vectorised, O(L^3)).

    Min-max formula ``z_i = max_{j<=i} min_{k>=i} avg_w(y[j..k])`` with prefix sums.
    """
    L = y.shape[-1]
    cs, cw = jnp.cumsum(w * y, axis=-1), jnp.cumsum(w, axis=-1)
    zero = jnp.zeros(y.shape[:-1] + (1,), y.dtype)
    cs0 = jnp.concatenate([zero, cs[..., :-1]], axis=-1)
    cw0 = jnp.concatenate([zero, cw[..., :-1]], axis=-1)
    upper = jnp.arange(L)[:, None] <= jnp.arange(L)[None, :]  # [j, k]: k >= j
    big = jnp.finfo(y.dtype).max
    den = jnp.where(upper, cw[..., None, :] - cw0[..., :, None], 1.0)
    avg = jnp.where(upper, (cs[..., None, :] - cs0[..., :, None]) / den, big)
    suffix_min = jax.lax.cummin(avg, axis=avg.ndim - 1, reverse=True)  # [j, i] = min_{k>=i} avg[j, k]
    return jnp.max(jnp.where(upper, suffix_min, -big), axis=-2)


def minmax_projection(cfg, X, w):
    """``project_positions`` with the min-max isotonic regression (float64 reference)."""
    L = cfg.num_pinches
    off = jnp.arange(L) * cfg.min_spacing
    z = isotonic_minmax(X - off, jnp.broadcast_to(w, X.shape))
    return jnp.clip(z, 0.0, cfg.length_x - (L - 1) * cfg.min_spacing) + off


def projection_reference(cfg, x, w):
    L = cfg.num_pinches
    off = np.arange(L) * cfg.min_spacing
    z = pav_reference(x - off, w)
    return np.clip(z, 0.0, cfg.length_x - (L - 1) * cfg.min_spacing) + off


def kkt_residual(cfg, x, w, p):
    """Stationarity residual of min sum w (p - x)^2 s.t. A p >= b at the candidate p.

    Constraints: p_0 >= 0, p_l - p_{l-1} >= delta, -p_{L-1} >= -S_x. Solve
    w (p - x) = A_active^T mu, mu >= 0 by NNLS over the active set; return the
    residual and the worst primal violation.
    """
    L = len(x)
    rows, rhs = [], []
    e = np.eye(L)
    rows.append(e[0])
    rhs.append(0.0)
    for l in range(1, L):
        rows.append(e[l] - e[l - 1])
        rhs.append(cfg.min_spacing)
    rows.append(-e[L - 1])
    rhs.append(-cfg.length_x)
    A, b = np.array(rows), np.array(rhs)
    slack = A @ p - b
    active = slack <= 1e-9
    grad = w * (p - x)  # = A_active^T mu at optimum (mu >= 0)
    if active.any():
        _, res = nnls(A[active].T, grad)
    else:
        res = np.linalg.norm(grad)
    return res, -min(slack.min(), 0.0)


@pytest.mark.parametrize("L", [1, 2, 5, 8, 16, 64])
def test_projection_equals_independent_qp_solution(x64, L):
    rng = np.random.default_rng(L)
    cfg = jp.PassConfig.joint_beamforming(num_pinches=L)
    for trial in range(20):
        X = rng.uniform(-5, 25, (cfg.num_waveguides, L))
        if trial % 2:
            X = np.sort(X, axis=-1) + rng.normal(0, 0.004, X.shape)  # near-feasible, tight spacing
        Wt = rng.uniform(0.1, 10, X.shape) if trial % 3 else np.ones_like(X)
        P = np.asarray(jp.project_positions(cfg, jnp.asarray(X), Wt))
        for n in range(cfg.num_waveguides):
            ref = projection_reference(cfg, X[n], Wt[n])
            np.testing.assert_allclose(P[n], ref, atol=1e-8, rtol=0)
            res, viol = kkt_residual(cfg, X[n], Wt[n], P[n])
            assert res < 1e-8 and viol < 1e-9


def test_projection_idempotent_feasible_and_batched():
    cfg = jp.PassConfig.joint_beamforming()
    X = jax.random.uniform(jax.random.key(0), (32, 4, 8), minval=-3, maxval=23)
    P = jp.project_positions(cfg, X)
    assert P.shape == X.shape
    assert bool(jnp.all(jp.is_feasible(cfg, P)))
    np.testing.assert_allclose(jp.project_positions(cfg, P), P, atol=1e-5)  # float32: a few ulps at 20 m
    np.testing.assert_allclose(jax.jit(jax.vmap(lambda x: jp.project_positions(cfg, x)))(X), P, atol=1e-6)
    Xf = jp.uniform_positions(cfg)
    np.testing.assert_allclose(jp.project_positions(cfg, Xf), Xf, atol=1e-6)  # feasible points are fixed


@settings(max_examples=80, deadline=None)
@given(
    data=hnp.arrays(np.float64, (2, 6), elements=st.floats(-50, 70, allow_nan=False)),
    weights=hnp.arrays(np.float64, (2, 6), elements=st.floats(0.01, 100)),
    spacing=st.floats(1e-3, 3.0),
)
def test_projection_property(data, weights, spacing):
    with jax.enable_x64(True):
        cfg = jp.PassConfig.joint_beamforming(num_waveguides=2, num_pinches=6, min_spacing=spacing, length_x=20.0)
        P = np.asarray(jp.project_positions(cfg, jnp.asarray(data), jnp.asarray(weights)))
        assert bool(jp.is_feasible(cfg, P, tol=1e-9))
        np.testing.assert_allclose(np.asarray(jp.project_positions(cfg, P, weights)), P, atol=1e-9)
        for n in range(2):
            np.testing.assert_allclose(P[n], projection_reference(cfg, data[n], weights[n]), atol=1e-8)
            # optimality: no feasible point sampled nearby is closer in the weighted norm
            d_opt = np.sum(weights[n] * (P[n] - data[n]) ** 2)
            Q = projection_reference(cfg, P[n] + np.random.default_rng(0).normal(0, 1, 6), np.ones(6))
            assert np.sum(weights[n] * (Q - data[n]) ** 2) >= d_opt - 1e-9


def test_projection_gradient_is_block_averaging(x64):
    cfg = jp.PassConfig.joint_beamforming(num_waveguides=1, num_pinches=5)
    x = jnp.array([[3.0, 2.0, 7.0, 6.5, 12.0]])  # blocks {0,1}, {2,3}, {4}; interior of bounds
    check_grads(lambda v: jp.project_positions(cfg, v), (x,), order=1, modes=["fwd", "rev"], eps=1e-6)
    J = jax.jacobian(lambda v: jp.project_positions(cfg, v)[0])(x)[:, 0, :]
    expected = np.zeros((5, 5))
    expected[:2, :2] = 0.5
    expected[2:4, 2:4] = 0.5
    expected[4, 4] = 1.0
    np.testing.assert_allclose(J, expected, atol=1e-12)


def hard_layouts(rng, N, L, S_x=20.0):
    """Random (N, L) inputs of every kind: wide, near-feasible, integer ties, feasible, far left/right."""
    kinds = [
        rng.uniform(-5, S_x + 5, (N, L)),
        np.sort(rng.uniform(0, S_x, (N, L)), -1) + rng.normal(0, 0.004, (N, L)),
        np.round(rng.uniform(-3, S_x + 3, (N, L)) / 2.0) * 2.0,  # many exact ties
        np.sort(rng.uniform(1, S_x - 1 - 0.02 * L, (N, L)), -1) + np.arange(L) * 0.02,  # feasible: a fixed point
        rng.uniform(-30, -10, (N, L)),  # clipped at 0
        rng.uniform(S_x + 10, S_x + 30, (N, L)),  # clipped at S_x
    ]
    return kinds


@pytest.mark.parametrize("N, L", [(4, 1), (4, 2), (4, 8), (3, 17), (2, 64)])
def test_pav_projection_equals_minmax_formula_x64(x64, N, L):
    """Pool-adjacent-violators and the min-max formula give the same projection (float64).

    The min-max formula differences prefix sums of ``w x`` (up to ``L S_x max w`` = 2.6e4
    here) and divides by block weights down to 0.05, so it rounds at up to ~1e-10 m
    (1.2e-11 m measured at L = 64); the pure-Python PAV sums each block directly and
    matches to 1e-12 m.
    """
    rng = np.random.default_rng(100 + L)
    cfg = jp.PassConfig.joint_beamforming(num_waveguides=N, num_pinches=L, min_spacing=min(0.01, 20.0 / (2 * L)))
    project = jax.jit(lambda X, w: jp.project_positions(cfg, X, w))
    reference = jax.jit(lambda X, w: minmax_projection(cfg, X, w))
    for i, X in enumerate(hard_layouts(rng, N, L)):
        for Wt in (np.ones((N, L)), rng.uniform(0.05, 20, (N, L)), np.round(rng.uniform(1, 4, (N, L)))):
            P = np.asarray(project(X, Wt))
            np.testing.assert_allclose(P, reference(X, Wt), atol=1e-10, rtol=0)
            for n in range(N):
                np.testing.assert_allclose(P[n], projection_reference(cfg, X[n], Wt[n]), atol=1e-12, rtol=0)
            assert bool(jnp.all(jp.is_feasible(cfg, P, tol=1e-12)))
            np.testing.assert_allclose(project(P, Wt), P, atol=1e-12, rtol=0)  # idempotent
            if i == 3:
                np.testing.assert_allclose(P, X, atol=1e-12, rtol=0)  # feasible points are fixed
    # float32 agrees with the float64 projection to a few ulps of 20 m
    X = hard_layouts(rng, N, L)[0]
    with jax.enable_x64(False):
        P32 = np.asarray(jp.project_positions(cfg, jnp.asarray(X, jnp.float32)))
    np.testing.assert_allclose(P32, project(X, np.ones((N, L))), atol=2e-5, rtol=0)


@pytest.mark.parametrize("L", [6, 33])
def test_pav_gradients_finite_differences_x64(x64, L):
    """d/dX and d/dweights of the projection, forward and reverse mode, against finite differences.

    The inputs are drawn away from ties (adjacent block means differ by far more
    than the step), where the projection is differentiable.
    """
    rng = np.random.default_rng(L)
    cfg = jp.PassConfig.joint_beamforming(num_waveguides=2, num_pinches=L, min_spacing=0.05)
    X = jnp.asarray(rng.uniform(-2, 22, (2, L)))
    Wt = jnp.asarray(rng.uniform(0.5, 2.0, (2, L)))
    z = np.asarray(_isotonic_regression(X - jnp.arange(L) * 0.05, Wt))
    gaps = np.diff(z, axis=-1)
    assert np.all((gaps == 0) | (gaps > 1e-3)) and np.any(gaps == 0)  # some pooling, no near-ties
    check_grads(lambda v: jp.project_positions(cfg, v, Wt), (X,), order=1, modes=["fwd", "rev"], eps=1e-6)
    check_grads(lambda w: jp.project_positions(cfg, X, w), (Wt,), order=1, modes=["fwd", "rev"], eps=1e-6)
    g = jax.grad(lambda v: jnp.sum(jp.project_positions(cfg, v, Wt) * jnp.arange(L)))(X)
    assert float(jnp.abs(g).max()) > 0  # not silently zero


@settings(max_examples=60, deadline=None)
@given(
    data=hnp.arrays(np.float64, (3, 12), elements=st.integers(-8, 30).map(float)),  # integers: ties
    weights=hnp.arrays(np.float64, (3, 12), elements=st.sampled_from([0.5, 1.0, 2.0, 7.0])),
)
def test_pav_property_matches_minmax_and_block_jacobian(data, weights):
    """Any input (ties included): PAV == min-max, and the Jacobian averages over the fitted blocks."""
    with jax.enable_x64(True):
        z = np.asarray(_isotonic_regression(jnp.asarray(data), jnp.asarray(weights)))
        np.testing.assert_allclose(z, isotonic_minmax(jnp.asarray(data), jnp.asarray(weights)), atol=1e-12)
        J = np.asarray(jax.jacrev(lambda y: _isotonic_regression(y, jnp.asarray(weights)))(jnp.asarray(data)))
        for n in range(3):
            # the blocks of the rule: runs of one value in z (ties between adjacent blocks may pool them)
            for i in range(12):
                block = (z[n] == z[n, i])
                row = J[n, i, n]
                np.testing.assert_allclose(row.sum(), 1.0, atol=1e-12)  # an average
                assert np.all(row[~block] == 0) and np.all(row >= 0)
                np.testing.assert_allclose(row[row > 0], (weights[n] / weights[n][row > 0].sum())[row > 0], atol=1e-12)


def jaxpr_size(fn, *args):
    """Number of equations in ``fn``'s jaxpr, those of nested jaxprs (loops, jits, custom rules) included."""

    def count(jaxpr):
        return sum(1 + sum(count(sub) for sub in jaxprs_in_params(eqn.params)) for eqn in jaxpr.eqns)

    return count(jax.make_jaxpr(fn)(*args).jaxpr)


def test_projection_jaxpr_size_does_not_grow_with_n_and_l():
    """Compile time independent of the sizes: the same program at (N, L) = (4, 8) and (16, 32)."""
    sizes = []
    for N, L in ((4, 8), (16, 32)):
        cfg = jp.PassConfig.joint_beamforming(num_users=N, num_waveguides=N, num_pinches=L)
        X, w = jnp.zeros((N, L)), jnp.ones((N, L))
        value = jaxpr_size(lambda X: jp.project_positions(cfg, X, w), X)
        grad = jaxpr_size(jax.grad(lambda X, w: jnp.sum(jp.project_positions(cfg, X, w) ** 2), argnums=(0, 1)), X, w)
        sizes.append((value, grad))
    (v0, g0), (v1, g1) = sizes
    assert abs(v1 - v0) <= 4 and abs(g1 - g0) <= 4, sizes
    assert v0 < 250 and g0 < 350, sizes  # measured 163 and 219: loops, not an unrolled network


def test_sample_users_shape_and_bounds():
    cfg = jp.PassConfig.joint_beamforming()
    u = jp.sample_users(jax.random.key(3), cfg, (1000,))
    assert u.shape == (1000, 4, 2)
    assert float(u[..., 0].min()) >= 0 and float(u[..., 0].max()) <= 20
    assert float(u[..., 1].min()) >= 0 and float(u[..., 1].max()) <= 10
    assert float(u[..., 0].mean()) == pytest.approx(10, abs=0.3)
    assert float(u[..., 1].mean()) == pytest.approx(5, abs=0.15)
    assert not np.allclose(u, jp.sample_users(jax.random.key(4), cfg, (1000,)))


def test_uniform_positions():
    cfg = jp.PassConfig.joint_beamforming()
    X = jp.uniform_positions(cfg)
    assert X.shape == (4, 8)
    np.testing.assert_allclose(X[2], (np.arange(8) + 0.5) * 2.5, rtol=1e-6)
    assert bool(jp.is_feasible(cfg, X))


def test_is_feasible_detects_each_violation():
    cfg = jp.PassConfig.joint_beamforming(num_waveguides=1, num_pinches=3)
    ok = jnp.array([[1.0, 2.0, 3.0]])
    assert bool(jp.is_feasible(cfg, ok))
    assert not bool(jp.is_feasible(cfg, ok.at[0, 0].set(-0.1)))
    assert not bool(jp.is_feasible(cfg, ok.at[0, 2].set(20.1)))
    assert not bool(jp.is_feasible(cfg, ok.at[0, 1].set(1.001)))
    assert not bool(jp.is_feasible(cfg, ok.at[0, 1].set(jnp.nan)))


def test_positions_from_spacings_feasible_and_eq53(x64):
    cfg = jp.PassConfig.joint_beamforming()
    key1, key2 = jax.random.split(jax.random.key(5))
    frac = jax.random.uniform(key1, (100, 4))
    z = jax.random.uniform(key2, (100, 4, 8))
    X = jp.positions_from_spacings(cfg, frac, z)
    assert bool(jnp.all(jp.is_feasible(cfg, X, tol=1e-12)))
    L, d = cfg.num_pinches, cfg.min_spacing
    np.testing.assert_allclose(X[..., -1], L * d + frac * (cfg.length_x - L * d), rtol=1e-12)  # (53)
    omega = np.diff(np.concatenate([np.zeros((100, 4, 1)), X], -1), axis=-1)
    share = np.asarray(z / z.sum(-1, keepdims=True))
    np.testing.assert_allclose(omega, d + (np.asarray(X[..., -1:]) - L * d) * share, rtol=1e-10)  # (54)-(55)
    # differentiable in the fractions
    check_grads(lambda f: jp.positions_from_spacings(cfg, f, z[0]), (frac[0],), order=1, eps=1e-6)
    # extreme inputs stay feasible
    X0 = jp.positions_from_spacings(cfg, jnp.zeros(4), jnp.zeros((4, 8)))
    assert bool(jp.is_feasible(cfg, X0, tol=1e-12))


def test_geometry_bad_input():
    cfg = jp.PassConfig.joint_beamforming()
    with pytest.raises(ValueError, match="X must have shape"):
        jp.project_positions(cfg, jnp.zeros((4, 7)))
    with pytest.raises(ValueError, match="weights must be strictly positive"):
        jp.project_positions(cfg, jp.uniform_positions(cfg), weights=jnp.zeros((4, 8)))
    with pytest.raises(ValueError, match="z must have shape"):
        jp.positions_from_spacings(cfg, jnp.zeros(4), jnp.zeros((4, 3)))

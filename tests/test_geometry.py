import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.test_util import check_grads
from scipy.optimize import nnls

import jaxpass as jp


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

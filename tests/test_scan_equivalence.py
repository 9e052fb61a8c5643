"""Scan-based routines equal their unrolled versions (float64), and traced programs do not grow with K, N, L.

The unrolled references below are the Python-loop versions the package used
before its loops became ``lax`` loops (kept here only as references).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpass as jp
from jaxpass import linalg
from jaxpass.optimize import positions as pos
from jaxpass.optimize import power_min


def _unrolled_regularized_pinv_qr(M, reg):
    K, N = M.shape
    A = jnp.concatenate([jnp.conj(M).T, jnp.sqrt(reg).astype(M.dtype) * jnp.eye(K, dtype=M.dtype)], axis=0)
    qs, R = [], [[None] * K for _ in range(K)]
    for k in range(K):
        v = A[:, k]
        coef = [0.0] * k
        for _ in range(2):
            for j in range(k):
                p = jnp.sum(jnp.conj(qs[j]) * v)
                coef[j] = coef[j] + p
                v = v - p * qs[j]
        nrm = jnp.sqrt(jnp.maximum(jnp.sum(v.real**2 + v.imag**2), jnp.finfo(v.real.dtype).tiny))
        qs.append(v / nrm)
        for j in range(k):
            R[j][k] = coef[j]
        R[k][k] = nrm
    Z = []
    for i in range(K):
        acc = (jnp.arange(K) == i).astype(M.dtype)
        for j in range(i):
            acc = acc - jnp.conj(R[j][i]) * Z[j]
        Z.append(acc / R[i][i])
    return jnp.stack(qs, axis=1)[:N] @ jnp.stack(Z, axis=0)


def _unrolled_two_loop(g, S, Y, valid, free, gamma0):
    m = S.shape[0]
    fm = free.astype(g.dtype)
    q = g * fm
    Sf, Yf = S * fm, Y * fm
    sy = jnp.sum(Sf * Yf, axis=-1)
    use = valid & (sy > 0)
    rho = jnp.where(use, 1.0 / jnp.where(use, sy, 1.0), 0.0)
    alphas = [None] * m
    for i in reversed(range(m)):
        alphas[i] = rho[i] * jnp.dot(Sf[i], q)
        q = q - alphas[i] * Yf[i]
    r = gamma0 * q
    for i in range(m):
        r = r + Sf[i] * (alphas[i] - rho[i] * jnp.dot(Yf[i], r))
    return -r * fm


@pytest.mark.parametrize("K,N", [(1, 1), (3, 5), (6, 6), (7, 3)])
def test_regularized_pinv_qr_equals_the_unrolled_version(x64, K, N):
    rng = np.random.default_rng(K * 7 + N)
    M = jnp.asarray(rng.normal(size=(K, N)) + 1j * rng.normal(size=(K, N)))
    for reg in (1e-20, 0.3):
        # same operations in the same order up to the zero columns of the panel: round-off level
        # (K > N with a tiny reg is rank deficient: ~1e-10 relative to the largest entry)
        ref = _unrolled_regularized_pinv_qr(M, reg)
        np.testing.assert_allclose(linalg.regularized_pinv_qr(M, reg), ref, rtol=0,
                                   atol=(1e-9 if K > N else 1e-12) * float(jnp.max(jnp.abs(ref))))
    # and the gradients agree (reverse mode through the fori_loops)
    f_new = lambda m: jnp.sum(jnp.abs(linalg.regularized_pinv_qr(m, 0.3)) ** 2)
    f_old = lambda m: jnp.sum(jnp.abs(_unrolled_regularized_pinv_qr(m, 0.3)) ** 2)
    np.testing.assert_allclose(jax.grad(f_new)(M), jax.grad(f_old)(M), rtol=1e-10, atol=1e-12)


def test_lbfgs_two_loop_equals_the_unrolled_version(x64):
    rng = np.random.default_rng(0)
    m, n = 5, 7
    S, Y = jnp.asarray(rng.normal(size=(m, n))), jnp.asarray(rng.normal(size=(m, n)))
    Y = Y.at[2].set(-S[2])  # one pair with s.y < 0: skipped by both
    g = jnp.asarray(rng.normal(size=n))
    valid = jnp.asarray([True, True, True, False, True])
    free = jnp.asarray(rng.uniform(size=n) > 0.2)
    np.testing.assert_allclose(power_min._two_loop(g, S, Y, valid, free, 0.7),
                               _unrolled_two_loop(g, S, Y, valid, free, 0.7), rtol=1e-13, atol=1e-14)


def _equations(fn, *args):
    return len(jax.make_jaxpr(fn)(*args).jaxpr.eqns)


def _tune_step_size(K, L, beamformer):
    """Equations in one projected-gradient tune step (value + gradient + projection) at K = N, L."""
    cfg = jp.PassConfig.joint_beamforming(num_users=K, num_waveguides=K, num_pinches=L)
    opts = pos.TuneOptions(beamformer=beamformer)
    users = jp.sample_users(jax.random.key(0), cfg)
    X = jp.uniform_positions(cfg)
    duals = (jnp.zeros((K,)), jnp.zeros((K,)))

    def step(X):
        v, g = jax.value_and_grad(lambda X: pos._objective(cfg, opts, users, (X, duals), None, 2)[0])(X)
        return v, jp.project_positions(cfg, X + 1e-4 * g)

    return _equations(step, X)


@pytest.mark.parametrize("beamformer", ["zf", "rzf", "kkt"])
def test_one_tune_step_has_the_same_jaxpr_size_at_every_size(beamformer):
    """(K = N, L) = (4, 8), (16, 32), (32, 64): the traced step differs by at most a constant.

    The constant covers kernels switched by size: the KKT map's Cholesky is
    unrolled for n <= 6 (bounded: largest at n = 6) and LAPACK above.
    """
    small, large, larger = (_tune_step_size(K, L, beamformer) for K, L in ((4, 8), (16, 32), (32, 64)))
    assert abs(larger - large) <= 40, (large, larger)
    if beamformer == "kkt":
        assert large <= small <= _tune_step_size(6, 8, beamformer), (small, large)
    else:
        assert abs(large - small) <= 40, (small, large)


def test_zf_value_and_grad_jaxpr_does_not_grow():
    def size(K):
        H = jnp.ones((K, 2 * K), jnp.complex64)
        return _equations(jax.grad(lambda h: jnp.sum(jnp.abs(jp.beamforming.zf(h, 1.0)) ** 2)), H)

    # K <= 8 uses the fused small products, K > 8 XLA's dot (a constant difference); no growth beyond
    assert size(16) == size(32) and abs(size(4) - size(16)) <= 40

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpass.linalg import jacobi_svd


def random_matrix(rng, K, N, dtype, rank=None, scale=1.0):
    M = rng.normal(size=(K, N)) + 1j * rng.normal(size=(K, N))
    if rank is not None:
        M = M[:, :rank] @ (rng.normal(size=(rank, N)) + 1j * rng.normal(size=(rank, N)))
    return jnp.asarray(scale * M, dtype)


@pytest.mark.parametrize("K,N", [(1, 1), (2, 4), (4, 4), (4, 2), (6, 3), (8, 8), (3, 8)])
@pytest.mark.parametrize("x64_on", [False, True])
def test_jacobi_svd_matches_lapack(K, N, x64_on):
    with jax.enable_x64(x64_on):
        dtype = jnp.complex128 if x64_on else jnp.complex64
        tol = 1e-12 if x64_on else 3e-6
        rng = np.random.default_rng(K * 10 + N)
        for trial in range(10):
            M = random_matrix(rng, K, N, dtype, rank=min(K, N) - 1 if trial % 3 == 2 and min(K, N) > 1 else None,
                              scale=10.0 ** rng.uniform(-4, 4))
            U, s, Vt = jacobi_svd(M)
            Mn = np.asarray(M)
            scale = np.abs(Mn).max()
            np.testing.assert_allclose(np.asarray(U) @ np.diag(np.asarray(s)) @ np.asarray(Vt).conj().T, Mn, atol=tol * scale * 4)
            np.testing.assert_allclose(np.asarray(U).conj().T @ np.asarray(U), np.eye(K), atol=tol * 4)
            ref = np.linalg.svd(Mn.astype(np.complex128), compute_uv=False)
            got = np.sort(np.asarray(s))[::-1][: min(K, N)]
            np.testing.assert_allclose(got, ref, atol=tol * 4 * ref[0])
            assert np.all(np.asarray(s)[np.argsort(np.asarray(s))[: max(K - N, 0)]] <= tol * 4 * ref[0])


def test_jacobi_svd_relative_accuracy_of_small_singular_values():
    """Graded matrix: small singular values keep relative (not just absolute) accuracy."""
    rng = np.random.default_rng(0)
    Q1, _ = np.linalg.qr(rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4)))
    Q2, _ = np.linalg.qr(rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4)))
    sv = np.array([1.0, 1e-2, 1e-3, 1e-4])
    M = (Q1 * sv) @ Q2.conj().T
    _, s, _ = jacobi_svd(jnp.asarray(M, jnp.complex64))
    np.testing.assert_allclose(np.sort(np.asarray(s))[::-1], sv, rtol=2e-3)


def test_jacobi_svd_vmaps_and_handles_zero():
    M = jnp.zeros((3, 4, 4), jnp.complex64)
    U, s, Vt = jax.jit(jax.vmap(jacobi_svd))(M)
    assert bool(jnp.all(jnp.isfinite(U))) and bool(jnp.all(s == 0)) and bool(jnp.all(Vt == 0))


@pytest.mark.parametrize("n,m", [(1, 1), (4, 4), (8, 3)])
def test_cholesky_solve_matches_numpy_and_differentiates(x64, n, m):
    from jax.test_util import check_grads

    from jaxpass.linalg import cholesky_solve

    rng = np.random.default_rng(n)
    A = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    M = jnp.asarray(np.eye(n) + A @ A.conj().T)
    B = jnp.asarray(rng.normal(size=(n, m)) + 1j * rng.normal(size=(n, m)))
    np.testing.assert_allclose(cholesky_solve(M, B), np.linalg.solve(np.asarray(M), np.asarray(B)), rtol=1e-10, atol=1e-12)
    check_grads(lambda b: cholesky_solve(M, b), (B,), order=1, modes=["rev", "fwd"])
    check_grads(lambda a: cholesky_solve(jnp.eye(n) + a @ jnp.conj(a).T, B), (jnp.asarray(A),), order=1, modes=["rev"])


@pytest.mark.parametrize("K,N", [(1, 1), (4, 4), (2, 5), (8, 8)])
def test_regularized_pinv_qr_matches_formula_and_differentiates(x64, K, N):
    from jax.test_util import check_grads

    from jaxpass.linalg import regularized_pinv_qr

    rng = np.random.default_rng(K + N)
    M = rng.normal(size=(K, N)) + 1j * rng.normal(size=(K, N))
    for reg in (1e-28, 0.05):
        ref = M.conj().T @ np.linalg.inv(M @ M.conj().T + reg * np.eye(K))
        np.testing.assert_allclose(regularized_pinv_qr(jnp.asarray(M), reg), ref, atol=1e-10 * np.abs(ref).max())
    check_grads(lambda m: regularized_pinv_qr(m, 0.05), (jnp.asarray(M),), order=1, modes=["rev", "fwd"])


def test_regularized_pinv_qr_float32_accuracy_on_ill_conditioned():
    """CGS2 QR keeps eps * cond accuracy (a Gram/Cholesky solve would give eps * cond^2)."""
    from jaxpass.linalg import regularized_pinv_qr

    rng = np.random.default_rng(1)
    Q1, _ = np.linalg.qr(rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4)))
    Q2, _ = np.linalg.qr(rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4)))
    M = (Q1 * np.array([1.0, 0.3, 0.05, 1e-3])) @ Q2.conj().T  # cond 1e3
    W = np.asarray(regularized_pinv_qr(jnp.asarray(M, jnp.complex64), 1e-14), np.complex128)
    ref = np.linalg.pinv(M)
    assert np.abs(W - ref).max() / np.abs(ref).max() < 1e-3  # ~eps * cond = 1.2e-4


def test_small_matmul_and_jit_options():
    import jaxpass as jp
    from jaxpass.linalg import small_matmul

    rng = np.random.default_rng(2)
    a = rng.normal(size=(3, 4, 5)) + 1j * rng.normal(size=(3, 4, 5))
    b = rng.normal(size=(3, 5, 2)) + 1j * rng.normal(size=(3, 5, 2))
    np.testing.assert_allclose(small_matmul(jnp.asarray(a, jnp.complex64), jnp.asarray(b, jnp.complex64)), a @ b, rtol=1e-5, atol=1e-5)
    opts = jp.compiler_options()
    assert opts is None or isinstance(opts, dict)
    f = jp.jit(lambda x: jnp.sum(x * 2, axis=-1))
    np.testing.assert_allclose(f(jnp.ones((3, 4))), 8.0)
    g = jp.jit(static_argnums=1)(lambda x, n: x * n)
    assert float(g(2.0, 3)) == 6.0


@pytest.mark.parametrize("K,N", [(4, 4), (12, 12), (12, 6), (6, 12), (10, 16)])
def test_svd_dispatch_matches_jacobi_convention(x64, K, N):
    """linalg.svd (Jacobi for K <= 8, LAPACK above) reconstructs M in jacobi_svd's shapes and convention."""
    from jaxpass.linalg import svd

    rng = np.random.default_rng(K * N)
    M = random_matrix(rng, K, N, jnp.complex128)
    U, s, Vt = jax.jit(svd)(M)
    assert U.shape == (K, K) and s.shape == (K,) and Vt.shape == (N, K)
    np.testing.assert_allclose(np.asarray(U) @ np.diag(np.asarray(s)) @ np.asarray(Vt).conj().T, M, atol=1e-11)
    np.testing.assert_allclose(np.asarray(U).conj().T @ np.asarray(U), np.eye(K), atol=1e-11)
    np.testing.assert_allclose(np.sort(np.asarray(s))[::-1][: min(K, N)], np.linalg.svd(np.asarray(M), compute_uv=False),
                               atol=1e-11)
    assert np.all(np.sort(np.asarray(s))[: max(K - N, 0)] == 0)

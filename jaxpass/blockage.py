"""Probabilistic LoS blockage with correlated links, and its Monte-Carlo check (docs/model.md §6, PB §IV).

One pinch per waveguide (PB): user k sees pinch n through a LoS indicator
``gamma[k, n] ~ Bernoulli(p[k, n])``, ``p = exp(-beta_b r)``
(``jaxpass.channel.los_probability``), and the blocked channel row is
``gamma[k] * hbar[k]`` with ``hbar = effective_channel(cfg, X, users)``.

Correlation model (PB eq. (19)): the links of one user may be correlated with
coefficients ``rho[n, m]`` (``rho[n, n] = 1``), so that

    Cov[gamma_kn, gamma_km] = rho[n, m] s_kn s_km,       s = sqrt(p (1 - p))
    E[gamma_k gamma_k^T]    = p_k p_k^T + Cov_k                    (N, N)
    R_k = E[h_k^H h_k]      = Phi_k (|hbar_k| |hbar_k|^T o E[gamma_k gamma_k^T]) Phi_k^H

(``o`` the Hadamard product, ``Phi_k = diag(conj(hbar_k) / |hbar_k|)``; row
convention of ``jaxpass.channel.blockage_covariance``: ``E|h_k @ w|^2 =
w^H R_k w``). ``rho = 0`` (or ``None``) is the independent case of PB eq. (13),
equal to ``jaxpass.channel.blockage_covariance``. Users are served in their own
TDMA slots, so only the correlation *within* one user's links enters any
expected SNR; the sampler draws different users independently.

Sampling correlated Bernoullis (the Monte-Carlo check): a **Gaussian copula**,
``gamma_n = 1[Z_n <= Phi^-1(p_n)]`` with ``Z ~ N(0, C)``. For each pair the
latent correlation ``C[n, m]`` is calibrated numerically so that the Bernoulli
pair has exactly the requested ``rho[n, m]``: the pair's joint probability is
the bivariate normal CDF, computed by Gauss-Legendre quadrature of Sheppard's /
Drezner-Wesolowsky's smooth integral in ``theta = asin(c)``

    Phi_2(a, b; c) = Phi(a) Phi(b) + (1 / 2 pi) int_0^{asin c} exp(-(a^2 + b^2 - 2ab sin t) / (2 cos^2 t)) dt,

which is strictly increasing in ``c``, so a bisection on ``c in [-1, 1]``
inverts it. Every requested ``rho`` between the pair's Frechet bounds
(:func:`correlation_bounds`) is reachable (``c = +-1`` attain them); for
``N >= 3`` the calibrated ``C`` must also be positive semidefinite, which
:func:`sample_los` checks on concrete inputs. The realised pairwise
correlation is measured in ``tests/test_power_min.py`` (within 3 standard
errors).

Everything numeric is one drop per call (``p (K, N)``); batch with ``jax.vmap``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpass._checks import check_finite, check_positive_int, check_shape, is_tracer
from jaxpass._safe import safe_div, safe_sqrt
from jaxpass.channel import distances, effective_channel, los_probability, radiation_amplitudes
from jaxpass.config import PassConfig
from jaxpass.metrics import tdma_snr

# Gauss-Legendre nodes for the bivariate normal CDF; 64 nodes resolve the steep
# boundary layer at c -> +-1 (|a - b| up to ~6) to ~1e-12.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(64)


# ---------------------------------------------------------------- validation
def check_single_pinch(cfg: PassConfig, where: str = "power_min"):
    """PB has one pinch per waveguide: raise unless ``cfg.num_pinches == 1``."""
    if cfg.num_pinches != 1:
        raise ValueError(
            f"{where}: docs/model.md §6 (PB) has one pinch per waveguide; need PassConfig.num_pinches == 1, "
            f"got {cfg.num_pinches}"
        )


def check_correlation(correlation, num_users: int, num_waveguides: int, name: str = "correlation"):
    """Validate a link-correlation argument (concrete values only; tracers pass).

    Accepted: ``None`` (independent links), a scalar ``rho`` (all pairs of a
    user's links), an ``(N, N)`` matrix shared by all users, or ``(K, N, N)``.
    Matrices must be symmetric with a unit diagonal and entries in ``[-1, 1]``.
    """
    if correlation is None or is_tracer(correlation):
        return
    arr = np.asarray(correlation, dtype=np.float64)
    check_finite(name, arr)
    N = num_waveguides
    if arr.ndim == 0:
        if not -1.0 <= arr <= 1.0:
            raise ValueError(f"{name} must lie in [-1, 1], got {float(arr)}")
        return
    if arr.shape not in ((N, N), (num_users, N, N)):
        raise ValueError(f"{name} must be a scalar or have shape ({N}, {N}) or ({num_users}, {N}, {N}), got {arr.shape}")
    if np.any(np.abs(arr) > 1.0 + 1e-12):
        raise ValueError(f"{name} entries must lie in [-1, 1], got max |rho| = {np.abs(arr).max():.6g}")
    if not np.allclose(arr, np.swapaxes(arr, -1, -2), atol=1e-12):
        raise ValueError(f"{name} must be symmetric (rho[n, m] == rho[m, n])")
    if not np.allclose(np.diagonal(arr, axis1=-2, axis2=-1), 1.0, atol=1e-12):
        raise ValueError(f"{name} must have a unit diagonal (rho[n, n] == 1)")


def _correlation_matrix(correlation, K: int, N: int, dtype):
    """``(K, N, N)`` correlation matrices (unit diagonal) from any accepted form."""
    eye = jnp.eye(N, dtype=dtype)
    if correlation is None:
        return jnp.broadcast_to(eye, (K, N, N))
    rho = jnp.asarray(correlation, dtype)
    if rho.ndim == 0:
        rho = eye + rho * (1.0 - eye)
    return jnp.broadcast_to(rho, (K, N, N))


# ------------------------------------------------------------------ moments
def link_std(p):
    """Standard deviation ``sqrt(p (1 - p))`` of Bernoulli(p), with a finite gradient at p in {0, 1}."""
    return safe_sqrt(p * (1.0 - p))


def indicator_covariance(p, correlation=None):
    """Covariance of the LoS indicators, PB eqs. (12) and (19), shape ``(K, N, N)``.

    ``Cov_k[n, m] = rho_k[n, m] sqrt(p_kn (1 - p_kn) p_km (1 - p_km))``; the
    diagonal is ``p (1 - p)``; ``correlation=None`` gives the independent,
    diagonal case (12).

    Args:
      p: ``(K, N)`` LoS probabilities.
      correlation: ``None``, scalar, ``(N, N)`` or ``(K, N, N)`` coefficients
        (see :func:`check_correlation`).
    """
    p = jnp.asarray(p)
    K, N = p.shape
    check_correlation(correlation, K, N)
    s = link_std(p)
    return _correlation_matrix(correlation, K, N, p.dtype) * s[:, :, None] * s[:, None, :]


def indicator_moments(p, correlation=None):
    """Second moments ``E[gamma_k gamma_k^T] = p_k p_k^T + Cov_k``, shape ``(K, N, N)``.

    The diagonal is exactly ``p`` (``gamma^2 = gamma``).
    """
    p = jnp.asarray(p)
    return p[:, :, None] * p[:, None, :] + indicator_covariance(p, correlation)


def link_amplitudes(cfg: PassConfig, X, users):
    """``|hbar[k, n]| = sqrt(beta) a_n 10^(-alpha x_n / 20) / r_kn``, shape ``(K, N)`` [sqrt(W) gain].

    The magnitudes of ``effective_channel`` for one pinch per waveguide, without
    evaluating any phase (PB's objective depends on distances only, docs/model.md §7).
    """
    check_single_pinch(cfg, "link_amplitudes")
    r = distances(cfg, X, users)[..., 0]  # (K, N)
    X = jnp.asarray(X, r.dtype)
    a = radiation_amplitudes(cfg, dtype=r.dtype)[:, 0]
    loss = jnp.exp(-(jnp.log(10.0) / 20.0) * jnp.asarray(cfg.loss_db_per_m, r.dtype) * X[:, 0])
    return jnp.sqrt(jnp.asarray(cfg.beta, r.dtype)) * (a * loss)[None, :] / r


def moment_matrices(cfg: PassConfig, X, users, correlation=None):
    """Phase-free covariance ``M_k = |hbar_k| |hbar_k|^T o E[gamma_k gamma_k^T]``, ``(K, N, N)`` real.

    ``R_k = Phi_k M_k Phi_k^H`` with a diagonal unitary ``Phi_k`` (docs/model.md §7), so
    ``M_k`` has the eigenvalues of ``R_k``; its entries are non-negative
    (Perron-Frobenius applies: PB Lemma 2). Differentiable in ``X``.
    """
    amp = link_amplitudes(cfg, X, users)
    p = los_probability(cfg, X, users)[..., 0]
    return amp[:, :, None] * amp[:, None, :] * indicator_moments(p, correlation)


def channel_covariance(cfg: PassConfig, X, users, correlation=None, *, method: str = "auto"):
    """Blockage-averaged covariance with correlated links, PB eq. (11)/(19), ``(K, N, N)`` complex.

    ``R_k[n, m] = E[conj(h_kn) h_km] = E[gamma_kn gamma_km] conj(hbar_kn) hbar_km``
    (row convention of :func:`jaxpass.channel.blockage_covariance`, which this
    equals for ``correlation=None``). Expected SNR: ``w^H R_k w / sigma^2``.

    Args:
      cfg: scenario with ``num_pinches == 1``.
      X: ``(N, 1)`` pinch positions [m]; users: ``(K, 2)`` [m].
      correlation: ``None`` (independent), scalar, ``(N, N)`` or ``(K, N, N)``.
    """
    check_single_pinch(cfg, "channel_covariance")
    hbar = effective_channel(cfg, X, users, method=method)  # (K, N)
    p = los_probability(cfg, X, users)[..., 0]
    G = indicator_moments(p, correlation)
    return (jnp.conj(hbar)[:, :, None] * hbar[:, None, :]) * G.astype(hbar.dtype)


# --------------------------------------------------------- copula sampling
def correlation_bounds(p_i, p_j):
    """Frechet bounds ``(lo, hi)`` on the correlation of Bernoulli(p_i), Bernoulli(p_j).

    ``hi = (min(p_i, p_j) - p_i p_j) / (s_i s_j)``,
    ``lo = (max(0, p_i + p_j - 1) - p_i p_j) / (s_i s_j)``; both 0 when either
    link is deterministic (``p`` in {0, 1}).
    """
    p_i, p_j = jnp.asarray(p_i), jnp.asarray(p_j)
    den = link_std(p_i) * link_std(p_j)
    hi = safe_div(jnp.minimum(p_i, p_j) - p_i * p_j, den)
    lo = safe_div(jnp.maximum(0.0, p_i + p_j - 1.0) - p_i * p_j, den)
    return lo, hi


def _thresholds(p):
    eps = jnp.finfo(jnp.asarray(p).dtype).eps
    return jax.scipy.special.ndtri(jnp.clip(p, eps, 1.0 - eps))


def bivariate_normal_cdf(a, b, c):
    """``P(Z_1 <= a, Z_2 <= b)`` for standard normals with correlation ``c`` in [-1, 1].

    Gauss-Legendre (64 nodes) on the smooth integrand in ``theta = asin(c)``
    (module docstring); exact limits at ``c = +-1`` up to quadrature error.
    """
    a, b, c = jnp.asarray(a), jnp.asarray(b), jnp.asarray(c)
    dtype = jnp.result_type(a, b, c, float)
    top = jnp.arcsin(jnp.clip(c, -1.0, 1.0)).astype(dtype)
    nodes = jnp.asarray(_GL_NODES, dtype)
    weights = jnp.asarray(_GL_WEIGHTS, dtype)
    t = 0.5 * top[..., None] * (nodes + 1.0)  # (..., 64)
    cos2 = jnp.cos(t) ** 2
    a_, b_ = a[..., None], b[..., None]
    expo = -(a_ * a_ + b_ * b_ - 2.0 * a_ * b_ * jnp.sin(t)) / (2.0 * jnp.maximum(cos2, jnp.finfo(dtype).tiny))
    integral = 0.5 * top * jnp.sum(weights * jnp.exp(expo), axis=-1)
    norm_cdf = jax.scipy.stats.norm.cdf
    return norm_cdf(a) * norm_cdf(b) + integral / (2.0 * jnp.pi)


def copula_correlation(p_i, p_j, c):
    """Correlation of the Bernoulli pair ``(1[Z_i <= Phi^-1(p_i)], 1[Z_j <= Phi^-1(p_j)])`` for latent ``c``."""
    p_i, p_j = jnp.asarray(p_i), jnp.asarray(p_j)
    joint = bivariate_normal_cdf(_thresholds(p_i), _thresholds(p_j), c)
    return safe_div(joint - p_i * p_j, link_std(p_i) * link_std(p_j))


def calibrate_copula(p, correlation, iterations: int = 60):
    """Latent Gaussian correlations ``C (K, N, N)`` whose copula has Bernoulli correlation ``rho``.

    Pairwise bisection on ``c in [-1, 1]`` of :func:`copula_correlation`
    (strictly increasing in ``c``); ``iterations`` halvings (60: float64 round-off).
    Requests outside the Frechet bounds end at ``c = +-1`` (the bound is
    reached); :func:`sample_los` rejects them on concrete inputs.
    Pairs with a deterministic link (``p`` in {0, 1}) get ``c = 0``.
    """
    p = jnp.asarray(p)
    K, N = p.shape
    rho = _correlation_matrix(correlation, K, N, p.dtype)
    p_i, p_j = p[:, :, None] * jnp.ones((1, 1, N), p.dtype), p[:, None, :] * jnp.ones((1, N, 1), p.dtype)

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        above = copula_correlation(p_i, p_j, mid) > rho
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo0 = -jnp.ones_like(rho)
    lo, hi = jax.lax.fori_loop(0, iterations, body, (lo0, -lo0))
    c = 0.5 * (lo + hi)
    degenerate = (link_std(p_i) * link_std(p_j)) <= jnp.finfo(p.dtype).tiny
    eye = jnp.eye(N, dtype=bool)
    return jnp.where(eye, 1.0, jnp.where(degenerate, 0.0, c))


def _check_realisable(p, correlation):
    """Concrete check: requested correlations within the Frechet bounds, latent C PSD."""
    p = np.asarray(p, np.float64)
    K, N = p.shape
    rho = np.asarray(_correlation_matrix(correlation, K, N, jnp.float32), np.float64)
    with jax.enable_x64(True):
        lo, hi = correlation_bounds(jnp.asarray(p[:, :, None]), jnp.asarray(p[:, None, :]))
        lo, hi = np.asarray(lo), np.asarray(hi)
    off = ~np.eye(N, dtype=bool)[None]
    det = (p[:, :, None] * (1 - p[:, :, None]) * p[:, None, :] * (1 - p[:, None, :])) <= 0
    bad = off & ~det & ((rho > hi + 1e-6) | (rho < lo - 1e-6))
    if np.any(bad):
        k, n, m = map(int, np.argwhere(bad)[0])
        raise ValueError(
            f"correlation[{n}, {m}] = {rho[k, n, m]:.6g} is not realisable for user {k}'s links with "
            f"LoS probabilities {p[k, n]:.4g}, {p[k, m]:.4g}: a Bernoulli pair's correlation lies in "
            f"[{lo[k, n, m]:.6g}, {hi[k, n, m]:.6g}] (Frechet bounds)"
        )


class _Draw(NamedTuple):
    thresholds: jax.Array  # (K, N)
    factor: jax.Array  # (K, N, N): Z = factor @ eps


def _copula_factor(p, correlation, check: bool):
    p = jnp.asarray(p)
    K, N = p.shape
    if correlation is None:
        return _Draw(_thresholds(p), jnp.broadcast_to(jnp.eye(N, dtype=p.dtype), (K, N, N)))
    C = calibrate_copula(p, correlation)
    lam, V = jnp.linalg.eigh(C)
    if check and not is_tracer(C):
        if float(jnp.min(lam)) < -1e-6:
            raise ValueError(
                "correlation: the calibrated latent Gaussian correlation matrix is not positive "
                f"semidefinite (min eigenvalue {float(jnp.min(lam)):.3g}); these pairwise correlations "
                "cannot be realised jointly by the Gaussian copula"
            )
    factor = V * jnp.sqrt(jnp.maximum(lam, 0.0))[:, None, :]
    return _Draw(_thresholds(p), factor)


def sample_los(key, p, correlation=None, num_samples: int = 1):
    """Sample LoS masks ``gamma (num_samples, K, N)`` (float 0/1) with marginals ``p`` and correlation ``rho``.

    Gaussian copula calibrated per pair (module docstring). Users are
    independent of each other; ``correlation=None`` draws independent links.
    ``p`` exactly 1 (no blockage) always gives 1, ``p = 0`` always 0.

    Args:
      key: ``jax.random`` key.
      p: ``(K, N)`` LoS probabilities (``los_probability(cfg, X, users)[..., 0]``).
      correlation: ``None``, scalar, ``(N, N)`` or ``(K, N, N)``; must be realisable
        (checked on concrete inputs: Frechet bounds and a PSD latent matrix).
      num_samples: number of masks.
    """
    check_positive_int("num_samples", num_samples)
    p = jnp.asarray(p)
    check_shape("p", p, (None, None))
    if not is_tracer(p):
        check_finite("p", p)
        if bool(jnp.any((p < 0) | (p > 1))):
            raise ValueError("p (LoS probabilities) must lie in [0, 1]")
    K, N = p.shape
    check_correlation(correlation, K, N)
    if correlation is not None and not (is_tracer(p) or is_tracer(correlation)):
        _check_realisable(p, correlation)
    draw = _copula_factor(p, correlation, check=True)
    eps = jax.random.normal(key, (num_samples, K, N), p.dtype)
    z = jnp.einsum("knm,skm->skn", draw.factor, eps)
    below = z <= draw.thresholds[None]
    below = jnp.where(p[None] >= 1.0, True, jnp.where(p[None] <= 0.0, False, below))
    return below.astype(p.dtype)


# ---------------------------------------------------------- Monte Carlo check
class MonteCarloSNR(NamedTuple):
    """Monte-Carlo check of the expected SNR (one drop).

    Attributes:
      mean: ``(K,)`` empirical mean SNR over the sampled masks (linear).
      std_err: ``(K,)`` standard error of ``mean`` (sample std / sqrt(S)).
      expected: ``(K,)`` the formula ``w_k^H R_k w_k / sigma^2``.
    """

    mean: jax.Array
    std_err: jax.Array
    expected: jax.Array

    def z_scores(self):
        """``(mean - expected) / std_err`` per user (0 where the SNR does not fluctuate)."""
        return safe_div(self.mean - self.expected, self.std_err)


def monte_carlo_snr(key, cfg: PassConfig, X, users, W, *, num_samples: int = 10_000, correlation=None,
                    noise_power=None):
    """Empirical mean TDMA SNR of beamformer ``W`` over sampled blockage masks vs the formula.

    For each sample, user k's instantaneous SNR is ``|(gamma_k o hbar_k) @ W[:, k]|^2 / sigma^2``,
    computed through ``effective_channel(..., los=gamma)`` and ``metrics.tdma_snr``
    (an independent path from the covariance formula); the formula is
    ``expected_snr = w_k^H R_k w_k / sigma^2`` with ``R_k`` from :func:`channel_covariance`.

    Args:
      key: ``jax.random`` key.
      cfg: scenario with one pinch per waveguide.
      X: ``(N, 1)`` positions [m]; users ``(K, 2)`` [m]; W: ``(N, K)`` complex beamformer.
      num_samples: masks S.
      correlation: link correlation (see :func:`sample_los`).
      noise_power: sigma^2 [W] (default ``cfg.noise_power``).

    Returns:
      :class:`MonteCarloSNR` with ``(K,)`` arrays.
    """
    check_single_pinch(cfg, "monte_carlo_snr")
    check_positive_int("num_samples", num_samples)
    check_shape("W", W, (cfg.num_waveguides, cfg.num_users))
    check_finite("W", W)
    sigma2 = cfg.noise_power if noise_power is None else noise_power
    p = los_probability(cfg, X, users)[..., 0]
    masks = sample_los(key, p, correlation, num_samples)  # (S, K, N)
    W = jnp.asarray(W)

    def one(mask):
        H = effective_channel(cfg, X, users, los=mask[..., None])
        return tdma_snr(H, W.astype(H.dtype), sigma2)

    snr = jax.vmap(one)(masks)  # (S, K)
    mean = jnp.mean(snr, axis=0)
    std_err = jnp.std(snr, axis=0, ddof=1) / jnp.sqrt(jnp.asarray(num_samples, snr.dtype)) if num_samples > 1 \
        else jnp.zeros_like(mean)
    R = channel_covariance(cfg, X, users, correlation)
    Wc = W.astype(R.dtype)
    expected = jnp.real(jnp.einsum("nk,knm,mk->k", jnp.conj(Wc), R, Wc)) / sigma2
    return MonteCarloSNR(mean, std_err, expected)

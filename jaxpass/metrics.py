"""Performance metrics (docs/model.md §2, §5, §6). Single drop; batch with ``jax.vmap``.

Conventions: ``H`` is the ``(K, N)`` effective channel (user k receives
``H[k] @ W``), ``W`` the ``(N, K)`` beamformer (column k serves user k), powers
in watts, rates in bps/Hz (log base 2).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxpass._checks import check_shape
from jaxpass._safe import safe_div
from jaxpass.linalg import small_matmul


def _check_hw(H, W):
    check_shape("H", H, (None, None))  # shapes are static, so these hold under jit/vmap too
    K, N = H.shape
    check_shape("W", W, (N, K))


def received_gains(H, W):
    """``|H @ W|^2``, shape ``(K, K)``: entry ``[k, i]`` is user k's power from stream i."""
    G = small_matmul(H, W)
    return G.real**2 + G.imag**2


def sinr(H, W, noise_power):
    """``SINR_k = |H[k] W[:,k]|^2 / (sum_{i != k} |H[k] W[:,i]|^2 + sigma^2)``, shape ``(K,)`` (JB eq. (9))."""
    _check_hw(H, W)
    P = received_gains(H, W)
    signal = jnp.diagonal(P)
    # off-diagonal sum, not row sum minus signal: at 60 dB SNR the difference would
    # cancel catastrophically in float32 (error eps * signal >> noise)
    K = P.shape[-1]
    interference = jnp.sum(jnp.where(jnp.eye(K, dtype=bool), 0.0, P), axis=-1)
    return safe_div(signal, interference + noise_power)


def rates(H, W, noise_power):
    """Per-user rates ``log2(1 + SINR_k)`` [bps/Hz], shape ``(K,)``."""
    return jnp.log2(1.0 + sinr(H, W, noise_power))


def sum_rate(H, W, noise_power):
    """Sum rate ``sum_k log2(1 + SINR_k)`` [bps/Hz], scalar (JB (P0) objective)."""
    return jnp.sum(rates(H, W, noise_power))


def tdma_snr(H, W, noise_power):
    """TDMA: user k alone in slot k, ``SNR_k = |H[k] W[:,k]|^2 / sigma^2``, shape ``(K,)``.

    K may exceed N (EE, PB). For a single-antenna transmitter (N = 1) pass
    ``W = sqrt(p)[None, :]``.
    """
    _check_hw(H, W)
    g = jnp.sum(H * W.T, axis=-1)
    return safe_div(g.real**2 + g.imag**2, jnp.asarray(noise_power))


def tdma_rates(H, W, noise_power):
    """TDMA per-slot rates ``log2(1 + SNR_k)`` [bps/Hz], shape ``(K,)`` (docs/model.md §5)."""
    return jnp.log2(1.0 + tdma_snr(H, W, noise_power))


def spectral_efficiency(H, W, noise_power):
    """TDMA spectral efficiency ``(1/K) sum_k R_k`` with equal slots [bps/Hz] (docs/model.md §5)."""
    return jnp.mean(tdma_rates(H, W, noise_power))


def energy_efficiency(spectral_eff, mean_power, circuit_power):
    """``EE = SE / (mean transmit power + P_c)`` [bit/s/Hz per W] (docs/model.md §5).

    Args:
      spectral_eff: SE [bps/Hz].
      mean_power: average transmit power over the slots [W].
      circuit_power: P_c [W] (> 0 keeps EE finite at zero power).
    """
    return spectral_eff / (mean_power + circuit_power)


def expected_snr(R, w, noise_power):
    """Expected SNR ``w^H R w / sigma^2`` under random blockage (docs/model.md §6).

    Args:
      R: ``(N, N)`` Hermitian covariance from ``channel.blockage_covariance`` (one user).
      w: ``(N,)`` beamformer.
    """
    q = jnp.real(jnp.vdot(w, R @ w))
    return safe_div(q, jnp.asarray(noise_power))

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_drop

import jaxpass as jp


def test_sinr_and_rates_by_hand():
    H = jnp.array([[1.0, 0.5j], [0.2, 2.0]], jnp.complex64)
    W = jnp.array([[1.0, 0.0], [0.0, 0.5]], jnp.complex64)
    G = np.abs(np.asarray(H @ W)) ** 2  # [[1, 0.0625], [0.04, 1]]
    noise = 0.1
    expected = np.array([G[0, 0] / (G[0, 1] + noise), G[1, 1] / (G[1, 0] + noise)])
    np.testing.assert_allclose(jp.sinr(H, W, noise), expected, rtol=1e-6)
    np.testing.assert_allclose(jp.rates(H, W, noise), np.log2(1 + expected), rtol=1e-6)
    assert float(jp.sum_rate(H, W, noise)) == pytest.approx(np.log2(1 + expected).sum(), rel=1e-6)


def test_tdma_se_and_energy_efficiency():
    H = jnp.array([[2.0 + 0j], [1.0j], [0.5]], jnp.complex64)  # K = 3 users, one antenna
    p = jnp.array([1.0, 4.0, 0.0])
    W = jnp.sqrt(p)[None, :].astype(jnp.complex64)
    snr = np.array([4.0, 4.0, 0.0]) / 0.5
    np.testing.assert_allclose(jp.tdma_snr(H, W, 0.5), snr, rtol=1e-6)
    np.testing.assert_allclose(jp.tdma_rates(H, W, 0.5), np.log2(1 + snr), rtol=1e-6)
    se = float(jp.spectral_efficiency(H, W, 0.5))
    assert se == pytest.approx(np.log2(1 + snr).mean(), rel=1e-6)
    ee = float(jp.energy_efficiency(se, jnp.mean(p), 0.1))
    assert ee == pytest.approx(se / (5.0 / 3 + 0.1), rel=1e-6)


def test_expected_snr_matches_quadratic_form(x64):
    cfg = jp.PassConfig.power_min_blockage()
    X, users = random_drop(0, cfg)
    R = jp.blockage_covariance(cfg, X, users)
    w = jnp.array([1.0 + 1.0j, 0.5 - 0.2j])
    for k in range(cfg.num_users):
        expected = float(jnp.real(jnp.conj(w) @ R[k] @ w)) / float(cfg.noise_power)
        assert float(jp.expected_snr(R[k], w, cfg.noise_power)) == pytest.approx(expected, rel=1e-12)
    # no blockage: expected SNR is the deterministic SNR
    cfg0 = cfg.replace(blockage_rate=0.0)
    H = jp.effective_channel(cfg0, X, users)
    R0 = jp.blockage_covariance(cfg0, X, users)
    assert float(jp.expected_snr(R0[1], w, 1e-12)) == pytest.approx(float(jnp.abs(H[1] @ w) ** 2 / 1e-12), rel=1e-10)


def test_metrics_shape_errors():
    with pytest.raises(ValueError, match="W must have shape"):
        jp.sum_rate(jnp.ones((4, 4), jnp.complex64), jnp.ones((4, 3), jnp.complex64), 1.0)
    with pytest.raises(ValueError, match="H must have shape"):
        jp.sinr(jnp.ones((4,), jnp.complex64), jnp.ones((4, 4), jnp.complex64), 1.0)

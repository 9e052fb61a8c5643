import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpass.phase import cis, cis_cycles, resolve_method


@pytest.mark.parametrize("method", ["poly", "hardware", "auto"])
def test_cis_accuracy_float32_up_to_1e5_cycles(method):
    t = np.random.default_rng(0).uniform(-1e5, 1e5, 200_000).astype(np.float32)
    t = np.concatenate([t, np.float32([0, 0.125, 0.25, 0.375, 0.5, -0.5, 1e5, -1e5, 0.124999, 0.375001])])
    c, s = cis_cycles(jnp.asarray(t), method)
    ref = 2 * np.pi * (t.astype(np.float64) - np.round(t.astype(np.float64)))
    assert np.max(np.abs(np.asarray(c, np.float64) - np.cos(ref))) <= 1e-6
    assert np.max(np.abs(np.asarray(s, np.float64) - np.sin(ref))) <= 1e-6


def test_cis_float64_is_exact(x64):
    t = np.random.default_rng(1).uniform(-1e4, 1e4, 10_000)
    z = np.asarray(cis(jnp.asarray(t)))
    np.testing.assert_allclose(z, np.exp(2j * np.pi * t), atol=1e-11)
    assert resolve_method(jnp.float64) == "hardware"


def test_cis_gradient_matches_analytic():
    t = jnp.linspace(-3.3, 1e3 + 0.3, 101, dtype=jnp.float32)
    for method in ("poly", "hardware"):
        dc = jax.vmap(jax.grad(lambda x: cis_cycles(x, method)[0]))(t)
        ds = jax.vmap(jax.grad(lambda x: cis_cycles(x, method)[1]))(t)
        c, s = cis_cycles(t, method)
        np.testing.assert_allclose(dc, -2 * np.pi * s, atol=2e-4)
        np.testing.assert_allclose(ds, 2 * np.pi * c, atol=2e-4)


def test_bad_method():
    with pytest.raises(ValueError, match="cis method"):
        cis_cycles(jnp.zeros(3), "fast")

"""Shared fixtures and helpers for the jaxpass test-suite.

float64 references use ``jax.enable_x64(True)`` as a scoped context, so modules
can share a worker process without leaking the setting.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpass as jp

PRESETS = {
    "joint_beamforming": jp.PassConfig.joint_beamforming,
    "two_timescale": jp.PassConfig.two_timescale,
    "energy_efficiency": jp.PassConfig.energy_efficiency,
    "power_min_blockage": jp.PassConfig.power_min_blockage,
}


def random_positions(key, cfg, shape=()):
    """Random feasible positions ``shape + (N, L)``: sorted uniforms, projected."""
    X = jax.random.uniform(key, tuple(shape) + (cfg.num_waveguides, cfg.num_pinches)) * cfg.length_x
    return jp.project_positions(cfg, jnp.sort(X, axis=-1))


def random_drop(seed, cfg, dtype=None):
    """One (X, users) drop, optionally cast to ``dtype``."""
    kx, ku = jax.random.split(jax.random.key(seed))
    X, users = random_positions(kx, cfg), jp.sample_users(ku, cfg)
    if dtype is not None:
        X, users = X.astype(dtype), users.astype(dtype)
    return X, users


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture
def jb_cfg():
    return jp.PassConfig.joint_beamforming()


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def assert_usage_error(argv, needle, capsys):
    """``jaxpass ARGV`` is an argparse usage error: exit status 2 with ``needle`` on stderr."""
    from jaxpass.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err

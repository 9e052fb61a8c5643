"""Shared fixtures and helpers for the jaxpass test-suite.

float64 references use ``jax.enable_x64(True)`` as a scoped context, so modules
can share a worker process without leaking the setting.

Compilation cache: the session shares one fresh JAX persistent compilation
cache (a temporary folder, removed at the end) between the xdist workers and
every subprocess the tests start (examples, README blocks, the CLI), so a
kernel compiled by one of them is loaded, not recompiled, by the others. It is
set through the environment in ``pytest_configure`` (before the workers
start) and in this process's ``jax.config``; a ``JAX_COMPILATION_CACHE_DIR``
the user set is respected. Cache keys include the program, the compile
options and the jax version, so a hit is the same executable.

Compile effort: the suite's configs are tiny, so most of its time is XLA
compilation, not running. The session sets ``JAX_DISABLE_MOST_OPTIMIZATIONS=1``
(XLA backend optimisation level 0, no expensive LLVM passes) and, with it, the
CPU flags of :data:`FAST_COMPILE_FLAGS` in ``XLA_FLAGS`` (XLA's classic
elemental emitters instead of the fusion emitters, one LLVM module per
program) for the workers and every subprocess: the same HLO, so the same maths,
rounded at most slightly differently, compiled about 3x faster (``tune_batch``
of the table1 quick run: 5.3 s -> 1.8 s on the 2-core CI machine). Set
``JAX_DISABLE_MOST_OPTIMIZATIONS=0`` to test fully optimised code (the
8-device sharding checks always do, tests/test_parallel.py).
"""

import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpass as jp

_CACHE_ENV = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
              "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}


#: XLA CPU flags added to ``XLA_FLAGS`` with ``JAX_DISABLE_MOST_OPTIMIZATIONS=1`` (module docstring)
FAST_COMPILE_FLAGS = ("--xla_cpu_use_fusion_emitters=false", "--xla_cpu_parallel_codegen_split_count=1")


def fast_compile() -> bool:
    """True when the session compiles with the low-effort settings (``JAX_DISABLE_MOST_OPTIMIZATIONS``)."""
    return os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS", "1") not in ("", "0")


def optimised_env(env: dict) -> dict:
    """``env`` for a subprocess that must compile fully optimised code (the fast-compile settings removed)."""
    flags = " ".join(f for f in env.get("XLA_FLAGS", "").split() if f not in FAST_COMPILE_FLAGS)
    return {**env, "JAX_DISABLE_MOST_OPTIMIZATIONS": "0", "XLA_FLAGS": flags}


def pytest_configure(config):
    if not hasattr(config, "workerinput") and "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the controller
        config._jaxpass_cache = tempfile.mkdtemp(prefix="jaxpass-test-jax-cache-")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = config._jaxpass_cache
    for name, value in _CACHE_ENV.items():
        os.environ.setdefault(name, value)
    if fast_compile():  # before any backend starts (XLA reads XLA_FLAGS then)
        flags = os.environ.get("XLA_FLAGS", "").split()
        os.environ["XLA_FLAGS"] = " ".join(flags + [f for f in FAST_COMPILE_FLAGS if f not in flags])
    jax.config.update("jax_disable_most_optimizations", fast_compile())
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    path = getattr(config, "_jaxpass_cache", None)
    if path:
        shutil.rmtree(path, ignore_errors=True)


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

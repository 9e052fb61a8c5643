"""jaxpass.compile: the process-wide XLA CPU setting that makes a plain jax.jit fast (docs/execution_model.md)."""

import os
import subprocess
import sys

import jax
import pytest

import jaxpass as jp


def _python(code: str, **env) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXPASS_XLA_DEFAULTS")}
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


REPORT = ("import os, jaxpass as jp; import jaxpass.compile as c; "
          "print(c.xla_defaults_active(), jp.compiler_options(), 'ynn_fusion_type=' in os.environ.get('XLA_FLAGS', ''))")

needs_flag = pytest.mark.skipif(
    jax.default_backend() != "cpu" or not jp.compile._jaxlib_knows_flag(),
    reason="the YNNPACK fusion flag exists on CPU with jaxlib >= 0.9 only")


@needs_flag
def test_importing_jaxpass_first_sets_the_flag_for_plain_jax_jit():
    assert _python(REPORT) == "True None True"


@needs_flag
def test_opt_out_leaves_xla_alone():
    assert _python(REPORT, JAXPASS_XLA_DEFAULTS="0") == "False None False"


@needs_flag
def test_imported_after_the_backend_started_jp_jit_passes_the_option():
    code = "import jax.numpy as jnp; jnp.ones(2).block_until_ready(); " + REPORT
    assert _python(code) == "False {'xla_cpu_experimental_ynn_fusion_type': ''} False"  # too late to set XLA_FLAGS


@needs_flag
def test_a_users_own_flag_is_respected():
    flags = "--xla_cpu_experimental_ynn_fusion_type=reduce"
    out = _python("import os, jaxpass as jp; print(jp.compile.xla_defaults_active(), os.environ['XLA_FLAGS'])",
                  XLA_FLAGS=flags)
    assert out == f"False {flags}"


def test_jp_jit_is_jax_jit_with_the_options():
    f = jp.jit(lambda x: 2 * x)
    assert float(f(3.0)) == 6.0
    g = jp.jit(static_argnums=1)(lambda x, n: x * n)
    assert float(g(2.0, 3)) == 6.0

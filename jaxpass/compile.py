"""XLA settings that make jaxpass's kernels fast under *any* ``jax.jit``.

On CPU, XLA (jaxlib >= 0.9) hands reductions to YNNPACK fusions by default.
For the channel's sum over pinches this splits one fused loop into several
passes that each recompute the double-float phase pipeline and keep
``(B, K, N, L)`` temporaries alive: 4-5x slower at batch 16384 on a 2-core
CPU (``benchmarks/throughput.py`` prints ``jax.jit`` beside ``jp.jit``).

The fix has to hold for a user's own ``jax.jit(jax.vmap(...))``, not only for
the library's entry points, so it is process-wide: importing jaxpass appends
``--xla_cpu_experimental_ynn_fusion_type=`` (no YNNPACK fusions) to
``XLA_FLAGS`` when

* the installed jaxlib knows the flag (>= 0.9; an unknown flag aborts XLA),
* the user has not set the flag in ``XLA_FLAGS`` already, and
* ``JAXPASS_XLA_DEFAULTS`` is not ``0`` (the documented opt-out).

XLA reads ``XLA_FLAGS`` when its backend starts, so this only takes effect if
jaxpass is imported before the first JAX computation; :func:`xla_defaults_active`
tells whether it did. For code that must start JAX first, :func:`jit` passes
the same option per compilation (it is ``jax.jit`` everywhere else: GPU, TPU,
older jaxlib). The flag only changes which CPU fusions XLA emits, not the
numerics of any operation.
"""

from __future__ import annotations

import functools
import os

import jax

_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
_OPT_OUT = "JAXPASS_XLA_DEFAULTS"


def _jaxlib_knows_flag() -> bool:
    import jaxlib

    try:
        major, minor = (int(p) for p in jaxlib.__version__.split(".")[:2])
    except ValueError:  # pragma: no cover - unparsable development version
        return False
    return (major, minor) >= (0, 9)


def _backend_started() -> bool:
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", {}))


def _install_xla_defaults() -> bool:
    """Append the CPU fusion flag to ``XLA_FLAGS`` if allowed; True when it will take effect."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" in flags:
        return _FLAG in flags.split() and not _backend_started()
    if os.environ.get(_OPT_OUT, "1") == "0" or not _jaxlib_knows_flag() or _backend_started():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}".strip()
    return True


_XLA_DEFAULTS_ACTIVE = _install_xla_defaults()


def xla_defaults_active() -> bool:
    """Whether plain ``jax.jit`` runs with jaxpass's CPU fusion setting in this process.

    False when jaxpass was imported after JAX started its backend, when the
    user opted out with ``JAXPASS_XLA_DEFAULTS=0``, or when jaxlib predates the
    flag. Then use :func:`jit` for the fast path, or set
    ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=`` before starting Python.
    """
    return _XLA_DEFAULTS_ACTIVE


def _options_for(backend: str):
    if backend != "cpu" or _XLA_DEFAULTS_ACTIVE or not _jaxlib_knows_flag():
        return None
    if os.environ.get(_OPT_OUT, "1") == "0":
        return None
    return dict(_CPU_OPTIONS)


def compiler_options():
    """The compiler options :func:`jit` adds on the default backend (None when nothing is needed)."""
    return _options_for(jax.default_backend())


def jit(fun=None, **kwargs):
    """``jax.jit(fun, **kwargs)`` plus :func:`compiler_options` unless given explicitly.

    Identical to ``jax.jit`` when :func:`xla_defaults_active` (the usual case:
    jaxpass imported before the first computation). Usable as ``jp.jit(f)``,
    ``jp.jit(f, static_argnums=...)`` or as a decorator.
    """
    if fun is None:
        return functools.partial(jit, **kwargs)
    options = compiler_options()
    if options is not None and "compiler_options" not in kwargs:
        kwargs["compiler_options"] = options
    return jax.jit(fun, **kwargs)

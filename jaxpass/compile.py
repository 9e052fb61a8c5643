"""``jaxpass.jit``: ``jax.jit`` with compiler options that suit jaxpass's kernels.

On CPU, XLA (jaxlib >= 0.8) hands reductions to YNNPACK fusions by default;
for the channel's ``sum over pinches`` this splits one fused loop into several
passes that each recompute the double-float phase pipeline and keep five
``(B, K, N, L)`` temporaries alive, which measured 4-5x slower at batch 16384
on the project's 2-core machines (benchmarks/throughput.py prints both).
``jaxpass.jit`` turns that fusion off on CPU when the installed XLA knows the
option, and is plain ``jax.jit`` everywhere else (GPU, TPU, older jaxlib).
"""

from __future__ import annotations

import functools

import jax

_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.lru_cache(maxsize=None)
def _options_for(backend: str):
    if backend != "cpu":
        return None
    try:  # unknown options are a compile error: probe once
        jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(1.0).compile()
    except Exception:  # pragma: no cover - depends on the installed jaxlib
        return None
    return dict(_CPU_OPTIONS)


def compiler_options():
    """The compiler options ``jaxpass.jit`` adds on the default backend (or None)."""
    return _options_for(jax.default_backend())


def jit(fun=None, **kwargs):
    """``jax.jit(fun, **kwargs)`` plus :func:`compiler_options` unless given explicitly.

    Usable as ``jp.jit(f)``, ``jp.jit(f, static_argnums=...)`` or as a decorator
    ``@jp.jit`` / ``@functools.partial(jp.jit, donate_argnums=0)``.
    """
    if fun is None:
        return functools.partial(jit, **kwargs)
    if "compiler_options" not in kwargs:
        kwargs["compiler_options"] = compiler_options()
    return jax.jit(fun, **kwargs)

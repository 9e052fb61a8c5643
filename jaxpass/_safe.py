"""Safe elementwise operations: finite values *and* finite gradients at the edge.

The double-``where`` pattern keeps the untaken branch's input harmless, so no
``0 * inf`` reaches a gradient (docs/execution_model.md, "Validation"). Thresholds
are ``finfo.tiny`` because CPUs and GPUs flush denormals to zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def safe_div(num, den):
    """``num / den`` with 0 where ``den <= 0``."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def safe_sqrt(x):
    """``sqrt(x)`` with 0 (and a zero gradient) at ``x <= tiny``."""
    ok = x > jnp.finfo(x.dtype).tiny
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, x, 1.0)), 0.0)


def safe_rsqrt(x):
    """``1 / sqrt(x)`` with 0 (and a zero gradient) at ``x <= tiny``."""
    ok = x > jnp.finfo(x.dtype).tiny
    return jnp.where(ok, jax.lax.rsqrt(jnp.where(ok, x, 1.0)), 0.0)

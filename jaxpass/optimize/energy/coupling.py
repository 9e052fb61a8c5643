"""Split coefficients by projected gradient ascent of the ergodic objective (EE Alg. 3, docs/model.md §5).

**Gradient (documented, tested):** the per-drop value ``EE*(g) = max_p EE(p; g)``
is differentiated by the envelope theorem: the Dinkelbach powers ``p*`` are
held fixed (``stop_gradient``) and only the explicit dependence of
``EE(p*; g(delta))`` on ``delta`` is differentiated. The box
``0 <= p <= P_max`` does not depend on ``delta`` and ``p*`` is unique (``SE`` is
strictly concave in ``p`` for ``g > 0``), so this is the exact gradient of the
optimal value once Dinkelbach has converged, at the cost of one forward pass;
``tests/test_energy.py`` checks it against central finite differences of the
re-optimised value in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpass.optimize.energy import _inputs
from jaxpass.optimize.energy.objective import drops_value
from jaxpass.optimize.energy.options import DesignOptions


def _step(f, split, line_search):
    """One projected-gradient step on ``delta`` with a batched line search; never decreases ``f``."""
    value, grad = jax.value_and_grad(f)(split)
    scale = jnp.max(jnp.abs(grad))
    direction = jnp.where(scale > 0, grad / jnp.where(scale > 0, scale, 1.0), 0.0)
    steps = 0.5 ** jnp.arange(line_search, dtype=split.dtype)  # 1, 1/2, ... (in units of delta)
    cands = jnp.clip(split[None, :] + steps[:, None] * direction[None, :], 0.0, 1.0)
    vals = jax.vmap(f)(cands)
    best = jnp.argmax(vals)
    better = vals[best] > value
    return jnp.where(better, cands[best], split), jnp.where(better, vals[best], value)


def ascend(cfg, X, split, users, p_max, options: DesignOptions):
    """``options.coupling_steps`` ascent steps (``lax.scan``) with ``X (D, N)``, ``users (D, K, 2)``.

    Returns ``(split (N,), history (coupling_steps + 1,))``.
    """

    def f(s):
        return jnp.mean(drops_value(cfg, X, s, users, p_max, options)[0])

    def body(carry, _):
        s, _ = carry
        s, v = _step(f, s, options.line_search)
        return (s, v), v

    v0 = f(split)
    (s, _), vs = jax.lax.scan(body, (split, v0), None, length=options.coupling_steps)
    return s, jnp.concatenate([v0[None], vs])


def coupling_kernel(cfg, X, split, users, options: DesignOptions | None = None, *, p_max=None):
    """Coupling ascent (EE Alg. 3): the pure kernel of :func:`coupling_step`.

    Runs under a caller's ``jax.jit``/``jax.vmap`` (e.g. over stacked scenarios)
    with ``cfg`` traced.

    Args:
      cfg: single-waveguide scenario.
      X: ``(N,)`` static or ``(D, N)`` per-drop positions [m].
      split: ``(N,)`` split coefficients in ``[0, 1]``.
      users: ``(D, K, 2)`` drops [m].
      options: :class:`DesignOptions` (``coupling_steps``, ``line_search``, ``objective``,
        ``dinkelbach_iterations``).
      p_max: power budget [W] (default ``cfg.power``).

    Returns:
      ``(split_new (N,), history (coupling_steps + 1,))``: the ergodic objective after each step.
    """
    options = DesignOptions.resolve(options)
    users = jnp.asarray(users)
    X = jnp.asarray(X)
    if X.ndim == 1:
        X = jnp.broadcast_to(X, (users.shape[0],) + X.shape)
    return ascend(cfg, X, split, users, cfg.power if p_max is None else p_max, options)


_ascend_batch = jax.jit(ascend, static_argnames="options")


def coupling_step(cfg, X, split, users, p_max=None, options: DesignOptions | None = None, **changes):
    """Projected gradient ascent of the ergodic objective in the split coefficients (EE Alg. 3).

    Each of ``options.coupling_steps`` steps: ``grad = d/d delta mean_d value_d(X_d, delta)``
    by autodiff (envelope theorem for the Dinkelbach powers), direction
    ``grad / max|grad|``, candidates ``clip(delta + 2^-j direction, 0, 1)`` for
    ``j = 0..line_search-1`` evaluated in one vectorised call; the best candidate
    is taken if it improves the objective, otherwise ``delta`` stays (so the
    objective never decreases).

    Args:
      X: ``(N,)`` static or ``(D, N)`` per-drop positions [m].
      split: ``(N,)`` split coefficients in ``[0, 1]``.
      users: ``(D, K, 2)`` drops [m].
      p_max: power budget [W] (default ``cfg.power``).
      options: :class:`DesignOptions`; ``changes`` override fields (e.g. ``coupling_steps=1``).

    Returns:
      ``(split_new, history)``: ``(N,)`` in ``[0, 1]`` and ``(coupling_steps + 1,)`` objective values.
    """
    options = DesignOptions.resolve(options, **changes)
    X, split, users = _inputs.design_inputs(cfg, X, split, users)
    dt = _inputs.float_dtype(X, users)
    return _ascend_batch(cfg, X.astype(dt), split.astype(dt), users.astype(dt), _inputs.budget(cfg, p_max, dt),
                         options.restricted("objective", "dinkelbach_iterations", "coupling_steps", "line_search", "gain", "phase_samples"))

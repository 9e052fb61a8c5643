"""Per-drop values and the ergodic objective (EE eqs. (20), (25); docs/model.md §5), and their evaluation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxpass.optimize.energy import _inputs
from jaxpass.optimize.energy.dinkelbach import drop_metrics
from jaxpass.optimize.energy.model import channel_gains
from jaxpass.optimize.energy.options import DesignOptions

#: the option fields a per-drop evaluation reads (compiled evaluations key on these alone)
METRIC_FIELDS = ("objective", "dinkelbach_iterations", "gain", "phase_samples")


def gains_metrics(gains, p_max, circuit_power, options: DesignOptions):
    """``drop_metrics`` of ``(K,)`` gains, or the mean over the phase draws of ``(S, K)`` random-phase gains."""
    if gains.ndim == 1:
        return drop_metrics(gains, p_max, circuit_power, options)
    out = jax.vmap(lambda g: drop_metrics(g, p_max, circuit_power, options))(gains)
    return tuple(jnp.mean(o, axis=0) for o in out)


def drops_value(cfg, X, split, users, p_max, options: DesignOptions):
    """Per-drop ``(value (D,), ee (D,), se (D,), power (D, K))`` for ``X (D, N)``, ``users (D, K, 2)``."""
    pc = cfg.circuit_power

    def one(x, u):
        return gains_metrics(channel_gains(cfg, x, split, u, options.gain, options.phase_samples), p_max, pc, options)

    return jax.vmap(one)(X, users)


def ergodic_objective(cfg, X, split, users, p_max=None, options: DesignOptions | None = None, **changes):
    """Ergodic design objective: the mean over drops of the per-drop value (EE eqs. (20), (25)).

    Pure (runs under ``jax.jit``/``jax.vmap``/``jax.grad``; ``cfg`` may be traced).
    Differentiable in ``split`` (and ``X``) with the envelope-theorem gradient
    (Dinkelbach powers held fixed).

    Args:
      cfg: single-waveguide scenario.
      X: ``(N,)`` static positions or ``(D, N)`` per-drop positions [m].
      split: ``(N,)`` split coefficients.
      users: ``(D, K, 2)`` drops [m].
      p_max: power budget [W] (default ``cfg.power``).
      options: :class:`DesignOptions` (``objective``, ``dinkelbach_iterations``).

    Returns:
      Scalar mean value (EE [bit/s/Hz per W] or SE [bps/Hz]).
    """
    options = DesignOptions.resolve(options, **changes)
    _inputs.check_cfg(cfg)
    users = _inputs.check_users(cfg, users, batched=True)
    X = jnp.asarray(X)
    if X.ndim == 1:
        X = jnp.broadcast_to(X, (users.shape[0],) + X.shape)
    p_max = cfg.power if p_max is None else _inputs.check_p_max(p_max)
    return jnp.mean(drops_value(cfg, X, split, users, p_max, options)[0])


def evaluate_drop(cfg, x, split, users, options: DesignOptions | None = None, *, p_max=None):
    """EE, SE and powers of one drop under the objective's power policy (the pure kernel of :func:`evaluate_design`).

    Args:
      cfg: single-waveguide scenario (may be traced).
      x: ``(N,)`` positions [m]; split: ``(N,)``; users: ``(K, 2)`` [m].
      options: :class:`DesignOptions` (``objective``, ``dinkelbach_iterations``).
      p_max: power budget [W] (default ``cfg.power``).

    Returns:
      ``(ee, se, power (K,))``: [bit/s/Hz per W], [bps/Hz], [W].
    """
    options = DesignOptions.resolve(options)
    p_max = cfg.power if p_max is None else p_max
    gains = channel_gains(cfg, x, split, users, options.gain, options.phase_samples)
    _, ee, se, p = gains_metrics(gains, p_max, cfg.circuit_power, options)
    return ee, se, p


@functools.partial(jax.jit, static_argnames="options")
def evaluate_batch(cfg, X, split, users, p_max, options):
    """:func:`evaluate_drop` over drops ``X (D, N)``, ``users (D, K, 2)`` (the drivers' compiled call)."""
    return jax.vmap(lambda x, u: evaluate_drop(cfg, x, split, u, options, p_max=p_max))(X, users)


@functools.partial(jax.jit, static_argnames="options")
def record_batch(cfg, X, split, users, p_max, options):
    """``(ergodic value, mean EE)`` at a design point (the drivers' compiled call)."""
    vals, ee, _, _ = drops_value(cfg, X, split, users, p_max, options)
    return jnp.mean(vals), jnp.mean(ee)


def evaluate_design(cfg, X, split, users, p_max=None, options: DesignOptions | None = None, **changes):
    """Per-drop EE, SE and powers of a design under the objective's power policy.

    Args:
      X: ``(N,)`` (static) or ``(D, N)`` (per drop) positions [m]; split ``(N,)``;
        users ``(D, K, 2)`` [m].
      p_max: power budget [W] (default ``cfg.power``).
      options: :class:`DesignOptions` (``objective``, ``dinkelbach_iterations``).

    Returns:
      ``(ee (D,), se (D,), power (D, K))`` as NumPy arrays.
    """
    options = DesignOptions.resolve(options, **changes)
    X, split, users = _inputs.design_inputs(cfg, X, split, users)
    dt = _inputs.float_dtype(X, users)
    out = evaluate_batch(cfg, X.astype(dt), split.astype(dt), users.astype(dt), _inputs.budget(cfg, p_max, dt),
                         options.restricted(*METRIC_FIELDS))
    return tuple(np.asarray(o) for o in out)

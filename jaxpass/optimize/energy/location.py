"""Element locations by Gauss-Seidel grid search (EE Alg. 2, docs/model.md §5).

Element by element, the objective is evaluated on a grid of ``grid_points``
locations spanning the element's feasible interval
``[x_{n-1} + delta_min, x_{n+1} - delta_min]`` (ends ``0`` and ``S_x``) in one
vectorised call (``lax.map`` over chunks of ``grid_batch`` points, so memory
stays bounded on CPU while a GPU can take the whole grid); the best grid point
replaces ``x_n`` only if it is strictly better, so a sweep never lowers the
objective and the layout stays feasible.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxpass.channel import coupled_amplitudes
from jaxpass.optimize.energy import _inputs
from jaxpass.optimize.energy.model import element_coefficients, random_phases, single_coefficient
from jaxpass.optimize.energy.objective import gains_metrics
from jaxpass.optimize.energy.options import DesignOptions, grid_size, with_grid

_SWEEP_FIELDS = ("objective", "grid_points", "grid_batch", "dinkelbach_iterations", "gain", "phase_samples")


def _interval(cfg, x, n):
    """Feasible interval of element ``n`` with the others fixed: ``[x_{n-1} + d, x_{n+1} - d]``."""
    N = x.shape[0]
    d = jnp.asarray(cfg.min_spacing, x.dtype)
    lo = jnp.where(n == 0, 0.0, x[jnp.maximum(n - 1, 0)] + d)
    hi = jnp.where(n == N - 1, jnp.asarray(cfg.length_x, x.dtype), x[jnp.minimum(n + 1, N - 1)] - d)
    return lo, jnp.maximum(hi, lo)


def _element(cfg, x, amp, users, p_max, n, *, options, grid_points):
    """One Gauss-Seidel update of element ``n`` for the mean objective over drops ``users (D, K, 2)``."""
    cfg1 = cfg.replace(num_pinches=1)
    pc = cfg.circuit_power
    noise = jnp.asarray(cfg.noise_power, x.dtype)
    C = jax.vmap(lambda u: element_coefficients(cfg, x, u))(users)  # (D, K, N)
    own = jnp.take(C, n, axis=-1)
    an = amp[n].astype(C.dtype)
    if options.gain == "random_phase":  # channel_gains: |c| with the fixed phase draws instead of the phases
        U = random_phases(x.shape[0], options.phase_samples, x.dtype)  # (S, N)
        mag = jnp.sqrt(C.real**2 + C.imag**2).astype(C.dtype) * amp.astype(C.dtype)  # (D, K, N)
        base = jnp.einsum("dkn,sn->dsk", mag, U) - mag[..., n][:, None, :] * U[None, :, n, None]  # (D, S, K)

        def gain_at(c):
            h = base + (an * jnp.abs(c)).astype(C.dtype)[:, None, :] * U[None, :, n, None]
            return (h.real**2 + h.imag**2) / noise  # (D, S, K)
    else:
        base = C @ amp.astype(C.dtype) - an * own  # (D, K): the other elements

        def gain_at(c):
            h = base + an * c
            return (h.real**2 + h.imag**2) / noise  # (D, K)
    lo, hi = _interval(cfg, x, n)

    def value_at(xn):
        c = jax.vmap(lambda u: single_coefficient(cfg1, xn, u))(users)  # (D, K)
        g = gain_at(c)
        return jnp.mean(jax.vmap(lambda gd: gains_metrics(gd, p_max, pc, options)[0])(g))

    t = jnp.linspace(0.0, 1.0, grid_points, dtype=x.dtype)
    grid = lo + (hi - lo) * t
    vals = jax.lax.map(value_at, grid, batch_size=min(options.grid_batch, grid_points))
    current = value_at(x[n])
    best = jnp.argmax(vals)
    better = vals[best] > current
    return x.at[n].set(jnp.where(better, grid[best], x[n])), jnp.where(better, vals[best], current)


def sweep(cfg, x, split, users, p_max, options: DesignOptions):
    """Elements 0..N-1 in turn (``lax.fori_loop``); ``users (D, K, 2)``; returns ``(x, values (N,))``."""
    grid_points = grid_size(cfg, options)
    amp = coupled_amplitudes(split).astype(x.dtype)

    def body(n, carry):
        x, vals = carry
        x, v = _element(cfg, x, amp, users, p_max, n, options=options, grid_points=grid_points)
        return x, vals.at[n].set(v)

    return jax.lax.fori_loop(0, x.shape[0], body, (x, jnp.zeros((x.shape[0],), x.dtype)))


def locate(cfg, x, split, users, p_max, options: DesignOptions):
    """``options.gs_sweeps`` sweeps (``lax.fori_loop``) of one layout ``x (N,)`` on ``users (D, K, 2)``."""
    return jax.lax.fori_loop(0, options.gs_sweeps, lambda _, x: sweep(cfg, x, split, users, p_max, options)[0], x)


def gauss_seidel_kernel(cfg, x, split, users, options: DesignOptions | None = None, *, p_max=None):
    """One Gauss-Seidel sweep of one layout (EE Alg. 2): the pure kernel of :func:`gauss_seidel_sweep`.

    Runs under a caller's ``jax.jit``/``jax.vmap`` with ``cfg`` traced; then
    ``options.grid_points`` must be set (the default grid needs a concrete
    ``cfg.length_x``).

    Args:
      cfg: single-waveguide scenario, N = ``cfg.num_pinches`` elements.
      x: ``(N,)`` feasible positions [m].
      split: ``(N,)`` split coefficients in ``[0, 1]``.
      users: ``(K, 2)`` one drop or ``(D, K, 2)`` drops [m]: the layout maximises the
        mean objective over them.
      options: :class:`DesignOptions` (``objective``, ``grid_points``/``grid_spacing``,
        ``grid_batch``, ``dinkelbach_iterations``).
      p_max: power budget [W] (default ``cfg.power``).

    Returns:
      ``(x_new (N,), values (N,))``: the objective after each element's update (non-decreasing).
    """
    options = DesignOptions.resolve(options)
    users = jnp.asarray(users)
    users = users[None] if users.ndim == 2 else users
    p_max = cfg.power if p_max is None else p_max
    return sweep(cfg, x, split, users, p_max, options)


@functools.partial(jax.jit, static_argnames="options")
def _sweep_batch(cfg, x, split, users, p_max, options):
    if x.ndim == 2:  # one layout per drop, each on its own drop
        return jax.vmap(lambda xd, ud: sweep(cfg, xd, split, ud[None], p_max, options))(x, users)
    return sweep(cfg, x, split, users, p_max, options)


def gauss_seidel_sweep(cfg, x, split, users, p_max=None, options: DesignOptions | None = None, **changes):
    """One Gauss-Seidel sweep over the element locations (EE Alg. 2; docs/model.md §5).

    For n = 0..N-1: evaluate the objective (powers re-optimised by Dinkelbach for
    ``"ee"``, or SE at ``P_max`` for ``"se"``) with element n at each of
    ``grid_points`` locations spanning its feasible interval
    ``[x_{n-1} + delta_min, x_{n+1} - delta_min]`` (``[0, .]`` / ``[., S_x]`` at the
    ends), the whole grid in one batched call, ``grid_batch`` points at a time,
    and move the element to the best one if it beats the current location.
    The objective never decreases and the layout stays feasible.

    Args:
      cfg: single-waveguide scenario, N = ``cfg.num_pinches`` elements.
      x: ``(N,)`` feasible positions [m] (one layout: the mean objective over all
        drops, or one drop with ``users (K, 2)``), or ``(D, N)`` with
        ``users (D, K, 2)``: one layout per drop, each optimised for its own drop.
      split: ``(N,)`` split coefficients in ``[0, 1]``.
      users: ``(K, 2)`` one drop, or ``(D, K, 2)`` drops [m].
      p_max: power budget [W] (default ``cfg.power``).
      options: :class:`DesignOptions`; ``changes`` override fields (e.g. ``grid_points=257``).
        The default grid has spacing <= lambda/10 on any interval.

    Returns:
      ``(x_new, values)``: positions of ``x``'s shape and ``(N,)`` (or ``(D, N)``)
      objective values after each element's update (non-decreasing).
    """
    options = DesignOptions.resolve(options, **changes)
    _inputs.check_cfg(cfg)
    split = _inputs.check_split(cfg, split)
    x = jnp.asarray(x)
    per_drop = x.ndim == 2
    x = _inputs.check_positions(cfg, x, batched=per_drop)
    users = jnp.asarray(users)
    if users.ndim == 2 and not per_drop:
        users = users[None]
    users = _inputs.check_users(cfg, users, batched=True)
    if per_drop and users.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} layouts but users has {users.shape[0]} drops; they must match")
    dt = _inputs.float_dtype(x, users)
    return _sweep_batch(cfg, x.astype(dt), split.astype(dt), users.astype(dt), _inputs.budget(cfg, p_max, dt),
                        with_grid(cfg, options).restricted(*_SWEEP_FIELDS))


"""User drops, pinch layouts and the exact projection onto feasible positions (docs/model.md §1).

Positions are an array ``X`` of shape ``(N, L)`` [m]; pinch ``(n, l)`` sits at
``(X[n, l], y_n, h)``. The feasible set (JB C1-C2, TT (7c)-(7d)) is::

    0 <= X[n, 0],   X[n, l] - X[n, l-1] >= delta_min,   X[n, L-1] <= S_x.

With ``z_l = x_l - l delta_min`` it becomes ``{z non-decreasing, 0 <= z_l <=
S_x - (L-1) delta_min}``, so the (diagonally weighted) Euclidean projection is a
weighted isotonic regression followed by clipping to the bounds (clipping the
isotonic fit is optimal for bounds that are the same for every element).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpass._checks import check_finite, check_shape, is_tracer
from jaxpass.config import PassConfig


def sample_users(key, cfg: PassConfig, shape=()):
    """Users uniform over ``[0, S_x] x [0, S_y]`` at height 0.

    Args:
      key: a ``jax.random`` key.
      cfg: the scenario.
      shape: leading batch shape, e.g. ``(B,)``.

    Returns:
      ``shape + (K, 2)`` float array of ``(x, y)`` coordinates [m].
    """
    shape = tuple(shape)
    u = jax.random.uniform(key, shape + (cfg.num_users, 2))
    extent = jnp.stack([jnp.asarray(cfg.length_x, u.dtype), jnp.asarray(cfg.width_y, u.dtype)])
    return u * extent


def uniform_positions(cfg: PassConfig, dtype=None):
    """Evenly spread pinches: ``X[n, l] = (l + 1/2) S_x / L`` on every waveguide.

    Feasible because ``L delta_min <= S_x`` (checked by the config).

    Returns:
      ``(N, L)`` positions [m].
    """
    dtype = dtype or jnp.result_type(float)
    L = cfg.num_pinches
    row = (jnp.arange(L, dtype=dtype) + 0.5) * jnp.asarray(cfg.length_x, dtype) / L
    return jnp.broadcast_to(row, (cfg.num_waveguides, L))


def _isotonic_minmax(y, w):
    """Weighted isotonic (non-decreasing) regression of the last axis.

    Uses the min-max formula ``z_i = max_{j<=i} min_{k>=i} avg_w(y[j..k])`` with
    prefix sums: O(L^2) work, no data-dependent control flow, so it jit-compiles,
    vmaps and differentiates almost everywhere (a.e. the result is a fixed
    block-average of the inputs, whose derivative is the averaging operator).
    """
    L = y.shape[-1]
    cs = jnp.cumsum(w * y, axis=-1)
    cw = jnp.cumsum(w, axis=-1)
    zero = jnp.zeros(y.shape[:-1] + (1,), y.dtype)
    cs0 = jnp.concatenate([zero, cs[..., :-1]], axis=-1)  # sum before j
    cw0 = jnp.concatenate([zero, cw[..., :-1]], axis=-1)
    num = cs[..., None, :] - cs0[..., :, None]  # [j, k] = sum_{j..k}
    den = cw[..., None, :] - cw0[..., :, None]
    j = jnp.arange(L)
    upper = j[:, None] <= j[None, :]  # k >= j
    big = jnp.asarray(jnp.finfo(y.dtype).max, y.dtype)
    safe_den = jnp.where(upper, den, 1.0)
    avg = jnp.where(upper, num / safe_den, big)
    # suffix minimum over k >= i for every j: T[j, i] = min_{k >= i} avg[j, k]
    suffix_min = jax.lax.cummin(avg, axis=avg.ndim - 1, reverse=True)
    lower = j[:, None] <= j[None, :]  # j <= i (rows j, columns i)
    cand = jnp.where(lower, suffix_min, -big)
    return jnp.max(cand, axis=-2)


def project_positions(cfg: PassConfig, X, weights=None):
    """Exact (weighted) Euclidean projection onto the feasible set (docs/model.md §1).

    Solves ``min_Z sum_{n,l} w[n,l] (Z[n,l] - X[n,l])^2`` over feasible ``Z`` for
    each waveguide independently: ``z = x - l delta_min``, weighted isotonic
    regression, clip to ``[0, S_x - (L-1) delta_min]``, add ``l delta_min`` back.
    This is also the exact solution of MM-PDD's X-subproblem (JB eq. (26)).

    Args:
      cfg: the scenario (``num_pinches``, ``min_spacing``, ``length_x``).
      X: ``(..., N, L)`` positions [m]; any leading batch dims.
      weights: optional positive ``(..., N, L)`` diagonal weights (broadcastable).

    Returns:
      ``(..., N, L)`` feasible positions. Idempotent; differentiable a.e.
    """
    X = jnp.asarray(X)
    check_shape("X", X, (cfg.num_waveguides, cfg.num_pinches), batch=True)
    if not jnp.issubdtype(X.dtype, jnp.floating):
        X = X.astype(jnp.result_type(float))
    L = cfg.num_pinches
    delta = jnp.asarray(cfg.min_spacing, X.dtype)
    offsets = jnp.arange(L, dtype=X.dtype) * delta
    z = X - offsets
    if weights is None:
        w = jnp.ones_like(z)
    else:
        if not is_tracer(weights):
            check_finite("weights", weights)
            if bool(jnp.any(jnp.asarray(weights) <= 0)):
                raise ValueError("weights must be strictly positive")
        w = jnp.broadcast_to(jnp.asarray(weights, X.dtype), z.shape)
    z = _isotonic_minmax(z, w)
    upper = jnp.asarray(cfg.length_x, X.dtype) - (L - 1) * delta
    z = jnp.clip(z, 0.0, upper)
    return z + offsets


def is_feasible(cfg: PassConfig, X, tol=None):
    """Whether ``X`` satisfies docs/model.md §1 to absolute tolerance ``tol`` [m].

    Args:
      X: ``(..., N, L)`` positions.
      tol: absolute tolerance [m]; default ``8 eps(dtype) max(S_x, 1)``, a few
        rounding steps at the scale of the waveguide (float32: ~2e-5 m at 20 m).

    Returns:
      Boolean array of the batch shape ``(...)``.
    """
    X = jnp.asarray(X)
    if not jnp.issubdtype(X.dtype, jnp.floating):
        X = X.astype(jnp.result_type(float))
    if tol is None:
        tol = 8 * jnp.finfo(X.dtype).eps * jnp.maximum(jnp.asarray(cfg.length_x, X.dtype), 1.0)
    lo = jnp.all(X[..., 0] >= -tol, axis=-1)
    hi = jnp.all(X[..., -1] <= jnp.asarray(cfg.length_x) + tol, axis=-1)
    gaps = jnp.diff(X, axis=-1)
    spaced = jnp.all(gaps >= jnp.asarray(cfg.min_spacing) - tol, axis=(-2, -1))
    finite = jnp.all(jnp.isfinite(X), axis=(-2, -1))
    return lo & hi & spaced & finite


def positions_from_spacings(cfg: PassConfig, x_end, z):
    """Feasible positions by construction from unconstrained fractions (JB (53)-(55)).

    ``x_end_n = L delta + x_end_frac_n (S_x - L delta)`` (53); spacings
    ``omega_n = x_end_n (eps_n + (1 - L eps_n) z_n / sum z_n)``, ``eps_n = delta / x_end_n``
    (54)-(55), i.e. each spacing is ``delta`` plus a share of the slack
    ``x_end_n - L delta``; ``X[n, l] = cumsum(omega_n)``. Every spacing (and the first
    position) is at least ``delta`` and the last position equals ``x_end_n <= S_x``.

    Args:
      x_end: ``(..., N)`` fractions in ``[0, 1]`` (e.g. sigmoid outputs).
      z: ``(..., N, L)`` positive spacing weights (e.g. sigmoid outputs).

    Returns:
      ``(..., N, L)`` feasible positions [m].
    """
    x_end = jnp.asarray(x_end)
    z = jnp.asarray(z)
    check_shape("z", z, (cfg.num_waveguides, cfg.num_pinches), batch=True)
    check_shape("x_end", x_end, (cfg.num_waveguides,), batch=True)
    L = cfg.num_pinches
    delta = jnp.asarray(cfg.min_spacing, z.dtype)
    end = L * delta + jnp.clip(x_end, 0.0, 1.0) * (jnp.asarray(cfg.length_x, z.dtype) - L * delta)
    total = jnp.sum(z, axis=-1, keepdims=True)
    tiny = jnp.finfo(z.dtype).tiny
    share = jnp.where(total > tiny, z / jnp.where(total > tiny, total, 1.0), 1.0 / L)
    omega = delta + (end[..., None] - L * delta) * share
    return jnp.cumsum(omega, axis=-1)

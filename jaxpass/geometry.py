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
      shape: leading batch shape, e.g. ``(B,)``, or an int ``B`` for ``(B,)``.

    Returns:
      ``shape + (K, 2)`` float array of ``(x, y)`` coordinates [m].

    Raises:
      ValueError: ``shape`` holds a negative size; TypeError: it holds a non-integer.
    """
    shape = _batch_shape(shape)
    u = jax.random.uniform(key, shape + (cfg.num_users, 2))
    extent = jnp.stack([jnp.asarray(cfg.length_x, u.dtype), jnp.asarray(cfg.width_y, u.dtype)])
    return u * extent


def _batch_shape(shape) -> tuple:
    """``shape`` as a tuple of Python ints >= 0 (an int ``B`` -> ``(B,)``), checked before any tracing."""
    import operator

    try:
        dims = (shape,) if not hasattr(shape, "__iter__") else tuple(shape)
        dims = tuple(operator.index(d) for d in dims)
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise ValueError(f"shape must hold sizes >= 0, got {shape!r}")
    return dims


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


def _pav_block_ids(y, w):
    """Block index of every element in the weighted isotonic fit of one sequence.

    Pool-adjacent-violators with a stack (Best and Chakravarti, "Active set
    algorithms for isotonic regression; a unifying framework", Math. Programming
    1990): the stack holds the blocks found so far as (weighted sum, weight,
    first index); each step either merges the top block into the one below it
    (when their means violate the order) or pushes the next element. There are
    ``L - 1`` pushes and at most ``L - 1`` merges, so a ``lax.fori_loop`` of
    exactly ``2 L - 2`` steps (spare steps do nothing) finishes: a fixed count,
    O(1) work per step, no data-dependent trip count, so it vmaps without
    lanes waiting on each other and its jaxpr does not grow with ``L``. Its
    inputs are not differentiated (the caller recomputes the block averages
    differentiably), so the loop is never reverse-differentiated.

    Args:
      y: ``(L,)`` values; w: ``(L,)`` positive weights.

    Returns:
      ``(L,)`` int32: ``0`` for the first block, increasing by one at the start of
      each further block.
    """
    L = y.shape[-1]
    idx = jnp.int32

    def step(_, state):
        i, m, s_t, w_t, start_t, S, W, starts = state
        below = jnp.maximum(m - 1, 0)
        s_b, w_b, start_b = S[below], W[below], starts[below]
        merge = (m > 0) & (s_b / w_b > s_t / w_t)
        push = ~merge & (i < L)
        # the top block goes to slot m: kept by a push; otherwise slot m is above the stack
        S, W, starts = S.at[m].set(s_t), W.at[m].set(w_t), starts.at[m].set(start_t)
        j = jnp.minimum(i, L - 1)
        s_t = jnp.where(merge, s_b + s_t, jnp.where(push, w[j] * y[j], s_t))
        w_t = jnp.where(merge, w_b + w_t, jnp.where(push, w[j], w_t))
        start_t = jnp.where(merge, start_b, jnp.where(push, i, start_t))
        m = m + push.astype(idx) - merge.astype(idx)
        return i + push.astype(idx), m, s_t, w_t, start_t, S, W, starts

    zeros = jnp.zeros_like(y)
    state = (idx(1), idx(0), w[0] * y[0], w[0], idx(0), zeros, zeros, jnp.zeros(L, idx))
    _, m, _, _, start_t, _, _, starts = jax.lax.fori_loop(0, 2 * L - 2, step, state)
    # first element of every final block: the stack's slots below m and the top block
    slot = jnp.arange(L, dtype=idx)
    first = jnp.zeros(L + 1, idx).at[jnp.where(slot < m, starts, L)].set(1).at[start_t].set(1)
    return jnp.cumsum(first[:L]) - 1


def _isotonic_regression(y, w):
    """Weighted isotonic (non-decreasing) regression of the last axis: O(L) per sequence.

    Solves ``min_z sum_l w_l (z_l - y_l)^2`` s.t. ``z`` non-decreasing, for each
    sequence along the last axis. The blocks come from pool-adjacent-violators
    (:func:`_pav_block_ids`, run on ``stop_gradient`` inputs); the result is then
    recomputed as the weighted average of each block, ``z_l = sum_{i in B(l)} w_i
    y_i / sum_{i in B(l)} w_i`` (a segment sum and a gather). Almost everywhere
    (away from ties between adjacent block means) the blocks are locally
    constant, so that expression has the exact derivative of the projection:
    ``dz/dy`` averages over each block, ``dz_l/dw_i = (y_i - z_l) / W_B``; plain
    autodiff gives it in forward and reverse mode, and nothing of the loop is
    stored for the backward pass.

    Cost per forward, vmapped over a batch of 64 drops, float32, measured on a
    2-core CPU (best of 7, after compiling) against the min-max formula it
    replaces (``max_{j<=i} min_{k>=i}`` of prefix-sum block averages, whose
    ``lax.cummin`` over an ``L x L`` matrix XLA CPU lowers to windowed
    reductions, ~``N L^3``); per drop, forward / value and gradient:

    ========  ====================  ======================
    N, L      min-max [us]          PAV [us]
    ========  ====================  ======================
    {TABLE}
    ========  ====================  ======================

    Args:
      y: ``(..., L)`` values; w: ``(..., L)`` positive weights (same shape).

    Returns:
      ``(..., L)`` non-decreasing fit, the dtype of ``y``.
    """
    L = y.shape[-1]
    batch = y.shape[:-1]
    yf, wf = y.reshape(-1, L), w.reshape(-1, L)
    ids = jax.vmap(_pav_block_ids)(jax.lax.stop_gradient(yf), jax.lax.stop_gradient(wf))
    segment = jax.vmap(lambda v, i: jax.ops.segment_sum(v, i, num_segments=L, indices_are_sorted=True))
    num = jnp.take_along_axis(segment(wf * yf, ids), ids, axis=-1)
    den = jnp.take_along_axis(segment(wf, ids), ids, axis=-1)
    return (num / den).reshape(batch + (L,))


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
    z = _isotonic_regression(z, w)
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

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
import numpy as np
from jax.custom_derivatives import SymbolicZero

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


def _pav(y, w):
    """Weighted isotonic fit of one sequence and its blocks, by pool-adjacent-violators.

    Stack-based PAV (Best and Chakravarti, "Active set algorithms for isotonic
    regression; a unifying framework", Math. Programming 1990): the stack holds
    the blocks found so far as (weighted sum, weight, first index); each step
    either merges the top block into the one below it (when their means are out
    of order) or pushes the next element. There are ``L - 1`` pushes and at most
    ``L - 1`` merges, so a ``lax.fori_loop`` of exactly ``2 L - 2`` steps (spare
    steps change nothing) finishes: a fixed count with O(1) work per step, so
    under ``vmap`` no lane waits on a data-dependent trip count, and the jaxpr
    does not grow with ``L``. The loop is never differentiated: the derivative
    is :func:`_isotonic_regression`'s rule, built from the blocks.

    Args:
      y: ``(L,)`` values; w: ``(L,)`` positive weights.

    Returns:
      ``z`` ``(L,)``, the non-decreasing fit (each element the weighted mean of
      its block), and ``ids`` ``(L,)`` int32, the block of each element (0, 1, ...).
    """
    L = y.shape[-1]
    idx = jnp.int32
    # One row per block: (weighted sum, weight, first index); the index is exact in floating
    # point for L < 2**24. The block just below the top is carried, so the stack is read only
    # after this step's write and XLA updates it in place (reading the old stack in the same
    # step made XLA CPU copy the whole buffer on every step, ~10x slower).
    items = jnp.stack([w * y, w, jnp.arange(L, dtype=y.dtype)], axis=-1)  # (L, 3)

    def step(_, state):
        i, m, top, below, stack = state
        merge = (m > 0) & (below[0] / below[1] > top[0] / top[1])
        push = ~merge & (i < L)
        stack = stack.at[m].set(top)  # kept by a push; otherwise slot m is above the stack
        merged = jnp.stack([below[0] + top[0], below[1] + top[1], below[2]])
        top = jnp.where(merge, merged, jnp.where(push, items[jnp.minimum(i, L - 1)], top))
        m = m + push.astype(idx) - merge.astype(idx)
        below = stack[jnp.maximum(m - 1, 0)]
        return i + push.astype(idx), m, top, below, stack

    state = (idx(1), idx(0), items[0], items[0], jnp.zeros_like(items))
    _, m, top, _, stack = jax.lax.fori_loop(0, 2 * L - 2, step, state)
    stack = stack.at[m].set(top)  # the final blocks are slots 0..m
    # block of element j: the last block starting at or before j. A binary search in a
    # fixed-count loop: O(L log L), a jaxpr of constant size (a prefix sum of block-start
    # flags would be O(L^2) as XLA CPU's cumsum, or log L unrolled levels as an associative scan)
    starts = jnp.where(jnp.arange(L) <= m, stack[:, 2], L)  # increasing; unused slots at L
    ids = jnp.searchsorted(starts, jnp.arange(L, dtype=y.dtype), side="right", method="scan").astype(idx) - 1
    return (stack[:, 0] / stack[:, 1])[ids], ids


@jax.jit
def _pav_rows(y, w):
    """:func:`_pav` over every row of ``(..., L)`` arrays.

    Jitted so that eager calls compile the loop once per shape (an eager
    ``fori_loop`` is traced and compiled anew on every call); under an outer
    ``jit`` it is inlined.
    """
    L = y.shape[-1]
    z, ids = jax.vmap(_pav)(y.reshape(-1, L), w.reshape(-1, L))
    return z.reshape(y.shape), ids.reshape(y.shape)


@jax.custom_jvp
def _isotonic_regression(y, w):
    """Weighted isotonic (non-decreasing) regression of the last axis: O(L) per row.

    Solves ``min_z sum_l w_l (z_l - y_l)^2`` s.t. ``z`` non-decreasing for every
    row, by pool-adjacent-violators (:func:`_pav`). Differentiable almost
    everywhere (away from ties between adjacent block means) with the exact
    derivative, a ``custom_jvp`` that works in forward and reverse mode: the
    blocks are locally constant, so ``z_l = sum_{i in B(l)} w_i y_i / W_B`` with
    ``W_B = sum_{i in B(l)} w_i`` gives ``dz_l = sum_{i in B(l)} (w_i dy_i +
    (y_i - z_l) dw_i) / W_B`` (a segment sum over the blocks; reverse mode saves
    the fit and the block ids, not the loop).

    It replaces the min-max formula ``z_i = max_{j<=i} min_{k>=i}`` of prefix-sum
    block averages, whose ``lax.cummin`` over an ``L x L`` matrix XLA CPU lowers to
    windowed reductions (~``N L^3`` per drop). ``project_positions`` of random
    ``(N, L)`` layouts, float32, vmapped over a batch of 64 drops, measured on a
    2-core CPU shared with other jobs (process CPU time per drop, best of 15 after
    compiling), forward / value and gradient [us]:

    ======  ===============  ===========
    N, L    min-max          PAV
    ======  ===============  ===========
    4, 8    0.9 / 5.4        1.5 / 2.8
    8, 16   15 / 52          4.5 / 7.5
    16, 32  124 / 907        33 / 51
    16, 64  824 / 3749       98 / 122
    32, 64  1580 / 7374      184 / 247
    ======  ===============  ===========

    At the papers' size (4, 8) the loop's fixed cost per step makes the forward
    ~0.6 us per drop slower than the min-max formula; everywhere else, and for
    the gradient everywhere, PAV is faster.

    Args:
      y: ``(..., L)`` values; w: ``(..., L)`` positive weights (same shape).

    Returns:
      ``(..., L)`` non-decreasing fit, the dtype of ``y``.
    """
    return _pav_rows(y, w)[0]


def _isotonic_regression_jvp(primals, tangents):
    y, w = primals
    dy, dw = tangents
    z, ids = _pav_rows(y, w)
    L = y.shape[-1]
    flat_ids = ids.reshape(-1, L)

    def block_sum(v):  # sum over each element's block, (..., L)
        sums = jax.vmap(lambda a, i: jax.ops.segment_sum(a, i, num_segments=L, indices_are_sorted=True))
        return jnp.take_along_axis(sums(v.reshape(-1, L), flat_ids), flat_ids, axis=-1).reshape(y.shape)

    terms = [w * t for t in (dy,) if not isinstance(t, SymbolicZero)]
    terms += [(y - z) * t for t in (dw,) if not isinstance(t, SymbolicZero)]
    if not terms:
        return z, jnp.zeros_like(z)
    return z, block_sum(sum(terms[1:], terms[0])) / block_sum(w)


_isotonic_regression.defjvp(_isotonic_regression_jvp, symbolic_zeros=True)


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
            if np.any(np.asarray(weights) <= 0):  # NumPy: a concrete value closed over by a jit stays host-side
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

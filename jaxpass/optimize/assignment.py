"""Waveguide-to-user assignments: exact best and k-best under a separable score, in JAX.

The physics-guided starts of :mod:`jaxpass.optimize.positions` (and of SSCA,
the aligned learned model and the interference-free reference) dedicate each
waveguide to one user. Among the maps ``a: waveguides -> users`` they rank by
a *separable* score ``sum_n c[n, a(n)]`` (for the coherent starts the
interference-free geometric cost ``c[n, k] = log(h^2 + (y_lane[n] - y_k)^2)``:
waveguide ``n``'s coherent gain at user ``k`` is ``~ 1 / (h^2 + dy^2)``), so the
best map is a *linear assignment problem* and the k best maps are its k best
solutions. Enumerating all maps costs ``N!`` (2e13 at N = 16); this module
solves both exactly in polynomial time.

Which maps are allowed (the same set as :func:`assignment_table`):

* ``K = N``: permutations, every user one waveguide;
* ``N > K``: every user gets ``N // K`` or ``N // K + 1`` waveguides (balanced);
* ``K > N``: ``N`` distinct users are served, one waveguide each (the other
  users are left to the beamformer).

All three are one square assignment problem (:func:`square_cost`): the columns
are ``q = N // K`` *mandatory* copies of each user plus, when ``r = N % K > 0``,
one *optional* copy; ``D = K ceil(N/K) - N`` dummy rows may take only optional
copies (cost 0), so exactly ``r`` users get an extra waveguide (``q = 0`` when
``K > N``: every copy is optional and ``K - N`` users are unserved).

Algorithms (both pure, run under the caller's ``jax.jit``/``jax.vmap``):

* :func:`best_assignment`: the Hungarian method in its shortest-augmenting-path
  form with row/column potentials (Kuhn-Munkres as refined by Jonker and
  Volgenant), ``O(S^3)`` for the ``S x S`` square problem. The row loop is a
  ``lax.fori_loop``; the Dijkstra-like search and the path augmentation are
  ``lax.while_loop`` s, so the traced program does not grow with ``S``. Under
  ``vmap`` the while loops run until the slowest problem of the batch is done.
* :func:`k_best_assignments`: Murty's algorithm (K. G. Murty, "An algorithm for
  ranking all the assignments in order of increasing cost", Operations Research
  16, 1968) with a fixed-size pool: the solution space minus the best map is
  partitioned into ``N`` subproblems (subproblem ``j`` forces waveguides
  ``0..j-1`` to their users in the popped map and forbids waveguide ``j``'s
  user), each solved exactly; ``k`` pops of the cheapest pooled subproblem give
  the ``k`` best distinct maps, in order. ``k N`` Hungarian solves per call.
  Forcing and forbidding act on (waveguide, user) pairs, never on copies, so
  two copies of one user never yield the same map twice.

Ties between maps of equal cost are broken arbitrarily (floating point).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpass._checks import check_positive_int

#: how :func:`ranked_assignments` searches
ASSIGNMENT_SEARCHES = ("exact", "sampled")

#: enumerate every map (and rank by ``top_k``) while there are at most this many permutations
MAX_ENUMERATED = 5040


class Assignments(NamedTuple):
    """Ranked waveguide-to-user maps.

    Attributes:
      maps: ``(k, N)`` int32, ``maps[i, n]`` = user served by waveguide ``n`` in the i-th best map.
      costs: ``(k,)`` ``sum_n cost[n, maps[i, n]]``, non-decreasing; ``inf`` where fewer than ``k``
        maps exist (those rows repeat the best map).
    """

    maps: jax.Array
    costs: jax.Array


def num_assignments(num_waveguides: int, num_users: int) -> int:
    """Number of distinct allowed maps (module docstring) for ``N`` waveguides and ``K`` users."""
    check_positive_int("num_waveguides", num_waveguides)
    check_positive_int("num_users", num_users)
    N, K = int(num_waveguides), int(num_users)
    if K >= N:
        return math.perm(K, N)
    q, r = divmod(N, K)
    # choose which r users get q + 1 waveguides, then a multinomial split of the N waveguides
    return math.comb(K, r) * math.factorial(N) // (math.factorial(q) ** (K - r) * math.factorial(q + 1) ** r)


def enumerable(num_waveguides: int, num_users: int) -> bool:
    """Whether :func:`assignment_table` lists every allowed map (``max(N, K)! <= MAX_ENUMERATED``)."""
    return math.factorial(max(num_waveguides, num_users)) <= MAX_ENUMERATED


def assignment_table(num_waveguides: int, num_users: int) -> np.ndarray:
    """Candidate waveguide-to-user maps, ``(A, N)`` int array (``table[a, n]`` = user of waveguide n).

    The maps are ``perm[n] mod K`` for permutations ``perm`` of ``range(max(N, K))``
    (restricted to the first ``N`` entries), de-duplicated: for ``K = N`` all
    ``N!`` permutations; for ``N > K`` every user gets ``N // K`` or ``N // K + 1``
    waveguides (when ``K`` does not divide ``N``, every balanced map in
    lexicographic order); for ``K > N`` ``N`` distinct users are served. Complete while
    ``max(N, K)! <= 5040`` (:func:`enumerable`); beyond, a fixed-seed random
    sample of ``5040`` permutations (plus the identity): the ranked search
    (:func:`ranked_assignments`) then uses :func:`k_best_assignments` instead,
    and the sample remains only as the ``assignment_search="sampled"``
    baseline of the tuner.
    """
    M = max(num_waveguides, num_users)
    q, r = divmod(num_waveguides, num_users)
    if q and r and math.factorial(M) <= MAX_ENUMERATED:
        # N > K, K not dividing N: any r users may get the extra waveguide (perm mod K would always pick 0..r-1)
        maps = np.array(list(itertools.product(range(num_users), repeat=num_waveguides)), dtype=np.int32)
        counts = np.stack([np.sum(maps == k, axis=1) for k in range(num_users)], axis=1)
        return maps[np.all((counts == q) | (counts == q + 1), axis=1)]
    if math.factorial(M) <= MAX_ENUMERATED:
        perms = np.array(list(itertools.permutations(range(M))), dtype=np.int64)
    else:
        rng = np.random.default_rng(0)
        perms = np.stack([np.arange(M)] + [rng.permutation(M) for _ in range(MAX_ENUMERATED - 1)])
    maps = perms[:, :num_waveguides] % num_users
    _, first = np.unique(maps, axis=0, return_index=True)
    return maps[np.sort(first)].astype(np.int32)


# ----------------------------------------------------------------- square problem
def _layout(N: int, K: int):
    """``(q, copies, S)``: mandatory copies per user, columns per user, square size."""
    q, r = divmod(N, K)
    copies = q + (r > 0)
    return q, copies, K * copies


def square_cost(cost, allowed=None):
    """The ``(S, S)`` square assignment problem equivalent to the balanced map problem.

    Args:
      cost: ``(N, K)`` real cost of waveguide ``n`` serving user ``k``.
      allowed: optional ``(N, K)`` bool; disallowed pairs get the penalty cost.

    Returns:
      ``(C, big)``: ``C (S, S)`` with rows = the N waveguides then the dummy rows,
      columns user-major (``column = k * copies + c``); ``big`` is the penalty
      (larger than any feasible total), so a solution is feasible iff its
      total is ``< big``. Costs are shifted to start at 0 (the ranking is unchanged).
    """
    N, K = cost.shape
    q, copies, S = _layout(N, K)
    cost = cost - jnp.min(cost)
    big = (S + 1) * (jnp.max(cost) + 1.0)
    if allowed is not None:
        cost = jnp.where(allowed, cost, big)
    rows = jnp.repeat(cost, copies, axis=1)  # (N, S): column k * copies + c -> user k
    optional = jnp.tile(jnp.arange(copies) >= q, K)  # (S,)
    dummy = jnp.broadcast_to(jnp.where(optional, 0.0, big).astype(cost.dtype), (S - N, S))
    return jnp.concatenate([rows, dummy], axis=0), big


def _hungarian(C):
    """Exact min-cost perfect matching of a square ``(S, S)`` real matrix: ``(S,)`` column of each row.

    Shortest augmenting paths with potentials ``u`` (rows) and ``v`` (columns),
    rows added one at a time; arrays are 1-indexed with index 0 a virtual
    column that holds the row being added. Reduced costs ``C - u - v`` stay
    ``>= 0`` on every edge, and ``u, v`` stay a feasible dual, so the final
    matching is optimal (complementary slackness).
    """
    S = C.shape[0]
    dt = C.dtype
    inf = jnp.asarray(jnp.inf, dt)
    a = jnp.pad(C, ((1, 0), (1, 0)))  # a[i, j] for rows/columns 1..S
    cols = jnp.arange(S + 1)
    rows = cols

    def add_row(i, state):
        u, v, p, way = state
        p = p.at[0].set(i)

        def search(s):
            u, v, p, way, minv, used, visited, j0 = s
            used = used.at[j0].set(True)
            i0 = p[j0]
            visited = visited | (rows == i0)  # rows matched to used columns (elementwise: no scatter)
            cur = a[i0] - u[i0] - v
            better = (~used) & (cur < minv)
            minv = jnp.where(better, cur, minv)
            way = jnp.where(better, j0, way)
            free = jnp.where(used, inf, minv)
            j1 = jnp.argmin(free).astype(jnp.int32)
            delta = free[j1]
            u = jnp.where(visited, u + delta, u)
            v = jnp.where(used, v - delta, v)
            minv = jnp.where(used, minv, minv - delta)
            return u, v, p, way, minv, used, visited, j1

        minv = jnp.full((S + 1,), inf, dt)
        used = jnp.zeros((S + 1,), bool)
        u, v, p, way, _, _, _, j0 = jax.lax.while_loop(
            lambda s: s[2][s[7]] != 0, search, (u, v, p, way, minv, used, used, jnp.zeros((), jnp.int32)))

        def augment(s):
            p, j0 = s
            j1 = way[j0]
            return p.at[j0].set(p[j1]), j1

        p, _ = jax.lax.while_loop(lambda s: s[1] != 0, augment, (p, j0))
        return u, v, p, way

    zeros = jnp.zeros((S + 1,), dt)
    izeros = jnp.zeros((S + 1,), jnp.int32)
    _, _, p, _ = jax.lax.fori_loop(1, S + 1, add_row, (zeros, zeros, izeros, izeros))
    # p[j] = row matched to column j (1-indexed); invert to the column of each row
    return jnp.zeros((S,), jnp.int32).at[p[1:] - 1].set(cols[1:].astype(jnp.int32) - 1)


def _solve(cost, allowed):
    """Best allowed map of one subproblem: ``((N,) users, total cost or inf if infeasible)``."""
    N, K = cost.shape
    _, copies, _ = _layout(N, K)
    C, big = square_cost(cost, allowed)
    col = _hungarian(jax.lax.stop_gradient(C))
    total = jnp.sum(C[jnp.arange(C.shape[0]), col])
    users = (col[:N] // copies).astype(jnp.int32)
    value = jnp.sum(cost[jnp.arange(N), users])
    return users, jnp.where(total < big, value, jnp.inf)


def best_assignment(cost):
    """The exact best map under a separable cost (Hungarian method; module docstring).

    Args:
      cost: ``(N, K)`` real, ``cost[n, k]`` the cost of waveguide ``n`` serving user ``k``
        (lower is better; e.g. :func:`geometric_cost`).

    Returns:
      ``((N,) int32 map, scalar cost)``: ``argmin / min`` of ``sum_n cost[n, a(n)]`` over the allowed maps.
    """
    cost = jnp.asarray(cost)
    N, K = cost.shape
    return _solve(cost, jnp.ones((N, K), bool))


def k_best_assignments(cost, k: int) -> Assignments:
    """The ``k`` best distinct maps under a separable cost, in order (Murty's algorithm; module docstring).

    Args:
      cost: ``(N, K)`` real (lower is better).
      k: how many maps (static).

    Returns:
      :class:`Assignments` with ``(k, N)`` maps and ``(k,)`` non-decreasing costs
      (``inf`` rows where fewer than ``k`` maps exist).
    """
    check_positive_int("k", k)
    cost = jnp.asarray(cost)
    N, K = cost.shape
    P = 1 + k * N  # the root plus N children per pop
    allowed0 = jnp.ones((N, K), bool)
    root_map, root_cost = _solve(cost, allowed0)
    pool_allowed = jnp.broadcast_to(allowed0, (P, N, K))
    pool_maps = jnp.zeros((P, N), jnp.int32).at[0].set(root_map)
    pool_costs = jnp.full((P,), jnp.inf, cost.dtype).at[0].set(root_cost)
    eye_k = jnp.eye(K, dtype=bool)
    idx = jnp.arange(N)

    def children(allowed, parent):
        """Murty's partition of ``allowed`` minus ``parent``: ``(N, N, K)`` subproblem masks."""
        forced = eye_k[parent]  # (N, K) one-hot rows of the parent's map

        def child(j):
            mask = jnp.where((idx < j)[:, None], forced & allowed, allowed)
            return mask.at[j].set(mask[j] & ~forced[j])

        return jax.vmap(child)(idx)

    def pop(t, state):
        pool_allowed, pool_maps, pool_costs, out_maps, out_costs = state
        i = jnp.argmin(pool_costs)
        best_cost = pool_costs[i]
        out_maps = out_maps.at[t].set(pool_maps[i])
        out_costs = out_costs.at[t].set(best_cost)
        masks = children(pool_allowed[i], pool_maps[i])
        maps, costs = jax.vmap(lambda m: _solve(cost, m))(masks)
        costs = jnp.where(jnp.isfinite(best_cost), costs, jnp.inf)  # an exhausted pool stays exhausted
        pool_costs = pool_costs.at[i].set(jnp.inf)
        start = 1 + t * N
        pool_allowed = jax.lax.dynamic_update_slice_in_dim(pool_allowed, masks, start, axis=0)
        pool_maps = jax.lax.dynamic_update_slice_in_dim(pool_maps, maps, start, axis=0)
        pool_costs = jax.lax.dynamic_update_slice_in_dim(pool_costs, costs, start, axis=0)
        return pool_allowed, pool_maps, pool_costs, out_maps, out_costs

    out = (jnp.broadcast_to(root_map, (k, N)), jnp.full((k,), jnp.inf, cost.dtype))
    *_, maps, costs = jax.lax.fori_loop(0, k, pop, (pool_allowed, pool_maps, pool_costs, *out))
    maps = jnp.where(jnp.isfinite(costs)[:, None], maps, root_map[None, :])
    return Assignments(maps, costs)


# ------------------------------------------------------------------- the scores
def geometric_cost(lane_y, height, users):
    """Interference-free geometric cost ``c[n, k] = log(h^2 + (y_lane[n] - y_k)^2)``, ``(N, K)``.

    Waveguide ``n``'s coherent gain at user ``k`` (all its pinches at the
    user's ``x``, in phase) is ``~ beta L / (h^2 + dy^2)``, so the best
    interference-free maps minimise ``sum_n c[n, a(n)]``.

    Args:
      lane_y: ``(N,)`` lane coordinates [m].
      height: waveguide height ``h`` [m].
      users: ``(K, 2)`` user coordinates [m].
    """
    dy2 = (lane_y[:, None] - users[None, :, 1]) ** 2
    return jnp.log(dy2 + jnp.asarray(height, users.dtype) ** 2)


def ranked_assignments(cost, count: int, search: str = "exact") -> jax.Array:
    """The ``count`` best maps under ``cost (N, K)`` as a ``(count, N)`` int32 array, best first.

    ``search="exact"``: every map ranked when :func:`enumerable` (``top_k`` over
    :func:`assignment_table`), else Murty's k-best (:func:`k_best_assignments`).
    ``search="sampled"``: ``top_k`` over :func:`assignment_table` whatever its
    size (a random sample of 5040 permutations beyond ``max(N, K) = 7``; the
    behaviour before the exact search, kept as a baseline). ``count`` is
    capped at the number of maps available; when it covers the whole table,
    the table is returned in its own order.
    """
    N, K = cost.shape
    if search not in ASSIGNMENT_SEARCHES:
        raise ValueError(f"assignment search must be 'exact' or 'sampled', got {search!r}")
    if search == "exact" and not enumerable(N, K):
        return k_best_assignments(cost, min(count, num_assignments(N, K))).maps
    table = jnp.asarray(assignment_table(N, K))
    if count >= table.shape[0]:
        return table  # every listed map, in table order
    scores = -jnp.sum(cost[jnp.arange(N)[None, :], table], axis=-1)
    _, top = jax.lax.top_k(scores, count)
    return table[top]


__all__ = ["ASSIGNMENT_SEARCHES", "Assignments", "MAX_ENUMERATED", "assignment_table", "best_assignment", "enumerable", "geometric_cost",
           "k_best_assignments", "num_assignments", "ranked_assignments", "square_cost"]

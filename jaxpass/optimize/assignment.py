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
  the ``k`` best distinct maps, in order. A child keeps its parent's
  potentials and matching minus one row, so it is re-completed by a single
  shortest augmenting path (``O(S^2)``, not a full ``O(S^3)`` solve; the
  classic warm start of Murty's method): ``k N`` such steps per call.
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


def _add_row(a, i, state):
    """Add row ``i`` (1-indexed) to a partial optimal matching: one shortest augmenting path.

    ``a`` is the cost padded to ``(S + 1, S + 1)`` (row/column 0 virtual);
    ``state = (u, v, p, way)``: row and column potentials, ``p[j]`` the row
    matched to column ``j`` (0: free), ``way`` scratch. Invariant (before and
    after): ``a - u - v >= 0`` on every edge and ``= 0`` on matched edges, so
    the matching is optimal for its rows (complementary slackness).
    """
    u, v, p, way = state
    S1 = a.shape[0]
    dt = a.dtype
    inf = jnp.asarray(jnp.inf, dt)
    index = jnp.arange(S1)
    p = p.at[0].set(jnp.asarray(i, jnp.int32))

    def search(s):
        u, v, p, way, minv, used, visited, j0 = s
        used = used.at[j0].set(True)
        i0 = p[j0]
        visited = visited | (index == i0)  # rows matched to used columns (elementwise: no scatter)
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

    minv = jnp.full((S1,), inf, dt)
    used = jnp.zeros((S1,), bool)
    u, v, p, way, _, _, _, j0 = jax.lax.while_loop(
        lambda s: s[2][s[7]] != 0, search, (u, v, p, way, minv, used, used, jnp.zeros((), jnp.int32)))

    def augment(s):
        p, j0 = s
        j1 = way[j0]
        return p.at[j0].set(p[j1]), j1

    p, _ = jax.lax.while_loop(lambda s: s[1] != 0, augment, (p, j0))
    return u, v, p, way


def _hungarian(a):
    """Exact min-cost perfect matching of the padded ``(S + 1, S + 1)`` cost ``a``: the final ``(u, v, p, way)``.

    Shortest augmenting paths with potentials (Kuhn-Munkres in the
    Jonker-Volgenant form): rows added one at a time by :func:`_add_row` in a
    ``lax.fori_loop``.
    """
    S1 = a.shape[0]
    zeros = jnp.zeros((S1,), a.dtype)
    izeros = jnp.zeros((S1,), jnp.int32)
    return jax.lax.fori_loop(1, S1, lambda i, st: _add_row(a, i, st), (zeros, zeros, izeros, izeros))


def _padded(cost, allowed):
    C, big = square_cost(jax.lax.stop_gradient(cost), allowed)
    return jnp.pad(C, ((1, 0), (1, 0))), big


def _read(cost, a, big, p):
    """``(users (N,), value or inf if infeasible)`` of the matching ``p`` of the padded problem ``a``."""
    N, K = cost.shape
    _, copies, S = _layout(N, K)
    cols = jnp.arange(1, S + 1, dtype=jnp.int32)
    col = jnp.zeros((S + 1,), jnp.int32).at[p[1:]].set(cols)[1:]  # 1-indexed column of each row
    total = jnp.sum(a[jnp.arange(1, S + 1), col])
    users = ((col[:N] - 1) // copies).astype(jnp.int32)
    value = jnp.sum(cost[jnp.arange(N), users])
    return users, jnp.where(total < big, value, jnp.inf)


def _solve(cost, allowed):
    """Best allowed map of one subproblem from scratch: ``(users (N,), value or inf, (u, v, p, way))``."""
    a, big = _padded(cost, allowed)
    state = _hungarian(a)
    return (*_read(cost, a, big, state[2]), state)


def _resolve(cost, allowed, parent_state, j):
    """Murty child ``j``: the parent's matching without waveguide ``j``, re-completed by one augmenting path.

    The child only raises costs of the parent's problem (forbidden pairs) and
    keeps every matched edge but row ``j``'s (the forced prefix is the parent's
    own matching), so the parent's potentials stay a feasible dual with zero
    reduced cost on the remaining matched edges: adding row ``j`` back is one
    shortest-augmenting-path step, ``O(S^2)`` instead of a full ``O(S^3)`` solve.
    """
    a, big = _padded(cost, allowed)
    u, v, p, way = parent_state
    p = jnp.where(p == j + 1, 0, p)
    state = _add_row(a, j + 1, (u, v, p, way))
    return (*_read(cost, a, big, state[2]), state)


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
    return _solve(cost, jnp.ones((N, K), bool))[:2]


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
    root_map, root_cost, root_state = _solve(cost, allowed0)
    pool_allowed = jnp.broadcast_to(allowed0, (P, N, K))
    pool_maps = jnp.zeros((P, N), jnp.int32).at[0].set(root_map)
    pool_costs = jnp.full((P,), jnp.inf, cost.dtype).at[0].set(root_cost)
    pool_states = jax.tree.map(lambda x: jnp.zeros((P,) + x.shape, x.dtype).at[0].set(x), root_state)
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
        pool_allowed, pool_maps, pool_costs, pool_states, out_maps, out_costs = state
        i = jnp.argmin(pool_costs)
        best_cost = pool_costs[i]
        out_maps = out_maps.at[t].set(pool_maps[i])
        out_costs = out_costs.at[t].set(best_cost)
        masks = children(pool_allowed[i], pool_maps[i])
        parent = jax.tree.map(lambda x: x[i], pool_states)
        maps, costs, states = jax.vmap(lambda m, j: _resolve(cost, m, parent, j))(masks, idx)
        costs = jnp.where(jnp.isfinite(best_cost), costs, jnp.inf)  # an exhausted pool stays exhausted
        pool_costs = pool_costs.at[i].set(jnp.inf)
        start = 1 + t * N
        put = lambda pool, new: jax.lax.dynamic_update_slice_in_dim(pool, new, start, axis=0)  # noqa: E731
        pool_allowed, pool_maps, pool_costs = put(pool_allowed, masks), put(pool_maps, maps), put(pool_costs, costs)
        pool_states = jax.tree.map(put, pool_states, states)
        return pool_allowed, pool_maps, pool_costs, pool_states, out_maps, out_costs

    out = (jnp.broadcast_to(root_map, (k, N)), jnp.full((k,), jnp.inf, cost.dtype))
    *_, maps, costs = jax.lax.fori_loop(0, k, pop, (pool_allowed, pool_maps, pool_costs, pool_states, *out))
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

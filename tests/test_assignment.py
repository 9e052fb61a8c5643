"""Exact assignment search (jaxpass.optimize.assignment) against brute-force enumeration."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpass.optimize import assignment as asg

SIZES = [(N, K) for N in range(1, 6) for K in range(1, 6)]


def _brute_force(N, K):
    """Every balanced map by plain enumeration of K^N functions (independent of assignment_table)."""
    q, r = divmod(N, K)
    maps = []
    for m in itertools.product(range(K), repeat=N):
        counts = np.bincount(m, minlength=K)
        if K >= N and counts.max() <= 1 or K < N and np.all((counts == q) | (counts == q + 1)):
            maps.append(m)
    return np.asarray(maps, np.int32)


@pytest.mark.parametrize("N,K", SIZES)
def test_table_and_count_match_brute_force(N, K):
    brute = {tuple(m) for m in _brute_force(N, K)}
    table = asg.assignment_table(N, K)
    assert {tuple(m) for m in table} == brute and len(table) == len(brute) == asg.num_assignments(N, K)


@jax.jit
def _best_and_kbest(cost):
    return asg.best_assignment(cost), asg.k_best_assignments(cost, 6)


@pytest.mark.parametrize("N,K", SIZES)
def test_exact_best_and_k_best_equal_brute_force(x64, N, K):
    rng = np.random.default_rng(10 * N + K)
    maps = _brute_force(N, K)
    k = min(6, len(maps))
    for trial in range(3):
        # trial 2: integer costs (ties) still give the optimal value and distinct maps
        c = rng.integers(0, 3, size=(N, K)).astype(float) if trial == 2 else rng.normal(size=(N, K))
        totals = c[np.arange(N)[None], maps].sum(-1)
        (best, best_cost), kb = _best_and_kbest(jnp.asarray(c))
        np.testing.assert_allclose(float(best_cost), totals.min(), atol=1e-12)
        np.testing.assert_allclose(c[np.arange(N), np.asarray(best)].sum(), totals.min(), atol=1e-12)
        got = np.asarray(kb.costs)
        np.testing.assert_allclose(got[:k], np.sort(totals)[:k], atol=1e-12)
        assert np.all(np.isinf(got[k:]))  # fewer maps than asked for: inf rows
        kmaps = np.asarray(kb.maps)[:k]
        assert len({tuple(m) for m in kmaps}) == k and {tuple(m) for m in kmaps} <= {tuple(m) for m in maps}
        np.testing.assert_allclose(c[np.arange(N)[None], kmaps].sum(-1), got[:k], atol=1e-12)


def test_k_best_vmaps_and_matches_enumerated_ranking_at_a_larger_size():
    """K = N = 6 (720 maps): Murty's 20 best under vmap equal the top 20 of the enumeration."""
    rng = np.random.default_rng(0)
    cost = jnp.asarray(rng.normal(size=(4, 6, 6)), jnp.float32)
    kb = jax.jit(jax.vmap(lambda c: asg.k_best_assignments(c, 20)))(cost)
    table = asg.assignment_table(6, 6)
    for b in range(4):
        totals = np.asarray(cost[b])[np.arange(6)[None], table].sum(-1)
        np.testing.assert_allclose(np.asarray(kb.costs[b]), np.sort(totals)[:20], rtol=1e-5, atol=1e-5)
    ranked = jax.jit(jax.vmap(lambda c: asg.ranked_assignments(c, 5)))(cost)  # enumerable: top_k
    np.testing.assert_allclose(np.asarray(cost)[np.arange(4)[:, None, None], np.arange(6)[None, None], ranked].sum(-1),
                               np.asarray(kb.costs[:, :5]), rtol=1e-5, atol=1e-5)


def test_exact_search_beats_the_random_sample_beyond_enumeration():
    """K = N = 10 (3.6e6 maps): the exact k-best are never worse than the top of the 5040-map sample."""
    rng = np.random.default_rng(1)
    cost = jnp.asarray(rng.normal(size=(10, 10)), jnp.float32)
    exact = asg.ranked_assignments(cost, 4, "exact")
    sampled = asg.ranked_assignments(cost, 4, "sampled")
    total = lambda maps: np.asarray(cost)[np.arange(10)[None], np.asarray(maps)].sum(-1)
    assert np.all(total(exact) <= total(sampled) + 1e-5) and total(exact)[0] < total(sampled)[0]
    assert np.all(np.diff(total(exact)) >= -1e-5)


def test_jaxpr_size_does_not_grow_with_the_problem():
    """The Hungarian and Murty loops are lax loops: the traced program has the same size at 4 and 16."""
    def size(n, fn):
        return len(jax.make_jaxpr(fn)(jnp.zeros((n, n))).jaxpr.eqns)

    assert size(4, asg.best_assignment) == size(16, asg.best_assignment)
    assert size(4, lambda c: asg.k_best_assignments(c, 3)) == size(16, lambda c: asg.k_best_assignments(c, 3))


def test_bad_input():
    with pytest.raises(ValueError, match="assignment search"):
        asg.ranked_assignments(jnp.zeros((3, 3)), 2, "random")
    with pytest.raises(ValueError, match="k must be >= 1"):
        asg.k_best_assignments(jnp.zeros((3, 3)), 0)
    with pytest.raises(ValueError, match="num_users"):
        asg.num_assignments(3, 0)

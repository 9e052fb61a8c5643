"""Power minimisation under probabilistic LoS blockage (PB; docs/model.md §6).

Problem (PB (6)/(14)): one pinch per waveguide at ``x_n in [0, D]``, K users
served by TDMA (user k in slot k by ``w_k in C^N``),

    min_{x, w}  sum_k ||w_k||^2   s.t.  w_k^H R_k(x) w_k / sigma^2 >= Gamma_k,   x in [0, D]^N.

Closed form (PB (15)-(17)): for fixed ``x`` each slot is a Rayleigh quotient,
so ``w_k = sqrt(sigma^2 Gamma_k / lmax(R_k)) u_max(R_k)`` meets its target with
equality, and the problem reduces to (PB (18))

    min_x  P(x) = sum_k sigma^2 Gamma_k / lmax(R_k(x)).

``R_k = Phi_k M_k Phi_k^H`` with ``M_k = |hbar_k||hbar_k|^T o E[gamma_k gamma_k^T]``
real and entry-wise non-negative and ``Phi_k`` diagonal unitary (docs/model.md §7), so
``lmax(R_k) = lmax(M_k)`` depends on distances only: ``P`` is smooth in ``x``
(no wavelength-scale ripple). ``lmax`` is the closed form of a symmetric 2 x 2
for ``N <= 2``; for ``N >= 3`` it is ``u^T M u`` with ``u`` the top eigenvector
of ``eigh`` held constant (``stop_gradient``): the value is ``lmax`` and, by
Hellmann-Feynman, so is the gradient — without ``eigh``'s eigenvector
derivative, which divides by eigenvalue gaps and is ``inf`` for the repeated
zero eigenvalues of an unblocked (rank-one) ``M``.

Solvers follow docs/model.md's execution model (``docs/execution_model.md``):
a pure per-drop kernel (``*_drop``, ``cfg`` an argument, key first when it
draws random numbers) that runs under a caller's ``jax.jit(jax.vmap(...))``;
an options class (static for ``jit``); and a driver (the public name) that
validates concrete inputs, takes ``users (..., K, 2)`` with any leading drop
dimensions (none for one drop), and calls a module-level ``jax.jit``:

    opts = LbfgsOptions(starts=4)
    run = jax.jit(jax.vmap(lambda k, c, u: projected_lbfgs_drop(k, c, u, 10.0, opts), in_axes=(0, None, 0)))
    res = run(keys, cfg, users)             # == projected_lbfgs(cfg, users, 10.0, opts, key=keys)

- :func:`pgd` / :func:`pgd_drop` (:class:`PgdOptions`): projected gradient
  descent with an Armijo search along the projection arc. For ``N = 1`` the
  objective ``sum_k sigma^2 Gamma_k r_k^2 e^{beta_b r_k} / eta`` is convex
  (PB Lemma 1), so PGD reaches the global optimum (PB §III).
- :func:`projected_lbfgs` / :func:`projected_lbfgs_drop` (:class:`LbfgsOptions`):
  PB Algorithm 1, written here rather than taken from
  ``optax.lbfgs``. optax's L-BFGS is unconstrained: its zoom line search
  enforces Wolfe conditions on the unprojected ray ``x + s d``, so projecting
  the result onto the box afterwards voids the sufficient-decrease guarantee
  (the projected point can be worse than ``x``), and near an active bound the
  quasi-Newton direction keeps pointing out of the box, so the iterates stall
  at the projection of the same point. Ours is an active-set projected L-BFGS
  (the two-loop recursion restricted to the free variables: those not at a bound
  with the gradient pushing outward; Kim, Sra & Dhillon 2010; Bertsekas 1982),
  with an Armijo condition along the projection arc
  ``x(s) = clip(x + s d, 0, D)``, ``f(x(s)) <= f(x) + c1 g^T (x(s) - x)``. The
  line search evaluates 25 step sizes ``2^4 ... 2^-20`` at once (a vmapped batch,
  no data-dependent loop: GPU friendly, vmappable over drops and starts) and
  keeps the lowest objective among those meeting Armijo; so every iteration is
  monotone and the fixed points are exactly the box-KKT points. A fixed
  iteration count (``lax.scan``) returns the per-iteration history (PB Fig. 2).
  Several starts per drop: 'Center' (the paper's initial point) plus uniform
  random starts; the best final point is kept.
- :func:`closed_form_beamformer` / :func:`closed_form_beamformer_drop`: PB (17).
- Baselines: :func:`center_positions` ('Center', ``x_n = D/2``),
  :func:`random_positions` ('Random'), both evaluated with the closed-form
  beamformers by :func:`evaluate_positions`, and :func:`exhaustive_search` /
  :func:`exhaustive_search_drop` (:class:`ExhaustiveOptions`; a full grid over
  ``[0, D]^N`` plus local grid refinements: the global optimum for small N, up
  to the final grid spacing).

Correlated links (PB eq. (19), Lemma 2): every function takes ``correlation``
(``None`` = independent links; scalar, ``(N, N)`` or ``(K, N, N)``
coefficients, shared by all drops of a driver call), see :mod:`jaxpass.blockage`.
With ``rho >= 0`` every entry of ``M_k`` can only grow, so ``lmax`` grows and
the power drops (Perron-Frobenius).

Units: positions [m], powers [W], SNR targets linear (``Gamma``; use
``jaxpass.units.db_to_linear``), ``sigma^2 = cfg.noise_power`` [W].
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpass import parallel
from jaxpass._checks import (
    check_array,
    check_broadcastable,
    check_int,
    check_nonnegative,
    check_range,
    check_users_in_area,
    drop_keys,
)
from jaxpass._options import Options, option
from jaxpass._safe import safe_div
from jaxpass.blockage import (
    channel_covariance,
    check_correlation,
    check_single_pinch,
    link_amplitudes,
    moment_matrices,
)
from jaxpass.channel import distances, effective_channel
from jaxpass.config import PassConfig

__all__ = [
    "ExhaustiveOptions",
    "LbfgsOptions",
    "PgdOptions",
    "PowerMinResult",
    "center_positions",
    "channel_covariance",
    "closed_form_beamformer",
    "closed_form_beamformer_drop",
    "evaluate_positions",
    "exhaustive_search",
    "exhaustive_search_drop",
    "max_eigenvalue",
    "per_user_power",
    "pgd",
    "pgd_drop",
    "projected_lbfgs",
    "projected_lbfgs_drop",
    "random_positions",
    "reduced_objective",
    "single_pinch_objective",
]

#: line-search step multipliers 2^4 ... 2^-20 (largest first)
_STEP_EXPONENTS = np.arange(4, -21, -1)
_ARMIJO_C1 = 1e-4
_MAX_GRID_POINTS = 2**31 - 1


# ----------------------------------------------------------------- options
@dataclasses.dataclass(frozen=True)
class PgdOptions(Options):
    """Options of :func:`pgd` (static for ``jit``)."""

    iterations: int = option(100, help="projected-gradient steps T (fixed count, lax.scan)")

    def validate(self):
        check_int("iterations", self.iterations, low=1, unit="steps")


@dataclasses.dataclass(frozen=True)
class LbfgsOptions(Options):
    """Options of :func:`projected_lbfgs` (PB Algorithm 1; static for ``jit``)."""

    starts: int = option(4, help="L-BFGS starts per drop: 'Center' (or x0) plus starts - 1 uniform random ones")
    iterations: int = option(30, help="L-BFGS iterations per start (fixed count, lax.scan)")
    memory: int = option(5, help="stored L-BFGS curvature pairs")

    def validate(self):
        check_int("starts", self.starts, low=1, unit="starts per drop")
        check_int("iterations", self.iterations, low=1, unit="iterations")
        check_int("memory", self.memory, low=1, unit="curvature pairs")


@dataclasses.dataclass(frozen=True)
class ExhaustiveOptions(Options):
    """Options of :func:`exhaustive_search` (static for ``jit``)."""

    grid: int = option(201, help="full-grid points per axis over [0, D]")
    refine: int = option(2, help="local grid refinements after the full grid")
    refine_points: int = option(21, help="points per axis of each local refinement grid")
    chunk: int = option(8192, help="objective evaluations per lax.scan step (bounds memory)")

    def validate(self):
        check_int("grid", self.grid, low=2, unit="points per axis")
        check_int("refine", self.refine, low=0, unit="refinements")
        check_int("refine_points", self.refine_points, low=2, unit="points per axis")
        check_int("chunk", self.chunk, low=1, unit="evaluations")


class PowerMinResult(NamedTuple):
    """Solution of one drop (drivers add the drops' leading dimensions to every field).

    Attributes:
      positions: ``(N, 1)`` pinch positions in ``[0, D]`` [m].
      power: total transmit power ``sum_k ||w_k||^2`` [W] (the reduced objective at ``positions``).
      beamformer: ``(N, K)`` complex closed-form beamformers (column k: user k's slot).
      history: ``(T + 1,)`` objective [W] after each iteration of the kept start
        (``T = 0`` for baselines; exhaustive search: after the grid and each refinement).
    """

    positions: jax.Array
    power: jax.Array
    beamformer: jax.Array
    history: jax.Array


# ----------------------------------------------------------------- checks
def _check_inputs(cfg: PassConfig, users, snr_target, correlation, *, X=None, where="power_min", batch=False):
    """Boundary checks (shapes always, values when concrete); returns the drops' batch shape."""
    check_single_pinch(cfg, where)
    shape = check_array("users", users, (cfg.num_users, 2), batch=batch, unit="m")
    check_users_in_area(cfg, users)
    drops = shape
    if X is not None:
        check_array("X (positions)", X, (cfg.num_waveguides, 1), batch=batch, low=0.0, high=cfg.length_x, unit="m")
    check_broadcastable("snr_target", snr_target, drops + (cfg.num_users,))
    check_nonnegative("snr_target (linear Gamma_k)", snr_target)
    check_range("snr_target (linear Gamma_k)", snr_target, "snr_target")
    check_correlation(correlation, cfg.num_users, cfg.num_waveguides)
    return drops


def _targets(snr_target, K, dtype):
    return jnp.broadcast_to(jnp.asarray(snr_target, dtype), (K,))


# ------------------------------------------------------------- eigenvalues
def max_eigenvalue(M):
    """Largest eigenvalue of real symmetric ``M (..., N, N)``; differentiable, NaN-free gradients.

    ``N = 1``: ``M[0, 0]``; ``N = 2``: ``(a + d)/2 + hypot((a - d)/2, b)``;
    ``N >= 3``: ``u^T M u`` with ``u`` = top eigenvector (``eigh``, ``stop_gradient``),
    whose gradient is the eigenvalue's (Hellmann-Feynman). Entries are first
    scaled by the trace so tiny channel gains (~1e-10) neither underflow nor
    lose precision.
    """
    M = jnp.asarray(M)
    N = M.shape[-1]
    if N == 1:
        return M[..., 0, 0]
    tr = jnp.trace(M, axis1=-2, axis2=-1)
    scale = jnp.where(tr > 0, tr, 1.0)
    S = M / scale[..., None, None]
    if N == 2:
        a, b, d = S[..., 0, 0], 0.5 * (S[..., 0, 1] + S[..., 1, 0]), S[..., 1, 1]
        h = 0.5 * (a - d)
        rad = h * h + b * b
        ok = rad > jnp.finfo(S.dtype).tiny
        root = jnp.where(ok, jnp.sqrt(jnp.where(ok, rad, 1.0)), 0.0)
        return scale * (0.5 * (a + d) + root)
    _, V = jnp.linalg.eigh(jax.lax.stop_gradient(S))
    u = V[..., :, -1]
    return scale * jnp.einsum("...n,...nm,...m->...", u, S, u)


def _principal_vector(M):
    """Unit top eigenvector of real symmetric ``M (K, N, N)``, made non-negative (Perron vector)."""
    _, V = jnp.linalg.eigh(M)
    u = V[..., :, -1]
    return u * jnp.where(jnp.sum(u, axis=-1, keepdims=True) < 0, -1.0, 1.0)


# ------------------------------------------------------------- objective
def _power_terms(cfg, X, users, gamma, correlation, sigma2):
    M = moment_matrices(cfg, X, users, correlation)
    lam = max_eigenvalue(M)
    return safe_div(sigma2 * gamma, lam)


def per_user_power(cfg: PassConfig, X, users, snr_target, correlation=None, *, noise_power=None):
    """Slot powers ``||w_k||^2 = sigma^2 Gamma_k / lmax(R_k(X))``, shape ``(K,)`` [W] (PB (17)).

    One drop; differentiable in ``X`` and ``cfg``'s traced fields.

    Args:
      cfg: scenario with ``num_pinches == 1`` (docs/model.md §6).
      X: ``(N, 1)`` positions [m]; users: ``(K, 2)`` [m].
      snr_target: ``Gamma`` (linear), scalar or ``(K,)``.
      correlation: link correlation (:mod:`jaxpass.blockage`); ``None`` = independent.
      noise_power: sigma^2 [W], default ``cfg.noise_power``.
    """
    _check_inputs(cfg, users, snr_target, correlation)
    X = jnp.asarray(X)
    check_array("X (positions)", X, (cfg.num_waveguides, 1), unit="m")
    dt = jnp.result_type(X.dtype, jnp.asarray(users).dtype, float)
    sigma2 = jnp.asarray(cfg.noise_power if noise_power is None else noise_power, dt)
    return _power_terms(cfg, X.astype(dt), users, _targets(snr_target, cfg.num_users, dt), correlation, sigma2)


def reduced_objective(cfg: PassConfig, X, users, snr_target, correlation=None, *, noise_power=None):
    """``P(X) = sum_k sigma^2 Gamma_k / lmax(R_k(X))`` [W], PB (18a); scalar, differentiable in ``X``.

    Same arguments as :func:`per_user_power`.
    """
    return jnp.sum(per_user_power(cfg, X, users, snr_target, correlation, noise_power=noise_power))


def single_pinch_objective(cfg: PassConfig, X, users, snr_target, *, noise_power=None):
    """PB (10) for ``N = 1``: ``sum_k sigma^2 Gamma_k r_k^2 e^{beta_b r_k} / (eta a^2 loss^2)`` [W].

    The convex objective of PB Lemma 1 written out (``lmax(R_k) = p_k |hbar_k|^2``);
    equals :func:`reduced_objective` when ``num_waveguides == 1``.
    """
    if cfg.num_waveguides != 1:
        raise ValueError(f"single_pinch_objective needs PassConfig.num_waveguides == 1, got {cfg.num_waveguides}")
    _check_inputs(cfg, users, snr_target, None)
    r = distances(cfg, X, users)[:, 0, 0]
    amp = link_amplitudes(cfg, X, users)[:, 0]
    gain = (amp * r) ** 2  # eta a^2 loss^2, independent of the user
    sigma2 = jnp.asarray(cfg.noise_power if noise_power is None else noise_power, r.dtype)
    gamma = _targets(snr_target, cfg.num_users, r.dtype)
    return jnp.sum(sigma2 * gamma * r**2 * jnp.exp(jnp.asarray(cfg.blockage_rate, r.dtype) * r) / gain)


def closed_form_beamformer_drop(cfg: PassConfig, X, users, snr_target, correlation=None, *, noise_power=None,
                                method: str = "auto"):
    """PB (17) on one drop (pure kernel): ``w_k = sqrt(sigma^2 Gamma_k / lmax(R_k)) u_max(R_k)``, ``(N, K)`` complex.

    ``u_max(R_k) = Phi_k u_max(M_k)`` with ``Phi_k = diag(conj(hbar_k) / |hbar_k|)``
    (``hbar = effective_channel``, row convention: ``E|hbar_k o gamma_k @ w|^2 = w^H R_k w``).
    Each user's expected SNR equals ``Gamma_k`` exactly; the power is minimal
    for these positions (docs/model.md §6-§7). Same arguments as :func:`per_user_power`;
    ``method`` is :func:`jaxpass.channel.effective_channel`'s.
    """
    power = per_user_power(cfg, X, users, snr_target, correlation, noise_power=noise_power)  # (K,)
    X = jnp.asarray(X, power.dtype)
    M = moment_matrices(cfg, X, users, correlation)
    u = _principal_vector(M)  # (K, N) real, unit norm
    hbar = effective_channel(cfg, X, users, method=method)  # (K, N)
    mag = jnp.abs(hbar)
    phase = jnp.where(mag > 0, jnp.conj(hbar) / jnp.where(mag > 0, mag, 1.0), 1.0)
    W = jnp.sqrt(power)[:, None] * phase * u.astype(hbar.dtype)  # (K, N)
    return W.T


# -------------------------------------------------------------- positions
def center_positions(cfg: PassConfig, dtype=None):
    """'Center' baseline and the paper's initial point: ``x_n = D/2``, shape ``(N, 1)`` [m]."""
    check_single_pinch(cfg, "center_positions")
    dtype = dtype or jnp.result_type(float)
    return jnp.full((cfg.num_waveguides, 1), 0.5, dtype) * jnp.asarray(cfg.length_x, dtype)


def random_positions(key, cfg: PassConfig, dtype=None):
    """'Random' baseline: ``x_n ~ U[0, D]`` i.i.d., shape ``(N, 1)`` [m]."""
    check_single_pinch(cfg, "random_positions")
    dtype = dtype or jnp.result_type(float)
    return jax.random.uniform(key, (cfg.num_waveguides, 1), dtype) * jnp.asarray(cfg.length_x, dtype)


class _Drop(NamedTuple):
    """One drop's data in the working dtype (``hi = D`` [m], ``gamma (K,)``, ``sigma2`` [W])."""

    cfg: PassConfig
    users: jax.Array
    gamma: jax.Array
    correlation: object
    sigma2: jax.Array
    hi: jax.Array

    @property
    def dtype(self):
        return self.users.dtype

    def power(self, x):
        """The reduced objective (PB (18a)) as a function of ``x (N,)`` [m]."""
        return jnp.sum(_power_terms(self.cfg, x[:, None], self.users, self.gamma, self.correlation, self.sigma2))


def _problem(cfg, users, snr_target, correlation, noise_power) -> _Drop:
    users = jnp.asarray(users)
    dt = jnp.result_type(users.dtype, float)
    users = users.astype(dt)
    sigma2 = jnp.asarray(cfg.noise_power if noise_power is None else noise_power, dt)
    return _Drop(cfg, users, _targets(snr_target, cfg.num_users, dt), correlation, sigma2,
                 jnp.asarray(cfg.length_x, dt))


def _result(drop: _Drop, x, history) -> PowerMinResult:
    X = x[:, None]
    W = closed_form_beamformer_drop(drop.cfg, X, drop.users, drop.gamma, drop.correlation, noise_power=drop.sigma2)
    return PowerMinResult(X, history[-1], W, history)


def evaluate_positions(cfg: PassConfig, X, users, snr_target, correlation=None, *, noise_power=None):
    """Closed-form beamformers and power at given positions, one drop (the 'Center'/'Random' baselines).

    Returns:
      :class:`PowerMinResult` with ``history = [power]``.
    """
    _check_inputs(cfg, users, snr_target, correlation, X=X, where="evaluate_positions")
    drop = _problem(cfg, users, snr_target, correlation, noise_power)
    x = jnp.asarray(X, drop.dtype)[:, 0]
    return _result(drop, x, drop.power(x)[None])


# ------------------------------------------------------------- line search
def _arc_search(f, x, fx, g, d, *, hi, base):
    """Armijo search along the projection arc ``clip(x + s d, 0, hi)``, all step sizes at once.

    Candidates ``s = base * 2^j``, j = 4 .. -20; keeps the lowest ``f`` among those
    with ``f(x(s)) <= f(x) + c1 g^T (x(s) - x)``; stays at ``x`` if none qualifies.
    """
    steps = base * jnp.asarray(2.0 ** _STEP_EXPONENTS, x.dtype)
    cand = jnp.clip(x[None, :] + steps[:, None] * d[None, :], 0.0, hi)
    fc = jax.vmap(f)(cand)
    decrease = jnp.sum((cand - x[None, :]) * g[None, :], axis=-1)
    ok = (fc <= fx + _ARMIJO_C1 * decrease) & jnp.isfinite(fc) & (decrease < 0)
    masked = jnp.where(ok, fc, jnp.inf)
    j = jnp.argmin(masked)
    found = jnp.any(ok)
    return jnp.where(found, cand[j], x), jnp.where(found, fc[j], fx), found


def _free_mask(x, g, hi):
    """Variables not held at a bound by the gradient (box active set)."""
    at_lo = (x <= 0.0) & (g > 0)
    at_hi = (x >= hi) & (g < 0)
    return ~(at_lo | at_hi)


def _normalised(power, x0):
    scale = jax.lax.stop_gradient(power(x0))
    scale = jnp.where(scale > 0, scale, 1.0)
    return (lambda x: power(x) / scale), scale


def _initial(cfg, x0, dt):
    if x0 is None:
        return center_positions(cfg, dt)[:, 0]
    x0 = jnp.asarray(x0)
    check_array("x0", x0, (cfg.num_waveguides, 1), unit="m")
    return jnp.clip(x0.astype(dt)[:, 0], 0.0, jnp.asarray(cfg.length_x, dt))


# ------------------------------------------------------------ batching
def _flat(x, batch, core):
    """``x`` broadcast to ``batch + core`` and flattened to ``(B,) + core`` (``None`` stays ``None``)."""
    if x is None:
        return None
    x = jnp.asarray(x)
    return jnp.broadcast_to(x, tuple(batch) + tuple(core)).reshape((-1,) + tuple(core))


def _unflat(tree, batch):
    """Undo :func:`_flat` on every leaf of a batched result."""
    return jax.tree.map(lambda a: a.reshape(tuple(batch) + a.shape[1:]), tree)


def _targets_flat(snr_target, batch, K):
    s = jnp.asarray(snr_target)
    return _flat(s[..., None] if s.ndim == 0 else s, batch, (K,))


def _noise_flat(noise_power, batch):
    if noise_power is None:
        return None
    check_nonnegative("noise_power [W]", noise_power)
    return _flat(noise_power, batch, ())


# ---------------------------------------------------------------------- PGD
def pgd_drop(cfg: PassConfig, users, snr_target, options: PgdOptions | None = None, *, x0=None, correlation=None,
             noise_power=None) -> PowerMinResult:
    """Projected gradient descent on PB (18) for one drop (pure kernel; PB §III, global optimum for ``N = 1``).

    ``x <- clip(x - s grad P(x), 0, D)`` with ``s`` from an Armijo search along the
    projection arc (25 trial steps around ``0.1 D / max|grad|``, evaluated at once).
    ``lax.scan`` with a fixed count; the objective is normalised by its start value.

    Args:
      cfg: scenario with ``num_pinches == 1`` (any N; PB uses it for N = 1); may be traced.
      users: ``(K, 2)`` [m]; snr_target: linear ``Gamma``, scalar or ``(K,)``.
      options: :class:`PgdOptions` (default ``PgdOptions()``).
      x0: ``(N, 1)`` start [m] (default 'Center').
      correlation: link correlation; noise_power: sigma^2 [W] (default ``cfg.noise_power``).

    Returns:
      :class:`PowerMinResult` (history ``(T + 1,)`` [W]).
    """
    options = PgdOptions.resolve(options)
    _check_inputs(cfg, users, snr_target, correlation, where="pgd")
    drop = _problem(cfg, users, snr_target, correlation, noise_power)
    hi, dt = drop.hi, drop.dtype
    x = _initial(cfg, x0, dt)
    f, scale = _normalised(drop.power, x)
    vg = jax.value_and_grad(f)

    def step(carry, _):
        x, fx = carry
        _, g = vg(x)
        d = -g * _free_mask(x, g, hi)
        base = 0.1 * hi / jnp.maximum(jnp.max(jnp.abs(d)), jnp.finfo(dt).tiny)
        x, fx, _ = _arc_search(f, x, fx, g, d, hi=hi, base=base)
        return (x, fx), fx

    f0 = f(x)
    (x, _), trace = jax.lax.scan(step, (x, f0), None, length=options.iterations)
    history = jnp.concatenate([f0[None], trace]) * scale
    return _result(drop, x, history)


@functools.partial(jax.jit, static_argnames="options")
def _pgd_batch(cfg, users, snr_target, *, x0, correlation, noise_power, options):
    one = lambda u, s, x, p: pgd_drop(cfg, u, s, options, x0=x, correlation=correlation, noise_power=p)  # noqa: E731
    return jax.vmap(one)(users, snr_target, x0, noise_power)


def pgd(cfg: PassConfig, users, snr_target, options: PgdOptions | None = None, *, x0=None, correlation=None,
        noise_power=None, mesh=None, **changes) -> PowerMinResult:
    """Projected gradient descent (PB §III) on one drop or a batch of drops: the driver of :func:`pgd_drop`.

    Args:
      cfg: scenario with ``num_pinches == 1``.
      users: ``(..., K, 2)`` [m], any leading drop dimensions (none for one drop).
      snr_target: linear ``Gamma``, broadcastable to ``(..., K)``.
      options: :class:`PgdOptions`; ``changes`` (e.g. ``iterations=40``) are applied to it.
      x0: start ``(N, 1)`` or ``(..., N, 1)`` [m] (default 'Center').
      correlation: link correlation shared by all drops; noise_power: sigma^2 [W] (scalar or per drop).
      mesh: ``None`` or a mesh from :func:`jaxpass.parallel.drops_mesh` (drops data-parallel, same results).

    Returns:
      :class:`PowerMinResult` with the drops' leading dimensions.
    """
    options = PgdOptions.resolve(options, **changes)
    batch = _check_inputs(cfg, users, snr_target, correlation, where="pgd", batch=True)
    if x0 is not None:
        check_array("x0", x0, (cfg.num_waveguides, 1), batch=True, unit="m")
    K, N = cfg.num_users, cfg.num_waveguides
    out = parallel.batch_call(_pgd_batch, cfg, _flat(users, batch, (K, 2)), _targets_flat(snr_target, batch, K),
                              x0=_flat(x0, batch, (N, 1)), correlation=correlation,
                              noise_power=_noise_flat(noise_power, batch), options=options,
                              mesh=mesh, in_axes=(None, 0, 0), batched_kwargs=("x0", "noise_power"))
    return _unflat(out, batch)


# ------------------------------------------------------------ projected L-BFGS
def _two_loop(g, S, Y, valid, free, gamma0):
    """L-BFGS direction ``-H g`` on the free variables (newest pair last in ``S``, ``Y``)."""
    fm = free.astype(g.dtype)
    q = g * fm
    Sf, Yf = S * fm, Y * fm
    sy = jnp.sum(Sf * Yf, axis=-1)
    use = valid & (sy > 0)
    rho = jnp.where(use, 1.0 / jnp.where(use, sy, 1.0), 0.0)

    def backward(q, pair):  # newest pair first
        s, y, rh = pair
        alpha = rh * jnp.dot(s, q)
        return q - alpha * y, alpha

    def forward(r, pair):  # oldest pair first
        s, y, rh, alpha = pair
        return r + s * (alpha - rh * jnp.dot(y, r)), None

    # the two loops of the L-BFGS recursion as scans over the memory (no unrolling in m)
    q, alphas = jax.lax.scan(backward, q, (Sf, Yf, rho), reverse=True)
    r, _ = jax.lax.scan(forward, gamma0 * q, (Sf, Yf, rho, alphas))
    return -r * fm


def _lbfgs_single(f, x0, hi, options: LbfgsOptions):
    """One projected L-BFGS run from ``x0 (N,)``; returns ``(x, f history (T+1,))``."""
    N = x0.shape[0]
    dt = x0.dtype
    memory = options.memory
    vg = jax.value_and_grad(f)
    tiny = jnp.finfo(dt).tiny
    f0, g0 = vg(x0)
    state = dict(x=x0, f=f0, g=g0, S=jnp.zeros((memory, N), dt), Y=jnp.zeros((memory, N), dt),
                 valid=jnp.zeros((memory,), bool), gamma=0.1 * hi / jnp.maximum(jnp.max(jnp.abs(g0)), tiny))

    def step(st, _):
        x, fx, g = st["x"], st["f"], st["g"]
        free = _free_mask(x, g, hi)
        d = _two_loop(g, st["S"], st["Y"], st["valid"], free, st["gamma"])
        gd = jnp.dot(g, d)
        fallback = -(st["gamma"] * g) * free.astype(dt)
        descent = gd < -1e-12 * jnp.linalg.norm(g) * jnp.linalg.norm(d)
        d = jnp.where(descent, d, fallback)
        x_new, f_new, found = _arc_search(f, x, fx, g, d, hi=hi, base=jnp.asarray(1.0, dt))
        _, g_new = vg(x_new)
        s, y = x_new - x, g_new - g
        sy, yy = jnp.dot(s, y), jnp.dot(y, y)
        accept = found & (sy > 1e-10 * jnp.linalg.norm(s) * jnp.linalg.norm(y)) & (yy > tiny)
        shift = lambda A, v: jnp.concatenate([A[1:], v[None]], axis=0)  # noqa: E731
        S = jnp.where(accept, shift(st["S"], s), st["S"])
        Y = jnp.where(accept, shift(st["Y"], y), st["Y"])
        valid = jnp.where(accept, shift(st["valid"], jnp.asarray(True)), st["valid"])
        gamma = jnp.where(accept, sy / jnp.where(accept, yy, 1.0), st["gamma"])
        # a failed search (stationary point or a bad model): forget the memory
        valid = jnp.where(found, valid, jnp.zeros_like(valid))
        new = dict(x=x_new, f=f_new, g=g_new, S=S, Y=Y, valid=valid, gamma=gamma)
        return new, f_new

    st, trace = jax.lax.scan(step, state, None, length=options.iterations)
    return st["x"], jnp.concatenate([f0[None], trace])


def _check_lbfgs_key(key, options: LbfgsOptions):
    if options.starts > 1 and key is None:
        raise ValueError(f"projected_lbfgs: starts={options.starts} > 1 needs a jax.random key for the random starts "
                         "(key=jax.random.key(0)), or starts=1")


def projected_lbfgs_drop(key, cfg: PassConfig, users, snr_target, options: LbfgsOptions | None = None, *, x0=None,
                         correlation=None, noise_power=None) -> PowerMinResult:
    """PB Algorithm 1 on one drop (pure kernel): projected L-BFGS on the positions, closed-form beamformers.

    Box-constrained (``0 <= x_n <= D``) active-set L-BFGS with an Armijo search
    along the projection arc (module docstring explains why not ``optax.lbfgs``
    plus a projection). Runs ``options.starts`` starts in one vmapped batch —
    start 0 is ``x0`` (default 'Center', the paper's initial point), the others
    uniform in the box from ``key`` — and keeps the lowest final power.

    Args:
      key: ``jax.random`` key for the random starts (``None`` allowed when ``starts == 1``).
      cfg: scenario with ``num_pinches == 1``; may be traced.
      users: ``(K, 2)`` [m]; snr_target: linear ``Gamma``, scalar or ``(K,)``.
      options: :class:`LbfgsOptions` (default ``LbfgsOptions()``).
      x0: ``(N, 1)`` first start [m] (default 'Center').
      correlation: link correlation; noise_power: sigma^2 [W] (default ``cfg.noise_power``).

    Returns:
      :class:`PowerMinResult`; ``history (T + 1,)`` is the kept start's power [W] per iteration.
    """
    options = LbfgsOptions.resolve(options)
    _check_inputs(cfg, users, snr_target, correlation, where="projected_lbfgs")
    _check_lbfgs_key(key, options)
    drop = _problem(cfg, users, snr_target, correlation, noise_power)
    first = _initial(cfg, x0, drop.dtype)
    if options.starts > 1:
        rand = jax.random.uniform(key, (options.starts - 1, cfg.num_waveguides), drop.dtype) * drop.hi
        init = jnp.concatenate([first[None], rand], axis=0)
    else:
        init = first[None]
    f, scale = _normalised(drop.power, first)
    xs, hists = jax.vmap(lambda x: _lbfgs_single(f, x, drop.hi, options))(init)
    best = jnp.argmin(hists[:, -1])
    return _result(drop, xs[best], hists[best] * scale)


@functools.partial(jax.jit, static_argnames="options")
def _lbfgs_batch(keys, cfg, users, snr_target, *, x0, correlation, noise_power, options):
    def one(k, u, s, x, p):
        return projected_lbfgs_drop(k, cfg, u, s, options, x0=x, correlation=correlation, noise_power=p)

    return jax.vmap(one)(keys, users, snr_target, x0, noise_power)


def projected_lbfgs(cfg: PassConfig, users, snr_target, options: LbfgsOptions | None = None, *, key=None, x0=None,
                    correlation=None, noise_power=None, mesh=None, **changes) -> PowerMinResult:
    """PB Algorithm 1 on one drop or a batch of drops: the driver of :func:`projected_lbfgs_drop`.

    Args:
      cfg: scenario with ``num_pinches == 1``.
      users: ``(..., K, 2)`` [m], any leading drop dimensions (none for one drop).
      snr_target: linear ``Gamma``, broadcastable to ``(..., K)``.
      options: :class:`LbfgsOptions`; ``changes`` (e.g. ``starts=4, iterations=30``) are applied to it.
      key: random starts (required when ``starts > 1``): one key per drop (shape ``(...)``) or a
        single key, used as is for one drop and split into ``jax.random.split(key, B)`` for ``B``
        drops (flattened in C order).
      x0: first start ``(N, 1)`` or ``(..., N, 1)`` [m] (default 'Center').
      correlation: link correlation shared by all drops; noise_power: sigma^2 [W] (scalar or per drop).
      mesh: ``None`` or a mesh from :func:`jaxpass.parallel.drops_mesh` (drops data-parallel, same results).

    Returns:
      :class:`PowerMinResult` with the drops' leading dimensions.
    """
    options = LbfgsOptions.resolve(options, **changes)
    batch = _check_inputs(cfg, users, snr_target, correlation, where="projected_lbfgs", batch=True)
    _check_lbfgs_key(key, options)
    if x0 is not None:
        check_array("x0", x0, (cfg.num_waveguides, 1), batch=True, unit="m")
    K, N = cfg.num_users, cfg.num_waveguides
    keys = None if key is None else _flat(drop_keys(key, batch), batch, ())
    out = parallel.batch_call(_lbfgs_batch, keys, cfg, _flat(users, batch, (K, 2)),
                              _targets_flat(snr_target, batch, K), x0=_flat(x0, batch, (N, 1)),
                              correlation=correlation, noise_power=_noise_flat(noise_power, batch), options=options,
                              mesh=mesh, in_axes=(None if keys is None else 0, None, 0, 0),
                              batched_kwargs=("x0", "noise_power"))
    return _unflat(out, batch)


# --------------------------------------------------------- exhaustive search
def _grid_min(power, lo, step, points: int, chunk: int):
    """Minimum of ``power`` over the grid ``lo + step * i``, ``i in {0..points-1}^N``, in chunks."""
    N = lo.shape[0]
    total = points**N
    chunk = int(min(chunk, total))
    n_chunks = -(-total // chunk)
    radix = jnp.asarray([points ** (N - 1 - i) for i in range(N)], jnp.int32)
    dt = lo.dtype

    def body(carry, c):
        best_f, best_x = carry
        idx = c * chunk + jnp.arange(chunk, dtype=jnp.int32)
        digits = (idx[:, None] // radix[None, :]) % points
        xs = lo[None, :] + step[None, :] * digits.astype(dt)
        fs = jax.vmap(power)(xs)
        fs = jnp.where(idx < total, fs, jnp.inf)
        j = jnp.argmin(fs)
        better = fs[j] < best_f
        return (jnp.where(better, fs[j], best_f), jnp.where(better, xs[j], best_x)), None

    init = (jnp.asarray(jnp.inf, dt), lo)
    (best_f, best_x), _ = jax.lax.scan(body, init, jnp.arange(n_chunks, dtype=jnp.int32))
    return best_x, best_f


def _check_grid_size(cfg: PassConfig, options: ExhaustiveOptions):
    N = cfg.num_waveguides
    for name in ("grid", "refine_points"):
        points = getattr(options, name)
        if points**N > _MAX_GRID_POINTS:
            raise ValueError(f"exhaustive_search: {name}**N = {points}**{N} points is too many (limit 2**31 - 1 "
                             "points); use a coarser grid or projected_lbfgs for large N")


def exhaustive_search_drop(cfg: PassConfig, users, snr_target, options: ExhaustiveOptions | None = None, *,
                           correlation=None, noise_power=None) -> PowerMinResult:
    """Global optimum of PB (18) on one drop (pure kernel) by grid search over ``[0, D]^N`` plus local refinement.

    Stage 0 evaluates the reduced objective on a full grid of ``grid`` points per
    axis (spacing ``h = D / (grid - 1)``); each of ``refine`` stages then searches
    a ``refine_points^N`` grid over ``best +- 2 h`` (clipped to the box) and sets
    ``h <- 4 h / (refine_points - 1)``. The objective is smooth (distances only,
    docs/model.md §7), so the final error is ``O(h_final^2)``; the refinements can only
    lower the value found by the full grid. Work: ``grid^N + refine * refine_points^N``
    evaluations, evaluated ``chunk`` at a time (``lax.scan``) to bound memory.

    Args:
      cfg: scenario with ``num_pinches == 1`` (small N); may be traced.
      users: ``(K, 2)`` [m]; snr_target: linear ``Gamma``, scalar or ``(K,)``.
      options: :class:`ExhaustiveOptions`.
      correlation: link correlation; noise_power: sigma^2 [W].

    Returns:
      :class:`PowerMinResult`; ``history`` is the best power [W] after the grid and each refinement.
    """
    options = ExhaustiveOptions.resolve(options)
    _check_inputs(cfg, users, snr_target, correlation, where="exhaustive_search")
    _check_grid_size(cfg, options)
    N = cfg.num_waveguides
    drop = _problem(cfg, users, snr_target, correlation, noise_power)
    hi, dt = drop.hi, drop.dtype
    h = hi / (options.grid - 1)
    x, fx = _grid_min(drop.power, jnp.zeros((N,), dt), jnp.full((N,), h, dt), options.grid, options.chunk)

    def refine(carry, _):  # zoom on a +-2 h box around the incumbent (a scan: no unrolling in `refine`)
        x, fx, h = carry
        lo = jnp.clip(x - 2.0 * h, 0.0, hi)
        top = jnp.clip(x + 2.0 * h, 0.0, hi)
        step = (top - lo) / (options.refine_points - 1)
        xr, fr = _grid_min(drop.power, lo, step, options.refine_points, options.chunk)
        better = fr < fx
        x, fx = jnp.where(better, xr, x), jnp.where(better, fr, fx)
        return (x, fx, 4.0 * h / (options.refine_points - 1)), fx

    (x, _, _), hist = jax.lax.scan(refine, (x, fx, h), None, length=options.refine)
    return _result(drop, x, jnp.concatenate([fx[None], hist]))


@functools.partial(jax.jit, static_argnames="options")
def _exhaustive_batch(cfg, users, snr_target, *, correlation, noise_power, options):
    one = lambda u, s, p: exhaustive_search_drop(cfg, u, s, options, correlation=correlation, noise_power=p)  # noqa: E731
    return jax.vmap(one)(users, snr_target, noise_power)


def exhaustive_search(cfg: PassConfig, users, snr_target, options: ExhaustiveOptions | None = None, *,
                      correlation=None, noise_power=None, mesh=None, **changes) -> PowerMinResult:
    """Exhaustive grid search on one drop or a batch of drops: the driver of :func:`exhaustive_search_drop`.

    Args:
      cfg: scenario with ``num_pinches == 1``.
      users: ``(..., K, 2)`` [m]; snr_target: linear ``Gamma``, broadcastable to ``(..., K)``.
      options: :class:`ExhaustiveOptions`; ``changes`` (e.g. ``grid=101``) are applied to it.
      correlation: link correlation shared by all drops; noise_power: sigma^2 [W] (scalar or per drop).
      mesh: ``None`` or a mesh from :func:`jaxpass.parallel.drops_mesh` (drops data-parallel, same results).

    Returns:
      :class:`PowerMinResult` with the drops' leading dimensions.
    """
    options = ExhaustiveOptions.resolve(options, **changes)
    batch = _check_inputs(cfg, users, snr_target, correlation, where="exhaustive_search", batch=True)
    _check_grid_size(cfg, options)
    K = cfg.num_users
    out = parallel.batch_call(_exhaustive_batch, cfg, _flat(users, batch, (K, 2)), _targets_flat(snr_target, batch, K),
                              correlation=correlation, noise_power=_noise_flat(noise_power, batch), options=options,
                              mesh=mesh, in_axes=(None, 0, 0), batched_kwargs=("noise_power",))
    return _unflat(out, batch)


# ------------------------------------------------------ closed-form driver
@functools.partial(jax.jit, static_argnames="method")
def _beamformer_batch(cfg, X, users, snr_target, *, correlation, noise_power, method):
    def one(x, u, s, p):
        return closed_form_beamformer_drop(cfg, x, u, s, correlation, noise_power=p, method=method)

    return jax.vmap(one)(X, users, snr_target, noise_power)


def closed_form_beamformer(cfg: PassConfig, X, users, snr_target, correlation=None, *, noise_power=None,
                           method: str = "auto"):
    """PB (17) closed-form beamformers for one drop or a batch: the driver of :func:`closed_form_beamformer_drop`.

    Args:
      cfg: scenario with ``num_pinches == 1``.
      X: ``(N, 1)`` or ``(..., N, 1)`` positions in ``[0, D]`` [m].
      users: ``(..., K, 2)`` [m]; snr_target: linear ``Gamma``, broadcastable to ``(..., K)``.
      correlation: link correlation shared by all drops; noise_power: sigma^2 [W] (scalar or per drop).
      method: :func:`jaxpass.channel.effective_channel`'s phase method (static).

    Returns:
      ``(..., N, K)`` complex beamformers (column k: user k's slot); ``||w_k||^2`` [W].
    """
    batch = _check_inputs(cfg, users, snr_target, correlation, X=None, where="closed_form_beamformer", batch=True)
    xb = check_array("X (positions)", X, (cfg.num_waveguides, 1), batch=True, low=0.0, high=cfg.length_x, unit="m")
    batch = tuple(np.broadcast_shapes(batch, xb))
    K, N = cfg.num_users, cfg.num_waveguides
    out = _beamformer_batch(cfg, _flat(X, batch, (N, 1)), _flat(users, batch, (K, 2)),
                            _targets_flat(snr_target, batch, K), correlation=correlation,
                            noise_power=_noise_flat(noise_power, batch), method=method)
    return _unflat(out, batch)

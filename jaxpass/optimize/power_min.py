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

Solvers (all on ONE drop; callers batch with ``jax.vmap`` and compile with ``jaxpass.jit``):

- :func:`pgd`: projected gradient descent with an Armijo search along the
  projection arc. For ``N = 1`` the objective ``sum_k sigma^2 Gamma_k r_k^2
  e^{beta_b r_k} / eta`` is convex (PB Lemma 1), so PGD reaches the global
  optimum (PB §III).
- :func:`projected_lbfgs`: PB Algorithm 1, written here rather than taken from
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
- Baselines: :func:`center_positions` ('Center', ``x_n = D/2``),
  :func:`random_positions` ('Random'), both evaluated with the closed-form
  beamformers by :func:`evaluate_positions`, and :func:`exhaustive_search`
  (a full grid over ``[0, D]^N`` plus local grid refinements: the global
  optimum for small N, up to the final grid spacing).

Correlated links (PB eq. (19), Lemma 2): every function takes ``correlation``
(``None`` = independent links; scalar, ``(N, N)`` or ``(K, N, N)``
coefficients), see :mod:`jaxpass.blockage`. With ``rho >= 0`` every entry of
``M_k`` can only grow, so ``lmax`` grows and the power drops (Perron-Frobenius).

Units: positions [m], powers [W], SNR targets linear (``Gamma``; use
``jaxpass.units.db_to_linear``), ``sigma^2 = cfg.noise_power`` [W].
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpass._checks import check_finite, check_positive_int, check_shape, is_tracer
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
    "PowerMinResult",
    "center_positions",
    "channel_covariance",
    "closed_form_beamformer",
    "evaluate_positions",
    "exhaustive_search",
    "max_eigenvalue",
    "per_user_power",
    "pgd",
    "projected_lbfgs",
    "random_positions",
    "reduced_objective",
    "single_pinch_objective",
]

#: line-search step multipliers 2^4 ... 2^-20 (largest first)
_STEP_EXPONENTS = np.arange(4, -21, -1)
_ARMIJO_C1 = 1e-4


class PowerMinResult(NamedTuple):
    """Solution of one drop.

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
def _check_inputs(cfg: PassConfig, users, snr_target, correlation, X=None, where="power_min"):
    check_single_pinch(cfg, where)
    if not is_tracer(users):
        check_shape("users", users, (cfg.num_users, 2))
        check_finite("users", users)
    if X is not None and not is_tracer(X):
        check_shape("X (positions)", X, (cfg.num_waveguides, 1))
        check_finite("X (positions)", X)
        arr = np.asarray(X)
        D = float(np.asarray(cfg.length_x))
        if np.any(arr < 0) or np.any(arr > D):
            raise ValueError(f"X (positions) must lie in [0, D={D:g}] m, got range [{arr.min():.6g}, {arr.max():.6g}]")
    if not is_tracer(snr_target):
        arr = np.asarray(snr_target)
        if arr.ndim not in (0, 1) or (arr.ndim == 1 and arr.shape != (cfg.num_users,)):
            raise ValueError(f"snr_target must be a scalar or have shape ({cfg.num_users},), got {arr.shape}")
        check_finite("snr_target", arr)
        if np.any(arr < 0):
            raise ValueError(f"snr_target (linear Gamma_k) must be >= 0, got min {arr.min():.6g}")
    check_correlation(correlation, cfg.num_users, cfg.num_waveguides)


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

    Args:
      cfg: scenario with ``num_pinches == 1`` (docs/model.md §6).
      X: ``(N, 1)`` positions [m]; users: ``(K, 2)`` [m].
      snr_target: ``Gamma`` (linear), scalar or ``(K,)``.
      correlation: link correlation (:mod:`jaxpass.blockage`); ``None`` = independent.
      noise_power: sigma^2 [W], default ``cfg.noise_power``.
    """
    _check_inputs(cfg, users, snr_target, correlation)
    X = jnp.asarray(X)
    if not is_tracer(X):
        check_shape("X (positions)", X, (cfg.num_waveguides, 1))
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


def closed_form_beamformer(cfg: PassConfig, X, users, snr_target, correlation=None, *, noise_power=None,
                           method: str = "auto"):
    """PB (17): ``w_k = sqrt(sigma^2 Gamma_k / lmax(R_k)) u_max(R_k)``, shape ``(N, K)`` complex.

    ``u_max(R_k) = Phi_k u_max(M_k)`` with ``Phi_k = diag(conj(hbar_k) / |hbar_k|)``
    (``hbar = effective_channel``, row convention: ``E|hbar_k o gamma_k @ w|^2 = w^H R_k w``).
    Each user's expected SNR equals ``Gamma_k`` exactly; the power is minimal
    for these positions. Same arguments as :func:`per_user_power`.
    """
    _check_inputs(cfg, users, snr_target, correlation, X=None)
    X = jnp.asarray(X)
    if not is_tracer(X):
        check_shape("X (positions)", X, (cfg.num_waveguides, 1))
    power = per_user_power(cfg, X, users, snr_target, correlation, noise_power=noise_power)  # (K,)
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


def _problem(cfg, users, snr_target, correlation, noise_power):
    """The reduced objective as a function of ``x (N,)`` plus the box bounds and dtype."""
    users = jnp.asarray(users)
    dt = jnp.result_type(users.dtype, float)
    users = users.astype(dt)
    sigma2 = jnp.asarray(cfg.noise_power if noise_power is None else noise_power, dt)
    gamma = _targets(snr_target, cfg.num_users, dt)

    def power(x):
        return jnp.sum(_power_terms(cfg, x[:, None], users, gamma, correlation, sigma2))

    return power, jnp.asarray(cfg.length_x, dt), dt


def _result(cfg, x, users, snr_target, correlation, noise_power, history):
    X = x[:, None]
    W = closed_form_beamformer(cfg, X, users, snr_target, correlation, noise_power=noise_power)
    return PowerMinResult(X, history[-1], W, history)


def evaluate_positions(cfg: PassConfig, X, users, snr_target, correlation=None, *, noise_power=None):
    """Closed-form beamformers and power at given positions (the 'Center'/'Random' baselines).

    Returns:
      :class:`PowerMinResult` with ``history = [power]``.
    """
    _check_inputs(cfg, users, snr_target, correlation, X=X, where="evaluate_positions")
    power, _, dt = _problem(cfg, users, snr_target, correlation, noise_power)
    x = jnp.asarray(X, dt)[:, 0]
    return _result(cfg, x, users, snr_target, correlation, noise_power, power(x)[None])


# ------------------------------------------------------------- line search
def _arc_search(f, x, fx, g, d, hi, base):
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


# ---------------------------------------------------------------------- PGD
def _check_solver_args(iterations=None, starts=None, memory=None):
    if iterations is not None:
        check_positive_int("iterations", iterations)
    if starts is not None:
        check_positive_int("starts", starts)
    if memory is not None:
        check_positive_int("memory", memory)


def _initial(cfg, x0, dt):
    if x0 is None:
        return center_positions(cfg, dt)[:, 0]
    x0 = jnp.asarray(x0)
    if not is_tracer(x0):
        check_shape("x0", x0, (cfg.num_waveguides, 1))
        check_finite("x0", x0)
    return jnp.clip(x0.astype(dt)[:, 0], 0.0, jnp.asarray(cfg.length_x, dt))


def pgd(cfg: PassConfig, users, snr_target, *, x0=None, iterations: int = 100, correlation=None,
        noise_power=None) -> PowerMinResult:
    """Projected gradient descent on the reduced objective (PB §III; global optimum for ``N = 1``).

    ``x <- clip(x - s grad P(x), 0, D)`` with ``s`` from an Armijo search along the
    projection arc (25 trial steps around ``0.1 D / max|grad|``, evaluated at once).
    ``lax.scan`` with a fixed count; the objective is normalised by its start value.

    Args:
      cfg: scenario with ``num_pinches == 1`` (any N; PB uses it for N = 1).
      users: ``(K, 2)`` [m]; snr_target: linear ``Gamma``, scalar or ``(K,)``.
      x0: ``(N, 1)`` start (default 'Center').
      iterations: number of PGD steps T.
      correlation: link correlation; noise_power: sigma^2 [W] (default ``cfg.noise_power``).

    Returns:
      :class:`PowerMinResult` (history ``(T + 1,)``).
    """
    _check_inputs(cfg, users, snr_target, correlation, where="pgd")
    _check_solver_args(iterations=iterations)
    power, hi, dt = _problem(cfg, users, snr_target, correlation, noise_power)
    x = _initial(cfg, x0, dt)
    f, scale = _normalised(power, x)
    vg = jax.value_and_grad(f)

    def step(carry, _):
        x, fx = carry
        _, g = vg(x)
        d = -g * _free_mask(x, g, hi)
        base = 0.1 * hi / jnp.maximum(jnp.max(jnp.abs(d)), jnp.finfo(dt).tiny)
        x, fx, _ = _arc_search(f, x, fx, g, d, hi, base)
        return (x, fx), fx

    f0 = f(x)
    (x, _), trace = jax.lax.scan(step, (x, f0), None, length=iterations)
    history = jnp.concatenate([f0[None], trace]) * scale
    return _result(cfg, x, users, snr_target, correlation, noise_power, history)


# ------------------------------------------------------------ projected L-BFGS
def _two_loop(g, S, Y, valid, free, gamma0):
    """L-BFGS direction ``-H g`` on the free variables (newest pair last in ``S``, ``Y``)."""
    m = S.shape[0]
    fm = free.astype(g.dtype)
    q = g * fm
    Sf, Yf = S * fm, Y * fm
    sy = jnp.sum(Sf * Yf, axis=-1)
    use = valid & (sy > 0)
    rho = jnp.where(use, 1.0 / jnp.where(use, sy, 1.0), 0.0)
    alphas = [None] * m
    for i in reversed(range(m)):
        alphas[i] = rho[i] * jnp.dot(Sf[i], q)
        q = q - alphas[i] * Yf[i]
    r = gamma0 * q
    for i in range(m):
        beta = rho[i] * jnp.dot(Yf[i], r)
        r = r + Sf[i] * (alphas[i] - beta)
    return -r * fm


def _lbfgs_single(f, x0, hi, iterations, memory):
    """One projected L-BFGS run from ``x0 (N,)``; returns ``(x, f history (T+1,))``."""
    N = x0.shape[0]
    dt = x0.dtype
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
        x_new, f_new, found = _arc_search(f, x, fx, g, d, hi, jnp.asarray(1.0, dt))
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

    st, trace = jax.lax.scan(step, state, None, length=iterations)
    return st["x"], jnp.concatenate([f0[None], trace])


def projected_lbfgs(cfg: PassConfig, users, snr_target, *, key=None, starts: int = 4, iterations: int = 30,
                    memory: int = 5, x0=None, correlation=None, noise_power=None) -> PowerMinResult:
    """PB Algorithm 1: projected L-BFGS on the positions with the closed-form beamformers.

    Box-constrained (``0 <= x_n <= D``) active-set L-BFGS with an Armijo search
    along the projection arc (module docstring explains why not ``optax.lbfgs``
    plus a projection). Runs ``starts`` starts in one vmapped batch — start 0 is
    ``x0`` (default 'Center', the paper's initial point), the others uniform in
    the box from ``key`` — and keeps the lowest final power.

    Args:
      cfg: scenario with ``num_pinches == 1``.
      users: ``(K, 2)`` [m]; snr_target: linear ``Gamma``, scalar or ``(K,)``.
      key: ``jax.random`` key for the random starts (required when ``starts > 1``).
      starts: number of starts S.
      iterations: L-BFGS iterations T (``lax.scan``, fixed count).
      memory: number of stored curvature pairs m.
      x0: ``(N, 1)`` first start (default 'Center').
      correlation: link correlation; noise_power: sigma^2 [W].

    Returns:
      :class:`PowerMinResult`; ``history (T + 1,)`` is the kept start's power [W] per iteration.
    """
    _check_inputs(cfg, users, snr_target, correlation, where="projected_lbfgs")
    _check_solver_args(iterations=iterations, starts=starts, memory=memory)
    if starts > 1 and key is None:
        raise ValueError(f"projected_lbfgs: starts={starts} > 1 needs a jax.random key for the random starts")
    power, hi, dt = _problem(cfg, users, snr_target, correlation, noise_power)
    first = _initial(cfg, x0, dt)
    if starts > 1:
        rand = jax.random.uniform(key, (starts - 1, cfg.num_waveguides), dt) * hi
        init = jnp.concatenate([first[None], rand], axis=0)
    else:
        init = first[None]
    f, scale = _normalised(power, first)
    xs, hists = jax.vmap(lambda x: _lbfgs_single(f, x, hi, iterations, memory))(init)
    best = jnp.argmin(hists[:, -1])
    return _result(cfg, xs[best], users, snr_target, correlation, noise_power, hists[best] * scale)


# --------------------------------------------------------- exhaustive search
def _grid_min(power, lo, step, points: int, N: int, chunk: int):
    """Minimum of ``power`` over the grid ``lo + step * i``, ``i in {0..points-1}^N``, in chunks."""
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


def exhaustive_search(cfg: PassConfig, users, snr_target, *, grid: int = 201, refine: int = 2,
                      refine_points: int = 21, correlation=None, noise_power=None,
                      chunk: int = 8192) -> PowerMinResult:
    """Global optimum by exhaustive grid search over ``[0, D]^N`` (small N), with local refinement.

    Stage 0 evaluates the reduced objective on a full grid of ``grid`` points per
    axis (spacing ``h = D / (grid - 1)``); each of ``refine`` stages then searches
    a ``refine_points^N`` grid over ``best +- 2 h`` (clipped to the box) and sets
    ``h <- 4 h / (refine_points - 1)``. The objective is smooth (distances only,
    docs/model.md §7), so the final error is ``O(h_final^2)``; the refinements can only
    lower the value found by the full grid. Work: ``grid^N + refine * refine_points^N``
    evaluations, evaluated ``chunk`` at a time (``lax.scan``) to bound memory.

    Returns:
      :class:`PowerMinResult`; ``history`` is the best power after the grid and each refinement.
    """
    _check_inputs(cfg, users, snr_target, correlation, where="exhaustive_search")
    for name, v in (("grid", grid), ("refine_points", refine_points), ("chunk", chunk)):
        check_positive_int(name, v)
    if isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 0:
        raise ValueError(f"refine must be an int >= 0, got {refine!r}")
    if grid < 2 or refine_points < 2:
        raise ValueError(f"grid and refine_points must be >= 2, got grid={grid}, refine_points={refine_points}")
    N = cfg.num_waveguides
    if grid**N > 2**31 - 1 or refine_points**N > 2**31 - 1:
        raise ValueError(f"exhaustive_search: grid**N = {grid}**{N} points is too many (limit 2**31 - 1); "
                         "use a coarser grid or projected_lbfgs for large N")
    power, hi, dt = _problem(cfg, users, snr_target, correlation, noise_power)
    h = hi / (grid - 1)
    x, fx = _grid_min(power, jnp.zeros((N,), dt), jnp.full((N,), h, dt), grid, N, chunk)
    hist = [fx]
    for _ in range(refine):
        lo = jnp.clip(x - 2.0 * h, 0.0, hi)
        top = jnp.clip(x + 2.0 * h, 0.0, hi)
        step = (top - lo) / (refine_points - 1)
        xr, fr = _grid_min(power, lo, step, refine_points, N, chunk)
        better = fr < fx
        x, fx = jnp.where(better, xr, x), jnp.where(better, fr, fx)
        hist.append(fx)
        h = 4.0 * h / (refine_points - 1)
    return _result(cfg, x, users, snr_target, correlation, noise_power, jnp.stack(hist))


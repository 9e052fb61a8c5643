"""MM-PDD: JB Algorithm 1 (majorisation-minimisation + penalty dual decomposition), docs/model.md §3.3.

Joint transmit (``D``) and pinching (``X``) beamforming for the sum rate of JB (P0),
as the paper writes it: the WMMSE reformulation (P1) (JB (11)-(14)), auxiliary
variables and equality constraints (JB (15)-(16)), the augmented Lagrangian (AL)
(P2), an inner block-coordinate-descent (BCD) loop over

    (v, alpha) (13)-(14)  ->  {D, Q} (24)-(25)  ->  X (26), U (28)  ->  {theta, S} (29)-(30)

with CCCP (19)-(20) and Lipschitz-gradient surrogates (21)-(23) for the non-convex
parts, and an outer loop (Alg. 1 lines 10-15) that updates the duals when
``||B||_inf <= 0.9 ||B_prev||_inf`` and otherwise shrinks the penalty
``rho <- 0.85 rho``, stopping when ``||B||_inf <= eps``.

Variables of one drop (``K`` users, ``N`` waveguides, ``L`` pinches; ``phi = sqrt(beta/L)``):

    X (N, L) positions [m]          D (N, K) transmit beamformer [sqrt(W)]
    v (K,) MMSE receivers           alpha (K,) WMMSE weights
    S (K, N, L) distances [m]       theta (K, N, L) phases [rad], unreduced (~1e4 rad)
    U (K, N, L) pinching coefficients  u = phi e^{-j theta} / r
    Q (K, K) path responses         Q[k, k'] = u_k^T Sigma d_k' = (A D)[k, k'],  A[k, n] = sum_l U[k, n, l]

Residuals (``r = r(X)`` the true distances, JB (5)):

    B_u     = U r - phi e^{-j theta}            (15a)
    B_theta = theta - kappa (S + n_eff X)       (15b)
    B_s     = r - S                             (15c)
    b_q     = Q - A D                           (16)

    AL = sum_k (alpha_k e_k(Q, v_k) - ln alpha_k)
         + 1/(2 rho) (||B_u + rho lam_u||^2 + ||B_theta + rho lam_theta||^2
                      + ||B_s + rho lam_s||^2 + ||b_q + rho lam_q||^2)
    e_k = |v_k|^2 (sum_k' |Q[k,k']|^2 + sigma^2) + 1 - 2 Re(v_k Q[k,k])     (17)

Readings of the printed paper (each is the one that makes every block step an
exact minimiser of the AL or of a majoriser of it, which is what the paper's
monotonicity claim "the AL will be non-increasing through each BCD update"
needs; tests check every one):

1. *Logarithm.* (12a) prints ``log2 alpha_k`` but (14) ``alpha = 1/e`` is the
   minimiser for the natural log; we use ``ln`` (the sum rate's base only
   rescales the WMMSE part), so (14) is exact.
2. *(v, alpha) from Q.* In (P2) the MSE depends on ``Q`` only (17), so (13)-(14)
   are evaluated with ``q[k,k'] = h_k^H G d_k'`` replaced by ``Q[k,k']`` (equal at
   feasibility).
3. *{D, Q} jointly.* (25) is the Q-minimiser for fixed D; it omits ``alpha_k`` and
   has ``d_k`` for ``d_k'``. We minimise (24) jointly and exactly: eliminating Q in
   closed form leaves ``min_D sum_{k,k'} gamma_k |v_k (a_k d_k' - rho lam_q) - delta_kk'|^2``,
   ``gamma_k = alpha_k / (1 + 2 rho alpha_k |v_k|^2)``, under ``||D||_F^2 <= P``: a
   least-squares problem with a ball constraint, solved by SVD and the secular
   equation for its multiplier; then Q by the corrected (25).
4. *X-subproblem (26).* It keeps ``+ rho lam_theta`` in the theta-penalty (dropped in
   print). For ``Omega < 0`` the concave ``Omega r(x)`` is linearised (CCCP, (19b),
   (20)); for ``Omega >= 0`` (which (19) leaves open) the convex ``Omega r(x)`` is
   majorised by ``Omega (r^2 + r0^2) / (2 r0)`` (AM-GM, tight at the current x), so
   the surrogate stays a separable diagonal quadratic ``sum A_nl (x_nl - c_nl)^2``
   and its exact minimiser under C1-C2 is the weighted projection
   ``project_positions(cfg, c, weights=A)`` (docs/model.md §1; no interior-point solver).
5. *U-subproblem (28).* ``u_k^T Sigma D`` is a non-conjugated product, so the exact
   minimiser of (27) is ``u_k = (R_k^2 + conj(Sigma D)(Sigma D)^T)^{-1} (conj(Sigma D) c_k - R_k zeta_k)``,
   ``c_k = Q[k,:] + rho lam_q[k,:]``; (28) prints the conjugate pattern. Solved
   with the Woodbury identity (a K x K system).
6. *Exponential surrogate (22)-(23).* The term of the AL is
   ``-phi Re{(lam_u + u r(x) / rho) e^{j theta}}`` with the true distance ``r(x)`` from
   (15a) (the paper's text writes ``u s``); its Lipschitz constant
   ``phi |lam_u + u r / rho|`` (23) and gradient (22b) are used as printed, with the
   quadratic term ``varrho/2 (theta - theta0)^2`` ((22a) prints the square
   outside the modulus).
7. *{theta, S} (30).* The two printed formulas are the stationarity conditions
   of (29) (the theta one misses ``1/rho`` on ``kappa (s + n_eff x)``); we solve
   the 2 x 2 system jointly and exactly.
8. *Outer loop.* Line 2's "tolerance threshold" is the reference residual
   ``eta0`` for the first comparison (Shi & Hong's PDD [19]; default ``inf``, i.e.
   the first outer step updates the duals). Duals: ``lam <- lam + B / rho``.
9. *Inner loop.* "While convergence criterion is not satisfied": relative AL
   decrease below ``inner_tol`` or ``max_inner`` sweeps.

10. *Units.* The paper states none. ``units="normalized"`` (default) works in unit
    noise and unit budget (``U, phi, Q`` times ``sqrt(P)/sigma``, ``D`` over ``sqrt(P)``),
    where the paper's ``rho0 = 1e-4`` makes the {D, Q} step a WMMSE transmit
    update (``2 rho alpha |v|^2 << 1``, so ``gamma_k ~ alpha_k``). In watts
    (``units="physical"``) ``alpha |v|^2 ~ 1e11`` and that step's user weights become
    ``~1/(2 rho |v_k|^2)``: the sum rate first drops far below the WMMSE start
    and recovers only after many outer iterations, once ``rho`` has shrunk by
    several orders of magnitude (``benchmarks/mm_pdd.py`` measures it). Both satisfy every
    acceptance property; ``eps`` applies to the residuals in the chosen units
    (``B_theta`` in rad and ``B_s`` in m either way).

Observed behaviour (``benchmarks/mm_pdd.py`` measures it): from the default
consistent WMMSE start the algorithm stops after ~2 outer iterations with
``||B||_inf < 1e-6`` and the positions moved by < 1e-9 m: X is held by the
``B_theta`` penalty (curvature ``kappa^2 n_eff^2 / rho ~ 1e10`` per pinch) and
theta by its Lipschitz prox (``varrho ~ phi^2 / rho``), so the WMMSE start is
(numerically) a stationary point of the AL. From an MRT start the D-block
raises the rate to about the WMMSE level, again without moving X. This is the
paper's algorithm as printed; the paper itself reports it "prone to getting
stuck" (JB §III-B).

Initialisation (line 1): ``X0`` (default ``uniform_positions``), ``D0`` (default:
WMMSE on the true channel at ``X0``), auxiliaries consistent with them
(``S = r``, ``theta = kappa (r + n_eff X)``, ``U = phi e^{-j theta} / r``, ``Q = A D``),
``lam = 0``, ``rho = rho0``.

Precision: ``theta ~ 4e4`` rad, so ``B_theta`` can only be resolved to
``~eps * 4e4`` rad: about 2e-3 in float32. Run in float64 (``jax.enable_x64``)
to reach the paper's ``eps = 1e-6``; dtypes follow the inputs.

Every iterate has feasible X (projection) and ``||D||_F^2 <= P``, so each is a
feasible point of (P0); the result reports the best one visited (true sum
rate, every inner sweep) and the history keeps the raw trajectory.
Execution model (``docs/execution_model.md``): :func:`mm_pdd_drop` is the pure
per-drop kernel (``cfg`` an argument, traced under a caller's
``jax.jit(jax.vmap(...))``; ``lax.while_loop`` inside, forward only, not
differentiable; a vmapped batch runs until its slowest drop stops);
:class:`MmPddOptions` holds every static choice; :func:`mm_pdd` is the driver
(validation, any leading drop dimensions, a module-level ``jax.jit``)::

    opts = MmPddOptions(D0="mrt", max_outer=30)
    run = jax.jit(jax.vmap(lambda c, u: mm_pdd_drop(c, u, opts), in_axes=(None, 0)))
    res = run(cfg, users)                   # == mm_pdd(cfg, users, opts)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxpass import beamforming, parallel
from jaxpass._checks import check_array, check_choice, check_int, check_number, check_users_in_area, is_tracer
from jaxpass._options import Options, option
from jaxpass.beamforming import _power_multiplier
from jaxpass.channel import effective_channel
from jaxpass.config import PassConfig
from jaxpass.geometry import project_positions, uniform_positions
from jaxpass.linalg import cholesky_solve, svd
from jaxpass.metrics import sum_rate


# ----------------------------------------------------------------- containers
class Problem(NamedTuple):
    """Constants of one drop (all in the working dtype).

    Attributes:
      ux: ``(K,)`` user x [m].  psi: ``(K, N)`` ``sqrt((y_n - y_k)^2 + h^2)`` [m].
      kappa: wavenumber [rad/m].  n_eff: refractive index.  phi: ``sqrt(beta/L)``.
      power: budget and noise: ``P`` [W] and ``sigma^2`` [W] in ``units="physical"``, both 1 in
        ``units="normalized"``.
      d_scale: physical beamformer = ``d_scale * D`` (``sqrt(P)`` normalised, 1 physical).
    """

    ux: jax.Array
    psi: jax.Array
    kappa: jax.Array
    n_eff: jax.Array
    phi: jax.Array
    power: jax.Array
    noise: jax.Array
    d_scale: jax.Array


class State(NamedTuple):
    """Primal, auxiliary and dual variables of (P2) (shapes in the module docstring)."""

    X: jax.Array
    D: jax.Array
    Q: jax.Array
    U: jax.Array
    theta: jax.Array
    S: jax.Array
    v: jax.Array
    alpha: jax.Array
    lam_u: jax.Array
    lam_theta: jax.Array
    lam_s: jax.Array
    lam_q: jax.Array
    rho: jax.Array


class MmPddResult(NamedTuple):
    """Output of :func:`mm_pdd` (one drop).

    Attributes:
      positions: ``(N, L)`` feasible positions of the best iterate visited [m].
      W: ``(N, K)`` its beamformer ``D`` (``||W||_F^2 <= P``).
      sum_rate: its true sum rate (docs/model.md §2) [bps/Hz].
      final_positions, final_W, final_sum_rate: the last iterate (raw, Alg. 1's output).
      B_inf: final ``||B||_inf``.  converged: ``B_inf <= eps``.
      outer_iterations: outer iterations run.  inner_iterations: total BCD sweeps.
      initial_sum_rate: sum rate of ``(X0, D0)``.
      history: dict of ``(max_outer,)`` arrays, NaN after the last iteration:
        ``sum_rate`` (true rate of the iterate at the end of each outer iteration),
        ``B_inf``, ``rho`` (penalty used in that iteration), ``penalty`` (the AL's
        penalty term), ``al`` (AL at the end of the inner loop), ``al_rise``
        (largest relative AL increase over any single block update in that inner
        loop: ~1e-15 when the BCD is monotone), ``inner`` (sweeps), ``dual_update``
        (1 if the duals were updated, 0 if rho shrank).
      state: the final ``State``.
    """

    positions: jax.Array
    W: jax.Array
    sum_rate: jax.Array
    final_positions: jax.Array
    final_W: jax.Array
    final_sum_rate: jax.Array
    B_inf: jax.Array
    converged: jax.Array
    outer_iterations: jax.Array
    inner_iterations: jax.Array
    initial_sum_rate: jax.Array
    history: dict
    state: State


# ----------------------------------------------------------------- basics
def _abs2(z):
    return z.real**2 + z.imag**2


def _cis_neg(theta):
    """``e^{-j theta}``."""
    return jax.lax.complex(jnp.cos(theta), -jnp.sin(theta))


UNITS = ("normalized", "physical")


def problem(cfg: PassConfig, users, dtype=None, units: str = "normalized") -> Problem:
    """The drop's constants (``cfg`` must use ``radiation="equal"`` and no waveguide loss).

    ``units="physical"``: watts and sqrt(W) as printed. ``"normalized"``: unit noise and
    unit budget, i.e. ``U, phi, Q`` multiplied by ``sqrt(P)/sigma``, ``D`` divided by
    ``sqrt(P)`` (the rates are unchanged; see "Units" in the module docstring).
    """
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}, got {units!r}")
    users = jnp.asarray(users)
    dt = dtype or (users.dtype if jnp.issubdtype(users.dtype, jnp.floating) else jnp.result_type(float))
    users = users.astype(dt)
    lanes = cfg.lane_y.astype(dt)
    h = jnp.asarray(cfg.height, dt)
    psi = jnp.sqrt((lanes[None, :] - users[:, 1, None]) ** 2 + h * h)
    kappa = (2.0 * jnp.pi * jnp.asarray(cfg.carrier_freq, dt)) / jnp.asarray(299_792_458.0, dt)
    power = jnp.asarray(cfg.power, dt)
    noise = jnp.asarray(cfg.noise_power, dt)
    phi = jnp.sqrt(jnp.asarray(cfg.beta, dt) / cfg.num_pinches)
    if units == "normalized":
        return Problem(ux=users[:, 0], psi=psi, kappa=kappa, n_eff=jnp.asarray(cfg.n_eff, dt),
                       phi=phi * jnp.sqrt(power / noise), power=jnp.ones((), dt), noise=jnp.ones((), dt),
                       d_scale=jnp.sqrt(power))
    return Problem(ux=users[:, 0], psi=psi, kappa=kappa, n_eff=jnp.asarray(cfg.n_eff, dt), phi=phi,
                   power=power, noise=noise, d_scale=jnp.ones((), dt))


def distances(prob: Problem, X):
    """``r[k, n, l] = sqrt((X[n,l] - x_k)^2 + psi[k,n]^2)``, shape ``(K, N, L)`` (JB (5))."""
    dx = X[None] - prob.ux[:, None, None]
    return jnp.sqrt(dx * dx + prob.psi[:, :, None] ** 2)


def aux_channel(U):
    """``A[k, n] = sum_l U[k, n, l]`` = ``u_k^T Sigma``, shape ``(K, N)``."""
    return jnp.sum(U, axis=-1)


def residuals(prob: Problem, st: State):
    """``(B_u, B_theta, B_s, b_q)`` of (15)-(16)."""
    r = distances(prob, st.X)
    B_u = st.U * r - prob.phi * _cis_neg(st.theta)
    B_theta = st.theta - prob.kappa * (st.S + prob.n_eff * st.X[None])
    B_s = r - st.S
    b_q = st.Q - aux_channel(st.U) @ st.D
    return B_u, B_theta, B_s, b_q


def residual_norm(prob: Problem, st: State):
    """``||B||_inf``: the largest modulus over all four residual blocks."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(b)) for b in residuals(prob, st)]))


def mse(prob: Problem, Q, v):
    """``e_k(Q, v_k)`` of (17), shape ``(K,)``."""
    J = jnp.sum(_abs2(Q), axis=1) + prob.noise
    return _abs2(v) * J + 1.0 - 2.0 * jnp.real(v * jnp.diagonal(Q))


def penalty(prob: Problem, st: State):
    """The AL's penalty term ``1/(2 rho) sum ||B + rho lam||^2``."""
    B_u, B_theta, B_s, b_q = residuals(prob, st)
    rho = st.rho
    total = (jnp.sum(_abs2(B_u + rho * st.lam_u)) + jnp.sum((B_theta + rho * st.lam_theta) ** 2)
             + jnp.sum((B_s + rho * st.lam_s) ** 2) + jnp.sum(_abs2(b_q + rho * st.lam_q)))
    return total / (2.0 * rho)


def augmented_lagrangian(prob: Problem, st: State):
    """The AL of (P2) (natural log, reading 1 of the module docstring)."""
    wmmse_part = jnp.sum(st.alpha * mse(prob, st.Q, st.v) - jnp.log(st.alpha))
    return wmmse_part + penalty(prob, st)


# ----------------------------------------------------------------- blocks
def update_v_alpha(prob: Problem, st: State) -> State:
    """Alg. 1 line 5: ``v_k = conj(Q[k,k]) / J_k``, ``alpha_k = 1/e_k`` (JB (13)-(14), with Q).

    ``J_k = sum_k' |Q[k,k']|^2 + sigma^2``; ``e_k = (J_k - |Q[k,k]|^2) / J_k`` is
    formed from the interference sum so it never cancels.
    """
    K = st.Q.shape[0]
    P = _abs2(st.Q)
    interference = jnp.sum(jnp.where(jnp.eye(K, dtype=bool), 0.0, P), axis=1) + prob.noise
    J = jnp.diagonal(P) + interference
    v = jnp.conj(jnp.diagonal(st.Q)) / J
    alpha = J / interference
    return st._replace(v=v, alpha=alpha)


def update_dq(prob: Problem, st: State) -> State:
    """Alg. 1 line 6: exact joint minimiser of (24) over ``{D, Q}`` (reading 3).

    With ``A = aux_channel(U)``, ``gamma_k = alpha_k / (1 + 2 rho alpha_k |v_k|^2)``,
    ``B = diag(sqrt(gamma) v) A`` and ``T = diag(sqrt(gamma)) (I + rho diag(v) lam_q)``,
    ``D = argmin ||B D - T||_F^2`` s.t. ``||D||_F^2 <= P``, i.e.
    ``D = (B^H B + mu I)^{-1} B^H T`` with the smallest ``mu >= 0`` meeting the budget
    (SVD + secular equation, ``beamforming._power_multiplier``); then
    ``Q = (2 rho alpha delta conj(v) + A D - rho lam_q) / (2 rho alpha |v|^2 + 1)`` (25).
    """
    K = st.Q.shape[0]
    A = aux_channel(st.U)
    rho = st.rho
    w = st.alpha * _abs2(st.v)
    gamma = st.alpha / (1.0 + 2.0 * rho * w)
    sg = jnp.sqrt(gamma)
    eye = jnp.eye(K, dtype=A.dtype)
    B = (sg * st.v)[:, None] * A
    T = sg[:, None] * (eye + rho * st.v[:, None] * st.lam_q)
    Um, s, Vt = svd(B)  # B = Um diag(s) Vt^H (Jacobi for K <= 8, LAPACK above)
    z = jnp.conj(Um).T @ T  # (K, K)
    s2 = s * s
    floor = (jnp.finfo(s.dtype).eps * jnp.max(s)) ** 2 + jnp.finfo(s.dtype).tiny
    c2 = s2 * jnp.sum(_abs2(z), axis=1) / prob.power
    mu = _power_multiplier(s2, c2, floor, steps=60)
    D = Vt @ ((s / (s2 + floor + mu))[:, None] * z)
    t = A @ D - rho * st.lam_q
    Q = (2.0 * rho * (st.alpha * jnp.conj(st.v))[:, None] * eye + t) / (2.0 * rho * w + 1.0)[:, None]
    return st._replace(D=D, Q=Q)


def x_surrogate(prob: Problem, st: State):
    """The separable quadratic surrogate of (26): weights ``A (N, L)`` and centres ``c (N, L)``.

    The X-dependent part of the AL is majorised (tight at ``st.X``) by
    ``sum_{n,l} A[n,l]/2 (x - c[n,l])^2 + const``; terms per ``(k, n, l)``:
    ``(|u|^2 + 1)/(2 rho) (x - x_k)^2`` (from ``r^2``), the CCCP/AM-GM majoriser of
    ``Omega r(x)`` (reading 4), and ``(kappa n_eff x - m)^2 / (2 rho)`` with
    ``m = theta - kappa s + rho lam_theta`` (from B_theta).
    """
    rho = st.rho
    r0 = distances(prob, st.X)
    dx0 = st.X[None] - prob.ux[:, None, None]
    omega = (jnp.real(jnp.conj(st.U) * (st.lam_u - prob.phi * _cis_neg(st.theta) / rho))
             + st.lam_s - st.S / rho)
    quad = (_abs2(st.U) + 1.0) / rho
    pos = jnp.maximum(omega, 0.0) / r0  # AM-GM curvature (Omega >= 0)
    lin = jnp.minimum(omega, 0.0) * dx0 / r0  # CCCP slope (Omega < 0), eq. (20)
    kn = prob.kappa * prob.n_eff
    m = st.theta - prob.kappa * st.S + rho * st.lam_theta
    ux = prob.ux[:, None, None]
    weight = jnp.sum(quad + pos + kn * kn / rho, axis=0)
    moment = jnp.sum((quad + pos) * ux - lin + kn * m / rho, axis=0)
    return weight, moment / weight


def update_x(cfg: PassConfig, prob: Problem, st: State) -> State:
    """Alg. 1 line 7 (first half): exact minimiser of the surrogate (26) under C1-C2.

    ``X = project_positions(cfg, c, weights=A)`` with ``(A, c) = x_surrogate(...)``.
    """
    weight, centre = x_surrogate(prob, st)
    return st._replace(X=project_positions(cfg, centre, weights=weight))


def update_u(prob: Problem, st: State) -> State:
    """Alg. 1 line 7 (second half): exact minimiser of (27) (reading 5), per user by Woodbury.

    ``(R^2 + V V^H) u = V c - R zeta`` with ``R = diag(r_k)``, ``V[(n,l), k'] = conj(D[n, k'])``,
    ``c = Q[k,:] + rho lam_q[k,:]``, ``zeta = rho lam_u - phi e^{-j theta}``.
    """
    K, N, L = st.U.shape
    rho = st.rho
    r = distances(prob, st.X)  # (K, N, L), already at the new X
    zeta = rho * st.lam_u - prob.phi * _cis_neg(st.theta)
    c = st.Q + rho * st.lam_q  # (K, K) rows c_k
    Dc = jnp.conj(st.D)  # V rows: V[(n,l), :] = Dc[n, :]
    # y = V c - R zeta, shape (K, N, L)
    y = (Dc @ c.T).T[:, :, None] - r * zeta
    inv_r2 = 1.0 / (r * r)
    ry = inv_r2 * y  # R^-2 y
    # Woodbury: u = R^-2 y - R^-2 V (I + V^H R^-2 V)^-1 V^H R^-2 y
    wsum = jnp.sum(inv_r2, axis=-1)  # (K, N)
    # V^H R^-2 V for user k: sum_n w[k,n] D[n,:]^T conj(D[n,:])  -> [k', k''] = sum_n D[n,k'] conj(D[n,k'']) w
    M = jnp.einsum("kn,na,nb->kab", wsum.astype(st.D.dtype), st.D, Dc) + jnp.eye(K, dtype=st.D.dtype)
    rhs = jnp.einsum("na,knl->ka", st.D, ry)  # V^H (R^-2 y): sum_{n,l} D[n,a] ry[k,n,l]
    sol = jax.vmap(lambda Mk, bk: cholesky_solve(Mk, bk[:, None])[:, 0])(M, rhs)  # (K, K)
    U = ry - inv_r2 * (sol @ Dc.T)[:, :, None]
    return st._replace(U=U)


def theta_s_surrogate(prob: Problem, st: State):
    """Linear coefficient ``g`` (22b) and Lipschitz constant ``varrho`` (23) at the current theta.

    ``L_exp(theta) = -Re{c e^{j theta}}``, ``c = phi (lam_u + u r(x) / rho)`` (reading 6).
    """
    r = distances(prob, st.X)
    c = prob.phi * (st.lam_u + st.U * r / st.rho)
    g = c.real * jnp.sin(st.theta) + c.imag * jnp.cos(st.theta)
    return g, jnp.abs(c)


def update_theta_s(prob: Problem, st: State) -> State:
    """Alg. 1 line 8: exact joint minimiser of (29) (reading 7).

    With ``a = 1/rho``, ``m = kappa (r + rho lam_s + n_eff x) - rho lam_theta``:
    ``theta = (a m / (1 + kappa^2) + varrho theta0 - g) / (a / (1 + kappa^2) + varrho)``,
    ``S = r + rho lam_s + kappa (theta - m) / (1 + kappa^2)``.
    """
    rho = st.rho
    a = 1.0 / rho
    r = distances(prob, st.X)
    g, varrho = theta_s_surrogate(prob, st)
    kap = prob.kappa
    k2 = 1.0 + kap * kap
    m = kap * (r + rho * st.lam_s + prob.n_eff * st.X[None]) - rho * st.lam_theta
    theta = (a * m / k2 + varrho * st.theta - g) / (a / k2 + varrho)
    S = r + rho * st.lam_s + kap * (theta - m) / k2
    return st._replace(theta=theta, S=S)


BLOCKS = ("v_alpha", "dq", "x", "u", "theta_s")


def block_update(cfg: PassConfig, prob: Problem, st: State, name: str) -> State:
    """Apply one named BCD block (``BLOCKS``)."""
    if name == "v_alpha":
        return update_v_alpha(prob, st)
    if name == "dq":
        return update_dq(prob, st)
    if name == "x":
        return update_x(cfg, prob, st)
    if name == "u":
        return update_u(prob, st)
    if name == "theta_s":
        return update_theta_s(prob, st)
    raise ValueError(f"unknown block {name!r}; expected one of {BLOCKS}")


def bcd_sweep(cfg: PassConfig, prob: Problem, st: State, monitor: bool = True):
    """One inner MM-BCD sweep (Alg. 1 lines 5-8).

    Returns the new state and the largest relative AL increase over the five
    block updates (``0`` if ``monitor`` is False).
    """
    rise = jnp.zeros((), st.X.dtype)
    before = augmented_lagrangian(prob, st) if monitor else None
    for name in BLOCKS:
        st = block_update(cfg, prob, st, name)
        if monitor:
            after = augmented_lagrangian(prob, st)
            rise = jnp.maximum(rise, (after - before) / jnp.maximum(jnp.abs(before), 1.0))
            before = after
    return st, rise


def true_sum_rate(cfg: PassConfig, prob: Problem, users, X, D):
    """Sum rate of ``(X, d_scale D)`` on the true channel (docs/model.md §2)."""
    return sum_rate(effective_channel(cfg, X, users), prob.d_scale * D, cfg.noise_power)


# ----------------------------------------------------------------- options
AUX_INITS = ("consistent", "zeros")
D0_CHOICES = ("wmmse", "zf", "mrt")


@dataclasses.dataclass(frozen=True)
class MmPddOptions(Options):
    """Options of :func:`mm_pdd` (JB Algorithm 1; static for ``jit``, so changing one recompiles).

    ``rho0``, ``eps``, ``inner_tol`` and ``eta0`` are in the units chosen by ``units``
    (module docstring, reading 10): ``rho0`` scales the penalty ``1/(2 rho)``,
    ``eps`` and ``eta0`` bound ``||B||_inf`` (``B_theta`` [rad], ``B_s`` [m], ``B_u`` and
    ``b_q`` in the channel's units).
    """

    rho0: float = option(1e-4, help="initial penalty rho (JB §V: 1e-4)")
    eps: float = option(1e-6, help="stop when ||B||_inf <= eps (JB §V: 1e-6; needs float64 below ~1e-3)")
    max_outer: int = option(100, help="outer (dual/penalty) iterations at most, T_max")
    max_inner: int = option(50, help="BCD sweeps per outer iteration at most")
    inner_tol: float = option(1e-7, help="inner stop: relative AL decrease over a sweep below this")
    eta0: float = option(float("inf"), help="reference residual of the first outer comparison (reading 8; inf allowed)")
    aux_init: str = option("consistent", help="auxiliary start: consistent with (X0, D0) or zeros",
                           choices=AUX_INITS)
    units: str = option("normalized", help="working units: unit noise and budget, or watts (reading 10)",
                        choices=UNITS)
    D0: str = option("wmmse", help="start beamformer on the true channel at X0 (an (N, K) array D0 overrides it)",
                     choices=D0_CHOICES)
    monitor: bool = option(True, help="evaluate the AL after every block (history['al_rise'])")

    def validate(self):
        check_number("rho0", self.rho0, low=0.0, low_open=True, unit="penalty, units of `units`")
        check_number("eps", self.eps, low=0.0, low_open=True, unit="||B||_inf, units of `units`")
        check_number("inner_tol", self.inner_tol, low=0.0, low_open=True, unit="relative AL decrease")
        if isinstance(self.eta0, bool) or not isinstance(self.eta0, (int, float)) or not self.eta0 > 0:
            raise ValueError(f"eta0 must be a number > 0 (inf allowed) [||B||_inf, units of `units`], got {self.eta0!r}")
        check_int("max_outer", self.max_outer, low=1, unit="outer iterations")
        check_int("max_inner", self.max_inner, low=1, unit="BCD sweeps")
        check_choice("aux_init", self.aux_init, AUX_INITS)
        check_choice("units", self.units, UNITS)
        check_choice("D0", self.D0, D0_CHOICES)
        if not isinstance(self.monitor, bool):
            raise TypeError(f"monitor must be a bool, got {self.monitor!r}")


def _split_d0(D0, changes: dict):
    """``D0`` given as a string is the option ``D0``; an array is the start beamformer input."""
    if isinstance(D0, str):
        return None, {**changes, "D0": D0}
    return D0, changes


# ----------------------------------------------------------------- checks
def _check_inputs(cfg: PassConfig, users, options: MmPddOptions, *, X0=None, D0=None, batch=False):
    """Boundary checks (shapes always, values when concrete); returns the drops' batch shape."""
    if cfg.radiation != "equal":
        raise ValueError(f"mm_pdd implements JB's model with radiation='equal' (JB (3)), got {cfg.radiation!r}")
    if not is_tracer(cfg.loss_db_per_m) and float(cfg.loss_db_per_m) != 0.0:
        raise ValueError("mm_pdd implements JB's lossless waveguide: loss_db_per_m must be 0 [dB/m], "
                         f"got {cfg.loss_db_per_m}")
    if options.D0 == "zf" and D0 is None and cfg.num_users > cfg.num_waveguides:
        raise ValueError(f"D0='zf' needs K <= N, got K={cfg.num_users}, N={cfg.num_waveguides}")
    drops = check_array("users", users, (cfg.num_users, 2), batch=batch, unit="m")
    check_users_in_area(cfg, users)
    if X0 is not None:
        check_array("X0", X0, (cfg.num_waveguides, cfg.num_pinches), batch=batch, unit="m")
    if D0 is not None:
        check_array("D0", D0, (cfg.num_waveguides, cfg.num_users), batch=batch, unit="sqrt(W)")
    return drops


def init_state(cfg: PassConfig, users, options: MmPddOptions | None = None, *, X0=None, D0=None,
               **changes) -> tuple[Problem, State]:
    """Alg. 1 lines 1-2: auxiliaries, zero duals, ``rho = rho0`` (then line 5's v, alpha); one drop.

    ``options.aux_init="consistent"``: ``S = r(X0)``, ``theta = kappa (S + n_eff X0)``,
    ``U = phi e^{-j theta} / r``, ``Q = A D0`` (all residuals zero);
    ``"zeros"``: ``S = theta = U = Q = 0`` (only X and D informed). ``X0 (N, L)`` [m]
    (default uniform, projected to feasibility); ``D0``: an ``(N, K)`` array [sqrt(W)]
    (scaled to the budget) or a string, which sets ``options.D0``.
    """
    D0, changes = _split_d0(D0, changes)
    options = MmPddOptions.resolve(options, **changes)
    users = jnp.asarray(users)
    if not jnp.issubdtype(users.dtype, jnp.floating):
        users = users.astype(jnp.result_type(float))
    dt = users.dtype
    prob = problem(cfg, users, dt, options.units)
    X = uniform_positions(cfg, dt) if X0 is None else project_positions(cfg, jnp.asarray(X0, dt))
    cdt = jnp.result_type(dt, jnp.complex64)
    if D0 is None:
        H = effective_channel(cfg, X, users)
        if options.D0 == "wmmse":
            D = beamforming.wmmse(H, cfg.power, cfg.noise_power)
        elif options.D0 == "zf":
            D = beamforming.zf(H, cfg.power)
        else:
            D = beamforming.mrt(H, cfg.power)
    else:
        D = beamforming.normalize_power(jnp.asarray(D0).astype(cdt), cfg.power)
    D = (D / prob.d_scale).astype(cdt)
    r = distances(prob, X)
    S = r
    theta = prob.kappa * (S + prob.n_eff * X[None])
    U = prob.phi * _cis_neg(theta) / r
    Q = aux_channel(U) @ D
    if options.aux_init == "zeros":
        S, theta, U, Q = jnp.zeros_like(S), jnp.zeros_like(theta), jnp.zeros_like(U), jnp.zeros_like(Q)
    K, N, L = U.shape
    zeros = jnp.zeros((K, N, L), dt)
    st = State(X=X, D=D, Q=Q, U=U, theta=theta, S=S, v=jnp.zeros((K,), cdt), alpha=jnp.ones((K,), dt),
               lam_u=zeros.astype(cdt), lam_theta=zeros, lam_s=zeros, lam_q=jnp.zeros((K, K), cdt),
               rho=jnp.asarray(options.rho0, dt))
    return prob, update_v_alpha(prob, st)


# ----------------------------------------------------------------- kernel
def mm_pdd_drop(cfg: PassConfig, users, options: MmPddOptions | None = None, *, X0=None, D0=None) -> MmPddResult:
    """JB Algorithm 1 (MM-PDD) on one drop: the pure kernel (module docstring: maths and readings).

    Works under a caller's ``jax.jit(jax.vmap(...))`` with ``cfg`` traced.

    Args:
      cfg: JB scenario (``radiation="equal"``, ``loss_db_per_m=0``).
      users: ``(K, 2)`` user coordinates [m]; their dtype sets the working precision
        (use float64 for ``eps`` below ~1e-3, see "Precision").
      options: :class:`MmPddOptions` (default ``MmPddOptions()``).
      X0: optional ``(N, L)`` start positions [m] (projected to feasibility); default uniform.
      D0: optional ``(N, K)`` start beamformer [sqrt(W)] (scaled to the budget); default
        ``options.D0`` (``"wmmse"``, ``"zf"`` or ``"mrt"`` on the true channel at ``X0``).

    Returns:
      ``MmPddResult``: best iterate (positions, W, sum_rate), last iterate, residual,
      counters and the raw per-outer-iteration history.
    """
    options = MmPddOptions.resolve(options)
    _check_inputs(cfg, users, options, X0=X0, D0=D0)
    prob, st0 = init_state(cfg, users, options, X0=X0, D0=D0)
    users = jnp.asarray(users).astype(st0.X.dtype)
    dt = st0.X.dtype
    eps = jnp.asarray(options.eps, dt)
    inner_tol = jnp.asarray(options.inner_tol, dt)
    max_outer, max_inner, monitor = options.max_outer, options.max_inner, options.monitor
    nan = jnp.full((max_outer,), jnp.nan, dt)
    hist0 = {k: nan for k in ("sum_rate", "B_inf", "rho", "penalty", "al", "al_rise", "inner", "dual_update")}
    rate0 = true_sum_rate(cfg, prob, users, st0.X, st0.D)
    best0 = (st0.X, st0.D, rate0)

    def keep_best(best, st):
        rate = true_sum_rate(cfg, prob, users, st.X, st.D)
        better = rate > best[2]
        return jax.tree.map(lambda new, old: jnp.where(better, new, old), (st.X, st.D, rate), best)

    def inner_loop(st, best):
        al0 = augmented_lagrangian(prob, st)

        def cond(c):
            i, _, _, prev, cur, _ = c
            change = (prev - cur) / jnp.maximum(jnp.abs(cur), 1.0)
            return (i < max_inner) & ((i == 0) | (change > inner_tol))

        def body(c):
            i, st, best, _, cur, rise = c
            st, r = bcd_sweep(cfg, prob, st, monitor)
            return i + 1, st, keep_best(best, st), cur, augmented_lagrangian(prob, st), jnp.maximum(rise, r)

        i, st, best, _, al, rise = jax.lax.while_loop(
            cond, body, (jnp.asarray(0), st, best, al0, al0, jnp.zeros((), dt)))
        return st, best, i, al, rise

    def outer_cond(c):
        t, _, _, B_prev, _, _, _ = c
        return (t < max_outer) & ~(B_prev <= eps)

    def outer_body(c):
        t, st, best, B_prev, hist, total_inner, _ = c
        rho_used = st.rho
        st, best, n_inner, al, rise = inner_loop(st, best)
        B_u, B_theta, B_s, b_q = residuals(prob, st)
        B_inf = jnp.max(jnp.stack([jnp.max(jnp.abs(b)) for b in (B_u, B_theta, B_s, b_q)]))
        dual = B_inf <= 0.9 * B_prev
        rec = dict(sum_rate=true_sum_rate(cfg, prob, users, st.X, st.D), B_inf=B_inf, rho=rho_used,
                   penalty=penalty(prob, st), al=al, al_rise=rise, inner=n_inner.astype(dt),
                   dual_update=dual.astype(dt))
        hist = {k: hist[k].at[t].set(rec[k]) for k in hist}
        inv = 1.0 / st.rho
        st = st._replace(
            lam_u=jnp.where(dual, st.lam_u + inv * B_u, st.lam_u),
            lam_theta=jnp.where(dual, st.lam_theta + inv * B_theta, st.lam_theta),
            lam_s=jnp.where(dual, st.lam_s + inv * B_s, st.lam_s),
            lam_q=jnp.where(dual, st.lam_q + inv * b_q, st.lam_q),
            rho=jnp.where(dual, st.rho, 0.85 * st.rho),
        )
        return t + 1, st, best, B_inf, hist, total_inner + n_inner, B_inf

    init = (jnp.asarray(0), st0, best0, jnp.asarray(options.eta0, dt), hist0, jnp.asarray(0),
            residual_norm(prob, st0))
    t, st, best, _, hist, total_inner, B_inf = jax.lax.while_loop(outer_cond, outer_body, init)
    final_rate = true_sum_rate(cfg, prob, users, st.X, st.D)
    return MmPddResult(
        positions=best[0], W=prob.d_scale * best[1], sum_rate=best[2],
        final_positions=st.X, final_W=prob.d_scale * st.D, final_sum_rate=final_rate,
        B_inf=B_inf, converged=B_inf <= eps, outer_iterations=t, inner_iterations=total_inner,
        initial_sum_rate=rate0, history=hist, state=st,
    )


# ----------------------------------------------------------------- driver
@functools.partial(jax.jit, static_argnames="options")
def _mm_pdd_batch(cfg, users, *, X0, D0, options):
    return jax.vmap(lambda u, x, d: mm_pdd_drop(cfg, u, options, X0=x, D0=d))(users, X0, D0)


def _flat(x, batch, core):
    """``x`` broadcast to ``batch + core``, flattened to ``(B,) + core`` (``None`` stays ``None``)."""
    if x is None:
        return None
    return jnp.broadcast_to(jnp.asarray(x), tuple(batch) + tuple(core)).reshape((-1,) + tuple(core))


def mm_pdd(cfg: PassConfig, users, options: MmPddOptions | None = None, *, X0=None, D0=None, mesh=None,
           **changes) -> MmPddResult:
    """Run JB Algorithm 1 (MM-PDD) on one drop or a batch: the driver of :func:`mm_pdd_drop`.

    Args:
      cfg: JB scenario (``radiation="equal"``, ``loss_db_per_m=0``).
      users: ``(..., K, 2)`` user coordinates [m], any leading drop dimensions (none for one
        drop); their dtype sets the working precision (float64 for ``eps`` below ~1e-3).
      options: :class:`MmPddOptions`; ``changes`` (e.g. ``max_outer=30, rho0=1e-3``) are applied to it.
      X0: optional ``(N, L)`` or ``(..., N, L)`` start positions [m]; default uniform.
      D0: ``"wmmse"``/``"zf"``/``"mrt"`` (sets ``options.D0``) or an ``(N, K)`` / ``(..., N, K)``
        start beamformer [sqrt(W)] (scaled to the budget).
      mesh: ``None`` (default device) or a mesh from :func:`jaxpass.parallel.drops_mesh`:
        the drops run data-parallel over its devices and hosts (same results).

    Returns:
      ``MmPddResult`` with the drops' leading dimensions on every field.
    """
    D0, changes = _split_d0(D0, changes)
    options = MmPddOptions.resolve(options, **changes)
    batch = _check_inputs(cfg, users, options, X0=X0, D0=D0, batch=True)
    K, N, L = cfg.num_users, cfg.num_waveguides, cfg.num_pinches
    out = parallel.batch_call(_mm_pdd_batch, cfg, _flat(users, batch, (K, 2)), X0=_flat(X0, batch, (N, L)),
                              D0=_flat(D0, batch, (N, K)), options=options, mesh=mesh, in_axes=(None, 0),
                              batched_kwargs=("X0", "D0"))
    return jax.tree.map(lambda a: a.reshape(tuple(batch) + a.shape[1:]), out)


__all__ = [
    "AUX_INITS", "BLOCKS", "D0_CHOICES", "MmPddOptions", "MmPddResult", "Problem", "State", "UNITS",
    "augmented_lagrangian", "aux_channel", "bcd_sweep", "block_update", "distances", "init_state", "mm_pdd",
    "mm_pdd_drop", "mse", "penalty", "problem", "residual_norm", "residuals", "theta_s_surrogate", "true_sum_rate",
    "update_dq", "update_theta_s", "update_u", "update_v_alpha", "update_x", "x_surrogate",
]

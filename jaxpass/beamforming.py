"""Transmit beamformers for one drop (docs/model.md §3.1-§3.2). Batch with ``jax.vmap``.

Conventions: ``H (K, N)`` complex effective channel (user k receives
``H[k] @ W``), ``W (N, K)`` with column k serving user k, power budget
``sum_k ||W[:, k]||^2 = power`` [W]. Every beamformer here meets the budget
with equality and is differentiable with respect to ``H`` (and to the duals
for ``kkt``). The scale-free ZF and RZF solves work on ``H / ||H||_F`` so float32
never squares the small raw channel magnitudes twice; WMMSE works with unit
noise and a unit budget (``wmmse``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxpass._checks import check_nonnegative, check_positive_int, check_shape, is_tracer
from jaxpass._safe import safe_div, safe_rsqrt, safe_sqrt
from jaxpass.linalg import cholesky_solve, regularized_pinv_qr, svd
from jaxpass.metrics import sum_rate

NORMALIZE_MODES = ("columns", "total")


# ----------------------------------------------------------------- helpers
def _real_dtype(x):
    return jnp.finfo(jnp.asarray(x).dtype).dtype


def _sq_norm(x, axis=None):
    return jnp.sum(x.real**2 + x.imag**2, axis=axis)


def _check_channel(H, *, max_users_is_n: bool = False, name: str = "this beamformer"):
    if is_tracer(H):
        return
    check_shape("H", H, (None, None))
    K, N = H.shape
    if max_users_is_n and K > N:
        raise ValueError(
            f"{name} needs K <= N (users <= RF chains/antennas), got K={K}, N={N}; "
            "use mrt/wmmse or a TDMA metric for K > N"
        )


def _check_power(power, name="power"):
    check_nonnegative(name, power)


def normalize_power(W, power, mode: str = "total"):
    """Scale ``W (N, K)`` to total power ``power`` [W].

    ``mode="total"``: one common factor, ``||W||_F^2 = power`` (keeps the power split).
    ``mode="columns"``: every column to ``power / K`` (equal power per user).
    Zero columns stay zero (no NaN).
    """
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"normalize mode must be one of {NORMALIZE_MODES}, got {mode!r}")
    rdt = _real_dtype(W)
    root = jnp.sqrt(jnp.asarray(power, rdt))  # sqrt outside the data path: finite gradients at P = 0
    if mode == "total":
        return W * (root * safe_rsqrt(_sq_norm(W)))
    K = W.shape[-1]
    scale = root * jnp.sqrt(jnp.asarray(1.0 / K, rdt)) * safe_rsqrt(_sq_norm(W, axis=-2))
    return W * scale[..., None, :]


def _unit_channel(H):
    """``H / ||H||_F`` (zero stays zero) and the squared norm used."""
    nrm2 = _sq_norm(H)
    return H * jnp.sqrt(safe_div(jnp.ones_like(nrm2), nrm2)), nrm2


# ------------------------------------------------------------- linear ones
def mrt(H, power):
    """Maximum-ratio transmission ``W ∝ H^H``, equal power per user. Any K."""
    _check_channel(H)
    _check_power(power)
    return normalize_power(jnp.conj(H).T, power, "columns")


def rzf(H, power, alpha, *, normalize: str = "columns"):
    """Regularised zero-forcing ``W ∝ H^H (H H^H + alpha I)^{-1}``.

    Computed by a QR factorisation of ``[H^H; sqrt(alpha) I]`` (``linalg.regularized_pinv_qr``),
    accurate to ``eps * cond(H)`` instead of the ``eps * cond(H)^2`` of a Gram-matrix
    solve, so float32 ZF stays on float64's result for ill-conditioned drops (users
    close together); plainly differentiable, and vectorised across a vmapped batch.

    Args:
      H: ``(K, N)`` channel.
      power: budget [W].
      alpha: regulariser in channel-gain units (same units as ``|H|^2``);
        ``K * noise_power / power`` is the MMSE-like choice. ``alpha -> 0``
        gives ``zf``.
      normalize: ``"columns"`` (equal power per user, default) or ``"total"``.

    Returns:
      ``(N, K)`` beamformer with ``||W||_F^2 = power``.
    """
    _check_channel(H, max_users_is_n=False)
    _check_power(power)
    check_nonnegative("alpha", alpha)
    Hn, nrm2 = _unit_channel(H)
    rdt = _real_dtype(H)
    # relative floor eps^2 ||Hn||_F^2 = eps^2: acts only on numerically null directions
    reg = safe_div(jnp.asarray(alpha, rdt), nrm2) + jnp.finfo(rdt).eps ** 2
    F = regularized_pinv_qr(Hn, reg)
    return normalize_power(F, power, normalize)


def zf(H, power, *, normalize: str = "columns"):
    """Zero-forcing ``W ∝ H^H (H H^H)^{-1}``: ``H @ W`` is diagonal. Needs ``K <= N``.

    A relative floor ``eps^2 ||H||_F^2`` is added to the regulariser, so coincident users
    (rank-deficient ``H``) give finite results and gradients.
    """
    _check_channel(H, max_users_is_n=True, name="zf")
    return rzf(H, power, 0.0, normalize=normalize)


# ---------------------------------------------------------------- KKT map
def kkt(H, lam, share, power):
    """KKT-structured beamformer (JB eqs. (41)-(44), (56); TT (17); docs/model.md §3.2).

    ``D = (I_N + H^H diag(lam) H)^{-1} H^H`` and
    ``W[:, k] = sqrt(share_k * power) D[:, k] / ||D[:, k]||``.
    The printed normalisation (56) is garbled; the per-column normalisation here
    is the authors' code and meets the budget exactly when ``sum(share) = 1``.

    Args:
      H: ``(K, N)`` channel.
      lam: ``(K,)`` non-negative dual weights, in units of 1/|H|^2.
      share: ``(K,)`` power shares (renormalised to sum to one; all-zero -> equal).
      power: budget [W].

    Returns:
      ``(N, K)`` beamformer; differentiable in ``H``, ``lam`` and ``share``.
    """
    _check_channel(H)
    _check_power(power)
    K, N = H.shape
    check_shape("lam", lam, (K,))
    check_nonnegative("lam", lam)
    check_shape("share", share, (K,))
    check_nonnegative("share", share)
    rdt = _real_dtype(H)
    lam = jnp.asarray(lam, rdt)
    share = jnp.asarray(share, rdt)
    total = jnp.sum(share)
    share = jnp.where(total > 0, share / jnp.where(total > 0, total, 1.0), 1.0 / K)
    Hh = jnp.conj(H).T
    M = jnp.eye(N, dtype=H.dtype) + (Hh * lam[None, :]) @ H
    D = cholesky_solve(M, Hh)
    col = safe_rsqrt(_sq_norm(D, axis=0))
    return D * (col * jnp.sqrt(share) * jnp.sqrt(jnp.asarray(power, rdt)))[None, :]


# ------------------------------------------------------------------ WMMSE
class WmmseResult(NamedTuple):
    """WMMSE output.

    Attributes:
      W: ``(N, K)`` beamformer (power budget met with equality).
      lam: ``(K,)`` duals ``alpha_k |u_k|^2 / mu`` of the last W-update
        (docs/model.md §3.2), in the physical units ``kkt`` expects:
        ``kkt(H, lam, share, power)`` rebuilds W up to a per-column phase.
      share: ``(K,)`` power shares ``||W[:, k]||^2 / power``.
      sum_rates: ``(iterations + 1,)`` sum rate of the initial point and after
        each iteration (tolerance mode: NaN after the stopping iteration).
      iterations: number of iterations run.
    """

    W: jax.Array
    lam: jax.Array
    share: jax.Array
    sum_rates: jax.Array
    iterations: jax.Array


def _svd(M):
    """SVD of a (non-differentiated) small ``(K, N)`` matrix: ``U (K, K)``, ``s (K,)``, ``Vt (N, K)``.

    ``M = U diag(s) Vt^H``; ``jaxpass.linalg.svd``: one-sided Jacobi, which
    vectorises across a vmapped batch, for ``K <= 8``; LAPACK/cuSOLVER above.
    """
    return svd(jax.lax.stop_gradient(M))


def _regularized_floor(s):
    """Gram regulariser that only acts on numerically zero singular values."""
    return (jnp.finfo(s.dtype).eps * jnp.max(s)) ** 2 + jnp.finfo(s.dtype).tiny


def regularized_pinv(M, reg, svd=None):
    """``M^H (M M^H + reg I)^{-1}`` for ``M (K, N)``, shape ``(N, K)``.

    Forward value from the SVD ``M = U diag(s) V^H`` as ``V diag(s / (s^2 + reg)) U^H``
    (accurate to ``eps * cond(M)``); the derivative with respect to ``M`` and
    ``reg`` is that of the Gram system of the smaller side (``K x K`` for
    ``K <= N``; for ``K > N`` the equal ``(M^H M + reg I_N)^{-1} M^H``, see
    ``_primal_pinv``), obtained by ``lax.custom_linear_solve`` with the same SVD
    as solver. So no singular-value gaps ``1/(s_i^2 - s_j^2)``
    ever enter a gradient (finite for repeated or zero singular values); the
    gradient's solver is regularised at ``eps s_max^2``, which changes it only
    along numerically null directions (``s < sqrt(eps) s_max``).

    Args:
      M: ``(K, N)`` complex matrix.
      reg: scalar ``>= 0``; ``(eps s_max)^2`` is added so rank-deficient ``M`` stays finite.
      svd: optional precomputed ``_svd(M)``.
    """
    K, N = M.shape
    U, s, Vt = _svd(M) if svd is None else svd
    reg = reg + _regularized_floor(s)
    reg_c = jax.lax.stop_gradient(reg)
    inv = 1.0 / (s**2 + reg_c)  # (K,) eigenvalues of (M M^H + reg)^{-1}
    value = Vt @ ((s * inv)[:, None] * jnp.conj(U).T)
    # The derivative uses a solver regularised at eps * s_max^2 instead of
    # (eps s_max)^2: it differs only along directions with s < sqrt(eps) s_max
    # (numerically null: coincident users), where the exact sensitivity ~1/reg
    # would overflow after a few unrolled WMMSE iterations.
    inv_grad = 1.0 / (s**2 + reg_c + jnp.finfo(s.dtype).eps * jnp.max(s) ** 2)
    if K > N:
        return _primal_pinv(M, reg, value, s, Vt, inv_grad)

    def matvec(y):
        return M @ (jnp.conj(M).T @ y) + reg * y

    def solve(_, b):
        return U @ (inv_grad[:, None] * (jnp.conj(U).T @ b))

    def transpose_solve(_, b):  # (M M^H + reg)^T = conj(M M^H) + reg
        return jnp.conj(U) @ (inv_grad[:, None] * (U.T @ b))

    Y = jax.lax.custom_linear_solve(matvec, jnp.eye(K, dtype=M.dtype), solve, transpose_solve)
    W = jnp.conj(M).T @ Y
    return W + jax.lax.stop_gradient(value - W)


def _primal_pinv(M, reg, value, s, Vt, inv_grad):
    """``(M^H M + reg I_N)^{-1} M^H`` for ``K > N``: the same matrix, differentiated in its ``N x N`` form.

    With more rows than columns the ``K x K`` Gram ``M M^H`` has ``K - N`` null
    directions, where its solve is ``1 / reg``; the derivative of
    ``M^H (M M^H + reg)^{-1}`` then sums terms of size ``1 / reg`` that cancel
    exactly in exact arithmetic but not in float32 (gradients through a few
    unrolled WMMSE updates reached 1e14 for K = 6 > N = 4). ``M^H M`` is full
    rank for a generic ``M``, so its implicit derivative has no such terms.
    ``Vt (N, K)`` holds the right singular vectors for the singular values
    ``s (K,)`` and ``inv_grad (K,)`` the regularised inverse eigenvalues; the
    solve acts on the span of the columns with ``s > sqrt(eps) s_max`` (all of
    ``C^N`` unless ``M`` is numerically column-rank deficient, where the missing
    directions get no derivative, as a pseudo-inverse would; the Jacobi SVD
    leaves rounding noise, not zeros, in the columns of the null ``s``).
    """
    Vt = jnp.where(s > jnp.sqrt(jnp.finfo(s.dtype).eps) * jnp.max(s), Vt, 0.0)

    def matvec(y):
        return jnp.conj(M).T @ (M @ y) + reg * y

    def solve(_, b):
        return Vt @ (inv_grad[:, None] * (jnp.conj(Vt).T @ b))

    def transpose_solve(_, b):  # (M^H M + reg)^T = conj(M^H M) + reg
        return jnp.conj(Vt) @ (inv_grad[:, None] * (Vt.T @ b))

    W = jax.lax.custom_linear_solve(matvec, jnp.conj(M).T, solve, transpose_solve)
    return W + jax.lax.stop_gradient(value - W)


def _power_multiplier(d, c2, floor, steps: int = 20):
    """Smallest ``mu >= 0`` with ``p(mu) = sum_n c2_n / (d_n + floor + mu)^2 <= 1``.

    The secular equation of a trust-region step (More & Sorensen): with
    ``phi(mu) = p(mu)^{-1/2} - 1`` concave and increasing, Newton's method started
    left of the root (``mu = s - d_max``, ``s = sqrt(sum c2)``, where ``p >= 1``) rises
    monotonically to it with quadratic convergence, so a fixed number of steps
    gives full precision in float32 and float64 alike (bisection would need
    ~log2(d_max / mu) steps and stalls in float32).
    """
    e = d + floor
    # directions that carry power. A numerically null one (d <= floor: the K - N zero singular values
    # when K > N, which the Jacobi SVD leaves as rounding noise ~1e-16) has a meaningless c2 and its
    # 1/q^3 would dominate the Newton derivative (mu then crept up from 0 in float32, budget violated)
    live = (c2 > 0) & (d > floor)

    def ratio(power_of_q, mu):
        q = jnp.where(live, e + mu, 1.0)
        r = c2
        for _ in range(power_of_q):  # c2 / q^p one division at a time: q^3 underflows in float32 for a
            r = r / q                # numerically null direction (q ~ floor ~ 1e-13) and gave c2 / 0 = inf
        return jnp.where(live, r, 0.0)

    def power(mu):
        return jnp.sum(ratio(2, mu))

    def newton(_, mu):
        p = power(mu)
        dp = -2.0 * jnp.sum(ratio(3, mu))
        phi = jax.lax.rsqrt(p) - 1.0
        dphi = -0.5 * p ** (-1.5) * dp
        step = jnp.where(dphi > 0, phi / jnp.where(dphi > 0, dphi, 1.0), 0.0)
        return jnp.maximum(mu - step, mu)  # monotone from the left

    slack = power(jnp.zeros((), e.dtype)) <= 1.0
    lo = jnp.maximum(jnp.sqrt(jnp.sum(c2)) - jnp.max(e), 0.0)
    mu = jax.lax.fori_loop(0, steps, newton, lo)
    return jnp.where(slack, 0.0, mu)


def _wmmse_step(G, W):
    """One WMMSE iteration in noise- and power-normalised units (unit budget, unit noise).

    JB eqs. (11)-(14), docs/model.md §3.1: with ``J_k = sum_i |g_k w_i|^2 + 1``,
    receivers ``u_k = (g_k w_k) / J_k`` (the conjugate of the MMSE equaliser),
    weights ``alpha_k = 1/e_k = J_k / (1 + interference_k)``, then
    ``W = (sum_k alpha_k |u_k|^2 g_k^H g_k + mu I)^{-1} [alpha_k u_k g_k^H]_k``
    with ``mu >= 0`` the smallest value giving ``||W||_F^2 <= 1``. When the budget
    is slack at ``mu = 0``, ``mu = 0`` is kept (plus the tiny regularising floor of
    ``regularized_pinv``); in both cases W is then rescaled to ``||W||_F^2 = 1``
    exactly (scaling up never lowers the sum rate).

    Numerics: with ``Gw = diag(sqrt(alpha) |u|) G`` and ``c = sqrt(alpha) u / |u|`` the
    update is ``W = Gw^H (Gw Gw^H + mu I)^{-1} diag(c)`` (push-through identity),
    i.e. ``regularized_pinv(Gw, mu) * c``: SVD-accurate forward values, implicit
    gradients. Interference is summed off the diagonal, never as ``J - |s|^2``.
    ``mu`` solves the secular equation ``sum_n c2_n / (s_n^2 + mu)^2 = 1`` on the
    SVD ``Gw = U diag(s) V^H`` (``c2_n = s_n^2 ||(U^H diag(c))[n]||^2``) by a fixed
    number of monotone Newton steps (``_power_multiplier``) and is differentiated
    implicitly on the active branch (``dmu = -dF / F'`` for ``F = ||W(mu)||^2 - 1``;
    zero derivative when the budget is slack).
    Returns the new W and the duals ``alpha |u|^2 / mu`` (``mu`` including the floor).
    """
    rdt = _real_dtype(G)
    K, N = G.shape
    Y = G @ W  # (K, K): [k, i] = g_k w_i
    P = Y.real**2 + Y.imag**2
    s = jnp.diagonal(Y)
    interference = jnp.sum(jnp.where(jnp.eye(K, dtype=bool), 0.0, P), axis=1)
    J = jnp.diagonal(P) + interference + 1.0
    u = s / J
    alpha = J / (interference + 1.0)
    u2 = u.real**2 + u.imag**2  # |u|^2 without the kink of |.| at 0 (switched-off users)
    weight = alpha * u2
    # users whose receiver fell below eps^2 of the strongest are switched off (c = 0): their
    # phase u/|u| is numerically meaningless and its derivative ~|u|^-3 would overflow
    live = u2 > jnp.finfo(rdt).eps ** 2 * jnp.max(u2) + jnp.finfo(rdt).tiny
    c = jnp.where(live, jnp.sqrt(alpha) * u * jax.lax.rsqrt(jnp.where(live, u2, 1.0)), 0.0)
    Gw = (jnp.sqrt(alpha) * safe_sqrt(u2))[:, None] * G
    svd = _svd(Gw)
    U, sv, _ = svd
    z = jax.lax.stop_gradient(jnp.conj(U).T * c[None, :])  # (K, K): U^H diag(c)
    c2 = jnp.sum(z.real**2 + z.imag**2, axis=1) * sv**2
    floor = _regularized_floor(sv)
    mu0 = _power_multiplier(sv**2, c2, floor)
    W0 = regularized_pinv(Gw, mu0, svd) * c[None, :]
    # implicit derivative of mu on the active branch: W(mu) ~ W0 - (mu - mu0) Z
    mu_eff = mu0 + floor
    Z = jax.lax.stop_gradient(_pinv_derivative(svd, sv, mu_eff, z))
    F = _sq_norm(W0) - 1.0
    dF = jax.lax.stop_gradient(-2.0 * jnp.real(jnp.vdot(W0, Z)))
    active = jax.lax.stop_gradient(F) > -1e3 * jnp.finfo(rdt).eps  # budget binds
    dmu = jnp.where(active, -(F - jax.lax.stop_gradient(F)) / jnp.where(dF < 0, dF, -1.0), 0.0)
    W_new = normalize_power(W0 - dmu * Z, 1.0, "total")
    lam = weight / mu_eff
    return W_new, lam


def _pinv_derivative(svd, sv, mu, z):
    """``-d/dmu [Gw^H (Gw Gw^H + mu)^{-1}] diag(c) = Vt diag(s / (s^2 + mu)^2) U^H diag(c)``."""
    _, _, Vt = svd
    return Vt @ (safe_div(sv, (sv**2 + mu) ** 2)[:, None] * z)


def _wmmse_init(H, init, power):
    K, N = H.shape
    if isinstance(init, str):
        if init not in ("auto", "zf", "mrt"):
            raise ValueError(f"wmmse init must be 'auto', 'zf', 'mrt' or an (N, K) array, got {init!r}")
        if init == "auto":
            init = "zf" if K <= N else "mrt"
        return zf(H, 1.0) if init == "zf" else mrt(H, 1.0)
    W0 = jnp.asarray(init)
    check_shape("init", W0, (N, K))
    return normalize_power(W0.astype(H.dtype), 1.0, "total")


def wmmse(H, power, noise_power, *, iterations: int = 100, init="auto", tol=None, return_info: bool = False):
    """Weighted MMSE transmit beamforming (JB eqs. (11)-(14); docs/model.md §3.1).

    Two modes:

    * ``tol=None`` (default): exactly ``iterations`` updates in a ``lax.scan``;
      reverse-mode differentiable (unrolled), with implicit gradients of the
      power multiplier and of the linear solve (the latter regularised only
      along numerically null directions, see ``regularized_pinv``).
    * ``tol`` given: ``lax.while_loop`` that stops when the relative sum-rate change
      drops below ``tol`` (or after ``iterations``); forward use only.

    Internally the problem is normalised to unit noise and unit budget
    (``G = H sqrt(power / noise_power)``) so float32 stays well scaled; every
    iterate meets the budget with equality and the sum rate does not decrease
    between iterations (up to float rounding). The power multiplier ``mu`` of
    each update comes from the secular equation on an SVD (Newton's method, not
    bisection); see ``_wmmse_step``.

    Args:
      H: ``(K, N)`` channel (any K; init ZF needs K <= N).
      power: budget P [W]. noise_power: sigma^2 [W] (> 0).
      iterations: number of updates (maximum, in ``tol`` mode).
      init: ``"auto"`` (ZF if K <= N else MRT), ``"zf"``, ``"mrt"``, or an ``(N, K)`` start.
      tol: relative sum-rate change for early stopping, or None.
      return_info: return a ``WmmseResult`` with duals, shares and history.

    Returns:
      ``(N, K)`` beamformer, or ``WmmseResult`` if ``return_info``.
    """
    _check_channel(H)
    _check_power(power)
    check_positive_int("iterations", iterations)
    if not is_tracer(noise_power):
        check_nonnegative("noise_power", noise_power)
        if float(noise_power) <= 0:
            raise ValueError(f"noise_power must be > 0, got {noise_power}")
    if tol is not None and not is_tracer(tol) and not float(tol) > 0:
        raise ValueError(f"tol must be > 0 or None, got {tol}")
    rdt = _real_dtype(H)
    scale = jnp.sqrt(jnp.asarray(power, rdt) / jnp.asarray(noise_power, rdt))
    G = H * scale
    W0 = _wmmse_init(H, init, power)
    K = H.shape[0]
    rate0 = sum_rate(G, W0, 1.0)
    lam0 = jnp.zeros((K,), rdt)

    if tol is None:
        def body(carry, _):
            W, _lam = carry
            W, lam = _wmmse_step(G, W)
            return (W, lam), sum_rate(G, W, 1.0)

        (W, lam), history = jax.lax.scan(body, (W0, lam0), None, length=iterations)
        count = jnp.asarray(iterations)
    else:
        tol = jnp.asarray(tol, rdt)
        buf = jnp.full((iterations,), jnp.nan, rdt)

        def cond(state):
            i, _W, _lam, prev, cur, _buf = state
            change = jnp.abs(cur - prev) / jnp.maximum(jnp.abs(cur), 1e-30)
            return (i < iterations) & ((i == 0) | (change > tol))

        def step(state):
            i, W, _lam, _prev, cur, buf = state
            W, lam = _wmmse_step(G, W)
            new = sum_rate(G, W, 1.0)
            return i + 1, W, lam, cur, new, buf.at[i].set(new)

        count, W, lam, _, _, history = jax.lax.while_loop(
            cond, step, (jnp.asarray(0), W0, lam0, rate0, rate0, buf)
        )
        history = jax.lax.stop_gradient(history)
    W_out = W * jnp.sqrt(jnp.asarray(power, rdt))
    if not return_info:
        return W_out
    share = _sq_norm(W, axis=0)  # unit budget -> shares directly
    return WmmseResult(
        W=W_out,
        lam=lam * scale**2,  # G = scale * H  =>  physical duals scale by scale^2
        share=share,
        sum_rates=jnp.concatenate([rate0[None], history]),
        iterations=count,
    )

"""PASS channel model (docs/model.md §2, §5, §6; JB eqs. (2)-(9), TT (1)-(6)).

Single drop per call: positions ``X (N, L)`` [m], users ``(K, 2)`` [m]; batch
with ``jax.vmap``. Complex outputs are complex64 for float32 inputs and
complex128 under x64. Phases are evaluated in cycles through
``jaxpass.phase.cis_cycles`` (one routine for the whole library).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from jaxpass._checks import check_finite, check_positive_int, check_shape, is_tracer
from jaxpass._safe import safe_sqrt
from jaxpass.config import PassConfig
from jaxpass.phase import cis_cycles, df_frac, df_mul, df_square, reduce_cycles, two_sum
from jaxpass.units import SPEED_OF_LIGHT


def _float_dtype(*arrays):
    dt = jnp.result_type(*[jnp.asarray(a).dtype for a in arrays])
    return dt if jnp.issubdtype(dt, jnp.floating) else jnp.result_type(float)


def _check_drop(cfg: PassConfig, X, users):
    """Validate one drop's shapes and finiteness at the boundary (tracers skip)."""
    check_shape("X (positions)", X, (cfg.num_waveguides, cfg.num_pinches))
    check_finite("X (positions)", X)
    check_shape("users", users, (cfg.num_users, 2))
    check_finite("users", users)


def _df_constant(value, dtype):
    """A physical constant as a double-float pair ``(hi, lo)`` of ``dtype``.

    Concrete values (Python floats, NumPy scalars: the usual closed-over config)
    are split on the host in float64, so e.g. 30 GHz keeps its full precision
    in float32 arithmetic; traced values are already rounded to ``dtype``.
    """
    if is_tracer(value):
        v = jnp.asarray(value, dtype)
        return v, jnp.zeros_like(v)
    v = float(np.asarray(value, np.float64))
    hi = float(np.asarray(v, np.dtype(dtype)))
    return jnp.asarray(hi, dtype), jnp.asarray(v - hi, dtype)


def _inverse_wavelength(carrier_freq, dtype):
    """``1 / lambda = f / c`` as a double-float pair ``(hi, lo)`` [cycles/m]."""
    if not is_tracer(carrier_freq):
        return _df_constant(float(np.asarray(carrier_freq, np.float64)) / SPEED_OF_LIGHT, dtype)
    inv_c = _df_constant(1.0 / SPEED_OF_LIGHT, dtype)
    f = jnp.asarray(carrier_freq, dtype)
    return df_mul(f, jnp.zeros_like(f), *inv_c)


def _links(px, py, h, ux, uy, inv_lam):
    """Inverse distances and reduced free-space phases from elements at ``(px, py, h)`` to users at ``(ux, uy, 0)``.

    Args:
      px, py: element coordinates [m]; ux, uy: user coordinates [m]; all four
        broadcast to the output shape ``S`` (the caller chooses the axis order).
      h: element height [m] (scalar, > 0 so no distance is zero).
      inv_lam: ``(hi, lo)`` inverse wavelength [1/m].

    Returns:
      ``inv_r`` = ``1 / r`` [1/m] and ``t``, the phase ``r / lambda`` reduced to
      about ``[-1/2, 1/2]`` cycles, both of shape ``S``. float64 inputs take the
      plain formula (exact to ~1e-13 cycles); float32 inputs go through
      :func:`_links_double_float` (phase error ~1e-6 cycles instead of ~2e-4 at
      3000 cycles), whose derivatives are those of the plain formula.
    """
    if jnp.result_type(px, ux) == jnp.float64:
        dx, dy = px - ux, py - uy
        r = jnp.sqrt(dx * dx + dy * dy + h * h)
        return 1.0 / r, reduce_cycles(r * (inv_lam[0] + inv_lam[1]))
    return _links_double_float(px, py, h, ux, uy, inv_lam[0], inv_lam[1])


@jax.custom_jvp
def _links_double_float(px, py, h, ux, uy, inv_hi, inv_lo):
    """float32 ``(1/r, r/lambda mod 1)`` with double-float (hi, lo) pairs through the phase.

    Coordinates are converted to wavelengths as pairs (once per element and per
    user), then per path: an exact difference, an exact square, two-sums, one
    square root and one division, whose reciprocal serves both the Newton
    correction of the root and the returned ``1/r``. No plain-precision copy of
    the distance is computed on the forward pass: the derivative (the plain
    formula's, accurate to float32 relative precision) is the ``custom_jvp``
    rule below, which skips inputs that are not differentiated.
    """

    def cycles(v):
        return df_mul(v, jnp.zeros_like(v), inv_hi, inv_lo)

    def diff(a, b):
        hi, err = two_sum(a[0], -b[0])
        return hi, err + (a[1] - b[1])

    # the coordinates in wavelengths, once per element and per user: the barrier keeps XLA
    # from fusing (recomputing) these double-float products into every path of the sum
    cpx, cpy, cux, cuy = jax.lax.optimization_barrier((cycles(px), cycles(py), cycles(ux), cycles(uy)))
    dx_h, dx_l = diff(cpx, cux)
    dy_h, dy_l = diff(cpy, cuy)
    h_h, h_l = cycles(h)
    x2, x2e = df_square(dx_h)
    y2, y2e = df_square(dy_h)
    h2, h2e = df_square(h_h)
    c_h, c_e = two_sum(y2, h2)
    s_h, s_e = two_sum(x2, c_h)
    s_l = s_e + c_e + (x2e + 2.0 * dx_h * dx_l) + (y2e + 2.0 * dy_h * dy_l) + (h2e + 2.0 * h_h * h_l)
    r = jnp.sqrt(s_h)  # > 0: the height alone is > 0
    inv = 1.0 / r
    r2, r2e = df_square(r)
    correction = ((s_h - r2) - r2e + s_l) * (0.5 * inv)  # one Newton step: r + correction
    return inv * inv_hi, df_frac(r, correction)


def _links_double_float_jvp(primals, tangents):
    px, py, h, ux, uy, inv_hi, inv_lo = primals
    inv_r, t = _links_double_float(*primals)
    # d r = (dx d(dx) + dy d(dy) + h dh) / r  [m];  t = r / lambda;  d(1/r) = -dr / r^2.
    # Symbolic zeros: inputs that are not differentiated (usually all but X) cost nothing.
    terms = []
    for a, b, da, db in ((px, ux, tangents[0], tangents[3]), (py, uy, tangents[1], tangents[4])):
        d = _tangent_sum(da, db, negate_second=True)
        if d is not None:
            terms.append((a - b) * d)
    if not isinstance(tangents[2], SymbolicZero):
        terms.append(h * tangents[2])
    dr = sum(terms[1:], terms[0]) * inv_r if terms else jnp.zeros_like(inv_r)
    dt = dr * inv_hi
    d_inv_lam = _tangent_sum(tangents[5], tangents[6])
    if d_inv_lam is not None:
        dt = dt + d_inv_lam / inv_r
    return (inv_r, t), (-dr * inv_r * inv_r, dt)


def _tangent_sum(a, b, negate_second=False):
    """``a + b`` (or ``a - b``) of two tangents, ``None`` when both are symbolic zeros."""
    a = None if isinstance(a, SymbolicZero) else a
    b = None if isinstance(b, SymbolicZero) else b
    if b is not None and negate_second:
        b = -b
    if a is None or b is None:
        return b if a is None else a
    return a + b


_links_double_float.defjvp(_links_double_float_jvp, symbolic_zeros=True)


def _value_of(value, differentiable):
    """``value`` with the derivative of ``differentiable`` (which it approximates)."""
    return jax.lax.stop_gradient(value) + (differentiable - jax.lax.stop_gradient(differentiable))


def _guide_cycles(cfg, X, inv_lam):
    """In-waveguide phase ``n_eff x / lambda`` reduced to about ``[-1/2, 1/2]`` cycles, ``(N, L)``."""
    dt = X.dtype
    if dt == jnp.float64:
        return reduce_cycles(jnp.asarray(cfg.n_eff, dt) * X * (inv_lam[0] + inv_lam[1]))
    n_h, n_l = _df_constant(cfg.n_eff, dt)
    g_h, g_l = df_mul(n_h, n_l, inv_lam[0], inv_lam[1])
    Xc, g_h, g_l = jax.lax.stop_gradient((X, g_h, g_l))
    m_h, m_l = df_mul(Xc, jnp.zeros_like(Xc), g_h, g_l)
    return _value_of(df_frac(m_h, m_l), X * (jnp.asarray(cfg.n_eff, dt) * inv_lam[0]))


def _drop_arrays(cfg: PassConfig, X, users):
    """Validated, float-cast ``X``, ``users`` and the geometry constants of one drop."""
    _check_drop(cfg, X, users)
    X = jnp.asarray(X)
    users = jnp.asarray(users)
    dt = _float_dtype(X, users)
    X, users = X.astype(dt), users.astype(dt)
    inv_lam = _inverse_wavelength(cfg.carrier_freq, dt)
    lanes = cfg.lane_y.astype(dt)[:, None]
    return X, users, inv_lam, lanes, jnp.asarray(cfg.height, dt)


def _pinch_links(cfg: PassConfig, X, users):
    """Validated float arrays and ``(inv_r, t, inv_lam)`` for all pinch paths ``(K, N, L)``."""
    X, users, inv_lam, lanes, h = _drop_arrays(cfg, X, users)
    inv_r, t = _links(X[None], lanes[None], h, users[:, 0, None, None], users[:, 1, None, None], inv_lam)
    return X, inv_r, t, inv_lam


def distances(cfg: PassConfig, X, users):
    """``r[k, n, l] = sqrt((X[n,l] - x_k)^2 + (y_n - y_k)^2 + h^2)`` [m], shape ``(K, N, L)``.

    Never zero because ``h > 0``, so no division guard is needed downstream.
    """
    X, users, _, lanes, h = _drop_arrays(cfg, X, users)
    dx = X[None] - users[:, 0, None, None]
    dy = lanes[None] - users[:, 1, None, None]
    return jnp.sqrt(dx * dx + dy * dy + h * h)


def equal_split(num_elements: int, dtype=None):
    """Split coefficients ``delta_n = 1/(L - n)`` that radiate equal power ``1/L`` (docs/model.md §5)."""
    dtype = dtype or jnp.result_type(float)
    return 1.0 / (num_elements - jnp.arange(num_elements, dtype=dtype))


def coupled_amplitudes(split):
    """Radiated amplitudes of the power-split model (docs/model.md §5, EE).

    ``a_n = sqrt(delta_n) prod_{i<n} sqrt(1 - delta_i)``; the residual power
    ``prod_n (1 - delta_n)`` is lost at the end of the waveguide.

    Args:
      split: ``(..., L)`` split coefficients ``delta`` in ``[0, 1]`` (clipped).

    Returns:
      ``(..., L)`` non-negative amplitudes with ``sum a^2 = 1 - prod(1 - delta)``.
    """
    d = jnp.clip(jnp.asarray(split), 0.0, 1.0)
    keep = 1.0 - d
    # exclusive cumulative product of (1 - delta_i), i < n
    before = jnp.cumprod(jnp.concatenate([jnp.ones_like(keep[..., :1]), keep[..., :-1]], axis=-1), axis=-1)
    # sqrt(x) with a finite derivative at 0 (x = 0 happens for delta = 0 or 1)
    return safe_sqrt(d * before)


def radiation_amplitudes(cfg: PassConfig, split=None, dtype=None):
    """``a[n, l]`` of shape ``(N, L)`` for the config's radiation model.

    ``"equal"``: ``1/sqrt(L)`` (JB eq. (3)). ``"coupled"``: ``coupled_amplitudes(split)``
    with ``split`` of shape ``(L,)`` or ``(N, L)``; default ``equal_split(L)``.
    """
    dtype = dtype or jnp.result_type(float)
    N, L = cfg.num_waveguides, cfg.num_pinches
    if cfg.radiation == "equal":
        if split is not None:
            raise ValueError("split coefficients need radiation='coupled' (config has radiation='equal')")
        return jnp.full((N, L), 1.0 / jnp.sqrt(jnp.asarray(L, dtype)), dtype)
    if split is None:
        split = equal_split(L, dtype)
    split = jnp.asarray(split, dtype)
    if split.shape not in ((L,), (N, L)):  # shapes are static: checked under jit too
        raise ValueError(f"split must have shape ({L},) or ({N}, {L}), got {split.shape}")
    check_finite("split", split)
    return jnp.broadcast_to(coupled_amplitudes(split), (N, L))


def _amplitudes(cfg: PassConfig, amplitudes, dtype):
    if amplitudes is None:
        return radiation_amplitudes(cfg, dtype=dtype)
    a = jnp.asarray(amplitudes)
    if a.shape not in ((cfg.num_pinches,), (cfg.num_waveguides, cfg.num_pinches)):
        raise ValueError(
            f"amplitudes must have shape ({cfg.num_pinches},) or "
            f"({cfg.num_waveguides}, {cfg.num_pinches}), got {a.shape}"
        )
    check_finite("amplitudes", a)
    return jnp.broadcast_to(a.astype(dtype), (cfg.num_waveguides, cfg.num_pinches))


def _waveguide_loss(cfg: PassConfig, X):
    """Amplitude attenuation ``10**(-alpha_db x / 20)`` along the waveguide."""
    return jnp.exp(-(jnp.log(10.0) / 20.0) * jnp.asarray(cfg.loss_db_per_m, X.dtype) * X)


def pinch_response(cfg: PassConfig, X, amplitudes=None, *, method: str = "auto"):
    """In-waveguide response ``g[n,l] = a e^{-j kappa n_eff x} 10^{-alpha x/20}``, ``(N, L)`` complex.

    JB eq. (3) / docs/model.md §2. ``amplitudes``: optional ``(N, L)`` or ``(L,)`` override.
    """
    X = jnp.asarray(X)
    check_shape("X (positions)", X, (cfg.num_waveguides, cfg.num_pinches))
    dt = _float_dtype(X)
    X = X.astype(dt)
    c, s = cis_cycles(_guide_cycles(cfg, X, _inverse_wavelength(cfg.carrier_freq, dt)), method)
    mag = _amplitudes(cfg, amplitudes, dt) * _waveguide_loss(cfg, X)
    return jax.lax.complex(mag * c, -mag * s)


def free_space_links(cfg: PassConfig, X, users, *, method: str = "auto"):
    """``h[k,n,l] = sqrt(beta) e^{-j kappa r} / r``, shape ``(K, N, L)`` complex (JB eq. (4))."""
    _, inv_r, t, _ = _pinch_links(cfg, X, users)
    c, s = cis_cycles(t, method)
    mag = jnp.sqrt(jnp.asarray(cfg.beta, t.dtype)) * inv_r
    return jax.lax.complex(mag * c, -mag * s)


def effective_channel(cfg: PassConfig, X, users, *, amplitudes=None, los=None, method: str = "auto"):
    """Effective channel ``Heff[k, n] = sum_l h[k,n,l] g[n,l]``, shape ``(K, N)`` complex.

    docs/model.md §2 (JB eqs. (2)-(9)): row ``k`` is ``h_k^H G(X)``; with a beamformer
    ``W (N, K)`` user k receives ``Heff[k] @ W``. Computed in one fused pass:
    magnitude ``sqrt(beta) a[n,l] 10^{-alpha x/20} / r`` and phase
    ``-(r + n_eff x) / lambda`` cycles, summed over the pinches in blocks of at
    most 16 (XLA CPU keeps a block in one fused loop; longer sums spill
    temporaries), the blocks under one ``vmap`` so the program's size does not
    grow with L.

    Differentiable in reverse mode w.r.t. every array input (positions, users,
    amplitudes, LoS weights, traced config fields) through a custom VJP that
    recomputes the paths instead of storing them (:func:`_path_sum`); forward
    mode (``jax.jvp``, ``jax.jacfwd``) is not supported through it.

    Args:
      cfg: the scenario.
      X: ``(N, L)`` pinch positions [m].
      users: ``(K, 2)`` user coordinates [m].
      amplitudes: optional ``(N, L)``/``(L,)`` radiation amplitudes (default from
        ``cfg.radiation``; see ``radiation_amplitudes``).
      los: optional LoS indicators or weights broadcastable to ``(K, N, L)``
        (docs/model.md §6 blockage masks), multiplying each path.
      method: ``cis`` evaluation path (``jaxpass.phase``).

    Returns:
      ``(K, N)`` complex effective channel (amplitude units: sqrt(W) gain).
    """
    X, users, inv_lam, lanes, h = _drop_arrays(cfg, X, users)
    dt = X.dtype
    K, N, L = cfg.num_users, cfg.num_waveguides, cfg.num_pinches
    gain = jnp.sqrt(jnp.asarray(cfg.beta, dt)) * _amplitudes(cfg, amplitudes, dt) * _waveguide_loss(cfg, X)
    if los is not None:
        los = jnp.asarray(los, dt)
        check_finite("los", los)
        try:
            jnp.broadcast_shapes(los.shape, (K, N, L))
        except ValueError:
            raise ValueError(f"los must broadcast to (K, N, L)={(K, N, L)}, got {los.shape}") from None
        los = jnp.broadcast_to(los, (K, N, L))

    ux, uy = users[:, 0, None, None], users[:, 1, None, None]
    guide = _guide_cycles(cfg, X, inv_lam)  # (N, L); differentiated outside the path sum

    def block_sum(Xb, gb, guide_b, lb):  # one block of P pinches: (N, P), (N, P), (N, P), (K, N, P) or None
        return _path_sum(method, Xb, gb, guide_b, lb, ux, uy, lanes, h, inv_lam[0], inv_lam[1])

    nblocks = -(-L // _PINCH_BLOCK)
    if nblocks == 1:
        re, im = block_sum(X, gain, guide, los)
    else:
        # Equal blocks (the last padded with zero-gain pinches, which add exact zeros), summed
        # by a vmap over the blocks: the program does not grow with L.
        size = -(-L // nblocks)
        pad = nblocks * size - L

        def split(a):
            a = jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)]) if pad else a
            return jnp.moveaxis(a.reshape(a.shape[:-1] + (nblocks, size)), -2, 0)

        lb = None if los is None else split(los)
        re, im = jax.vmap(block_sum, in_axes=(0, 0, 0, None if lb is None else 0))(split(X), split(gain), split(guide), lb)
        re, im = jnp.sum(re, axis=0), jnp.sum(im, axis=0)
    return jax.lax.complex(re, -im)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _path_sum(method, X, gain, guide, los, ux, uy, lanes, h, inv_hi, inv_lo):
    """``(sum_l mag cos(2 pi phase), sum_l mag sin(2 pi phase))`` over the pinches, each ``(K, N)``.

    Per path ``(k, n, l)``: ``mag = gain[n, l] los[k, n, l] / r`` and ``phase = r / lambda +
    guide[n, l]`` cycles, with ``r`` the distance from pinch ``(X[n, l], lanes[n], h)`` to user
    ``(ux[k], uy[k], 0)``; ``los`` may be ``None`` (all ones).

    Reverse mode is a ``custom_vjp`` that saves only the inputs and recomputes ``r``,
    the phase (double-float in float32, as the forward) and ``1/r`` in the backward
    pass, fused with the sums over the users; plain autodiff stored several
    ``(K, N, L)`` arrays (distances, cosines, sines, magnitudes) and was memory
    bound. The derivatives are those of the plain formula, as in
    :func:`_links_double_float`. Forward mode (``jax.jvp``) is not available
    through it. Per drop, batch 64, float32, ``effective_channel`` then
    ``|H @ W|^2``, value and gradient w.r.t. ``X``, measured on a 2-core CPU shared
    with other jobs (process CPU time, best of 10-20 after compiling) [us]:

    ==========  =====================  =====================
    K = N, L    before: fwd / v+g      now: fwd / v+g
    ==========  =====================  =====================
    4, 8        0.78 / 2.4 (3.1x)      0.79 / 2.5 (3.1x)
    16, 32      26 / 110 (4.2x)        47 / 147 (3.1x)
    32, 64      308 / 2831 (9.2x)      355 / 1057 (3.0x)
    ==========  =====================  =====================

    At (16, 32) the former two unrolled 16-pinch blocks compiled to an unusually
    fast forward (3 ns per path against 5 ns at (32, 64)) that neither a scan nor
    a vmap over the blocks reproduces.
    """
    return _path_sum_fwd(method, X, gain, guide, los, ux, uy, lanes, h, inv_hi, inv_lo)[0]


def _path_terms(method, X, gain, guide, los, ux, uy, lanes, h, inv_hi, inv_lo):
    inv_r, t = _links(X[None], lanes[None], h, ux, uy, (inv_hi, inv_lo))
    c, s = cis_cycles(t + guide[None], method)
    mag = gain[None] * inv_r
    if los is not None:
        mag = mag * los
    return inv_r, c, s, mag


def _path_sum_fwd(method, *args):
    _, c, s, mag = _path_terms(method, *args)
    # two plain sums: XLA CPU fuses them into one pass; a complex or variadic reduction
    # sharing the phase measured 6-12x slower
    return (jnp.sum(mag * c, axis=-1), jnp.sum(mag * s, axis=-1)), args


def _path_sum_bwd(method, args, cts):
    # the barrier keeps XLA from merging this recomputation with the forward pass's (CSE),
    # which would store the (K, N, L) intermediates after all (as jax.checkpoint does)
    args, cts = jax.lax.optimization_barrier((args, cts))
    X, gain, guide, los, ux, uy, lanes, h, inv_hi, inv_lo = args
    ct_re, ct_im = (ct[..., None] for ct in cts)
    inv_r, c, s, mag = _path_terms(method, *args)
    # d re = sum_l (dmag c - 2 pi mag s dphase), d im = sum_l (dmag s + 2 pi mag c dphase)
    ct_mag = ct_re * c + ct_im * s
    ct_phase = (2.0 * np.pi) * mag * (ct_im * c - ct_re * s)
    base = gain[None] * inv_r  # mag without the LoS factor
    ct_los = None if los is None else ct_mag * base
    ct_inv_r = ct_mag * gain[None] * (1.0 if los is None else los)
    # r: phase = r (inv_hi + inv_lo) + guide, 1/r; dr = (dx d(dx) + dy d(dy) + h dh) / r
    ct_r_over_r = (ct_phase * (inv_hi + inv_lo) - ct_inv_r * inv_r * inv_r) * inv_r
    dx, dy = X[None] - ux, lanes[None] - uy
    gx, gy = ct_r_over_r * dx, ct_r_over_r * dy
    ct_X = jnp.sum(gx, axis=0)
    ct_gain = jnp.sum(ct_mag * inv_r * (1.0 if los is None else los), axis=0)
    ct_guide = jnp.sum(ct_phase, axis=0)
    ct_ux, ct_uy = jnp.sum(gx, axis=(1, 2)), jnp.sum(gy, axis=(1, 2))
    ct_lanes = jnp.sum(gy, axis=(0, 2))
    ct_h, ct_inv_lam = jnp.sum(ct_r_over_r * h), jnp.sum(ct_phase / inv_r)
    return (
        ct_X,
        ct_gain,
        ct_guide,
        ct_los,
        -ct_ux[:, None, None],
        -ct_uy[:, None, None],
        ct_lanes[:, None],
        ct_h,
        ct_inv_lam,
        ct_inv_lam,
    )


_path_sum.defvjp(_path_sum_fwd, _path_sum_bwd)


_PINCH_BLOCK = 16


def los_probability(cfg: PassConfig, X, users):
    """LoS probability ``p[k,n,l] = exp(-beta_b r[k,n,l])``, shape ``(K, N, L)`` (docs/model.md §6)."""
    r = distances(cfg, X, users)
    return jnp.exp(-jnp.asarray(cfg.blockage_rate, r.dtype) * r)


def blockage_covariance(cfg: PassConfig, X, users, *, amplitudes=None, method: str = "auto"):
    """Blockage-averaged channel covariance ``R_k = E[h_k h_k^H]``, shape ``(K, N, N)``.

    docs/model.md §6 with independent Bernoulli LoS indicators per path (prob. ``p``):
    for path coefficients ``c[k,n,l]`` (the terms of ``effective_channel``),
    ``R_k = m_k m_k^H + diag(sum_l p (1-p) |c|^2)`` with ``m_k[n] = sum_l p c``.
    For one pinch per waveguide (PB) this is
    ``(p_k * hbar_k)(p_k * hbar_k)^H + diag(p_k (1 - p_k) |hbar_k|^2)``.
    In the row convention of ``effective_channel`` (user k receives
    ``Heff[k] @ w``) we return ``R_k = E[Heff[k]^H Heff[k]]``, i.e.
    ``R_k[n, m] = E[conj(Heff[k, n]) Heff[k, m]]``, so that the expected received
    power is ``E|Heff[k] @ w|^2 = w^H R_k w`` and the expected SNR is that over sigma^2.
    """
    p = los_probability(cfg, X, users)  # (K, N, L)
    K, N, L = p.shape
    # path coefficients c[k,n,l], computed as effective_channel of each path alone
    paths = jax.vmap(
        lambda mask: effective_channel(cfg, X, users, amplitudes=amplitudes, los=mask, method=method),
        in_axes=0,
        out_axes=-1,
    )(jnp.eye(L, dtype=p.dtype)[:, None, None, :])  # (K, N, L)
    mean = jnp.sum(p * paths, axis=-1)  # (K, N) = E[Heff[k, n]]
    var = jnp.sum(p * (1.0 - p) * jnp.abs(paths) ** 2, axis=-1)  # (K, N)
    outer = jnp.conj(mean)[:, :, None] * mean[:, None, :]
    return outer + jax.vmap(jnp.diag)(var).astype(outer.dtype)


def ula_channel(cfg: PassConfig, users, num_antennas: int, spacing=None, *, method: str = "auto"):
    """Conventional uniform linear array at the origin (docs/model.md §3.5), shape ``(K, M)`` complex.

    Element ``m`` sits at ``(m * spacing, 0, h)`` (ULA along x, default spacing
    ``lambda/2``); ``H[k, m] = sqrt(beta) e^{-j kappa r_km} / r_km``, the same
    spherical-wave free-space model as the pinches. A sub-connected hybrid array
    with N RF chains of L antennas uses ``num_antennas = N * L`` and groups
    consecutive elements per chain.
    """
    check_positive_int("num_antennas", num_antennas)
    users = jnp.asarray(users)
    check_shape("users", users, (cfg.num_users, 2))
    check_finite("users", users)
    dt = _float_dtype(users)
    users = users.astype(dt)
    inv_lam = _inverse_wavelength(cfg.carrier_freq, dt)
    d = 0.5 / (inv_lam[0] + inv_lam[1]) if spacing is None else jnp.asarray(spacing, dt)
    xm = jnp.arange(num_antennas, dtype=dt) * d
    inv_r, t = _links(xm, jnp.zeros_like(xm), jnp.asarray(cfg.height, dt), users[:, :1], users[:, 1:], inv_lam)
    c, s = cis_cycles(t, method)
    mag = jnp.sqrt(jnp.asarray(cfg.beta, dt)) * inv_r
    return jax.lax.complex(mag * c, -mag * s)

"""One complex-exponential routine for the whole channel (docs/model.md §2 numerics).

Phases enter as *cycles* ``t`` (``kappa r / (2 pi) = r / lambda``), are reduced to
``t - round(t)`` (exact in floating point for |t| < 2**23) and only then
turned into cosine/sine. ``kappa r`` is ~1e4 rad, so evaluating ``cos(kappa r)``
directly wastes precision and, on CPU, time: XLA's ``jnp.sin``/``jnp.cos`` do a
slow generic range reduction, while the fused quarter-turn reduction plus
short polynomials below vectorise well (``benchmarks/throughput.py`` times
both beside NumPy's ``np.sin``).

``cis_cycles(t, method=...)`` returns ``(cos 2 pi t, sin 2 pi t)``:

* ``"poly"``: quarter-turn reduction + minimax polynomials of degree 7/8 on
  ``[-pi/4, pi/4]`` (Cephes ``sinf``/``cosf``); max abs error ~1e-7 in float32.
* ``"hardware"``: reduced argument through ``jnp.cos``/``jnp.sin``.
* ``"auto"`` (default): ``"poly"`` for float32 on CPU; ``"hardware"`` for
  float64 (full accuracy) and on GPU/TPU where the hardware units are fast.

Both paths are differentiable (``round`` has zero derivative, so
``d/dt cos(2 pi t) = -2 pi sin(2 pi t)`` exactly as for the unreduced phase).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_TWO_PI = 6.283185307179586

# Minimax coefficients of sin(a)/a and cos(a) in a^2 on [-pi/4, pi/4] (Cephes sinf/cosf,
# Horner, highest first): degree 7/8, within ~1e-7 of sin/cos there in float32.
_SIN_COEFFS = (-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1, 1.0)
_COS_COEFFS = (2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2, -0.5, 1.0)


def _horner(coeffs, x):
    acc = jnp.asarray(coeffs[0], x.dtype)
    for c in coeffs[1:]:
        acc = acc * x + jnp.asarray(c, x.dtype)
    return acc


def resolve_method(dtype, method: str = "auto") -> str:
    """The concrete evaluation path for ``method`` at ``dtype`` on the default backend."""
    if method not in ("auto", "poly", "hardware"):
        raise ValueError(f"cis method must be 'auto', 'poly' or 'hardware', got {method!r}")
    if method != "auto":
        return method
    if jnp.dtype(dtype) == jnp.float64 or jax.default_backend() != "cpu":
        return "hardware"
    return "poly"


def reduce_cycles(t):
    """``t - round(t)`` in ``[-1/2, 1/2]``: the phase in cycles modulo one turn."""
    return t - jnp.round(t)


def cis_cycles(t, method: str = "auto"):
    """``(cos(2 pi t), sin(2 pi t))`` for real ``t`` in cycles, any shape.

    Differentiable with the analytic rule ``d(cos, sin) = 2 pi (-sin, cos) dt``
    (a ``custom_jvp``), so gradients never go through the range reduction or the
    polynomial's quadrant selects.

    Args:
      t: real array of phases in cycles (turns).
      method: ``"auto"``, ``"poly"`` or ``"hardware"`` (see module docstring).

    Returns:
      Two real arrays of ``t``'s shape and dtype.
    """
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    return _cis_cycles(resolve_method(t.dtype, method), t)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _cis_cycles(path, t):
    r = reduce_cycles(t)
    if path == "hardware":
        a = _TWO_PI * r
        return jnp.cos(a), jnp.sin(a)
    q = jnp.round(4.0 * r)  # quarter turns, in {-2, ..., 2}
    a = _TWO_PI * (r - 0.25 * q)  # in [-pi/4, pi/4]
    a2 = a * a
    s = a * _horner(_SIN_COEFFS, a2)
    c = _horner(_COS_COEFFS, a2)
    qi = q.astype(jnp.int32) & 3  # quarter turns mod 4 (-1 -> 3, -2 -> 2)
    # cos(a + qi pi/2), sin(a + qi pi/2): odd qi swaps cos and sin; qi in {1, 2} negates
    # the cosine, qi in {2, 3} the sine
    swap = (qi & 1) == 1
    c1, s1 = jnp.where(swap, s, c), jnp.where(swap, c, s)
    cos_t = jnp.where(((qi + 1) & 2) == 2, -c1, c1)
    sin_t = jnp.where((qi & 2) == 2, -s1, s1)
    return cos_t, sin_t


@_cis_cycles.defjvp
def _cis_cycles_jvp(path, primals, tangents):
    (t,), (dt,) = primals, tangents
    c, s = _cis_cycles(path, t)
    w = _TWO_PI * dt
    return (c, s), (-s * w, c * w)


def cis(t, method: str = "auto"):
    """``exp(2j pi t)`` as a complex array (complex64 for float32 ``t``)."""
    c, s = cis_cycles(t, method)
    return jax.lax.complex(c, s)


# ---------------------------------------------------------------------------
# Error-free transformations (double-float arithmetic) for float32 phases.
#
# A path of ~10 m at 30 GHz is ~3000 cycles; float32 resolves 3000 only to
# 2.4e-4 cycles (1.5e-3 rad), and every rounding of the distance adds as much.
# Carrying (hi, lo) pairs through the distance and the cycle count keeps the
# reduced phase within ~1e-6 cycles of the float64 value for the same float32
# inputs. These are Dekker/Knuth transformations; they rely on IEEE rounding
# without re-association (XLA's default, no fast-math).
# ---------------------------------------------------------------------------


def _split(a):
    """Veltkamp split ``a = hi + lo`` with half-width mantissas (products of halves are exact)."""
    factor = 134217729.0 if a.dtype == jnp.float64 else 4097.0
    t = jnp.asarray(factor, a.dtype) * a
    hi = t - (t - a)
    return hi, a - hi


def two_sum(a, b):
    """``a + b = s + e`` exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def two_prod(a, b):
    """``a * b = p + e`` exactly (Dekker, no FMA needed)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def df_square(a):
    """``a * a = p + e`` exactly (``two_prod(a, a)`` with one split)."""
    p = a * a
    ah, al = _split(a)
    return p, ((ah * ah - p) + 2.0 * ah * al) + al * al


def df_mul(a_hi, a_lo, b_hi, b_lo):
    """Double-float product ``(a_hi + a_lo) (b_hi + b_lo)`` as ``(hi, lo)``."""
    p, e = two_prod(a_hi, b_hi)
    return p, e + (a_hi * b_lo + a_lo * b_hi)


def df_frac(hi, lo):
    """Fractional cycles ``(hi + lo) - round(hi)``, in about ``[-1/2, 1/2]``."""
    return (hi - jnp.round(hi)) + lo

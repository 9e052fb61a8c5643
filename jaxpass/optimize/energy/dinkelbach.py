"""EE-optimal TDMA powers (EE Alg. 1, docs/model.md §5): water-filling, Dinkelbach, the per-objective policy."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxpass.optimize.energy.model import energy_efficiency_of
from jaxpass.optimize.energy.options import DesignOptions, DinkelbachOptions

_LN2 = math.log(2.0)


class DinkelbachResult(NamedTuple):
    """Output of :func:`dinkelbach` for one drop.

    Attributes:
      power: ``(K,)`` input powers [W] (the water-filling of the last ``q``).
      ee: energy efficiency at ``power`` [bit/s/Hz per W] (= ``history[-1]``).
      se: spectral efficiency at ``power`` [bps/Hz].
      history: ``(iterations + 1,)`` the Dinkelbach parameter ``q_t``; ``q_0`` is the EE
        at full power ``P_max``. Non-decreasing (Dinkelbach's monotonicity).
    """

    power: jax.Array
    ee: jax.Array
    se: jax.Array
    history: jax.Array


def water_filling(gains, q, p_max):
    """Energy-efficient water-filling (the inner step of EE Alg. 1, docs/model.md §5).

    Maximises ``(1/K) sum_k log2(1 + p_k g_k) - q (1/K) sum_k p_k`` over
    ``0 <= p_k <= P_max``: ``p_k = clip(1/(q ln 2) - 1/g_k, 0, P_max)``; users with
    ``g_k = 0`` get nothing, ``q = 0`` gives full power.

    Args:
      gains: ``(K,)`` SNR per watt [1/W]; q: scalar >= 0 [bit/s/Hz per W]; p_max: [W].

    Returns:
      ``(K,)`` powers [W].
    """
    gains = jnp.asarray(gains)
    tiny = jnp.finfo(gains.dtype).tiny
    level = 1.0 / (_LN2 * jnp.maximum(q, tiny))
    ok = gains > tiny
    inv = 1.0 / jnp.where(ok, gains, 1.0)
    return jnp.where(ok, jnp.clip(level - inv, 0.0, p_max), 0.0)


def dinkelbach(gains, p_max, circuit_power, options: DinkelbachOptions | None = None, **changes) -> DinkelbachResult:
    """EE-optimal TDMA powers by Dinkelbach's method with water-filling steps (EE Alg. 1).

    ``q_0 = EE(P_max 1)``; step t: ``p^t = water_filling(g, q_{t-1}, P_max)``,
    ``q_t = EE(p^t)``. A fixed number of steps (``lax.scan``, so it vmaps with a
    static cost); the sequence ``q_t`` is non-decreasing and converges
    superlinearly to ``max_p EE`` (the global optimum: EE is a ratio of a concave
    and an affine function). Pure: runs under a caller's ``jax.jit``/``jax.vmap``.
    Not meant to be differentiated through (the designs use the envelope theorem).

    Args:
      gains: ``(K,)`` SNR per watt ``|h_k|^2 / sigma^2`` [1/W].
      p_max: per-slot power budget [W] (scalar; may be traced).
      circuit_power: P_c [W] > 0 (may be traced).
      options: :class:`DinkelbachOptions` (``iterations``); ``changes`` override fields.

    Returns:
      :class:`DinkelbachResult`.
    """
    options = DinkelbachOptions.resolve(options, **changes)
    gains = jnp.asarray(gains)
    dt = gains.dtype
    p_max = jnp.asarray(p_max, dt)
    pc = jnp.asarray(circuit_power, dt)
    p0 = jnp.full(gains.shape, p_max, dt)
    q0, se0 = energy_efficiency_of(gains, p0, pc)

    def step(carry, _):
        q, _, _ = carry
        p = water_filling(gains, q, p_max)
        q_new, se = energy_efficiency_of(gains, p, pc)
        return (q_new, p, se), q_new

    (q, p, se), qs = jax.lax.scan(step, (q0, p0, se0), None, length=options.iterations)
    return DinkelbachResult(power=p, ee=q, se=se, history=jnp.concatenate([q0[None], qs]))


def drop_metrics(gains, p_max, circuit_power, options: DesignOptions | None = None, **changes):
    """Design value and metrics of one drop under the objective's power policy (docs/model.md §5).

    ``objective="ee"``: Dinkelbach powers; value = EE. ``"se"``: ``p = P_max``
    (SE-optimal); value = SE. The powers are held fixed for differentiation
    (envelope theorem), so ``jax.grad`` of the value w.r.t. the gains is the
    gradient of the optimal value.

    Args:
      gains: ``(K,)`` [1/W]; p_max: [W]; circuit_power: P_c [W].
      options: :class:`DesignOptions` (``objective``, ``dinkelbach_iterations``).

    Returns:
      ``(value, ee, se, power)``: scalars and ``(K,)`` powers [W].
    """
    options = DesignOptions.resolve(options, **changes)
    gains = jnp.asarray(gains)
    if options.objective == "ee":
        p = jax.lax.stop_gradient(dinkelbach(jax.lax.stop_gradient(gains), p_max, circuit_power,
                                             options.dinkelbach).power)
    else:
        p = jnp.full(gains.shape, jnp.asarray(p_max, gains.dtype))
    ee, se = energy_efficiency_of(gains, p, jnp.asarray(circuit_power, gains.dtype))
    return (ee if options.objective == "ee" else se), ee, se, p

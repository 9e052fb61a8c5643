"""Energy-efficient PASS design: static and dynamic (docs/model.md §5; EE paper Algs. 1-3).

One waveguide along x carries ``N = cfg.num_pinches`` pinching elements at
``x_0 < ... < x_{N-1}`` (spacing >= ``delta_min``); element n couples out the
fraction ``delta_n`` (the *split coefficient*) of the power still in the guide,
so it radiates the amplitude ``a_n = sqrt(delta_n) prod_{i<n} sqrt(1 - delta_i)``
(``jaxpass.channel.coupled_amplitudes``). K users are served by TDMA in equal
slots; user k's slot gets the input power ``p_k <= P_max``::

    h_k  = sum_n a_n c_kn(x_n),   c_kn = sqrt(eta) e^{-j kappa (r_kn + n_eff x_n)} / r_kn
    g_k  = |h_k|^2 / sigma^2                                   (SNR per watt)   [1/W]
    SE   = (1/K) sum_k log2(1 + p_k g_k)                        [bps/Hz]
    EE   = SE / ((1/K) sum_k p_k + P_c)                         [bit/s/Hz per W]

The design variables change at three rates (EE §III): powers ``p`` per drop
(always), locations ``x`` per drop (*dynamic* design) or once for all drops
(*static* design), and the split coefficients ``delta`` once for all drops
(both designs). Everything here is built from three batched blocks:

* :func:`dinkelbach` (EE Alg. 1): Dinkelbach's method with an energy-efficient
  water-filling step ``p_k = clip(1/(q ln 2) - 1/g_k, 0, P_max)`` and the update
  ``q <- EE(p)``; a fixed number of steps (``lax.scan``) with the history of ``q``.
* :func:`gauss_seidel_sweep` (EE Alg. 2): element by element, the objective is
  evaluated on a grid of ``grid_points`` locations spanning the element's
  feasible interval ``[x_{n-1} + delta_min, x_{n+1} - delta_min]`` (ends ``0`` and
  ``S_x``) in one vectorised call (``lax.map`` over chunks of ``grid_batch``
  points, so memory stays bounded on CPU while a GPU can take the whole grid);
  the best grid point replaces ``x_n`` only if it is strictly better, so a step
  never lowers the objective and the layout stays feasible.
* :func:`coupling_step` (EE Alg. 3): a projected gradient-ascent step of the
  ergodic objective (the mean over sampled drops) with respect to ``delta``,
  by autodiff, projected onto ``[0, 1]``; the step length is chosen by a
  batched line search over ``2^-j`` (all candidate steps evaluated in one
  vectorised call), and a step is taken only if it improves the objective.

**Gradient choice (documented, tested):** the per-drop value
``EE*(g) = max_p EE(p; g)`` is differentiated by the envelope theorem: the
Dinkelbach powers ``p*`` are held fixed (``stop_gradient``) and only the
explicit dependence of ``EE(p*; g(delta))`` on ``delta`` is differentiated.
The box ``0 <= p <= P_max`` does not depend on ``delta`` and ``p*`` is unique
(``SE`` is strictly concave in ``p`` for ``g > 0``), so this is the exact
gradient of the optimal value once Dinkelbach has converged, at the cost of
one forward pass; ``tests/test_energy.py`` checks it against central finite
differences of the re-optimised value in float64.

**Objectives.** ``objective="ee"`` maximises the energy efficiency (powers by
Dinkelbach); ``objective="se"`` is the SE-oriented baseline of EE Fig. 2: it
maximises the spectral efficiency with the same machinery, whose optimal powers
are ``p_k = P_max`` (SE increases in every ``p_k``), and its EE is then
``SE / (P_max + P_c)``.

**Reading of the paper (choices written down):**

* *Dynamic* design: one set of locations per drop (shared by the K TDMA slots
  of that drop), as docs/model.md §5 states; couplings shared by all drops.
* The *static* design and the split coefficients are fitted on the drops they
  are evaluated on (the "samples of user locations in a coherence interval" of
  EE eq. (20)/(25)); pass fresh drops to :func:`evaluate_design` for a
  held-out estimate.
* *Fixed coupling* baseline: every element has the same split coefficient
  (``fixed_split``, default 0.5: most power leaves through the first few
  elements, as EE Fig. 3 describes); locations are still optimised.
* *Fixed antenna* baseline: one antenna at the centre of the region
  (``x = S_x/2`` on the waveguide) radiating all the input power, with
  Dinkelbach powers per drop.
* Both designs start from the paper's initial point (uniform ``x``,
  ``delta_n = 1/(N - n)``; the dynamic design in every drop) and only accept
  improving steps, so their ergodic objective is non-decreasing over outer
  iterations. ``static_design(initial="multistart")`` also runs from the
  centre-antenna point (element 0 at ``S_x/2`` with ``delta_0 = 1``: the
  fixed-antenna baseline as a PASS point) and keeps the better design, which
  makes "static >= fixed antenna" hold by construction on the design drops.

Shapes: ``x (N,)`` positions [m] on the waveguide, ``split (N,)``, ``users (K, 2)``
for one drop or ``(D, K, 2)`` for D drops. Public drivers validate their inputs
outside ``jit``; the compiled steps are cached per scenario with the power
budget as a runtime argument (a P_max sweep compiles once).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpass._checks import check_finite, check_positive_int, check_shape, is_tracer
from jaxpass.channel import coupled_amplitudes, equal_split, free_space_links, pinch_response
from jaxpass.compile import jit
from jaxpass.config import PassConfig
from jaxpass.geometry import is_feasible, project_positions, uniform_positions

__all__ = [
    "DinkelbachResult",
    "DesignResult",
    "OBJECTIVES",
    "centre_antenna_point",
    "channel_gains",
    "coupling_step",
    "default_grid_points",
    "dinkelbach",
    "drop_metrics",
    "dynamic_design",
    "element_coefficients",
    "energy_efficiency_of",
    "ergodic_objective",
    "evaluate_design",
    "fixed_antenna",
    "gauss_seidel_sweep",
    "initial_point",
    "static_design",
    "water_filling",
]

OBJECTIVES = ("ee", "se")
_LN2 = math.log(2.0)
DEFAULT_DINKELBACH_ITERATIONS = 12
DEFAULT_LINE_SEARCH = 10
DEFAULT_GRID_BATCH = 2048


# ====================================================================== validation
def _check_cfg(cfg: PassConfig):
    if not isinstance(cfg, PassConfig):
        raise TypeError(f"cfg must be a PassConfig, got {type(cfg).__name__}")
    if cfg.num_waveguides != 1:
        raise ValueError(
            "energy-efficiency design (docs/model.md §5) needs a single waveguide: "
            f"cfg.num_waveguides must be 1, got {cfg.num_waveguides}"
        )


def _check_objective(objective):
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def _check_users(cfg: PassConfig, users, *, batched: bool):
    users = jnp.asarray(users)
    if not is_tracer(users):
        if batched:
            check_shape("users", users, (None, cfg.num_users, 2))
        else:
            check_shape("users", users, (cfg.num_users, 2))
        check_finite("users", users)
    return users


def _check_split(cfg: PassConfig, split):
    split = jnp.asarray(split)
    if not is_tracer(split):
        check_shape("split", split, (cfg.num_pinches,))
        check_finite("split", split)
        arr = np.asarray(split)
        if np.any(arr < 0) or np.any(arr > 1):
            raise ValueError(f"split coefficients must lie in [0, 1], got min {arr.min():.4g}, max {arr.max():.4g}")
    return split


def _check_positions(cfg: PassConfig, x, *, batched: bool = False):
    x = jnp.asarray(x)
    if not is_tracer(x):
        check_shape("x (positions)", x, (None, cfg.num_pinches) if batched else (cfg.num_pinches,))
        check_finite("x (positions)", x)
        if not bool(jnp.all(is_feasible(cfg, x[..., None, :]))):
            raise ValueError(
                "x (positions) must be feasible: 0 <= x_0, x_n - x_{n-1} >= min_spacing "
                f"= {float(cfg.min_spacing):.4g} m, x_{{N-1}} <= length_x = {float(cfg.length_x):.4g} m"
            )
    return x


def _check_power(name, value):
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 0 or not np.isfinite(arr) or arr < 0:
        raise ValueError(f"{name} must be a finite scalar >= 0 [W], got {value!r}")
    return float(arr)


def _check_nonneg_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


# ====================================================================== channel
def element_coefficients(cfg: PassConfig, x, users):
    """Unit-amplitude path coefficients ``c[k, n] = sqrt(eta) e^{-j kappa (r_kn + n_eff x_n)} / r_kn``.

    docs/model.md §5 (the factors of ``h_k`` before the radiation amplitudes ``a_n``), from
    the library's ``free_space_links`` and ``pinch_response`` (so in-waveguide loss,
    if configured, is included).

    Args:
      cfg: single-waveguide scenario (``num_waveguides = 1``, ``N = num_pinches``).
      x: ``(N,)`` element positions [m].
      users: ``(K, 2)`` user coordinates [m].

    Returns:
      ``(K, N)`` complex; ``h_k = c[k] @ a``.
    """
    X = jnp.asarray(x)[None, :]
    links = free_space_links(cfg, X, users)[:, 0, :]  # (K, N)
    guide = pinch_response(cfg, X, amplitudes=jnp.ones((cfg.num_pinches,), X.dtype))[0]  # (N,)
    return links * guide[None, :]


def _single_coefficient(cfg1: PassConfig, xn, users):
    """``c[k]`` of one element at scalar position ``xn``: ``(K,)`` complex (``cfg1``: one pinch)."""
    X = jnp.reshape(xn, (1, 1))
    links = free_space_links(cfg1, X, users)[:, 0, 0]
    guide = pinch_response(cfg1, X, amplitudes=jnp.ones((1,), X.dtype))[0, 0]
    return links * guide


def channel_gains(cfg: PassConfig, x, split, users):
    """SNR per watt of input power ``g_k = |h_k|^2 / sigma^2`` [1/W], shape ``(K,)`` (docs/model.md §5).

    Args:
      x: ``(N,)`` element positions [m]; split: ``(N,)`` coefficients in ``[0, 1]``;
      users: ``(K, 2)``.
    """
    C = element_coefficients(cfg, x, users)
    a = coupled_amplitudes(split).astype(C.real.dtype)
    h = C @ a.astype(C.dtype)
    return (h.real**2 + h.imag**2) / jnp.asarray(cfg.noise_power, h.real.dtype)


# ====================================================================== power (EE Alg. 1)
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


def energy_efficiency_of(gains, power, circuit_power):
    """``(EE, SE)`` of TDMA powers ``p`` on gains ``g`` (docs/model.md §5).

    ``SE = mean_k log2(1 + p_k g_k)``, ``EE = SE / (mean_k p_k + P_c)``.

    Args:
      gains: ``(K,)`` SNR per watt [1/W]; power: ``(K,)`` [W]; circuit_power: P_c [W] > 0.
    """
    gains = jnp.asarray(gains)
    se = jnp.mean(jnp.log2(1.0 + power * gains))
    return se / (jnp.mean(power) + circuit_power), se


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


def dinkelbach(gains, p_max, circuit_power, *, iterations: int = DEFAULT_DINKELBACH_ITERATIONS):
    """EE-optimal TDMA powers by Dinkelbach's method with water-filling steps (EE Alg. 1).

    ``q_0 = EE(P_max 1)``; step t: ``p^t = water_filling(g, q_{t-1}, P_max)``,
    ``q_t = EE(p^t)``. A fixed number of steps (``lax.scan``, so it vmaps with a
    static cost); the sequence ``q_t`` is non-decreasing and converges
    superlinearly to ``max_p EE`` (the global optimum: EE is a ratio of a concave
    and an affine function). 12 steps reach float32 resolution on the EE preset.
    Not meant to be differentiated through (see the module docstring: envelope).

    Args:
      gains: ``(K,)`` SNR per watt ``|h_k|^2 / sigma^2`` [1/W].
      p_max: per-slot power budget [W] (scalar; may be traced).
      circuit_power: P_c [W] > 0.
      iterations: number of Dinkelbach steps (>= 0).

    Returns:
      :class:`DinkelbachResult`.
    """
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

    (q, p, se), qs = jax.lax.scan(step, (q0, p0, se0), None, length=iterations)
    return DinkelbachResult(power=p, ee=q, se=se, history=jnp.concatenate([q0[None], qs]))


def drop_metrics(gains, p_max, circuit_power, *, objective: str = "ee",
                 iterations: int = DEFAULT_DINKELBACH_ITERATIONS):
    """Design value and metrics of one drop under the objective's power policy.

    ``objective="ee"``: Dinkelbach powers; value = EE. ``"se"``: ``p = P_max``
    (SE-optimal); value = SE. The powers are held fixed for differentiation
    (envelope theorem, see the module docstring), so ``jax.grad`` of the value
    w.r.t. the gains is the gradient of the optimal value.

    Returns:
      ``(value, ee, se, power)``: scalars and ``(K,)`` powers [W].
    """
    gains = jnp.asarray(gains)
    if objective == "ee":
        p = jax.lax.stop_gradient(dinkelbach(jax.lax.stop_gradient(gains), p_max, circuit_power,
                                             iterations=iterations).power)
    elif objective == "se":
        p = jnp.full(gains.shape, jnp.asarray(p_max, gains.dtype))
    else:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    ee, se = energy_efficiency_of(gains, p, jnp.asarray(circuit_power, gains.dtype))
    return (ee if objective == "ee" else se), ee, se, p


# ====================================================================== the static scenario key
def _static_cfg(cfg: PassConfig) -> PassConfig:
    """A hashable copy of ``cfg`` (Python floats) with the power budget factored out.

    Compiled steps are cached on it; ``P_max`` is passed at run time, so a power
    sweep reuses one compilation.
    """
    leaves = {}
    for f in ("carrier_freq", "n_eff", "height", "length_x", "width_y", "noise_dbm", "beta",
              "min_spacing", "loss_db_per_m", "blockage_rate", "circuit_power_dbm"):
        v = getattr(cfg, f)
        if is_tracer(v):
            raise TypeError(f"PassConfig.{f} must be concrete for the energy-efficiency drivers")
        leaves[f] = float(np.asarray(v))
    if cfg.waveguide_y is not None:
        leaves["waveguide_y"] = tuple(float(v) for v in np.asarray(cfg.waveguide_y).reshape(-1))
    return cfg.replace(power_dbm=0.0, **leaves)


def default_grid_points(cfg: PassConfig, spacing=None) -> int:
    """Grid size per element so that the spacing is at most ``spacing`` (default ``lambda/10``).

    The interval of one element is at most ``S_x`` long and the grid spans it
    with ``G`` points, so ``G = ceil(S_x / spacing) + 1`` guarantees the bound
    (docs/model.md §5: the phase varies on a wavelength scale).
    """
    lam = float(np.asarray(cfg.wavelength))
    spacing = lam / 10.0 if spacing is None else float(spacing)
    if not spacing > 0:
        raise ValueError(f"grid spacing must be > 0 [m], got {spacing}")
    return int(math.ceil(float(cfg.length_x) / spacing)) + 1


# ====================================================================== ergodic objective
def _drops_value(cfg, X, split, users, p_max, objective, iterations):
    """Per-drop values ``(D,)`` for positions ``X (D, N)``, users ``(D, K, 2)``."""
    pc = cfg.circuit_power

    def one(x, u):
        g = channel_gains(cfg, x, split, u)
        return drop_metrics(g, p_max, pc, objective=objective, iterations=iterations)

    return jax.vmap(one)(X, users)


def ergodic_objective(cfg: PassConfig, X, split, users, p_max=None, *, objective: str = "ee",
                      iterations: int = DEFAULT_DINKELBACH_ITERATIONS):
    """Ergodic design objective: the mean over drops of the per-drop value (EE eqs. (20), (25)).

    Differentiable in ``split`` (and ``X``) with the envelope-theorem gradient
    (Dinkelbach powers held fixed; module docstring).

    Args:
      X: ``(N,)`` static positions or ``(D, N)`` per-drop positions [m].
      split: ``(N,)`` split coefficients.
      users: ``(D, K, 2)`` drops.
      p_max: power budget [W] (default ``cfg.power``).
      objective: ``"ee"`` or ``"se"``.

    Returns:
      Scalar mean value (EE [bit/s/Hz per W] or SE [bps/Hz]).
    """
    _check_cfg(cfg)
    _check_objective(objective)
    users = _check_users(cfg, users, batched=True)
    X = jnp.asarray(X)
    if X.ndim == 1:
        X = jnp.broadcast_to(X, (users.shape[0],) + X.shape)
    p_max = cfg.power if p_max is None else p_max
    return jnp.mean(_drops_value(cfg, X, split, users, p_max, objective, iterations)[0])


# ====================================================================== locations (EE Alg. 2)
def _interval(cfg, x, n):
    """Feasible interval of element ``n`` with the others fixed: ``[x_{n-1} + d, x_{n+1} - d]``."""
    N = x.shape[0]
    d = jnp.asarray(cfg.min_spacing, x.dtype)
    lo = jnp.where(n == 0, 0.0, x[jnp.maximum(n - 1, 0)] + d)
    hi = jnp.where(n == N - 1, jnp.asarray(cfg.length_x, x.dtype), x[jnp.minimum(n + 1, N - 1)] - d)
    return lo, jnp.maximum(hi, lo)


def _gs_element(cfg, cfg1, x, amp, users, p_max, n, *, objective, iterations, grid_points, grid_batch):
    """One Gauss-Seidel update of element ``n`` for the mean objective over drops ``users (D, K, 2)``."""
    pc = cfg.circuit_power
    noise = jnp.asarray(cfg.noise_power, x.dtype)
    C = jax.vmap(lambda u: element_coefficients(cfg, x, u))(users)  # (D, K, N)
    own = jnp.take(C, n, axis=-1)
    base = C @ amp.astype(C.dtype) - amp[n].astype(C.dtype) * own  # (D, K): the other elements
    lo, hi = _interval(cfg, x, n)

    def value_at(xn):
        c = jax.vmap(lambda u: _single_coefficient(cfg1, xn, u))(users)  # (D, K)
        h = base + amp[n].astype(C.dtype) * c
        g = (h.real**2 + h.imag**2) / noise
        vals = jax.vmap(lambda gd: drop_metrics(gd, p_max, pc, objective=objective, iterations=iterations)[0])(g)
        return jnp.mean(vals)

    t = jnp.linspace(0.0, 1.0, grid_points, dtype=x.dtype)
    grid = lo + (hi - lo) * t
    vals = jax.lax.map(value_at, grid, batch_size=min(grid_batch, grid_points))
    current = value_at(x[n])
    best = jnp.argmax(vals)
    better = vals[best] > current
    x_new = x.at[n].set(jnp.where(better, grid[best], x[n]))
    return x_new, jnp.where(better, vals[best], current)


def _gs_sweep(cfg, cfg1, x, split, users, p_max, *, objective, iterations, grid_points, grid_batch):
    """Elements 0..N-1 in turn (``lax.fori_loop``); returns ``(x, value after each element (N,))``."""
    amp = coupled_amplitudes(split).astype(x.dtype)

    def body(n, carry):
        x, vals = carry
        x, v = _gs_element(cfg, cfg1, x, amp, users, p_max, n, objective=objective, iterations=iterations,
                           grid_points=grid_points, grid_batch=grid_batch)
        return x, vals.at[n].set(v)

    return jax.lax.fori_loop(0, x.shape[0], body, (x, jnp.zeros((x.shape[0],), x.dtype)))


@functools.partial(jit, static_argnames=("cfg", "objective", "iterations", "grid_points", "grid_batch", "per_drop"))
def _gs_sweep_compiled(cfg, x, split, users, p_max, *, objective, iterations, grid_points, grid_batch, per_drop):
    cfg1 = cfg.replace(num_pinches=1)
    kw = dict(objective=objective, iterations=iterations, grid_points=grid_points, grid_batch=grid_batch)
    if per_drop:  # dynamic: one layout per drop, users (D, K, 2), x (D, N)
        return jax.vmap(lambda xd, ud: _gs_sweep(cfg, cfg1, xd, split, ud[None], p_max, **kw))(x, users)
    return _gs_sweep(cfg, cfg1, x, split, users, p_max, **kw)


def gauss_seidel_sweep(cfg: PassConfig, x, split, users, p_max=None, *, objective: str = "ee",
                       grid_points: int | None = None, grid_batch: int = DEFAULT_GRID_BATCH,
                       iterations: int = DEFAULT_DINKELBACH_ITERATIONS):
    """One Gauss-Seidel sweep over the element locations (EE Alg. 2; docs/model.md §5).

    For n = 0..N-1: evaluate the objective (powers re-optimised by Dinkelbach for
    ``"ee"``, or SE at ``P_max`` for ``"se"``) with element n at each of
    ``grid_points`` locations spanning its feasible interval
    ``[x_{n-1} + delta_min, x_{n+1} - delta_min]`` (``[0, .]`` / ``[., S_x]`` at the
    ends) — the whole grid in one batched call, ``grid_batch`` points at a time —
    and move the element to the best one if it beats the current location.
    The objective never decreases and the layout stays feasible.

    Args:
      cfg: single-waveguide scenario, N = ``cfg.num_pinches`` elements.
      x: ``(N,)`` feasible positions [m] (one layout: the static objective over all
        drops, or a dynamic layout with ``users (K, 2)``), or ``(D, N)`` with
        ``users (D, K, 2)``: one layout per drop, each optimised for its own drop.
      split: ``(N,)`` split coefficients in ``[0, 1]``.
      users: ``(K, 2)`` one drop, or ``(D, K, 2)`` drops.
      p_max: power budget [W] (default ``cfg.power``).
      objective: ``"ee"`` or ``"se"``.
      grid_points: grid size per element (default :func:`default_grid_points`,
        spacing <= lambda/10 on any interval).
      grid_batch: grid points per vectorised evaluation (memory bound).
      iterations: Dinkelbach steps per evaluation.

    Returns:
      ``(x_new, values)``: positions of ``x``'s shape and ``(N,)`` (or ``(D, N)``)
      objective values after each element's update (non-decreasing).
    """
    _check_cfg(cfg)
    _check_objective(objective)
    split = _check_split(cfg, split)
    x = jnp.asarray(x)
    per_drop = x.ndim == 2
    x = _check_positions(cfg, x, batched=per_drop)
    users = jnp.asarray(users)
    if users.ndim == 2 and not per_drop:
        users = users[None]
    users = _check_users(cfg, users, batched=True)
    if per_drop and users.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} layouts but users has {users.shape[0]} drops; they must match")
    grid_points = default_grid_points(cfg) if grid_points is None else grid_points
    check_positive_int("grid_points", grid_points)
    check_positive_int("grid_batch", grid_batch)
    _check_nonneg_int("iterations", iterations)
    return _gs_sweep_compiled(*_compiled_args(cfg, x, split, users, p_max), objective=objective,
                              iterations=iterations, grid_points=grid_points, grid_batch=grid_batch,
                              per_drop=per_drop)


# ====================================================================== couplings (EE Alg. 3)
def _coupling_step(cfg, X, split, users, p_max, *, objective, iterations, line_search):
    """One projected-gradient step on ``delta`` with a batched line search; never decreases."""

    def f(s):
        return jnp.mean(_drops_value(cfg, X, s, users, p_max, objective, iterations)[0])

    value, grad = jax.value_and_grad(f)(split)
    scale = jnp.max(jnp.abs(grad))
    direction = jnp.where(scale > 0, grad / jnp.where(scale > 0, scale, 1.0), 0.0)
    steps = 0.5 ** jnp.arange(line_search, dtype=split.dtype)  # 1, 1/2, ... (in units of delta)
    cands = jnp.clip(split[None, :] + steps[:, None] * direction[None, :], 0.0, 1.0)
    vals = jax.vmap(f)(cands)
    best = jnp.argmax(vals)
    better = vals[best] > value
    return jnp.where(better, cands[best], split), jnp.where(better, vals[best], value), grad


@functools.partial(jit, static_argnames=("cfg", "objective", "iterations", "line_search", "steps"))
def _coupling_compiled(cfg, X, split, users, p_max, *, objective, iterations, line_search, steps):
    def body(carry, _):
        s, _ = carry
        s, v, _ = _coupling_step(cfg, X, s, users, p_max, objective=objective, iterations=iterations,
                                 line_search=line_search)
        return (s, v), v

    v0 = jnp.mean(_drops_value(cfg, X, split, users, p_max, objective, iterations)[0])
    (s, v), vs = jax.lax.scan(body, (split, v0), None, length=steps)
    return s, jnp.concatenate([v0[None], vs])


def coupling_step(cfg: PassConfig, X, split, users, p_max=None, *, objective: str = "ee", steps: int = 1,
                  line_search: int = DEFAULT_LINE_SEARCH, iterations: int = DEFAULT_DINKELBACH_ITERATIONS):
    """Projected gradient ascent of the ergodic objective in the split coefficients (EE Alg. 3).

    Each step: ``grad = d/d delta mean_d value_d(X_d, delta)`` by autodiff
    (envelope theorem for the Dinkelbach powers), direction ``grad / max|grad|``,
    candidates ``clip(delta + 2^-j direction, 0, 1)`` for ``j = 0..line_search-1``
    evaluated in one vectorised call; the best candidate is taken if it improves
    the objective, otherwise ``delta`` stays (so the objective never decreases).

    Args:
      X: ``(N,)`` static or ``(D, N)`` per-drop positions [m].
      split: ``(N,)`` split coefficients in ``[0, 1]``.
      users: ``(D, K, 2)`` drops.
      steps: number of ascent steps (``lax.scan``).

    Returns:
      ``(split_new, history)``: ``(N,)`` in ``[0, 1]`` and ``(steps + 1,)`` objective values.
    """
    X, split, users = _design_inputs(cfg, X, split, users, objective)
    check_positive_int("line_search", line_search)
    _check_nonneg_int("steps", steps)
    _check_nonneg_int("iterations", iterations)
    return _coupling_compiled(*_compiled_args(cfg, X, split, users, p_max), objective=objective,
                              iterations=iterations, line_search=line_search, steps=steps)


def _compiled_args(cfg, X, split, users, p_max):
    """``(static cfg, X, split, users, p_max)`` in one float dtype for the compiled steps (P_max checked)."""
    p_max = cfg.power if p_max is None else _check_power("p_max", p_max)
    dt = jnp.result_type(X.dtype, users.dtype, float)
    return _static_cfg(cfg), X.astype(dt), split.astype(dt), users.astype(dt), jnp.asarray(p_max, dt)


def _design_inputs(cfg, X, split, users, objective):
    """Validate a design's inputs; ``X (N,)`` is broadcast to one layout per drop ``(D, N)``."""
    _check_cfg(cfg)
    _check_objective(objective)
    split = _check_split(cfg, split)
    users = _check_users(cfg, users, batched=True)
    X = jnp.asarray(X)
    X = _check_positions(cfg, X, batched=X.ndim == 2)
    if X.ndim == 1:
        X = jnp.broadcast_to(X, (users.shape[0],) + X.shape)
    elif X.shape[0] != users.shape[0]:
        raise ValueError(f"X has {X.shape[0]} layouts but users has {users.shape[0]} drops; they must match")
    return X, split, users


# ====================================================================== evaluation
@functools.partial(jit, static_argnames=("cfg", "iterations", "objective"))
def _evaluate_compiled(cfg, X, split, users, p_max, *, objective, iterations):
    _, ee, se, p = _drops_value(cfg, X, split, users, p_max, objective, iterations)
    return ee, se, p


@functools.partial(jit, static_argnames=("cfg", "iterations", "objective"))
def _record_compiled(cfg, X, split, users, p_max, *, objective, iterations):
    vals, ee, _, _ = _drops_value(cfg, X, split, users, p_max, objective, iterations)
    return jnp.mean(vals), jnp.mean(ee)


def evaluate_design(cfg: PassConfig, X, split, users, p_max=None, *, objective: str = "ee",
                    iterations: int = DEFAULT_DINKELBACH_ITERATIONS):
    """Per-drop EE, SE and powers of a design under the objective's power policy.

    Args:
      X: ``(N,)`` (static) or ``(D, N)`` (per drop) positions; split ``(N,)``; users ``(D, K, 2)``.

    Returns:
      ``(ee (D,), se (D,), power (D, K))`` as NumPy arrays.
    """
    X, split, users = _design_inputs(cfg, X, split, users, objective)
    out = _evaluate_compiled(*_compiled_args(cfg, X, split, users, p_max), objective=objective,
                             iterations=iterations)
    return tuple(np.asarray(o) for o in out)


# ====================================================================== designs
@dataclasses.dataclass
class DesignResult:
    """A finished static or dynamic design evaluated on its drops.

    Attributes:
      kind: ``"dynamic"``, ``"static"`` or ``"fixed_antenna"``.
      objective: ``"ee"`` or ``"se"``.
      coupling: ``"tunable"`` or ``"fixed"``.
      positions: ``(D, N)`` per-drop positions [m] (static: the same row repeated).
      split: ``(N,)`` split coefficients.
      power: ``(D, K)`` powers [W] (Dinkelbach for ``"ee"``, ``P_max`` for ``"se"``).
      ee: ``(D,)`` energy efficiency per drop [bit/s/Hz per W].
      se: ``(D,)`` spectral efficiency per drop [bps/Hz].
      history: ``(outer_iterations + 1,)`` ergodic objective after each outer iteration
        (entry 0: the initial point); non-decreasing.
      ee_history: ``(outer_iterations + 1,)`` mean EE after each outer iteration.
      seconds: wall time of the design after compilation (all outer iterations and the
        final evaluation, blocked until ready).
      compile_seconds: wall time of compiling the steps (``lower().compile()``; near 0
        when the jit caches were already warm, e.g. the second power level of a sweep).
      p_max: power budget [W].
      initial: which initial point the static design started from.
    """

    kind: str
    objective: str
    coupling: str
    positions: np.ndarray
    split: np.ndarray
    power: np.ndarray
    ee: np.ndarray
    se: np.ndarray
    history: np.ndarray
    ee_history: np.ndarray
    seconds: float
    compile_seconds: float
    p_max: float
    initial: str = "paper"

    @property
    def mean_ee(self) -> float:
        return float(np.mean(self.ee))

    @property
    def mean_se(self) -> float:
        return float(np.mean(self.se))

    def summary(self) -> dict:
        """JSON-ready numbers (means, history, time per drop)."""
        D = self.ee.shape[0]
        return {
            "kind": self.kind, "objective": self.objective, "coupling": self.coupling,
            "initial": self.initial, "p_max_w": self.p_max, "drops": D,
            "mean_ee": self.mean_ee, "std_ee": float(np.std(self.ee)),
            "mean_se": self.mean_se, "mean_power_w": float(np.mean(self.power)),
            "history": [float(v) for v in self.history],
            "ee_history": [float(v) for v in self.ee_history],
            "split": [float(v) for v in self.split],
            "seconds": self.seconds, "compile_seconds": self.compile_seconds,
            "ms_per_drop": 1e3 * self.seconds / max(D, 1),
        }


def initial_point(cfg: PassConfig, dtype=None):
    """The paper's initial point (EE §V): uniform ``x_n = (n + 1/2) S_x / N``, ``delta_n = 1/(N - n)``."""
    dtype = dtype or jnp.result_type(float)
    return uniform_positions(cfg, dtype)[0], equal_split(cfg.num_pinches, dtype)


def centre_antenna_point(cfg: PassConfig, dtype=None):
    """The fixed-antenna baseline as a PASS point: element 0 at ``S_x/2`` radiating everything.

    ``delta_0 = 1`` (the others get no power; ``delta_n = 1/(N - n)`` kept for them),
    ``x_n = S_x/2 + n max(delta_min, S_x/(2N))`` (projected onto the feasible set, which
    leaves element 0 at the centre whenever ``S_x/2 >= (N-1) delta_min``).
    """
    dtype = dtype or jnp.result_type(float)
    N = cfg.num_pinches
    L = float(cfg.length_x)
    gap = max(float(cfg.min_spacing), 0.5 * L / N)
    x = project_positions(cfg, jnp.asarray(0.5 * L + gap * np.arange(N), dtype)[None])[0]
    split = 1.0 / (N - np.arange(N, dtype=np.float64))
    split[0] = 1.0
    return x, jnp.asarray(split, dtype)


def _fixed_split(cfg, value, dtype):
    return jnp.full((cfg.num_pinches,), value, dtype)


def _progress(label, t, total, value, t0):
    print(f"\r[{label}] outer {t}/{total}  objective {value:.6g}  {time.perf_counter() - t0:.1f} s",
          end="" if t < total else "\n", file=sys.stderr, flush=True)


def _validate_design_args(cfg, users, objective, coupling, outer_iterations, gs_sweeps, coupling_steps,
                          fixed_split, grid_points, grid_batch, iterations, p_max):
    _check_cfg(cfg)
    _check_objective(objective)
    if coupling not in ("tunable", "fixed"):
        raise ValueError(f"coupling must be 'tunable' or 'fixed', got {coupling!r}")
    users = _check_users(cfg, users, batched=True)
    check_positive_int("outer_iterations", outer_iterations)
    check_positive_int("gs_sweeps", gs_sweeps)
    _check_nonneg_int("coupling_steps", coupling_steps)
    _check_nonneg_int("iterations", iterations)
    fs = _check_power("fixed_split", fixed_split)
    if fs > 1:
        raise ValueError(f"fixed_split must lie in [0, 1], got {fixed_split}")
    grid_points = default_grid_points(cfg) if grid_points is None else grid_points
    check_positive_int("grid_points", grid_points)
    check_positive_int("grid_batch", grid_batch)
    p_max = float(np.asarray(cfg.power)) if p_max is None else _check_power("p_max", p_max)
    return users, grid_points, p_max


def _two_tier(cfg, users, *, kind, objective, coupling, outer_iterations, gs_sweeps, coupling_steps,
              fixed_split, grid_points, grid_batch, iterations, p_max, progress, x0, split0, initial):
    scfg = _static_cfg(cfg)
    dt = users.dtype
    D = users.shape[0]
    pm = jnp.asarray(p_max, dt)
    per_drop = kind == "dynamic"
    X = jnp.broadcast_to(x0, (D, cfg.num_pinches)) if per_drop else x0
    split = split0
    gs_kw = dict(objective=objective, iterations=iterations, grid_points=grid_points,
                 grid_batch=grid_batch, per_drop=per_drop)
    cp_kw = dict(objective=objective, iterations=iterations, line_search=DEFAULT_LINE_SEARCH, steps=coupling_steps)

    def Xall(X):
        return X if per_drop else jnp.broadcast_to(X, (D, cfg.num_pinches))

    rec_kw = dict(objective=objective, iterations=iterations)

    # compile every step first (timed apart; the jit caches are then warm)
    tc = time.perf_counter()
    _gs_sweep_compiled.lower(scfg, X, split, users, pm, **gs_kw).compile()
    if coupling == "tunable" and coupling_steps > 0:
        _coupling_compiled.lower(scfg, Xall(X), split, users, pm, **cp_kw).compile()
    _record_compiled.lower(scfg, Xall(X), split, users, pm, **rec_kw).compile()
    _evaluate_compiled.lower(scfg, Xall(X), split, users, pm, **rec_kw).compile()
    compile_s = time.perf_counter() - tc

    def record(X, split):
        v, e = _record_compiled(scfg, Xall(X), split, users, pm, **rec_kw)
        return float(v), float(e)

    t_start = time.perf_counter()
    v, e = record(X, split)
    history, ee_history = [v], [e]
    for t in range(1, outer_iterations + 1):
        for _ in range(gs_sweeps):  # inner tier / location block
            X, _ = _gs_sweep_compiled(scfg, X, split, users, pm, **gs_kw)
        if coupling == "tunable" and coupling_steps > 0:  # outer tier: couplings
            split, _ = _coupling_compiled(scfg, Xall(X), split, users, pm, **cp_kw)
        v, e = record(X, split)
        history.append(v)
        ee_history.append(e)
        if progress:
            _progress(f"{kind} {objective} {coupling}", t, outer_iterations, v, t_start)
    ee, se, p = jax.block_until_ready(_evaluate_compiled(scfg, Xall(X), split, users, pm, **rec_kw))
    seconds = time.perf_counter() - t_start
    return DesignResult(kind=kind, objective=objective, coupling=coupling, positions=np.asarray(Xall(X)),
                        split=np.asarray(split), power=np.asarray(p), ee=np.asarray(ee), se=np.asarray(se),
                        history=np.asarray(history), ee_history=np.asarray(ee_history), seconds=seconds,
                        compile_seconds=compile_s, p_max=float(p_max), initial=initial)


def dynamic_design(cfg: PassConfig, users, *, objective: str = "ee", coupling: str = "tunable",
                   outer_iterations: int = 3, gs_sweeps: int = 1, coupling_steps: int = 3,
                   fixed_split: float = 0.5, p_max=None, grid_points: int | None = None,
                   grid_batch: int = DEFAULT_GRID_BATCH, iterations: int = DEFAULT_DINKELBACH_ITERATIONS,
                   progress: bool = False) -> DesignResult:
    """Dynamic design (EE Def. 1): locations and powers per drop, couplings static.

    Two tiers per outer iteration: ``gs_sweeps`` Gauss-Seidel sweeps of every
    drop's layout (vmapped over drops; powers re-optimised inside), then
    ``coupling_steps`` projected-gradient steps on the shared split coefficients
    (skipped for ``coupling="fixed"``, where ``delta_n = fixed_split``). Starts from
    the paper's initial point (:func:`initial_point`).

    Args:
      cfg: single-waveguide scenario (``PassConfig.energy_efficiency()``).
      users: ``(D, K, 2)`` drops.
      objective: ``"ee"`` (EE-oriented) or ``"se"`` (SE-oriented baseline).
      coupling: ``"tunable"`` or ``"fixed"`` (baseline).
      outer_iterations: outer iterations (>= 1).
      p_max: power budget [W] (default ``cfg.power``).
      grid_points, grid_batch, iterations: see :func:`gauss_seidel_sweep`.
      progress: print a progress line to stderr.

    Memory: one Gauss-Seidel step holds ``D * grid_batch * K`` channel values at once
    (all drops are vmapped); lower ``grid_batch`` for very many drops.

    Returns:
      :class:`DesignResult` (``history`` non-decreasing).
    """
    users, grid_points, p_max = _validate_design_args(cfg, users, objective, coupling, outer_iterations,
                                                      gs_sweeps, coupling_steps, fixed_split, grid_points,
                                                      grid_batch, iterations, p_max)
    users = users.astype(jnp.result_type(users.dtype, float))
    x0, split0 = initial_point(cfg, users.dtype)
    if coupling == "fixed":
        split0 = _fixed_split(cfg, fixed_split, users.dtype)
    return _two_tier(cfg, users, kind="dynamic", objective=objective, coupling=coupling,
                     outer_iterations=outer_iterations, gs_sweeps=gs_sweeps, coupling_steps=coupling_steps,
                     fixed_split=fixed_split, grid_points=grid_points, grid_batch=grid_batch,
                     iterations=iterations, p_max=p_max, progress=progress, x0=x0, split0=split0,
                     initial="paper")


def static_design(cfg: PassConfig, users, *, objective: str = "ee", coupling: str = "tunable",
                  outer_iterations: int = 3, gs_sweeps: int = 1, coupling_steps: int = 3,
                  fixed_split: float = 0.5, p_max=None, grid_points: int | None = None,
                  grid_batch: int = DEFAULT_GRID_BATCH, iterations: int = DEFAULT_DINKELBACH_ITERATIONS,
                  initial: str = "paper", progress: bool = False) -> DesignResult:
    """Static design (EE Def. 2): locations and couplings static, powers per drop.

    Per outer iteration: ``gs_sweeps`` Gauss-Seidel sweeps of the shared layout on
    the ergodic objective (mean over the drops, Dinkelbach powers per drop), then
    ``coupling_steps`` coupling steps (skipped for ``coupling="fixed"``).

    Args:
      initial: ``"paper"`` (uniform x, ``delta_n = 1/(N-n)``; default), ``"centre"``
        (the fixed-antenna point, :func:`centre_antenna_point`; with ``coupling="fixed"``
        the centre layout with the fixed split) or ``"multistart"`` (run from both and
        keep the design with the better final objective; twice the cost). From
        ``"centre"`` the design cannot leave the single-antenna family (the other
        elements get no power and hence no gradient), so it only moves that antenna.
      Other arguments as :func:`dynamic_design`.

    Returns:
      :class:`DesignResult` (``positions`` repeats the one layout per drop).
    """
    users, grid_points, p_max = _validate_design_args(cfg, users, objective, coupling, outer_iterations,
                                                      gs_sweeps, coupling_steps, fixed_split, grid_points,
                                                      grid_batch, iterations, p_max)
    if initial not in ("paper", "centre", "multistart"):
        raise ValueError(f"initial must be 'paper', 'centre' or 'multistart', got {initial!r}")
    users = users.astype(jnp.result_type(users.dtype, float))
    dt = users.dtype
    candidates = {"paper": initial_point(cfg, dt), "centre": centre_antenna_point(cfg, dt)}
    if coupling == "fixed":
        candidates = {k: (x, _fixed_split(cfg, fixed_split, dt)) for k, (x, _) in candidates.items()}
    starts = ("paper", "centre") if initial == "multistart" else (initial,)
    runs = [_two_tier(cfg, users, kind="static", objective=objective, coupling=coupling,
                      outer_iterations=outer_iterations, gs_sweeps=gs_sweeps, coupling_steps=coupling_steps,
                      fixed_split=fixed_split, grid_points=grid_points, grid_batch=grid_batch,
                      iterations=iterations, p_max=p_max, progress=progress, x0=candidates[k][0],
                      split0=candidates[k][1], initial=k) for k in starts]
    best = max(runs, key=lambda r: r.history[-1])  # first wins ties ("paper")
    best.seconds = sum(r.seconds for r in runs)
    best.compile_seconds = sum(r.compile_seconds for r in runs)
    return best


def fixed_antenna(cfg: PassConfig, users, *, p_max=None,
                  iterations: int = DEFAULT_DINKELBACH_ITERATIONS) -> DesignResult:
    """Baseline: one fixed antenna at the centre of the region, all input power radiated.

    The antenna sits on the waveguide at ``(S_x/2, y_wg, h)``; powers per drop by
    Dinkelbach (EE-oriented). Same channel model (docs/model.md §5) with one element and
    ``a = 1``.

    Returns:
      :class:`DesignResult` with ``N = 1`` (``history`` = the mean EE, one entry).
    """
    _check_cfg(cfg)
    users = _check_users(cfg, users, batched=True)
    users = users.astype(jnp.result_type(users.dtype, float))
    _check_nonneg_int("iterations", iterations)
    p_max = float(np.asarray(cfg.power)) if p_max is None else _check_power("p_max", p_max)
    cfg1 = cfg.replace(num_pinches=1)
    scfg = _static_cfg(cfg1)
    dt = users.dtype
    x = jnp.full((users.shape[0], 1), float(cfg.length_x) / 2.0, dt)
    args = (scfg, x, jnp.ones((1,), dt), users, jnp.asarray(p_max, dt))
    kw = dict(objective="ee", iterations=iterations)
    tc = time.perf_counter()
    _evaluate_compiled.lower(*args, **kw).compile()
    compile_s = time.perf_counter() - tc
    t0 = time.perf_counter()
    ee, se, p = (np.asarray(o) for o in jax.block_until_ready(_evaluate_compiled(*args, **kw)))
    seconds = time.perf_counter() - t0
    return DesignResult(kind="fixed_antenna", objective="ee", coupling="fixed",
                        positions=np.asarray(x), split=np.ones((1,)), power=p, ee=ee, se=se,
                        history=np.asarray([ee.mean()]), ee_history=np.asarray([ee.mean()]), seconds=seconds,
                        compile_seconds=compile_s,
                        p_max=float(p_max), initial="centre")

"""Two-timescale design: long-term pinch positions by stochastic SCA (TT Alg. 1-2, eqs. (10)-(14)).

docs/model.md §4. Within one channel-statistics block the pinch positions
``X (N, L)`` are held (the long timescale) while the users move from slot to
slot (:mod:`jaxpass.slots`); in every slot the base station computes a
short-term beamformer ``W^s(X; H)`` for that slot's channel. TT (9a):

    min_X  f(X) = E_H[ g(X, W^s(X; H); H) ],   g = -sum_k R_k   (bps/Hz)
    s.t.   x[n, l] - x[n, l-1] >= delta_min,   0 <= x[n, l] <= S_x     (TT (9b)-(9c))

(the constraint (9b) is printed with ``|.|``; with the ordering
``x_1 < ... < x_L`` of TT §II it is the convex set of docs/model.md §1).

Iteration ``t`` of TT Algorithm 1 (``ssca_step``):

1. draw a mini-batch of ``N_s`` slots (``slots_per_iteration``);
2. per slot, the short-term beamformer ``W_j = W^s(X^t; H_j)`` and, by autodiff
   through it, the *explicit* gradient ``d_X g(X, W_j)`` (``W_j`` held fixed:
   ``stop_gradient``) and the *implicit* one ``d_X W_j d_W g`` (TT (12)). They
   are computed as the two partial gradients of
   ``G(X1, X2) = g(H(X1), W^s(H(X2)))`` at ``X1 = X2 = X^t`` (the chain rule, one
   backward pass), so they sum to the total gradient exactly;
3. the recursive averages, with ``rho^t``, kept separately (TT (11)-(12))::

       f^t   = (1 - rho^t) f^{t-1}   + rho^t mean_j g_j
       f_x^t = (1 - rho^t) f_x^{t-1} + rho^t mean_j d_X g_j          (explicit)
       f_W^t = (1 - rho^t) f_W^{t-1} + rho^t mean_j d_X W_j d_W g_j  (implicit)

   with ``f^{-1} = f_x^{-1} = f_W^{-1} = 0``;
4. the surrogate (10). Since ``rho^t d_X g + (1 - rho^t) f_x^{t-1} = f_x^t``, it reads
   ``fbar^t(X) = f^t + (f_x^t + f_W^t)^T (X - X^t) + tau ||X - X^t||^2``, and its
   minimiser over the feasible set (13) (printed ``X^t = argmin f^t``: the
   reading is ``Xbar^t = argmin fbar^t``) is, completing the square, the exact
   projection of a gradient step::

       Xbar^t = project_positions(X^t - (f_x^t + f_W^t) / (2 tau))
              = project_positions(X^t + grad_avg(sum rate) / (2 tau)),

   i.e. projected *ascent* on the averaged sum-rate gradient with step
   ``1 / (2 tau)`` [m^2 per bps/Hz] (we minimise ``g = -sum rate``);
5. TT (14): ``X^{t+1} = (1 - gamma^t) X^t + gamma^t Xbar^t``, feasible because the
   feasible set is convex.

Step sizes (TT §IV): ``rho^t = min(1, 10 / (10 + t)^0.9)``,
``gamma^t = min(1, 15 / (15 + t))`` (the printed ``rho^0 = 10^0.1 > 1`` is
clipped to the paper's requirement ``rho^t in (0, 1]``). They satisfy
``rho, gamma -> 0``, ``sum rho = sum gamma = inf``, ``sum rho^2, sum gamma^2 < inf``
and ``gamma / rho -> 0`` for any ``rho_exponent`` in ``(0.5, 1)``
(``SscaOptions.validate`` enforces that range).

The proximal weight ``tau`` (TT: "any constant > 0") sets the length scale:
the surrogate step is ``1 / (2 tau)`` [m^2 per bps/Hz]. The phase of a pinch
at a user turns once every ``lambda / (n_eff + cos) ~ 4-25 mm`` at 30 GHz, so
a step must stay a fraction of a millimetre, or the mini-batch noise of the
phase terms scrambles a phase-aligned start. The gradient's scale, though,
grows with the SNR and the number of users (measured on validation blocks,
K = 6: with ``tau = 1e6`` the first step moved a pinch by 3.3 mm at 16 dBm
but by 14 mm, up to 32 cm, at 28 dBm, and SSCA ended 2.2 bps/Hz below its
start there). So ``tau`` is calibrated once per run (reading chosen: a
constant for the run, as TT requires, set from the data): at ``t = 0``,
``tau = max(options.tau, max|f_x^0 + f_W^0| / (2 max_first_step))``, i.e.
the first surrogate step moves no pinch by more than ``max_first_step``
before the projection; later steps use the same ``tau`` (``SscaState.tau``,
``SscaResult.tau``). ``max_first_step = 0`` keeps ``tau = options.tau``.
The default, 1 mm, was chosen on validation blocks (homes of seed 100, not
the benchmark's seed 0; 16 blocks, 100 iterations x 50 slots, 5 WMMSE
updates; held-out gain over the aligned start, bps/Hz) among 0 (off), 0.25,
0.5, 1 and 2 mm: K = 4 at 12/20/28 dBm +3.04/+2.97/+2.97 off, +3.19/+3.10/
+3.08 at 1 mm (0.25 mm: +2.3-2.4); K = 6 +4.03/+4.58/-2.16 off, +4.53/+5.12/
+3.87 at 1 mm (0.5 mm: +4.60/+4.99/+2.94; 2 mm: +4.69/+5.27/+2.98).

``mode="envelope"`` drops ``f_W`` (no gradient through ``W``; the envelope
theorem's approximation, exact only at a stationary ``W``).

Never below the start: SSCA is a stochastic local method, and with few
iterations or slots its last iterate can score below its (physics-guided)
start. After the last step, the start ``X^0`` and the final ``X^T`` are
scored on a validation mini-batch of ``validation_slots`` slots drawn from a
key SSCA never ascends on (:func:`validation_key`), with the short-term
solver, and the better is returned (:func:`keep_better`;
``SscaResult.kept_final`` says which, ``validation_rate`` holds both scores).
Slots whose value or gradient is not finite are left out of the averages and
counted (``SscaMetrics.nonfinite``, ``SscaResult.nonfinite_slots``).

Short-term solvers
------------------
A short-term solver is a callable ``(cfg, H) -> (W, aux)`` for ONE slot
(``H (K, N)`` complex, ``W (N, K)`` with ``||W||_F^2 = P``). Named ones
(``SscaOptions.short_term``):

* ``"wmmse"``: ``beamforming.wmmse`` unrolled for ``wmmse_iterations`` updates
  from its default start (ZF if ``K <= N`` else MRT); the gradient flows through
  the unrolled updates; ``aux = (lam, share)``;
* ``"rzf"``: ``beamforming.rzf`` with ``alpha = K sigma^2 / P`` (the SSCA-THP
  baseline of TT §IV: SSCA with the precoder fixed to RZF); ``aux = None``;
* ``"kkt"``: the KKT map ``beamforming.kkt(H, lam, share, P)`` (TT (17);
  docs/model.md §3.2) with duals from :func:`wmmse_duals` (``wmmse_iterations``
  WMMSE updates, held constant: the gradient flows through the KKT map only).
  This is where a trained short-term network plugs in: pass
  ``solver=kkt_solver(duals)`` with ``duals(cfg, H) -> (lam, share)`` any
  differentiable function (e.g. a network), whose gradient then flows too.

Any other callable can be passed as ``solver=`` (it overrides
``short_term``). The drivers take it as a ``jax.jit`` *argument*: a
``jax.tree_util.Partial`` whose bound arguments (a network's parameters) are
traced leaves, so new parameters do not recompile; a plain function is wrapped
in a ``Partial`` (compiled once per function object: define it once).

Initial positions (``init``)
----------------------------
* ``"uniform"``: ``uniform_positions`` (evenly spread pinches);
* ``"aligned"`` (default): the physics-guided layouts of ``tune_positions``
  (``positions.aligned_positions``: each waveguide's pinches phase-aligned at
  the home of an assigned user, for the best ``assignments`` waveguide-to-user
  maps and each nominal spacing in ``spacings``) plus the uniform layout,
  screened by the mean sum rate over one mini-batch of ``N_s`` slots with the
  short-term solver, the best one kept. Screening on slots, not on the homes
  (``tune_drop`` would tune for users standing still at home), scores what SSCA
  optimises: the exact phase alignment at the home does not survive a motion
  of ``sigma_u`` >> the wavelength, but a compact aligned array (an aperture of
  a few wavelengths, a broad beam) keeps much of its gain, and pinches near
  the home keep their large-scale gain; the screening picks the spacing that
  trades these.

Why the start matters: SSCA is a local method, and with ``sigma_u`` >> the
wavelength the mini-batch gradient at evenly spread pinches is dominated by
the phase terms, which average out over the slots (zero mean, large
variance), while the large-scale part that would pull pinches towards the
homes is orders of magnitude smaller. From the aligned start SSCA refines the
phases of the compact arrays on a sub-millimetre scale.

Execution (docs/execution_model.md): :func:`ssca_init`, :func:`ssca_step`,
:func:`ssca_block`, :func:`initial_positions` and :func:`evaluate` are pure
(``cfg`` traced, options static) and run under a caller's ``jax.jit`` /
``jax.vmap`` (vmap over blocks = different homes). :func:`ssca` and
:func:`held_out_rate` are the drivers: they validate, batch over a leading
block axis and call the module-level :data:`ssca_batch` / :data:`evaluate_batch`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from jaxpass import beamforming as bf
from jaxpass import parallel
from jaxpass._checks import (
    check_choice,
    check_finite,
    check_int,
    check_nonnegative_int,
    check_number,
    check_shape,
    check_spacings,
    drop_keys,
    is_tracer,
    shape_of,
)
from jaxpass._options import Options, option
from jaxpass.channel import effective_channel
from jaxpass.config import PassConfig
from jaxpass.geometry import project_positions, uniform_positions
from jaxpass.metrics import sum_rate
from jaxpass.optimize.assignment import num_assignments
from jaxpass.optimize.positions import aligned_positions, best_maps
from jaxpass.slots import SIGMA_U, SLOT_DISTRIBUTIONS, draw_slots

SHORT_TERM_SOLVERS = ("wmmse", "rzf", "kkt")
MODES = ("total", "envelope")
INITS = ("uniform", "aligned")


@dataclasses.dataclass(frozen=True)
class SscaOptions(Options):
    """Options of the two-timescale SSCA (static for ``jit``; module docstring)."""

    iterations: int = option(200, "SSCA iterations T (long-term updates of X)")
    slots_per_iteration: int = option(100, "N_s: slots in each iteration's mini-batch (TT §IV: 100)")
    tau: float = option(1e6, "proximal weight tau of the surrogate (10) [bps/Hz per m^2], the least one "
                             "(see max_first_step); Xbar = proj(X + averaged rate gradient / (2 tau))")
    max_first_step: float = option(1e-3, "tau is raised once, at t = 0, so that the first surrogate step moves "
                                         "no pinch by more than this [m] (0: tau as given)")
    short_term: str = option("wmmse", "short-term beamformer per slot: wmmse, rzf (SSCA-THP) or kkt",
                             choices=SHORT_TERM_SOLVERS)
    wmmse_iterations: int = option(10, "unrolled WMMSE updates per slot (wmmse; the duals of kkt)")
    mode: str = option("total", "gradient: total (f_x + f_W, through W) or envelope (f_x only)", choices=MODES)
    init: str = option("aligned", "initial X: aligned (physics-guided layouts at the homes, screened on a "
                                  "mini-batch) or uniform", choices=INITS)
    rho_offset: float = option(10.0, "rho^t = min(1, a / (a + t)^p): the offset a (TT §IV: 10)")
    rho_exponent: float = option(0.9, "rho^t = min(1, a / (a + t)^p): the exponent p in (0.5, 1) (TT §IV: 0.9)")
    gamma_offset: float = option(15.0, "gamma^t = min(1, b / (b + t)): the offset b (TT §IV: 15)")
    slot_model: str = option("gaussian", "slot statistics: gaussian (homes + N(0, sigma_u^2)) or uniform (i.i.d.)",
                             choices=SLOT_DISTRIBUTIONS)
    sigma_u: float = option(SIGMA_U, "std of a user's position around its home per slot [m] (gaussian slots)")
    assignments: int = option(24, "waveguide-to-user assignments of the aligned start (aligned init)")
    spacings: tuple = option((0.0, 0.03, 0.1), "nominal pinch spacings of the aligned start [m] (aligned init)")
    validation_slots: int = option(100, "slots of the validation mini-batch (drawn with a key SSCA never ascends "
                                        "on) on which the start X^0 and the final X^T are compared; the better "
                                        "is returned (0: always X^T)")
    validation_wmmse_iterations: int = option(0, "WMMSE updates of the validation score with the named wmmse / "
                                                 "kkt short-term solver (0: wmmse_iterations, the solver SSCA "
                                                 "ascended; set it to the updates the layout will be scored with)")

    def validate(self):
        check_int("iterations", self.iterations, low=1, unit="SSCA iterations")
        check_int("slots_per_iteration", self.slots_per_iteration, low=1, unit="slots")
        check_number("tau", self.tau, unit="bps/Hz per m^2", low=0.0, low_open=True)
        check_number("max_first_step", self.max_first_step, unit="m", low=0.0)
        check_choice("short_term", self.short_term, SHORT_TERM_SOLVERS)
        check_int("wmmse_iterations", self.wmmse_iterations, low=1, unit="WMMSE updates")
        check_choice("mode", self.mode, MODES)
        check_choice("init", self.init, INITS)
        check_number("rho_offset", self.rho_offset, unit="iterations", low=0.0, low_open=True)
        p = check_number("rho_exponent", self.rho_exponent, low=0.5, low_open=True, high=1.0)
        if p >= 1.0:
            raise ValueError(f"rho_exponent must be a finite number > 0.5 and < 1 (so that gamma^t / rho^t -> 0 "
                             f"and sum rho^t = inf, TT (12)-(14)), got {self.rho_exponent!r}")
        check_number("gamma_offset", self.gamma_offset, unit="iterations", low=0.0, low_open=True)
        check_choice("slot_model", self.slot_model, SLOT_DISTRIBUTIONS)
        check_number("sigma_u", self.sigma_u, unit="m", low=0.0)
        check_nonnegative_int("assignments", self.assignments)
        check_nonnegative_int("validation_slots", self.validation_slots)
        check_nonnegative_int("validation_wmmse_iterations", self.validation_wmmse_iterations)
        object.__setattr__(self, "spacings", check_spacings("spacings", self.spacings))


class SscaState(NamedTuple):
    """State of the SSCA recursion for one block (a pytree; vmap it over blocks).

    Attributes:
      X: ``(N, L)`` current iterate ``X^t`` [m] (feasible).
      value: ``()`` recursive average ``f^{t-1}`` of ``g = -sum rate`` (TT (11)) [bps/Hz].
      f_x: ``(N, L)`` recursive average of the explicit gradient ``d_X g`` (TT (12)) [bps/Hz per m].
      f_W: ``(N, L)`` recursive average of the implicit gradient ``d_X W d_W g`` (TT (12)) [bps/Hz per m].
      t: ``()`` int32 iteration counter.
      tau: ``()`` the run's proximal weight [bps/Hz per m^2]: ``options.tau`` until the first
        step calibrates it (``max_first_step``), then constant.
    """

    X: jax.Array
    value: jax.Array
    f_x: jax.Array
    f_W: jax.Array
    t: jax.Array
    tau: jax.Array


class SscaMetrics(NamedTuple):
    """What one :func:`ssca_step` reports (stacked over iterations in :class:`SscaResult`).

    Attributes:
      avg_rate: ``-f^t``: the recursively averaged sum rate, i.e. minus the
        surrogate (10) at ``X^t`` (``fbar^t(X^t) = f^t``) [bps/Hz].
      rate: mini-batch mean sum rate at ``X^t`` [bps/Hz] (over the finite slots).
      X: ``(N, L)`` the iterate ``X^t`` the mini-batch was evaluated at [m].
      nonfinite: ``()`` int32, slots of the mini-batch left out because their value or
        gradient was not finite.
    """

    avg_rate: jax.Array
    rate: jax.Array
    X: jax.Array
    nonfinite: jax.Array


class SscaResult(NamedTuple):
    """Output of :func:`ssca`; leading dims ``(...)`` are the blocks (none for one block).

    Attributes:
      positions: ``(..., N, L)`` the layout returned [m] (feasible): the final ``X^T``, or the
        start ``X^0`` where that scored higher on the validation mini-batch (``kept_final``).
      initial: ``(..., N, L)`` the start ``X^0`` [m].
      avg_rate: ``(..., T)`` ``-f^t`` per iteration (:class:`SscaMetrics`) [bps/Hz].
      rate: ``(..., T)`` mini-batch mean sum rate at ``X^t`` [bps/Hz].
      X: ``(..., T, N, L)`` the iterates ``X^0 .. X^{T-1}`` [m].
      tau: ``(...)`` the run's proximal weight (``max_first_step``'s calibration) [bps/Hz per m^2].
      final: ``(..., N, L)`` the last iterate ``X^T`` [m].
      kept_final: ``(...)`` bool, ``positions`` is ``X^T`` (else ``X^0``).
      validation_rate: ``(..., 2)`` mean sum rate of ``X^0`` and ``X^T`` on the validation
        mini-batch (``validation_slots`` slots of :func:`validation_key`, the short-term solver
        SSCA ascended) [bps/Hz]; NaN with ``validation_slots = 0``.
      nonfinite_slots: ``(...)`` int32, mini-batch slots left out of the averages over the
        run because their value or gradient was not finite (:class:`SscaMetrics`).
    """

    positions: jax.Array
    initial: jax.Array
    avg_rate: jax.Array
    rate: jax.Array
    X: jax.Array
    tau: jax.Array
    final: jax.Array
    kept_final: jax.Array
    validation_rate: jax.Array
    nonfinite_slots: jax.Array


# ------------------------------------------------------------ step sizes
def step_sizes(t, options: SscaOptions = SscaOptions()):
    """``(rho^t, gamma^t)`` of TT §IV: ``min(1, a / (a + t)^p)`` and ``min(1, b / (b + t))``.

    ``t`` may be an int, an array of iterations or a tracer (float results).
    """
    t = jnp.asarray(t)
    t = t.astype(jnp.result_type(float)) if not jnp.issubdtype(t.dtype, jnp.floating) else t
    a, p, b = options.rho_offset, options.rho_exponent, options.gamma_offset
    rho = jnp.minimum(1.0, a / (a + t) ** p)
    gamma = jnp.minimum(1.0, b / (b + t))
    return rho, gamma


# ------------------------------------------------------- short-term solvers
def wmmse_duals(cfg: PassConfig, H, iterations: int = 10):
    """KKT duals ``(lam, share)`` from ``iterations`` WMMSE updates, held constant (``stop_gradient``).

    The stand-in for a trained short-term network (docs/model.md §3.2, §4):
    ``beamforming.kkt(H, lam, share, P)`` rebuilds WMMSE's beamformer up to a
    per-column phase. ``lam (K,)`` [1/|H|^2], ``share (K,)`` summing to one.
    """
    info = bf.wmmse(H, cfg.power, cfg.noise_power, iterations=iterations, return_info=True)
    return jax.lax.stop_gradient((info.lam, info.share))


def _kkt_map(duals, cfg: PassConfig, H):
    lam, share = duals(cfg, H)
    return bf.kkt(H, lam, share, cfg.power), (lam, share)


def as_solver(fn, name: str = "solver"):
    """``fn`` as a ``jax.tree_util.Partial`` (a pytree that can be a ``jit`` argument); None stays None."""
    if fn is None or isinstance(fn, Partial):
        return fn
    if not callable(fn):
        raise TypeError(f"{name} must be a callable (cfg, H) -> ..., got {type(fn).__name__}")
    return Partial(fn)


def kkt_solver(duals):
    """A short-term solver ``(cfg, H) -> (W, (lam, share))``: the KKT map with duals from ``duals``.

    ``W = beamforming.kkt(H, lam, share, cfg.power)`` (TT (17), docs/model.md
    §3.2) with ``(lam, share) = duals(cfg, H)``; ``lam (K,) >= 0``,
    ``share (K,) >= 0``. The gradient flows through the map and through
    ``duals`` (a trained network: bind its parameters with
    ``jax.tree_util.Partial(apply, params)`` so they stay traced leaves).
    """
    return Partial(_kkt_map, as_solver(duals, "duals"))


def short_term_beamformer(cfg: PassConfig, H, options: SscaOptions = SscaOptions(), solver=None):
    """The short-term beamformer of one slot: ``(W (N, K), aux)`` (module docstring).

    ``solver`` (a callable ``(cfg, H) -> (W, aux)``) overrides ``options.short_term``.
    """
    if solver is not None:
        return solver(cfg, H)
    P, s2 = cfg.power, cfg.noise_power
    if options.short_term == "rzf":
        return bf.rzf(H, P, cfg.num_users * s2 / P), None
    if options.short_term == "kkt":
        return _kkt_map(lambda c, h: wmmse_duals(c, h, options.wmmse_iterations), cfg, H)
    info = bf.wmmse(H, P, s2, iterations=options.wmmse_iterations, return_info=True)
    return info.W, (info.lam, info.share)


# --------------------------------------------------------------- objective
def slot_objective(cfg: PassConfig, X, users, options: SscaOptions = SscaOptions(), solver=None):
    """``g(X, W^s(X; H); H) = -sum rate`` of one slot (TT (9a)), differentiable in ``X`` [bps/Hz].

    Args:
      cfg: the scenario. X: ``(N, L)`` positions [m]. users: ``(K, 2)`` the slot's users [m].
      options: :class:`SscaOptions` (the short-term solver). solver: optional override.
    """
    H = effective_channel(cfg, X, users)
    W, _ = short_term_beamformer(cfg, H, options, solver)
    return -sum_rate(H, W, cfg.noise_power)


def minibatch_objective(cfg: PassConfig, X, slots, options: SscaOptions = SscaOptions(), solver=None):
    """Mean of :func:`slot_objective` over ``slots (S, K, 2)``; its ``jax.grad`` is the total gradient."""
    return jnp.mean(jax.vmap(lambda u: slot_objective(cfg, X, u, options, solver))(slots))


def objective_and_gradients(cfg: PassConfig, X, slots, options: SscaOptions = SscaOptions(), solver=None):
    """Mini-batch value and the explicit / implicit gradients of TT (12) (:func:`objective_gradients_count`
    without the count)."""
    return objective_gradients_count(cfg, X, slots, options, solver)[:3]


def objective_gradients_count(cfg: PassConfig, X, slots, options: SscaOptions = SscaOptions(), solver=None):
    """Mini-batch value, the explicit / implicit gradients of TT (12) and the slots left out.

    Per slot ``j``, ``G(X1, X2) = g(H(X1), W^s(H(X2)))``: ``d_X1 G`` is the
    explicit gradient (``W`` held fixed), ``d_X2 G = d_X W d_W g`` the implicit
    one, at ``X1 = X2 = X``; their sum is the total gradient of
    :func:`minibatch_objective`. ``mode="envelope"`` returns a zero implicit
    part. A slot whose value or gradient is not finite is left out of the
    means (weight zero).

    Args:
      cfg: the scenario. X: ``(N, L)`` [m]. slots: ``(S, K, 2)`` users per slot [m].

    Returns:
      ``(value (), grad_x (N, L), grad_W (N, L), nonfinite () int32)``: the mean of
      ``g = -sum rate`` [bps/Hz], the two gradient parts [bps/Hz per m] and the number of
      slots left out (value or gradient not finite).
    """
    envelope = options.mode == "envelope"

    def G(X1, X2, users):
        W, _ = short_term_beamformer(cfg, effective_channel(cfg, X2, users), options, solver)
        if envelope:
            W = jax.lax.stop_gradient(W)
        return -sum_rate(effective_channel(cfg, X1, users), W, cfg.noise_power)

    if envelope:  # one argument: the stop_gradient on W alone keeps the implicit part out
        def per_slot(users):
            v, gx = jax.value_and_grad(lambda X: G(X, X, users))(X)
            return v, gx, jnp.zeros_like(gx)
    else:
        def per_slot(users):
            v, (gx, gw) = jax.value_and_grad(G, argnums=(0, 1))(X, X, users)
            return v, gx, gw

    v, gx, gw = jax.vmap(per_slot)(slots)
    ok = jnp.isfinite(v) & jnp.all(jnp.isfinite(gx), axis=(-2, -1)) & jnp.all(jnp.isfinite(gw), axis=(-2, -1))
    w = ok / jnp.maximum(jnp.sum(ok), 1).astype(v.dtype)

    def mean(a):
        a = jnp.where(ok.reshape(ok.shape + (1,) * (a.ndim - 1)), a, 0.0)
        return jnp.tensordot(w.astype(a.dtype), a, axes=1)

    return mean(v), mean(gx), mean(gw), (ok.shape[0] - jnp.sum(ok)).astype(jnp.int32)


# ------------------------------------------------------------------ SSCA
def _float_dtype(x):
    dt = jnp.asarray(x).dtype
    return dt if jnp.issubdtype(dt, jnp.floating) else jnp.result_type(float)


def ssca_init(cfg: PassConfig, X0, options: SscaOptions = SscaOptions()) -> SscaState:
    """The state before iteration 0: ``X = project_positions(X0)``, zero averages (TT: ``f^{-1} = 0``).

    ``X0`` is ``(N, L)`` [m]; its projection makes every iterate feasible
    (a no-op for a feasible ``X0``). ``tau`` starts at ``options.tau``.
    """
    check_shape("X0", X0, (cfg.num_waveguides, cfg.num_pinches))
    X = project_positions(cfg, jnp.asarray(X0).astype(_float_dtype(X0)))
    zero = jnp.zeros_like(X)
    return SscaState(X=X, value=jnp.zeros((), X.dtype), f_x=zero, f_W=zero, t=jnp.zeros((), jnp.int32),
                     tau=jnp.asarray(options.tau, X.dtype))


def calibrated_tau(grad, state: SscaState, options: SscaOptions = SscaOptions()):
    """The proximal weight of this step: at ``t = 0`` raised so that ``max|grad| / (2 tau) <= max_first_step``.

    ``grad (N, L)``: ``f_x^t + f_W^t`` [bps/Hz per m]. Later steps (and
    ``max_first_step = 0``) keep ``state.tau``. A non-finite gradient keeps it too.
    """
    if options.max_first_step <= 0:
        return state.tau
    need = jnp.max(jnp.abs(grad)) / (2.0 * jnp.asarray(options.max_first_step, grad.dtype))
    first = jnp.where(jnp.isfinite(need), jnp.maximum(state.tau, need), state.tau)
    return jnp.where(state.t == 0, first, state.tau)


def ssca_step(key, cfg: PassConfig, homes, state: SscaState, options: SscaOptions = SscaOptions(), solver=None):
    """One SSCA iteration for one block (TT Algorithm 1 lines 1-4; module docstring).

    Draws ``options.slots_per_iteration`` slots around ``homes`` with ``key``,
    updates the recursive averages (TT (11)-(12)), solves the surrogate (13) by
    the exact projection and takes the step (14). Pure: runs under the
    caller's ``jax.jit``/``jax.vmap`` with ``cfg`` traced::

        opts = SscaOptions(slots_per_iteration=50)
        step = jax.jit(jax.vmap(lambda k, c, h, s: ssca_step(k, c, h, s, opts), in_axes=(0, None, 0, 0)))
        state, metrics = step(keys, cfg, homes, state)      # homes (B, K, 2): B blocks

    Args:
      key: ``jax.random`` key (the mini-batch of slots).
      cfg: the scenario.
      homes: ``(K, 2)`` the block's home positions [m] (ignored by ``slot_model="uniform"``).
      state: :class:`SscaState` (:func:`ssca_init`).
      options: :class:`SscaOptions`.
      solver: optional short-term solver ``(cfg, H) -> (W, aux)`` overriding ``options.short_term``.

    Returns:
      ``(state, metrics)``: the next :class:`SscaState` and :class:`SscaMetrics` of this iteration.
    """
    check_shape("homes", homes, (cfg.num_users, 2))
    X = state.X
    homes = jnp.asarray(homes).astype(X.dtype)
    slots = draw_slots(key, cfg, homes, options.slots_per_iteration, options.slot_model, options.sigma_u)
    value, gx, gw, nonfinite = objective_gradients_count(cfg, X, slots, options, solver)
    rho, gamma = step_sizes(state.t, options)
    rho, gamma = rho.astype(X.dtype), gamma.astype(X.dtype)
    f = (1 - rho) * state.value + rho * value
    f_x = (1 - rho) * state.f_x + rho * gx
    f_W = (1 - rho) * state.f_W + rho * gw
    grad = f_x + f_W  # the linear term of the surrogate (10)
    tau = calibrated_tau(grad, state, options)
    X_bar = project_positions(cfg, X - grad / (2.0 * tau))
    X_next = (1 - gamma) * X + gamma * X_bar
    new = SscaState(X=X_next, value=f, f_x=f_x, f_W=f_W, t=state.t + 1, tau=tau)
    return new, SscaMetrics(avg_rate=-f, rate=-value, X=X, nonfinite=nonfinite)


def evaluate(key, cfg: PassConfig, X, homes, num_slots: int, options: SscaOptions = SscaOptions(), *, solver=None):
    """Mean sum rate of ``X`` over ``num_slots`` fresh slots of the block, with the short-term solver [bps/Hz].

    Held-out evaluation: pass a key not used by the optimisation. Pure, one block.
    """
    check_shape("X", X, (cfg.num_waveguides, cfg.num_pinches))
    check_shape("homes", homes, (cfg.num_users, 2))
    X = jnp.asarray(X).astype(_float_dtype(X))
    slots = draw_slots(key, cfg, jnp.asarray(homes).astype(X.dtype), num_slots, options.slot_model, options.sigma_u)
    return -minibatch_objective(cfg, X, slots, options, solver)


#: the stream of :func:`validation_key` (a constant folded into the block's key)
_VALIDATION_STREAM = 0x5A1D


def validation_key(key):
    """The key of a block's validation mini-batch: ``jax.random.fold_in(key, 0x5A1D)`` of the block's key.

    :func:`ssca_block` draws its start-screening and iteration slots from
    ``jax.random.split(key)``; the validation slots come from this other stream,
    so SSCA never ascends on them.
    """
    return jax.random.fold_in(key, _VALIDATION_STREAM)


def keep_better(key, cfg: PassConfig, homes, X0, XT, options: SscaOptions = SscaOptions(), solver=None):
    """``(X, kept_final, rates (2,))``: the better of the start ``X0`` and the final ``XT`` on validation slots.

    Both ``(N, L)`` layouts [m] are scored by the mean sum rate [bps/Hz] with the
    short-term solver (the named ``wmmse`` / ``kkt`` ones with
    ``validation_wmmse_iterations`` updates when set) on the same
    ``options.validation_slots`` slots drawn with ``key`` (:func:`validation_key`
    of the block's key); ``XT`` is kept unless ``X0`` scores strictly higher or
    ``XT``'s score is not finite. With ``validation_slots = 0``: ``XT``, True and
    NaN rates. Pure, one block.
    """
    if options.validation_slots == 0:
        return XT, jnp.asarray(True), jnp.full((2,), jnp.nan, XT.dtype)
    slots = draw_slots(key, cfg, homes, options.validation_slots, options.slot_model, options.sigma_u)
    score = options
    if options.validation_wmmse_iterations and solver is None and options.short_term in ("wmmse", "kkt"):
        score = options.replace(wmmse_iterations=options.validation_wmmse_iterations)
    rates = jax.vmap(lambda X: -minibatch_objective(cfg, X, slots, score, solver))(jnp.stack([X0, XT]))
    keep = jnp.isfinite(rates[1]) & ((rates[1] >= rates[0]) | ~jnp.isfinite(rates[0]))
    return jnp.where(keep, XT, X0), keep, rates


def _aligned_candidates(cfg: PassConfig, homes, options: SscaOptions):
    """``(C, N, L)``: aligned layouts (best ``assignments`` maps x ``spacings``) then the uniform one."""
    dt = homes.dtype
    A = min(options.assignments, num_assignments(cfg.num_waveguides, cfg.num_users))
    parts = []
    if A:
        table = best_maps(cfg, homes, A)  # interference-free geometric score, exact (as tune_positions)
        spacings = jnp.asarray(options.spacings, dt)
        aligned = jax.vmap(lambda a: jax.vmap(lambda s: aligned_positions(cfg, homes, a, s))(spacings))(table)
        parts.append(aligned.reshape((-1, cfg.num_waveguides, cfg.num_pinches)))
    parts.append(uniform_positions(cfg, dt)[None])
    return jnp.concatenate(parts, axis=0)


def initial_positions(key, cfg: PassConfig, homes, options: SscaOptions = SscaOptions(), solver=None):
    """``X^0 (N, L)`` of one block by ``options.init`` (module docstring); ``key`` draws the screening slots."""
    check_shape("homes", homes, (cfg.num_users, 2))
    homes = jnp.asarray(homes)
    homes = homes.astype(_float_dtype(homes))
    if options.init == "uniform":
        return uniform_positions(cfg, homes.dtype)
    cands = _aligned_candidates(cfg, homes, options)
    slots = draw_slots(key, cfg, homes, options.slots_per_iteration, options.slot_model, options.sigma_u)
    scores = jax.vmap(lambda X: -minibatch_objective(cfg, X, slots, options, solver))(cands)
    return cands[jnp.argmax(jnp.where(jnp.isfinite(scores), scores, -jnp.inf))]


def ssca_block(key, cfg: PassConfig, homes, X0=None, options: SscaOptions = SscaOptions(), solver=None):
    """The whole SSCA run for ONE block (TT Algorithm 2): start, then ``iterations`` steps in a ``lax.scan``.

    Keys: ``k_init, k_run = jax.random.split(key)``; ``k_init`` screens the
    aligned start (unused with ``X0`` given or ``init="uniform"``) and
    iteration ``t`` uses ``jax.random.split(k_run, iterations)[t]``. At the end
    the start and the final iterate are compared on the validation mini-batch of
    :func:`validation_key` ``(key)`` and the better is returned
    (:func:`keep_better`): SSCA, a stochastic local method, never returns a
    layout that scored below its start there.

    Args:
      key: ``jax.random`` key. cfg: the scenario. homes: ``(K, 2)`` [m].
      X0: ``(N, L)`` start [m] or None (``options.init``).
      options: :class:`SscaOptions`. solver: optional short-term solver.

    Returns:
      :class:`SscaResult` for the block.
    """
    k_init, k_run = jax.random.split(key)
    homes = jnp.asarray(homes)
    homes = homes.astype(_float_dtype(homes))
    if X0 is None:
        X0 = initial_positions(k_init, cfg, homes, options, solver)
    state = ssca_init(cfg, jnp.asarray(X0).astype(homes.dtype), options)

    def body(state, k):
        return ssca_step(k, cfg, homes, state, options, solver)

    state, m = jax.lax.scan(body, state, jax.random.split(k_run, options.iterations))
    X, kept, rates = keep_better(validation_key(key), cfg, homes, m.X[0], state.X, options, solver)
    return SscaResult(positions=X, initial=m.X[0], avg_rate=m.avg_rate, rate=m.rate, X=m.X, tau=state.tau,
                      final=state.X, kept_final=kept, validation_rate=rates, nonfinite_slots=jnp.sum(m.nonfinite))


# ----------------------------------------------------------------- drivers
def _ssca_batch(keys, cfg: PassConfig, homes, X0, options: SscaOptions, solver=None):
    """``(B,)`` keys, ``(B, K, 2)`` homes, ``(B, N, L)`` starts or None -> batched :class:`SscaResult`."""
    if X0 is None:
        return jax.vmap(lambda k, h: ssca_block(k, cfg, h, None, options, solver))(keys, homes)
    return jax.vmap(lambda k, h, x: ssca_block(k, cfg, h, x, options, solver))(keys, homes, X0)


#: the driver's compiled batch (``jax.jit``'s cache: cfg's static fields, the options, the solver's function)
ssca_batch = jax.jit(_ssca_batch, static_argnames="options")


def _evaluate_batch(keys, cfg: PassConfig, X, homes, options: SscaOptions, solver=None, *, num_slots: int):
    return jax.vmap(lambda k, x, h: evaluate(k, cfg, x, h, num_slots, options, solver=solver))(keys, X, homes)


#: the compiled batch of :func:`held_out_rate`
evaluate_batch = jax.jit(_evaluate_batch, static_argnames=("options", "num_slots"))


def _check_cfg(cfg):
    if not isinstance(cfg, PassConfig):
        raise TypeError(f"cfg must be a PassConfig, got {type(cfg).__name__}")


def _block_homes(cfg: PassConfig, homes, driver: str):
    """Validate ``homes`` (K, 2) or (B, K, 2) inside the area; return the (B, K, 2) float batch."""
    if is_tracer(homes):
        raise TypeError(f"{driver} is a batching driver: inside jit/vmap call ssca_block / ssca_step instead")
    shape = shape_of(homes)
    K = cfg.num_users
    if len(shape) not in (2, 3) or tuple(shape[-2:]) != (K, 2) or (len(shape) == 3 and shape[0] < 1):
        raise ValueError(f"homes must have shape ({K}, 2) or (B, {K}, 2) with B >= 1, got {tuple(shape)}")
    check_finite("homes", homes)
    arr = np.asarray(homes, dtype=float)
    sx, sy = (float(np.max(np.asarray(v))) for v in (cfg.length_x, cfg.width_y))
    if np.any(arr < 0) or np.any(arr[..., 0] > sx) or np.any(arr[..., 1] > sy):
        raise ValueError(f"homes must lie in the area [0, {sx:g}] x [0, {sy:g}] m, got x in "
                         f"[{arr[..., 0].min():.6g}, {arr[..., 0].max():.6g}], y in "
                         f"[{arr[..., 1].min():.6g}, {arr[..., 1].max():.6g}]")
    homes = jnp.asarray(homes)
    homes = homes.astype(_float_dtype(homes))
    return homes[None] if homes.ndim == 2 else homes


def _block_positions(cfg: PassConfig, X, B: int, dtype, name: str):
    """Validate ``X`` (N, L) or (B, N, L); return it broadcast to (B, N, L)."""
    N, L = cfg.num_waveguides, cfg.num_pinches
    shape = shape_of(X)
    if tuple(shape[-2:]) != (N, L) or len(shape) not in (2, 3) or (len(shape) == 3 and shape[0] != B):
        raise ValueError(f"{name} must have shape ({N}, {L}) or ({B}, {N}, {L}) (one per block), got {tuple(shape)}")
    check_finite(name, X)
    return jnp.broadcast_to(jnp.asarray(X).astype(dtype), (B, N, L))


def ssca(cfg: PassConfig, homes, options: SscaOptions | None = None, *, key, X0=None, solver=None, mesh=None,
         **changes) -> SscaResult:
    """Two-timescale long-term positions by SSCA (TT Algorithms 1-2; the batching driver).

    Validates its inputs, splits ``key`` per block and runs :func:`ssca_block`
    vmapped over blocks under one ``jax.jit`` (:data:`ssca_batch`): a power,
    noise or length sweep reuses the compilation.

    Args:
      cfg: the scenario (any ``K``, ``N``, ``L``).
      homes: ``(K, 2)`` one block or ``(B, K, 2)`` B blocks of home positions [m]
        (:func:`jaxpass.slots.sample_homes`), inside the area.
      options: :class:`SscaOptions` (default ``SscaOptions()``).
      key: ``jax.random`` key (split per block; see :func:`ssca_block`).
      X0: optional start, ``(N, L)`` (every block) or ``(B, N, L)`` [m];
        projected onto the feasible set. Default: ``options.init``.
      solver: optional short-term solver ``(cfg, H) -> (W, aux)`` (e.g.
        :func:`kkt_solver`), overriding ``options.short_term``.
      mesh: ``None`` (default device) or a mesh from :func:`jaxpass.parallel.drops_mesh`: the
        blocks run data-parallel over its devices and hosts (padded to a multiple of the device
        count; same blocks and keys, same results).
      **changes: option fields to override, e.g. ``iterations=50, short_term="rzf"``.

    Returns:
      :class:`SscaResult` with the leading dims of ``homes`` minus ``(K, 2)``.
    """
    options = SscaOptions.resolve(options, **changes)
    _check_cfg(cfg)
    batch = _block_homes(cfg, homes, "ssca")
    B = batch.shape[0]
    keys = drop_keys(key, (B,))
    if X0 is not None:
        X0 = _block_positions(cfg, X0, B, batch.dtype, "X0")
    out = parallel.batch_call(ssca_batch, keys, cfg, batch, X0, mesh=mesh, in_axes=(0, None, 0, 0),
                              options=options, solver=as_solver(solver))
    return jax.tree.map(lambda a: a[0], out) if jnp.ndim(homes) == 2 else out


def held_out_rate(cfg: PassConfig, X, homes, options: SscaOptions | None = None, *, key, num_slots: int = 1000,
                  solver=None, mesh=None, **changes):
    """Mean sum rate of positions ``X`` on ``num_slots`` held-out slots per block (driver of :func:`evaluate`).

    Args:
      cfg: the scenario. X: ``(N, L)`` or ``(B, N, L)`` positions [m].
      homes: ``(K, 2)`` or ``(B, K, 2)`` home positions [m].
      options: :class:`SscaOptions` (the short-term solver and the slot statistics).
      key: ``jax.random`` key (split per block); use one the optimisation did not.
      num_slots: slots per block. solver: optional short-term solver.
      mesh: ``None`` or a mesh from :func:`jaxpass.parallel.drops_mesh` (blocks data-parallel, same results).

    Returns:
      ``()`` or ``(B,)`` mean sum rate [bps/Hz].
    """
    options = SscaOptions.resolve(options, **changes)
    _check_cfg(cfg)
    check_int("num_slots", num_slots, low=1, unit="slots")
    batch = _block_homes(cfg, homes, "held_out_rate")
    B = batch.shape[0]
    Xb = _block_positions(cfg, X, B, batch.dtype, "X")
    out = parallel.batch_call(evaluate_batch, drop_keys(key, (B,)), cfg, Xb, batch, mesh=mesh, in_axes=(0, None, 0, 0),
                              options=options, solver=as_solver(solver), num_slots=num_slots)
    return out[0] if jnp.ndim(homes) == 2 else out


__all__ = ["INITS", "MODES", "SHORT_TERM_SOLVERS", "SscaMetrics", "SscaOptions", "SscaResult", "SscaState",
           "as_solver", "calibrated_tau", "evaluate", "evaluate_batch", "held_out_rate", "initial_positions", "keep_better",
           "kkt_solver", "minibatch_objective", "objective_and_gradients", "objective_gradients_count", "short_term_beamformer", "slot_objective", "ssca",
           "ssca_batch", "ssca_block", "ssca_init", "ssca_step", "step_sizes", "validation_key", "wmmse_duals"]

"""Gradient tuning of pinch positions for the JB sum-rate problem (docs/model.md §2, §3.1-§3.2; JB (P0)).

    max_X  sum_k log2(1 + SINR_k(X, W(X)))   s.t. X feasible (docs/model.md §1),

where ``W(X)`` is a transmit beamformer computed from the effective channel
``Heff(X)`` and differentiated through (autodiff through the channel *and* the
beamformer): ``"zf"``, ``"rzf"`` (``alpha = K sigma^2 / P``), ``"wmmse"``
(unrolled, warm-started; docs/model.md §3.1) or ``"kkt"`` (docs/model.md §3.2 with its duals
``(lam, share)`` optimised jointly with ``X``).

Why the starts matter more than the steps
-----------------------------------------
The phase of pinch ``(n, l)`` at user ``k`` is ``kappa (r[k,n,l] + n_eff x[n,l])``:
it turns once every ``lambda / (n_eff + cos) ~ 4-25 mm`` of movement, so the sum
rate is a landscape of millions of local optima spaced a few millimetres
apart. Plain gradient ascent from uniform or random positions only ever reaches
the nearest one. The structure of good optima is known though:

* a waveguide's ``L`` pinches radiate *coherently* at one user when
  ``(r[k,n,l] + n_eff x[n,l]) / lambda`` is the same modulo one for every ``l``:
  then ``|Heff[k, n]| = sqrt(beta L) / r`` (``a = 1/sqrt(L)``), an ``L``-fold power
  gain over one pinch, largest when the pinches sit at the user's ``x``
  (``r = sqrt(h^2 + dy^2)`` minimal);
* with ``K <= N`` the best layouts dedicate waveguides to users (a permutation
  when ``K = N``): every other user then sees that waveguide's pinches with
  essentially random phases (power ~``1/L`` of the coherent one), and ZF/WMMSE
  removes the rest of the interference at little cost.

So every drop gets *physics-guided* candidate starts (:func:`aligned_positions`):
for each waveguide-to-user assignment (all permutations for ``K = N = 4``: 24;
for larger systems the best ``assignments`` ones by the interference-free score
``sum_n log(h^2 + dy_n^2)``, found exactly: a linear assignment problem whose k
best solutions :mod:`jaxpass.optimize.assignment` ranks by Murty's algorithm
once the maps are too many to enumerate) and each nominal pinch spacing in ``spacings``, the
pinches of waveguide ``n`` are placed one after the other around the assigned
user's ``x``: pinch ``l`` at the first point ``>= max(t_l, x_{l-1} + delta_min)``
(``t_l`` the nominal grid point) whose total phase equals pinch 0's modulo one
cycle (a vectorised Newton solve of a monotone 1-D equation: the phase slope
``(n_eff + (x - x_k)/r) / lambda`` is positive for ``n_eff >= 1``). Spacing ``0``
means the guided wavelength ``lambda / n_eff`` (the most compact coherent array:
all pinches at distance ~``r_min``); larger spacings focus in the near field
(users on other lanes at a similar ``x`` see a phase error growing with the
aperture) at a small loss of gain. The uniform layout (``uniform_positions``)
and ``random_starts`` random feasible layouts are added as candidates.

All candidates are scored with the chosen beamformer in one batched forward
pass; the best ``starts`` of them are polished by projected gradient ascent and
the best iterate over all polished trajectories is returned.

Polishing steps and schedule
----------------------------
Adam on ``-sum rate`` (``optax.adam``), step size cosine-decayed from
``learning_rate`` (default 3e-4 m: ~1/20 of a phase cycle per step, so a step
can move a pinch across a ripple's flank but not jump to the next ripple) to
``final_learning_rate`` (default 3e-6 m: ~1e-3 cycles, sub-degree phase
refinement), followed by the exact projection ``project_positions`` after every
step (so every iterate is feasible; no penalty). Each trajectory keeps its best
iterate (the rate is not monotone under a fixed-step method); ``history`` keeps
the raw per-step rates of the kept start. ``benchmarks/table1.py`` measures
what the starts and the polish each contribute on the JB Table I drops (and
the ``assignments=0`` ablation without aligned starts).

Beamformer variants
-------------------
* ``"zf"``: ``beamforming.zf`` (equal power per user, needs ``K <= N``).
* ``"rzf"``: ``beamforming.rzf`` with ``alpha = K sigma^2 / P``.
* ``"wmmse"``: ``beamforming.wmmse`` unrolled for ``wmmse_iterations`` updates
  per step, warm-started from the previous step's beamformer (held constant,
  ``stop_gradient``), so a few unrolled iterations track the WMMSE fixed point
  as ``X`` moves; the gradient flows through those unrolled updates. The final
  beamformer gets ``final_wmmse_iterations`` more updates (the sum rate never
  decreases under WMMSE).
* ``"kkt"``: ``beamforming.kkt(H, lam, share, P)`` with
  ``lam = (P / (K sigma^2)) exp(log_lam)`` and ``share = softmax(logits)``;
  ``(log_lam, logits)`` start at zero (so the start is exactly RZF with
  ``alpha = K sigma^2 / P``: ``kkt`` with equal ``lam`` is RZF) and follow their
  own Adam (step ``dual_learning_rate``, same cosine decay) jointly with ``X``.

Execution (docs/execution_model.md): :func:`tune_drop` is the pure per-drop
kernel (candidates, scoring, selection, the polishing ``lax.scan`` over the
``starts``) that runs under a caller's ``jax.jit``/``jax.vmap``;
:func:`tune_positions` is the driver that validates, batches and calls the
module-level :data:`tune_batch` (``jax.jit`` with the options static), so a
sweep over a traced config field (power, noise, length, height) compiles once
per set of options and static config.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxpass import beamforming as bf
from jaxpass import parallel
from jaxpass._checks import (
    check_choice,
    check_finite,
    check_key,
    check_nonnegative_int,
    check_number,
    check_positive_int,
    check_shape,
    check_spacings,
    check_users_in_area,
    is_tracer,
    shape_of,
)
from jaxpass._options import Options, option
from jaxpass.channel import effective_channel
from jaxpass.config import PassConfig
from jaxpass.geometry import project_positions, uniform_positions
from jaxpass.metrics import sum_rate
from jaxpass.optimize.assignment import (
    ASSIGNMENT_SEARCHES,
    assignment_table,
    geometric_cost,
    num_assignments,
    ranked_assignments,
)
from jaxpass.units import SPEED_OF_LIGHT

BEAMFORMERS = ("zf", "rzf", "wmmse", "kkt")

class TuneResult(NamedTuple):
    """Output of :func:`tune_positions`; leading dims ``(...)`` are the batch of drops (none for one drop).

    Attributes:
      positions: ``(..., N, L)`` tuned pinch positions [m], always feasible.
      W: ``(..., N, K)`` final beamformer at ``positions`` (``||W||_F^2 = P``) [sqrt(W)].
      sum_rate: ``(...)`` sum rate of ``(positions, W)`` [bps/Hz].
      history: ``(..., steps + 1)`` sum rate of the kept start's raw trajectory:
        entry ``t`` is the rate at the iterate after ``t`` steps (entry 0: the start).
      start_rate: ``(...)`` best sum rate among all candidate starts before polishing.
      start: ``(...)`` int index of the kept start in the candidate list
        (:func:`candidate_labels` names them).
      lam: ``(..., K)`` KKT duals (``"kkt"``: optimised; ``"wmmse"``: WMMSE's duals), else None.
      share: ``(..., K)`` power shares ``||W[:, k]||^2 / P`` (``"kkt"``, ``"wmmse"``), else None.
    """

    positions: jax.Array
    W: jax.Array
    sum_rate: jax.Array
    history: jax.Array
    start_rate: jax.Array
    start: jax.Array
    lam: Any = None
    share: Any = None


BEAMFORMER_HELP = "beamformer differentiated through: zf, rzf, wmmse or kkt"


@dataclasses.dataclass(frozen=True)
class TuneOptions(Options):
    """Options of :func:`tune_positions` / :func:`tune_drop` (static for ``jit``; module docstring)."""

    beamformer: str = option("zf", BEAMFORMER_HELP, choices=BEAMFORMERS)
    steps: int = option(300, "projected Adam steps per polished start")
    starts: int = option(8, "candidate starts polished per drop")
    learning_rate: float = option(3e-4, "Adam step size for the positions at the start of the cosine decay [m]")
    final_learning_rate: float = option(3e-6, "Adam step size for the positions at the end of the decay [m]")
    dual_learning_rate: float = option(0.05, "Adam step size of the KKT duals (log-lambda, share logits; kkt only)")
    spacings: tuple = option((0.0, 0.03, 0.1), "nominal pinch spacings of the aligned starts [m] (0 = guided wavelength)")
    assignments: int = option(24, "waveguide-to-user assignments tried for aligned starts (0 disables them)")
    assignment_search: str = option(
        "exact", "how the best assignments are found: exact (every map, or Murty's k-best beyond 7! maps) or "
        "sampled (top of a random sample of 5040 permutations beyond 7!: the old baseline)",
        choices=ASSIGNMENT_SEARCHES)
    random_starts: int = option(2, "random feasible candidate layouts per drop")
    wmmse_iterations: int = option(2, "unrolled warm-started WMMSE updates per step (wmmse only)")
    final_wmmse_iterations: int = option(50, "WMMSE updates of the final beamformer (wmmse only)")

    def validate(self):
        check_choice("beamformer", self.beamformer, BEAMFORMERS)
        check_choice("assignment_search", self.assignment_search, ASSIGNMENT_SEARCHES)
        for name in ("steps", "starts", "wmmse_iterations", "final_wmmse_iterations"):
            check_positive_int(name, getattr(self, name))
        check_nonnegative_int("assignments", self.assignments)
        check_nonnegative_int("random_starts", self.random_starts)
        for name in ("learning_rate", "final_learning_rate"):
            check_number(name, getattr(self, name), unit="m", low=0.0, low_open=True)
        check_number("dual_learning_rate", self.dual_learning_rate, low=0.0, low_open=True)
        object.__setattr__(self, "spacings", check_spacings("spacings", self.spacings))

    def check_scenario(self, cfg: PassConfig) -> None:
        """Raise if these options cannot run on ``cfg`` (shapes are static, so this holds under ``jit``)."""
        if not isinstance(cfg, PassConfig):
            raise TypeError(f"cfg must be a PassConfig, got {type(cfg).__name__}")
        if self.beamformer == "zf" and cfg.num_users > cfg.num_waveguides:
            raise ValueError(
                f"beamformer='zf' needs K <= N, got K={cfg.num_users} users and N={cfg.num_waveguides} "
                "waveguides; use 'rzf', 'wmmse' or 'kkt'")


# ------------------------------------------------------------------ starts
def _phase_cycles(cfg: PassConfig, x, ux, dy2):
    """Total phase ``(r + n_eff x) / lambda`` [cycles] and its x-derivative [cycles/m].

    ``r = sqrt((x - ux)^2 + dy2 + h^2)``. Plain working precision: the result
    only places a start (float32: ~1e-4 cycles at these magnitudes; the polish
    refines it through the full-precision channel).
    """
    dt = x.dtype
    inv_lam = jnp.asarray(cfg.carrier_freq, dt) / jnp.asarray(SPEED_OF_LIGHT, dt)
    h2 = jnp.asarray(cfg.height, dt) ** 2
    n_eff = jnp.asarray(cfg.n_eff, dt)
    dx = x - ux
    r = jnp.sqrt(dx * dx + dy2 + h2)
    return (r + n_eff * x) * inv_lam, (dx / r + n_eff) * inv_lam


def _next_coherent(cfg: PassConfig, x, ux, dy2, phase0, newton_steps: int = 3):
    """Smallest ``x' >= x`` (approximately) with ``phase(x') = phase0`` modulo one cycle.

    One forward step ``frac(phase0 - phase(x)) / phase'(x)`` (into ``[0, 1)`` cycles
    ahead) then ``newton_steps`` Newton steps on the wrapped residual. The slope
    is floored at 0.05 cycles per wavelength (it is ``>= (n_eff - 1) / lambda``).
    """
    floor = 0.05 * jnp.asarray(cfg.carrier_freq, x.dtype) / jnp.asarray(SPEED_OF_LIGHT, x.dtype)
    p, dp = _phase_cycles(cfg, x, ux, dy2)
    ahead = jnp.mod(phase0 - p, 1.0)
    x = x + ahead / jnp.maximum(dp, floor)
    for _ in range(newton_steps):
        p, dp = _phase_cycles(cfg, x, ux, dy2)
        res = jnp.mod(phase0 - p + 0.5, 1.0) - 0.5
        x = x + res / jnp.maximum(dp, floor)
    return x


def aligned_positions(cfg: PassConfig, users, assignment, spacing, shift=None):
    """Phase-coherent, user-aligned pinch layout (the physics-guided start; module docstring).

    Waveguide ``n`` serves user ``k = assignment[n]``: its pinches are placed in
    order on the nominal grid ``t_l = c_n + (l - (L-1)/2) s_n``
    (``s_n = max(spacing_n, lambda / n_eff, delta_min)``, ``c_n = x_k + shift_n``
    clipped so the grid fits in ``[0, S_x]``): pinch 0 exactly at ``t_0``, pinch
    ``l >= 1`` at the first point ``>= max(t_l, x_{l-1} + delta_min)`` where
    ``(r[k,n,l] + n_eff x[n,l]) / lambda`` equals pinch 0's phase modulo one
    (coherent combining at user k, not at the shifted centre:
    ``|Heff[k, n]| ~ sqrt(beta L) / r``). Pinch 0 is not Newton-solved: a solve
    onto its own phase can wrap one whole cycle (~7 mm) when the rounded residual
    lands just below one, and differently under ``jit`` and eagerly. The result
    is passed through the exact projection (a no-op unless the layout ran past
    ``S_x``). Differentiable in ``shift`` and ``spacing`` almost everywhere.

    Args:
      cfg: the scenario.
      users: ``(K, 2)`` user coordinates [m].
      assignment: ``(N,)`` int user index per waveguide (see :func:`assignment_table`).
      spacing: nominal pinch spacing [m], scalar or ``(N,)``, ``>= 0`` (0 = guided wavelength).
      shift: ``(N,)`` centre shift [m] or ``None`` (the grid centred on the user).

    Returns:
      ``(N, L)`` feasible positions [m].
    """
    users = jnp.asarray(users)
    dt = users.dtype if jnp.issubdtype(users.dtype, jnp.floating) else jnp.result_type(float)
    users = users.astype(dt)
    N, L = cfg.num_waveguides, cfg.num_pinches
    lam = jnp.asarray(SPEED_OF_LIGHT, dt) / jnp.asarray(cfg.carrier_freq, dt)
    n_eff = jnp.asarray(cfg.n_eff, dt)
    delta = jnp.asarray(cfg.min_spacing, dt)
    length = jnp.asarray(cfg.length_x, dt)
    assigned = users[jnp.asarray(assignment)]  # (N, 2)
    ux = assigned[:, 0]
    dy2 = (cfg.lane_y.astype(dt) - assigned[:, 1]) ** 2
    step = jnp.maximum(jnp.maximum(jnp.broadcast_to(jnp.asarray(spacing, dt), (N,)), lam / n_eff), delta)  # (N,)
    # one phase cycle can add up to lambda / (n_eff - 1) per pinch near the ends; keep a margin
    half = 0.5 * (L - 1) * step
    margin = jnp.minimum(L * (delta + lam / n_eff), 0.25 * length)
    lo = jnp.minimum(half, 0.5 * length)
    hi = jnp.maximum(length - half - margin, lo)
    target = ux if shift is None else ux + jnp.broadcast_to(jnp.asarray(shift, dt), (N,))
    center = jnp.clip(target, lo, hi)
    targets = center[:, None] + (jnp.arange(L, dtype=dt) - 0.5 * (L - 1)) * step[:, None]  # (N, L)
    targets = jnp.maximum(targets, 0.0)
    phase0, _ = _phase_cycles(cfg, targets[:, 0], ux, dy2)

    def place(prev, t):
        x = _next_coherent(cfg, jnp.maximum(t, prev + delta), ux, dy2, phase0)
        return x, x

    x0 = targets[:, 0]
    _, xs = jax.lax.scan(place, x0, targets[:, 1:].T)
    return project_positions(cfg, jnp.concatenate([x0[:, None], xs.T], axis=1))


def random_positions(key, cfg: PassConfig, dtype=None):
    """Random feasible layout: sorted uniforms on ``[0, S_x]`` per waveguide, projected. ``(N, L)`` [m]."""
    dtype = dtype or jnp.result_type(float)
    u = jax.random.uniform(key, (cfg.num_waveguides, cfg.num_pinches), dtype) * jnp.asarray(cfg.length_x, dtype)
    return project_positions(cfg, jnp.sort(u, axis=-1))


def candidate_labels(cfg: PassConfig, options: TuneOptions | None = None, **changes) -> list:
    """Names of the candidate starts, in the order :attr:`TuneResult.start` indexes.

    ``"aligned[a=<a>,s=<spacing>]"``, then ``"uniform"``, then ``"random[<i>]"``.
    ``a`` is the row of :func:`assignment_table` when every assignment is tried
    (``assignments >=`` the number of maps, e.g. all 24 for K = N = 4), else the
    assignment's rank by the geometric score for that drop
    (:func:`jaxpass.optimize.assignment.ranked_assignments`).
    """
    opts = TuneOptions.resolve(options, **changes)
    A = _num_aligned(cfg, opts)
    labels = [f"aligned[a={a},s={float(s):g}]" for a in range(A) for s in opts.spacings]
    return labels + ["uniform"] + [f"random[{i}]" for i in range(opts.random_starts)]


def _num_aligned(cfg: PassConfig, opts: TuneOptions) -> int:
    """Number of assignments the aligned starts use (the option, capped at the maps available)."""
    N, K = cfg.num_waveguides, cfg.num_users
    available = len(assignment_table(N, K)) if opts.assignment_search == "sampled" else num_assignments(N, K)
    return min(opts.assignments, available)


def best_maps(cfg: PassConfig, users, count: int, search: str = "exact"):
    """The ``count`` best waveguide-to-user maps of one drop, ``(count, N)`` int32, best first.

    Ranked by the interference-free geometric cost
    (:func:`jaxpass.optimize.assignment.geometric_cost`; every map when there
    are at most ``count``, in :func:`assignment_table` order); ``search`` as
    :func:`jaxpass.optimize.assignment.ranked_assignments`. Pure: runs under
    ``jit``/``vmap`` with ``users (K, 2)`` traced.
    """
    cost = geometric_cost(cfg.lane_y.astype(users.dtype), cfg.height, users)
    return ranked_assignments(cost, count, search)


def _candidates(cfg: PassConfig, opts: TuneOptions, users, key):
    """All candidate starts of one drop, ``(C, N, L)``, in :func:`candidate_labels` order."""
    dt = users.dtype
    A = _num_aligned(cfg, opts)
    parts = []
    if A:
        table = best_maps(cfg, users, A, opts.assignment_search)
        spacings = jnp.asarray(opts.spacings, dt)
        aligned = jax.vmap(lambda a: jax.vmap(lambda s: aligned_positions(cfg, users, a, s))(spacings))(table)
        parts.append(aligned.reshape((-1, cfg.num_waveguides, cfg.num_pinches)))
    parts.append(uniform_positions(cfg, dt)[None])
    if opts.random_starts:
        keys = jax.random.split(key, opts.random_starts)
        parts.append(jax.vmap(lambda k: random_positions(k, cfg, dt))(keys))
    return jnp.concatenate(parts, axis=0)


# ----------------------------------------------------------------- objective
def _dual_values(cfg: PassConfig, duals, dt):
    """``(lam, share)`` of the KKT beamformer from the unconstrained ``(log_lam, logits)``."""
    log_lam, logits = duals
    scale = jnp.asarray(cfg.power, dt) / (cfg.num_users * jnp.asarray(cfg.noise_power, dt))
    return scale * jnp.exp(log_lam), jax.nn.softmax(logits)


def _beamformer(cfg: PassConfig, opts: TuneOptions, H, duals, W_prev, iterations):
    """The chosen beamformer at channel ``H``; returns ``(W, (lam, share) or None)``."""
    P, s2 = cfg.power, cfg.noise_power
    if opts.beamformer == "zf":
        return bf.zf(H, P), None
    if opts.beamformer == "rzf":
        return bf.rzf(H, P, cfg.num_users * s2 / P), None
    if opts.beamformer == "kkt":
        lam, share = _dual_values(cfg, duals, H.real.dtype)
        return bf.kkt(H, lam, share, P), (lam, share)
    init = "auto" if W_prev is None else jax.lax.stop_gradient(W_prev)
    info = bf.wmmse(H, P, s2, iterations=iterations, init=init, return_info=True)
    return info.W, (info.lam, info.share)


def _objective(cfg: PassConfig, opts: TuneOptions, users, params, W_prev, iterations):
    """``(sum rate, (W, duals))`` at ``params = (X, (log_lam, logits))``."""
    X, duals = params
    H = effective_channel(cfg, X, users)
    W, extra = _beamformer(cfg, opts, H, duals, W_prev, iterations)
    return sum_rate(H, W, cfg.noise_power), (W, extra)


def _optimizer(opts: TuneOptions):
    import optax

    def schedule(lr):
        alpha = opts.final_learning_rate / opts.learning_rate
        return optax.cosine_decay_schedule(lr, opts.steps, alpha=alpha)

    return optax.multi_transform(
        {"x": optax.adam(schedule(opts.learning_rate)), "dual": optax.adam(schedule(opts.dual_learning_rate))},
        ("x", ("dual", "dual")),
    )


def _finite(g):
    return jax.tree.map(lambda a: jnp.where(jnp.isfinite(a), a, 0.0), g)


def _polish(cfg: PassConfig, opts: TuneOptions, users, X0, W0):
    """Projected Adam ascent from one start; returns the best iterate and the raw history."""
    import optax

    dt = X0.dtype
    K = cfg.num_users
    params = (X0, (jnp.zeros((K,), dt), jnp.zeros((K,), dt)))
    opt = _optimizer(opts)
    value_and_grad = jax.value_and_grad(
        lambda p, W: _objective(cfg, opts, users, p, W, opts.wmmse_iterations), has_aux=True)

    def better(v, best_v):
        return jnp.isfinite(v) & (v > best_v)

    def select(flag, new, old):
        return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)

    def step(carry, _):
        params, W, state, best = carry
        (v, (W_new, _)), g = value_and_grad(params, W)
        best = select(better(v, best[0]), (v, params, W_new), best)
        updates, state = opt.update(jax.tree.map(jnp.negative, _finite(g)), state, params)
        X, duals = optax.apply_updates(params, updates)
        params = (project_positions(cfg, X), duals)
        return (params, W_new, state, best), v

    neg_inf = jnp.asarray(-jnp.inf, dt)
    carry = (params, W0, opt.init(params), (neg_inf, params, W0))
    (params, W, _, best), history = jax.lax.scan(step, carry, None, length=opts.steps)
    v_last, (W_last, _) = _objective(cfg, opts, users, params, W, opts.wmmse_iterations)
    best = select(better(v_last, best[0]), (v_last, params, W_last), best)
    return best, jnp.concatenate([history, v_last[None]])


def tune_drop(key, cfg: PassConfig, users, options: TuneOptions = TuneOptions()) -> TuneResult:
    """Tune the pinch positions of ONE drop: candidates, screening, polish, selection.

    The pure kernel behind :func:`tune_positions` (module docstring; JB (P0)).
    Works under the caller's ``jax.jit``/``jax.vmap`` with ``cfg`` and
    ``users`` traced; ``options`` are static (close over them or mark them
    static)::

        opts = TuneOptions(steps=200)
        run = jax.jit(jax.vmap(lambda k, c, u: tune_drop(k, c, u, opts), in_axes=(0, None, 0)))
        result = run(jax.random.split(key, B), cfg, users)      # users (B, K, 2)

    Args:
      key: ``jax.random`` key (random candidate starts).
      cfg: the scenario (``"zf"`` needs ``K <= N``).
      users: ``(K, 2)`` user coordinates [m], floating point.
      options: :class:`TuneOptions`.

    Returns:
      :class:`TuneResult` for the drop.
    """
    opts = options
    opts.check_scenario(cfg)
    check_shape("users", users, (cfg.num_users, 2))
    cands = _candidates(cfg, opts, users, key)
    rates, Ws = _screen(cfg, opts, users, cands)
    _, top = jax.lax.top_k(rates, min(opts.starts, cands.shape[0]))
    return _polish_and_finish(cfg, opts, users, cands[top], Ws[top], index=top, start_rate=jnp.max(rates))


def refine_drop(cfg: PassConfig, users, X0, options: TuneOptions = TuneOptions()) -> TuneResult:
    """Polish ONE given start ``X0`` of one drop (no candidate search): a learned start + refinement.

    The same projected Adam ascent as :func:`tune_drop` (``options.steps``
    steps, ``options.beamformer``; ``options.starts`` and the candidate options
    are not used), started at ``X0`` (projected first, so any layout works),
    with the best iterate kept, so the result is never worse than the start.
    Pure; works under the caller's ``jax.jit``/``jax.vmap`` like
    :func:`tune_drop`::

        run = jax.jit(jax.vmap(lambda u, X: refine_drop(cfg, u, X, TuneOptions(steps=20))))

    Args:
      cfg: the scenario.
      users: ``(K, 2)`` user coordinates [m], floating point.
      X0: ``(N, L)`` start positions [m] (e.g. a trained model's, :mod:`jaxpass.learn.aligned`).
      options: :class:`TuneOptions`.

    Returns:
      :class:`TuneResult`; ``start_rate`` is the rate at the projected ``X0``, ``start`` is 0.
    """
    opts = options
    opts.check_scenario(cfg)
    check_shape("users", users, (cfg.num_users, 2))
    check_shape("X0", X0, (cfg.num_waveguides, cfg.num_pinches))
    cands = project_positions(cfg, jnp.asarray(X0, users.dtype))[None]
    rates, Ws = _screen(cfg, opts, users, cands)
    return _polish_and_finish(cfg, opts, users, cands, Ws, index=jnp.zeros((1,), jnp.int32), start_rate=rates[0])


def _screen(cfg: PassConfig, opts: TuneOptions, users, cands):
    """``(C, N, L)`` candidate layouts -> ``(C,)`` sum rates (``-inf`` if not finite), ``(C, N, K)`` beamformers."""
    K, dt = cfg.num_users, users.dtype
    zero_duals = (jnp.zeros((K,), dt), jnp.zeros((K,), dt))
    screen_iters = max(opts.wmmse_iterations, 10)

    def screen(X):
        v, (W, _) = _objective(cfg, opts, users, (X, zero_duals), None, screen_iters)
        return jnp.where(jnp.isfinite(v), v, -jnp.inf), W

    return jax.vmap(screen)(cands)


def _polish_and_finish(cfg: PassConfig, opts: TuneOptions, users, starts, Ws, *, index, start_rate) -> TuneResult:
    """Polish every start (``(S, N, L)``, their screening beamformers ``Ws``), keep the best, final beamformer."""
    dt = users.dtype
    (best_v, best_params, best_W), histories = jax.vmap(
        lambda X, W: _polish(cfg, opts, users, X, W))(starts, Ws)
    i = jnp.argmax(jnp.where(jnp.isfinite(best_v), best_v, -jnp.inf))
    X, duals = jax.tree.map(lambda a: a[i], best_params)
    W_prev = best_W[i]
    H = effective_channel(cfg, X, users)
    if opts.beamformer == "wmmse":
        W, extra = _beamformer(cfg, opts, H, duals, W_prev, opts.final_wmmse_iterations)
        r_final = sum_rate(H, W, cfg.noise_power)
        # WMMSE never lowers the rate; keep the tracked beamformer if rounding says otherwise
        keep = r_final >= best_v[i]
        W = jnp.where(keep, W, W_prev)
    else:
        W, extra = _beamformer(cfg, opts, H, duals, None, opts.wmmse_iterations)
    lam = share = None
    if opts.beamformer in ("kkt", "wmmse"):
        lam = extra[0]
        share = jnp.sum(W.real**2 + W.imag**2, axis=0) / jnp.asarray(cfg.power, dt)
    return TuneResult(
        positions=X,
        W=W,
        sum_rate=sum_rate(H, W, cfg.noise_power),
        history=histories[i],
        start_rate=start_rate,
        start=index[i].astype(jnp.int32),
        lam=lam,
        share=share,
    )


def _tune_batch(keys, cfg: PassConfig, users, options: TuneOptions):
    """``(B,)`` keys, ``(B, K, 2)`` users -> batched :class:`TuneResult`."""
    return jax.vmap(lambda k, u: tune_drop(k, cfg, u, options))(keys, users)


#: the driver's compiled batch: ``jax.jit``'s cache is keyed on cfg's static fields and the options
tune_batch = jax.jit(_tune_batch, static_argnames="options")


def tuning_inputs(cfg: PassConfig, users, key, options: TuneOptions):
    """Validate concrete driver inputs; return ``(keys (B,), users (B, K, 2))`` for :data:`tune_batch`."""
    options.check_scenario(cfg)
    if is_tracer(users):
        raise TypeError("tune_positions is the batching driver: inside jit/vmap call tune_drop instead")
    shape = shape_of(users)
    K = cfg.num_users
    if len(shape) not in (2, 3) or tuple(shape[-2:]) != (K, 2):
        raise ValueError(f"users must have shape ({K}, 2) or (B, {K}, 2), got {tuple(shape)}")
    if len(shape) == 3 and shape[0] < 1:
        raise ValueError(f"users batch must hold at least one drop, got shape {tuple(shape)}")
    check_finite("users", users)
    check_users_in_area(cfg, users)
    users = jnp.asarray(users)
    if not jnp.issubdtype(users.dtype, jnp.floating):
        users = users.astype(jnp.result_type(float))
    batch = users[None] if users.ndim == 2 else users
    return jax.random.split(check_key(key), batch.shape[0]), batch


def tune_positions(cfg: PassConfig, users, options: TuneOptions | None = None, *, key, mesh=None,
                   **changes) -> TuneResult:
    """Tune pinch positions by projected gradient ascent of the sum rate (the batching driver).

    JB problem (P0) / docs/model.md §3 with ``W = W(X)`` one of the
    beamformers of docs/model.md §3.1-§3.2 (``X`` and, for ``"kkt"``, the
    duals are the variables). Physics-guided candidate starts (user-aligned
    coherent layouts for the best waveguide-to-user assignments and several
    spacings, the uniform layout, random layouts) are scored; the best
    ``starts`` are polished with ``steps`` projected Adam steps; the best
    iterate is returned. Validates its inputs, splits ``key`` per drop and
    runs :func:`tune_drop` vmapped under one ``jax.jit`` (a power, noise or
    length sweep reuses the compilation).

    Args:
      cfg: the scenario (any ``K``, ``N``, ``L``; ``"zf"`` needs ``K <= N``).
      users: ``(K, 2)`` one drop or ``(B, K, 2)`` a batch of drops [m].
      options: :class:`TuneOptions` (default ``TuneOptions()``).
      key: ``jax.random`` key (random starts; split per drop).
      mesh: ``None`` (default device) or a mesh from :func:`jaxpass.parallel.drops_mesh`: the
        drops run data-parallel over its devices and hosts (same drops and keys, same results).
      **changes: option fields to override, e.g. ``steps=100, beamformer="wmmse"``.

    Returns:
      :class:`TuneResult` with leading dims of ``users`` minus ``(K, 2)``.
    """
    options = TuneOptions.resolve(options, **changes)
    keys, batch = tuning_inputs(cfg, users, key, options)
    out = parallel.batch_call(tune_batch, keys, cfg, batch, mesh=mesh, in_axes=(0, None, 0), options=options)
    return jax.tree.map(lambda a: a[0], out) if jnp.ndim(users) == 2 else out


__all__ = ["BEAMFORMERS", "TuneOptions", "TuneResult", "aligned_positions", "assignment_table", "best_maps",
           "candidate_labels",
           "random_positions", "refine_drop", "tune_batch", "tune_drop", "tune_positions", "tuning_inputs"]

"""Static, dynamic and fixed-antenna designs (EE Defs. 1-2, Algs. 1-3; docs/model.md §5).

The design variables change at three rates (EE §III): powers per drop
(always), locations per drop (*dynamic*) or once for all drops (*static*), and
the split coefficients once for all drops (both). One outer iteration runs
``gs_sweeps`` Gauss-Seidel sweeps of the locations (per drop for the dynamic
design, on the ergodic objective for the static one), then ``coupling_steps``
coupling-ascent steps (skipped for ``coupling="fixed"``, where every
``delta_n = fixed_split``). Every block only accepts improving moves, so the
ergodic objective is non-decreasing over outer iterations.

The drivers run the outer iterations in Python around one compiled step
(``jax.jit`` with the options static and ``cfg`` traced: a ``P_max`` sweep compiles
once) and call ``callback(t, value)`` after each (``t = 0``: the initial point);
timing and progress printing belong to the caller (``jaxpass.experiments.ee``).
:func:`dynamic_drop` is the pure per-drop kernel of the dynamic design with
given split coefficients.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpass import parallel
from jaxpass.optimize.energy import _inputs
from jaxpass.optimize.energy.coupling import ascend
from jaxpass.optimize.energy.location import locate
from jaxpass.optimize.energy.model import centre_antenna_point, fixed_split, initial_point
from jaxpass.optimize.energy.objective import METRIC_FIELDS, drops_value, evaluate_batch, evaluate_drop, record_batch
from jaxpass.optimize.energy.options import DesignOptions, default_grid_points, validation_count, with_grid

_STEP_FIELDS = ("objective", "coupling", "gs_sweeps", "coupling_steps", "grid_points", "grid_spacing",
                "grid_batch", "dinkelbach_iterations", "line_search", "gain", "phase_samples")


@dataclasses.dataclass
class DesignResult:
    """A finished static, dynamic or fixed-antenna design evaluated on its drops.

    Attributes:
      kind: ``"dynamic"``, ``"static"`` or ``"fixed_antenna"``.
      objective: ``"ee"`` or ``"se"``.
      coupling: ``"tunable"`` or ``"fixed"``.
      positions: ``(D, N)`` per-drop positions [m] (static: the same row repeated).
      split: ``(N,)`` split coefficients.
      power: ``(D, K)`` powers [W] (Dinkelbach for ``"ee"``, ``P_max`` for ``"se"``).
      ee: ``(D,)`` energy efficiency per drop [bit/s/Hz per W] (on every drop passed, the
        validation drops included).
      se: ``(D,)`` spectral efficiency per drop [bps/Hz].
      history: ``(outer_iterations + 1,)`` the ergodic objective the design fits, on the
        fitting drops, after each outer iteration of the chosen start (entry 0: the initial
        point); non-decreasing. For the static design with ``static_gain="random_phase"``
        it is the objective with random-phase gains (the expected value over the element phases).
      ee_history: ``(outer_iterations + 1,)`` mean EE with the physical (coherent) gains
        on the fitting drops after each outer iteration (in-sample).
      p_max: power budget [W].
      initial: which initial point the returned design started from (the chosen start).
      validation_drops, chosen_iteration, validation_score, candidates: how the static
        design chose among its starts (``validation_fraction``): the number of drops held
        back from the fit (the last ones), the outer iteration of the returned iterate
        (``outer_iterations`` when chosen in-sample), its score on the validation drops
        and every candidate's score (``None`` when chosen in-sample).
      seconds, compile_seconds: wall time of the design after compilation and of the
        compilation [s]; ``None`` unless the caller measured them (``jaxpass.experiments.ee``).
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
    p_max: float
    initial: str = "paper"
    seconds: float | None = None
    compile_seconds: float | None = None
    #: fingerprint of the drops the design was fitted on (``held_out`` refuses to score on them)
    fitted_on: str | None = None
    #: ``"in-sample"`` (scored on the fitting drops) or ``"held-out"`` (:func:`held_out`)
    scored_on: str = "in-sample"
    #: drops held back from the fit to choose among the static design's candidates (0: chosen in-sample)
    validation_drops: int = 0
    #: outer iterations of the returned iterate of the chosen start (``initial``)
    chosen_iteration: int | None = None
    #: the chosen candidate's objective (physical gains) on the validation drops; ``None`` without them
    validation_score: float | None = None
    #: every candidate ``{"start", "iteration", "validation"}`` with its validation score (and, where the centre
    #: start is one, ``advantage`` over its iteration 0 and ``advantage_se``, paired); ``None`` without them
    candidates: list | None = None

    @property
    def mean_ee(self) -> float:
        return float(np.mean(self.ee))

    @property
    def mean_se(self) -> float:
        return float(np.mean(self.se))

    def summary(self) -> dict:
        """JSON-ready numbers (means, history; time per drop when measured)."""
        D = self.ee.shape[0]
        return {
            "kind": self.kind, "objective": self.objective, "coupling": self.coupling,
            "initial": self.initial, "p_max_w": self.p_max, "drops": D,
            "mean_ee": self.mean_ee, "std_ee": float(np.std(self.ee)),
            "mean_se": self.mean_se, "mean_power_w": float(np.mean(self.power)),
            "history": [float(v) for v in self.history],
            "ee_history": [float(v) for v in self.ee_history],
            "split": [float(v) for v in self.split], "scored_on": self.scored_on,
            "validation_drops": self.validation_drops, "chosen_iteration": self.chosen_iteration,
            "validation_score": self.validation_score, "candidates": self.candidates,
            "seconds": self.seconds, "compile_seconds": self.compile_seconds,
            "ms_per_drop": None if self.seconds is None else 1e3 * self.seconds / max(D, 1),
        }


class DropDesign(NamedTuple):
    """Output of :func:`dynamic_drop` for one drop.

    Attributes:
      positions: ``(N,)`` [m]; power: ``(K,)`` [W]; ee: [bit/s/Hz per W]; se: [bps/Hz];
      history: ``(outer_iterations + 1,)`` the drop's objective after each outer iteration.
    """

    positions: jax.Array
    power: jax.Array
    ee: jax.Array
    se: jax.Array
    history: jax.Array


# ---------------------------------------------------------------------- kernels
def dynamic_drop(cfg, users, split, options: DesignOptions | None = None, *, p_max=None, x0=None) -> DropDesign:
    """The dynamic design of one drop with given split coefficients (EE Def. 1, Alg. 2): the pure kernel.

    ``options.outer_iterations`` outer iterations of ``options.gs_sweeps``
    Gauss-Seidel sweeps of the drop's layout (powers re-optimised inside), from
    ``x0`` (default: the paper's uniform layout). With fixed couplings the dynamic
    design separates over drops, so ``jax.vmap`` of this kernel over drops is
    :func:`dynamic_design` with ``coupling="fixed"``. Runs under a caller's
    ``jax.jit``/``jax.vmap`` with ``cfg`` traced (then set ``options.grid_points``).

    Args:
      cfg: single-waveguide scenario.
      users: ``(K, 2)`` one drop [m].
      split: ``(N,)`` split coefficients in ``[0, 1]``.
      options: :class:`DesignOptions` (``outer_iterations``, ``gs_sweeps``, the grid,
        ``objective``, ``dinkelbach_iterations``; ``coupling`` is not read).
      p_max: power budget [W] (default ``cfg.power``).
      x0: ``(N,)`` feasible start [m].

    Returns:
      :class:`DropDesign`.
    """
    options = DesignOptions.resolve(options)
    users = jnp.asarray(users)
    p_max = cfg.power if p_max is None else p_max
    x_start = initial_point(cfg, users.dtype)[0] if x0 is None else jnp.asarray(x0)
    one = users[None]

    def value(x):
        return drops_value(cfg, x[None], split, one, p_max, options)[0][0]

    def body(x, _):
        x = locate(cfg, x, split, one, p_max, options)
        return x, value(x)

    x, vs = jax.lax.scan(body, x_start, None, length=options.outer_iterations)
    ee, se, p = evaluate_drop(cfg, x, split, users, options, p_max=p_max)
    return DropDesign(positions=x, power=p, ee=ee, se=se, history=jnp.concatenate([value(x_start)[None], vs]))


def _broadcast(X, D):
    return X if X.ndim == 2 else jnp.broadcast_to(X, (D,) + X.shape)


@functools.partial(jax.jit, static_argnames="options")
def _outer_step(cfg, X, split, users, p_max, options):
    """One outer iteration: locations (per drop if ``X (D, N)``, shared if ``X (N,)``), then couplings."""
    if X.ndim == 2:
        X = jax.vmap(lambda x, u: locate(cfg, x, split, u[None], p_max, options))(X, users)
    else:
        X = locate(cfg, X, split, users, p_max, options)
    Xall = _broadcast(X, users.shape[0])
    if options.coupling == "tunable" and options.coupling_steps > 0:
        split, _ = ascend(cfg, Xall, split, users, p_max, options)
    vals, ee, _, _ = drops_value(cfg, Xall, split, users, p_max, options)
    return X, split, jnp.mean(vals), jnp.mean(ee)


# ---------------------------------------------------------------------- drivers
def _start(cfg, start, options, dtype):
    x0, split0 = (initial_point if start == "paper" else centre_antenna_point)(cfg, dtype)
    if options.coupling == "fixed" or start == "split":
        split0 = fixed_split(cfg, options.fixed_split, dtype)
    return x0, split0


def fingerprint(users) -> str:
    """A short digest of a drop array (values and shape): which drops a design was fitted on."""
    arr = np.ascontiguousarray(np.asarray(users, np.float64))
    return hashlib.sha1(arr.tobytes() + str(arr.shape).encode()).hexdigest()[:16]


class _Run(NamedTuple):
    """One start's fit: the fitted objective and in-sample EE after each outer iteration, and the iterates."""

    start: str
    history: list
    ee_history: list
    iterates: list  # [(X, split)] after each outer iteration (entry 0: the start)


def _run_from(kind, start, cfg, users, pm, *, options, callback) -> _Run:
    D = users.shape[0]
    x0, split = _start(cfg, start, options, users.dtype)
    X = _broadcast(x0, D) if kind == "dynamic" else x0
    fit = options  # what the blocks fit
    if kind == "static" and options.static_gain == "random_phase":  # smooth in x: a coarse grid is enough
        fit = options.replace(gain="random_phase", grid_spacing=None,
                              grid_points=default_grid_points(cfg, options.static_grid_spacing))
    elif kind == "static":
        fit = options.replace(gain=options.static_gain)
    metric = _metric(options)  # what is reported: the physics
    fit_metric = fit.restricted(*METRIC_FIELDS)
    step = fit.restricted(*_STEP_FIELDS)

    def record(X, split):
        Xd = _broadcast(X, D)
        v = record_batch(cfg, Xd, split, users, pm, fit_metric)[0]
        return float(v), float(record_batch(cfg, Xd, split, users, pm, metric)[1])

    v, e = record(X, split)
    history, ee_history, iterates = [v], [e], [(X, split)]
    if callback is not None:
        callback(0, history[0])
    for t in range(1, options.outer_iterations + 1):
        X, split, _, _ = _outer_step(cfg, X, split, users, pm, step)
        v, e = record(X, split)
        history.append(v)
        ee_history.append(e)
        iterates.append((X, split))
        if callback is not None:
            callback(t, history[-1])
    return _Run(start, history, ee_history, iterates)


def _metric(options):
    """The options of the reported score: the design's objective with the physical (coherent) gains."""
    return options.replace(gain="coherent").restricted(*METRIC_FIELDS)


def _choose(cfg, runs, val_users, pm, options):
    """``(run, iteration, validation score, candidates)``: the candidate the design returns.

    Without validation drops: each run's last iterate, the best fitted objective
    (the first start wins ties). With them: every start after every outer
    iteration (0: the start itself) scored by the design's objective with the
    physical gains on ``val_users``; the best is kept if it beats the reference
    candidate (the ``"centre"`` start before any iteration, the fixed antenna
    as a PASS point, when it is a candidate) by more than
    ``options.validation_margin`` paired standard errors over the validation
    drops, else the reference is kept.
    """
    if val_users is None:
        run = max(runs, key=lambda r: r.history[-1])  # first wins ties ("paper")
        return run, options.outer_iterations, None, None
    metric = _metric(options)
    V = val_users.shape[0]
    values = [(r, t, np.asarray(_drop_values(cfg, _broadcast(X, V), split, val_users, pm, metric), np.float64))
              for r in runs for t, (X, split) in enumerate(r.iterates)]
    ref = next((i for i, (r, t, _) in enumerate(values) if r.start == "centre" and t == 0), None)
    candidates = []
    for r, t, v in values:
        c = {"start": r.start, "iteration": t, "validation": float(v.mean())}
        if ref is not None:  # the paired advantage over the reference and its standard error
            d = v - values[ref][2]
            c.update(advantage=float(d.mean()), advantage_se=float(d.std(ddof=1) / np.sqrt(V)) if V > 1 else None)
        candidates.append(c)
    best = max(range(len(values)), key=lambda i: candidates[i]["validation"])  # the first wins ties
    if ref is not None and best != ref:
        c = candidates[best]
        se = float("inf") if c["advantage_se"] is None else c["advantage_se"]
        if not c["advantage"] > options.validation_margin * se:
            best = ref
    r, t, v = values[best]
    return r, t, float(v.mean()), candidates


def _design(kind, cfg, users, p_max, options, callback):
    _inputs.check_cfg(cfg)
    users = _inputs.check_users(cfg, users, batched=True)
    users = users.astype(_inputs.float_dtype(users))
    pm = _inputs.budget(cfg, p_max, users.dtype)
    options = with_grid(cfg, options)
    initial = options.initial if options.initial != "auto" else ("multistart" if kind == "static" else "paper")
    if initial == "multistart":  # with fixed coupling the "split" start is the "paper" start
        starts = ("paper", "centre") + (("split",) if options.coupling == "tunable" else ())
    else:
        starts = (initial,)
    D = users.shape[0]
    V = validation_count(options, D) if kind == "static" and len(starts) > 1 else 0
    fit_users, val_users = (users[:D - V], users[D - V:]) if V else (users, None)
    runs = [_run_from(kind, s, cfg, fit_users, pm, options=options, callback=callback) for s in starts]
    run, t, score, candidates = _choose(cfg, runs, val_users, pm, options)
    X, split = run.iterates[t]
    X = _broadcast(X, D)
    ee, se, p = evaluate_batch(cfg, X, split, users, pm, _metric(options))
    return DesignResult(kind=kind, objective=options.objective, coupling=options.coupling, positions=np.asarray(X),
                        split=np.asarray(split), power=np.asarray(p), ee=np.asarray(ee), se=np.asarray(se),
                        history=np.asarray(run.history), ee_history=np.asarray(run.ee_history), p_max=float(pm),
                        initial=run.start, fitted_on=fingerprint(users), validation_drops=V, chosen_iteration=t,
                        validation_score=score, candidates=candidates)


def dynamic_design(cfg, users, p_max=None, options: DesignOptions | None = None, *,
                   callback: Callable[[int, float], None] | None = None, **changes) -> DesignResult:
    """Dynamic design (EE Def. 1): locations and powers per drop, couplings shared by all drops.

    Per outer iteration: ``gs_sweeps`` Gauss-Seidel sweeps of every drop's layout
    (vmapped over drops; powers re-optimised inside), then ``coupling_steps``
    projected-gradient steps on the shared split coefficients (skipped for
    ``coupling="fixed"``). Starts from ``options.initial`` (default the paper's
    point, :func:`initial_point`, in every drop).

    Args:
      cfg: single-waveguide scenario (``PassConfig.energy_efficiency()``).
      users: ``(D, K, 2)`` drops [m].
      p_max: power budget [W] (default ``cfg.power``); traced, so a sweep compiles once.
      options: :class:`DesignOptions`; ``changes`` override fields (``objective="se"``,
        ``coupling="fixed"``, ``outer_iterations=5``, ``grid_points=...``, ...).
      callback: called as ``callback(t, value)`` with the ergodic objective after outer
        iteration ``t`` (``t = 0``: the initial point; once per start for ``"multistart"``).

    Memory: one Gauss-Seidel step holds ``D * grid_batch * K`` channel values at once
    (all drops are vmapped); lower ``grid_batch`` for very many drops.

    Returns:
      :class:`DesignResult` (``history`` non-decreasing).
    """
    return _design("dynamic", cfg, users, p_max, DesignOptions.resolve(options, **changes), callback)


def static_design(cfg, users, p_max=None, options: DesignOptions | None = None, *,
                  callback: Callable[[int, float], None] | None = None, **changes) -> DesignResult:
    """Static design (EE Def. 2): locations and couplings shared by all drops, powers per drop.

    Per outer iteration: ``gs_sweeps`` Gauss-Seidel sweeps of the shared layout on
    the ergodic objective (mean over the drops, Dinkelbach powers per drop), then
    ``coupling_steps`` coupling steps (skipped for ``coupling="fixed"``).

    ``options.initial``: ``"paper"`` (uniform x, ``delta_n = 1/(N-n)``),
    ``"centre"`` (the fixed-antenna point, :func:`centre_antenna_point`; with
    ``coupling="fixed"`` the centre layout with the fixed split), ``"split"``
    (the centre layout with every ``delta_n = fixed_split``: a compact array
    whose power decays along the elements, the start from which the
    fixed-coupling baseline does best) or ``"multistart"`` (run from all of
    them and keep the best design, see below; ``"split"`` only with tunable
    coupling, where it differs from ``"centre"``; three times the cost;
    ``"auto"``, the default, is multistart here). The first outer
    iteration from ``"split"`` is the fixed-coupling baseline's first
    Gauss-Seidel sweep from the same point followed by improving coupling
    steps, so tunable coupling starts ahead of fixed coupling. From
    ``"centre"`` the design cannot leave the single-antenna family (the other
    elements get no power and hence no gradient), so it only moves that antenna.

    **Choosing among the starts on validation drops.** With several starts and
    ``options.validation_fraction > 0`` (default 0.25), the last
    ``V = round(validation_fraction * D)`` drops (at least 1, at most ``D - 1``,
    :func:`~jaxpass.optimize.energy.options.validation_count`) are held back:
    every start is fitted on the first ``D - V`` drops, and the candidate kept is
    the start and outer iteration (0 included: the start itself, so the
    ``"centre"`` start's iteration 0, the fixed antenna, is always a candidate)
    with the best objective (physical gains, EE eq. (20) or the SE) on the
    ``V`` held-back drops, provided it beats the ``"centre"`` start's iteration 0
    there by more than ``validation_margin`` paired standard errors over the
    ``V`` drops (else that fixed-antenna point is kept): a choice made on drops
    the design was not fitted on, which the in-sample objective, rewarding the
    layouts that chase the fitting sample's phase ripples, is not, and that
    leaves the fixed antenna only for a significant gain. ``validation_fraction=0`` chooses each
    start's last iterate by the fitted objective (in-sample). The result records
    the choice (``initial``, ``chosen_iteration``, ``validation_score``,
    ``candidates``).

    Arguments as :func:`dynamic_design`.

    Returns:
      :class:`DesignResult` (``positions`` repeats the one layout per drop).
    """
    return _design("static", cfg, users, p_max, DesignOptions.resolve(options, **changes), callback)


def fixed_antenna(cfg, users, p_max=None, options: DesignOptions | None = None, **changes) -> DesignResult:
    """Baseline: one fixed antenna at the centre of the region, all input power radiated.

    The antenna sits on the waveguide at ``(S_x/2, y_wg, h)``; powers per drop by
    Dinkelbach (EE-oriented, ``options.dinkelbach_iterations`` steps). Same channel
    model (docs/model.md §5) with one element and ``a = 1``.

    Returns:
      :class:`DesignResult` with ``N = 1`` (``history`` = the mean EE, one entry).
    """
    options = DesignOptions.resolve(options, **changes)
    _inputs.check_cfg(cfg)
    users = _inputs.check_users(cfg, users, batched=True)
    dt = _inputs.float_dtype(users)
    users = users.astype(dt)
    pm = _inputs.budget(cfg, p_max, dt)
    cfg1 = cfg.replace(num_pinches=1)
    x = jnp.broadcast_to(jnp.asarray(cfg.length_x, dt) / 2.0, (users.shape[0], 1))
    metric = options.replace(objective="ee").restricted(*METRIC_FIELDS)
    ee, se, p = (np.asarray(o) for o in evaluate_batch(cfg1, x, jnp.ones((1,), dt), users, pm, metric))
    return DesignResult(kind="fixed_antenna", objective="ee", coupling="fixed", positions=np.asarray(x),
                        split=np.ones((1,)), power=p, ee=ee, se=se, history=np.asarray([ee.mean()]),
                        ee_history=np.asarray([ee.mean()]), p_max=float(pm), initial="centre")


@functools.partial(jax.jit, static_argnames="options")
def _dynamic_batch(cfg, users, split, p_max, options):
    return jax.vmap(lambda u: dynamic_drop(cfg, u, split, options, p_max=p_max))(users)


@functools.partial(jax.jit, static_argnames="options")
def _drop_values(cfg, X, split, users, p_max, options):
    """Per-drop values ``(D,)`` of :func:`drops_value` (the held-out history of a sharded run)."""
    return drops_value(cfg, X, split, users, p_max, options)[0]


def held_out(cfg, design: DesignResult, users, options: DesignOptions | None = None, *, mesh=None,
             **changes) -> DesignResult:
    """Score a fitted design on drops it was NOT fitted on (held-out evaluation; docs/model.md §5).

    What is shared across drops is frozen; what is per drop is redone on the new drops:

    * ``"static"`` (and ``"fixed_antenna"``): the one layout and the split
      coefficients are kept; powers per drop by the design's policy
      (Dinkelbach for ``"ee"``, ``P_max`` for ``"se"``);
    * ``"dynamic"``: the split coefficients are kept; every held-out drop gets its
      own layout and powers by :func:`dynamic_drop` (``options.outer_iterations``
      Gauss-Seidel sweeps from the paper's uniform layout), as the design would be
      run on a new drop.

    All scores use the physical (coherent) gains.

    Args:
      cfg: the scenario the design was fitted for.
      design: a :class:`DesignResult` of :func:`static_design`, :func:`dynamic_design`
        or :func:`fixed_antenna`.
      users: ``(D, K, 2)`` held-out drops [m], e.g. from another seed.
      options: :class:`DesignOptions` of the per-drop work (grid, iterations);
        ``changes`` override fields.
      mesh: ``None`` or a mesh from :func:`jaxpass.parallel.drops_mesh`: the drops run
        data-parallel over its devices and hosts (same values; the mean in ``history`` to rounding).

    Raises:
      ValueError: ``users`` are the drops the design was fitted on (that score is
        in-sample: it is ``design.ee`` already).

    Returns:
      :class:`DesignResult` with ``scored_on="held-out"`` (``history`` /
      ``ee_history``: the held-out mean value / EE; for the dynamic design after
      each outer iteration of the per-drop re-optimisation).
    """
    options = DesignOptions.resolve(options, **changes).replace(objective=design.objective, gain="coherent")
    _inputs.check_cfg(cfg)
    users = _inputs.check_users(cfg, users, batched=True)
    if design.fitted_on is not None and fingerprint(users) == design.fitted_on:
        raise ValueError("held_out needs drops the design was not fitted on; these are its fitting drops "
                         "(their score is the design's own, in-sample ee)")
    dt = _inputs.float_dtype(users)
    users = users.astype(dt)
    pm = jnp.asarray(design.p_max, dt)
    split = jnp.asarray(design.split, dt)
    c = cfg.replace(num_pinches=1) if design.kind == "fixed_antenna" else cfg
    metric = options.restricted(*METRIC_FIELDS)
    D = users.shape[0]
    if design.kind == "dynamic":
        out = parallel.batch_call(_dynamic_batch, c, users, split, pm,
                                  with_grid(c, options).restricted(*_STEP_FIELDS, "outer_iterations"),
                                  mesh=mesh, in_axes=(None, 0, None, None, None))
        X, p, ee, se = (np.asarray(a) for a in (out.positions, out.power, out.ee, out.se))
        history = np.asarray(out.history).mean(0)
    else:
        X = np.broadcast_to(np.asarray(design.positions)[0], (D,) + np.asarray(design.positions).shape[1:])
        axes = (None, 0, None, 0, None, None)
        ee, se, p = (np.asarray(a) for a in parallel.batch_call(evaluate_batch, c, jnp.asarray(X, dt), split, users,
                                                                pm, metric, mesh=mesh, in_axes=axes))
        if mesh is None:
            history = np.asarray([np.mean(record_batch(c, jnp.asarray(X, dt), split, users, pm, metric)[0])])
        else:
            values = parallel.map_drops(_drop_values, c, jnp.asarray(X, dt), split, users, pm, metric, mesh=mesh,
                                        in_axes=axes)
            history = np.asarray([np.mean(np.asarray(values))])
    return dataclasses.replace(design, positions=np.asarray(X), power=p, ee=ee, se=se, history=history,
                               ee_history=np.asarray([float(np.mean(ee))]), scored_on="held-out",
                               seconds=None, compile_seconds=None)

"""Energy-efficiency experiments like EE Figs. 1-4 (docs/model.md §5) and the ``jaxpass ee`` command.

* :func:`convergence` (Fig. 1): ergodic EE over the outer iterations of the
  dynamic and static designs, for several numbers of elements N.
* :func:`ee_vs_power` (Fig. 2): EE against ``P_max`` for the EE- and SE-oriented
  dynamic and static designs, tunable vs fixed coupling, and one fixed antenna.
* :func:`ee_vs_elements` (Fig. 3): EE against N, tunable vs fixed coupling.
* :func:`ee_vs_length` (Fig. 4): EE against the region length ``S_x``.

All designs of one experiment see the same user drops (seeded); the static
design and the split coefficients are fitted on those drops (the paper's
"samples in a coherence interval"), the dynamic design re-optimises the
locations of every drop. :func:`orderings` turns a power sweep into the
comparisons EE Fig. 2 shows (dynamic >= static >= fixed antenna, EE- >=
SE-oriented in EE, tunable >= fixed coupling), each marked as holding or not.

The solver settings are one :class:`~jaxpass.optimize.energy.DesignOptions`
(the ``jaxpass ee`` flags are built from its fields). Timing and progress live
here: :func:`run_scheme` times each design and measures JAX's compilation time
(:class:`CompileClock`), and prints the outer iterations with ``progress=True``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import jax
import numpy as np

from jaxpass.config import PassConfig
from jaxpass.experiments import memory
from jaxpass.experiments.cli_args import (
    UserError,
    add_num_users,
    add_options,
    add_parallel_options,
    in_range,
    mesh_from_args,
    num_users_from_args,
    options_from_args,
    positive_float,
    positive_int,
)
from jaxpass.geometry import sample_users
from jaxpass.optimize import energy as E
from jaxpass.runtime import progress
from jaxpass.runtime.io import environment, write_json, write_text
from jaxpass.units import dbm_to_watt

#: scheme name -> (kind, objective, coupling), in plotting order
SCHEMES = {
    "dynamic_ee_tunable": ("dynamic", "ee", "tunable"),
    "dynamic_se_tunable": ("dynamic", "se", "tunable"),
    "dynamic_ee_fixed": ("dynamic", "ee", "fixed"),
    "static_ee_tunable": ("static", "ee", "tunable"),
    "static_se_tunable": ("static", "se", "tunable"),
    "static_ee_fixed": ("static", "ee", "fixed"),
    "fixed_antenna": ("fixed_antenna", "ee", "fixed"),
}

LABELS = {
    "dynamic_ee_tunable": "dynamic, EE-oriented, tunable coupling",
    "dynamic_se_tunable": "dynamic, SE-oriented, tunable coupling",
    "dynamic_ee_fixed": "dynamic, EE-oriented, fixed coupling",
    "static_ee_tunable": "static, EE-oriented, tunable coupling",
    "static_se_tunable": "static, SE-oriented, tunable coupling",
    "static_ee_fixed": "static, EE-oriented, fixed coupling",
    "fixed_antenna": "fixed antenna at the centre",
}


#: the ``DesignOptions`` fields ``jaxpass ee`` exposes as flags (objective and coupling are set per scheme)
DESIGN_FLAGS = ("outer_iterations", "gs_sweeps", "coupling_steps", "fixed_split", "grid_spacing", "grid_points",
                "grid_batch", "dinkelbach_iterations", "line_search", "initial", "validation_fraction")


def _log(msg: str):
    progress.log(msg)  # stderr, silenced by --quiet


class CompileClock:
    """Seconds JAX spends tracing, lowering and compiling while the block runs (``jax.monitoring`` events).

    ``with CompileClock() as clock: ...`` then ``clock.seconds``.
    """

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")

    def __init__(self):
        self.seconds = 0.0

    def _on_event(self, event: str, duration: float, **_):
        if event in self.EVENTS:
            self.seconds += duration

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._on_event)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._on_event)
        return False


def _progress(label: str, total: int):
    """A ``callback(t, value)`` showing the outer iterations of one design on stderr (shared progress bar)."""
    return progress.iteration_callback("ee", label, total)


def scheme_summary(cfg: PassConfig, users, scheme: str, options: E.DesignOptions = E.DesignOptions(), p_max=None,
                   *, held_out_users=None, progress: bool = False, mesh=None, **kw) -> dict:
    """:func:`run_scheme` fitted on ``users``; its summary with the held-out score beside the in-sample one.

    With ``held_out_users`` (drops from another seed), ``"held_out"`` holds
    :func:`jaxpass.optimize.energy.held_out`'s summary (shared parts frozen,
    per-drop parts redone) and ``"gap"`` the relative generalisation gap
    ``1 - held-out EE / in-sample EE``. ``mesh``: the held-out drops run data-parallel over its
    devices (:func:`jaxpass.parallel.drops_mesh`; ``None``: one device).
    """
    r = run_scheme(cfg, users, scheme, options, p_max, progress=progress, **kw)
    out = r.summary()
    if held_out_users is not None:
        h = E.held_out(cfg, r, held_out_users, options.replace(**({"outer_iterations": kw["outer_iterations"]}
                                                                   if kw.get("outer_iterations") else {})),
                       mesh=mesh)
        out["held_out"] = h.summary()
        out["gap"] = 1.0 - h.mean_ee / r.mean_ee if r.mean_ee > 0 else 0.0
    return out


def headline(summary: dict) -> dict:
    """The summary a table reports: the held-out one when measured, else the in-sample one."""
    return summary.get("held_out", summary)


def run_scheme(cfg: PassConfig, users, scheme: str, options: E.DesignOptions = E.DesignOptions(), p_max=None, *,
               outer_iterations: int | None = None, progress: bool = False) -> E.DesignResult:
    """One design (a ``SCHEMES`` entry) on ``users (D, K, 2)``, timed.

    ``seconds`` is the wall time less JAX's compilation time, which is
    ``compile_seconds`` (near 0 when the compiled steps are reused, e.g. from the
    second ``P_max`` of a sweep on).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {list(SCHEMES)}")
    kind, objective, coupling = SCHEMES[scheme]
    options = options.replace(objective=objective, coupling=coupling)
    if outer_iterations is not None:
        options = options.replace(outer_iterations=outer_iterations)
    with CompileClock() as clock:
        t0 = time.perf_counter()
        if kind == "fixed_antenna":
            r = E.fixed_antenna(cfg, users, p_max, options)
        else:
            fn = E.dynamic_design if kind == "dynamic" else E.static_design
            callback = _progress(f"{scheme} N={cfg.num_pinches}", options.outer_iterations) if progress else None
            r = fn(cfg, users, p_max, options, callback=callback)
        wall = time.perf_counter() - t0
    return dataclasses.replace(r, seconds=max(wall - clock.seconds, 0.0), compile_seconds=clock.seconds)


def drops(cfg: PassConfig, num_drops: int, seed: int):
    """``(D, K, 2)`` user drops uniform over the region (seeded)."""
    return sample_users(jax.random.key(seed), cfg, (num_drops,))


# ------------------------------------------------------------------ experiments
def convergence(cfg: PassConfig, users, element_counts=(4, 8, 16), options: E.DesignOptions = E.DesignOptions(),
                outer_iterations: int = 5, progress: bool = False) -> dict:
    """EE Fig. 1: per N, the ergodic-EE history of the dynamic and static (EE, tunable) designs.

    Returns:
      ``{N: {"dynamic_ee_tunable": summary, "static_ee_tunable": summary}}`` (``summary``
      of :class:`~jaxpass.optimize.energy.DesignResult`, with ``history``).
    """
    out = {}
    for N in element_counts:
        cfgN = cfg.replace(num_pinches=int(N))
        out[int(N)] = {}
        for scheme in ("dynamic_ee_tunable", "static_ee_tunable"):
            r = run_scheme(cfgN, users, scheme, options, outer_iterations=outer_iterations, progress=progress)
            out[int(N)][scheme] = r.summary()
            _log(f"[ee] convergence N={N} {scheme}: EE {r.mean_ee:.4g} ({r.seconds:.1f} s + compile "
                 f"{r.compile_seconds:.1f} s)")
    return out


def ee_vs_power(cfg: PassConfig, users, powers_dbm=(0, 5, 10, 15, 20, 25, 30),
                options: E.DesignOptions = E.DesignOptions(), schemes=tuple(SCHEMES), progress: bool = False,
                held_out_users=None, mesh=None) -> dict:
    """EE Fig. 2: every scheme at every ``P_max`` [dBm] (one compilation per scheme).

    Returns:
      ``{"powers_dbm": [...], "schemes": {scheme: [summary per power]}}``.
    """
    out = {"powers_dbm": [float(p) for p in powers_dbm], "schemes": {s: [] for s in schemes}}
    for p_dbm in powers_dbm:
        p_max = float(dbm_to_watt(float(p_dbm)))
        for scheme in schemes:
            s = scheme_summary(cfg, users, scheme, options, p_max, held_out_users=held_out_users, progress=progress,
                               mesh=mesh)
            out["schemes"][scheme].append(s)
            _log(f"[ee] P_max={p_dbm:g} dBm {scheme}: EE {s['mean_ee']:.4g} in-sample, "
                 f"{headline(s)['mean_ee']:.4g} reported ({s['ms_per_drop']:.1f} ms/drop)")
    return out


def ee_vs_elements(cfg: PassConfig, users, element_counts=(2, 4, 8, 16),
                   options: E.DesignOptions = E.DesignOptions(), schemes=("dynamic_ee_tunable", "dynamic_ee_fixed", "static_ee_tunable", "static_ee_fixed",
                            "fixed_antenna"), progress: bool = False, held_out_users=None, mesh=None) -> dict:
    """EE Fig. 3: EE against the number of elements N (tunable vs fixed coupling)."""
    out = {"element_counts": [int(n) for n in element_counts], "schemes": {s: [] for s in schemes}}
    for N in element_counts:
        cfgN = cfg.replace(num_pinches=int(N))
        for scheme in schemes:
            s = scheme_summary(cfgN, users, scheme, options, held_out_users=held_out_users, progress=progress,
                               mesh=mesh)
            out["schemes"][scheme].append(s)
            _log(f"[ee] N={N} {scheme}: EE {s['mean_ee']:.4g} in-sample, {headline(s)['mean_ee']:.4g} reported")
    return out


def ee_vs_length(cfg: PassConfig, lengths=(10.0, 20.0, 30.0, 40.0), num_drops: int = 16, seed: int = 0,
                 options: E.DesignOptions = E.DesignOptions(), *,
                 schemes=("dynamic_ee_tunable", "static_ee_tunable", "fixed_antenna"),
                 progress: bool = False) -> dict:
    """EE Fig. 4: EE against the region (and waveguide) length ``S_x`` [m]; drops resampled per length.

    The same uniform random numbers are scaled to each region (one seed), so the
    users keep their relative positions.
    """
    out = {"lengths_m": [float(v) for v in lengths], "schemes": {s: [] for s in schemes}}
    for length in lengths:
        cfgS = cfg.replace(length_x=float(length))
        users = drops(cfgS, num_drops, seed)
        for scheme in schemes:
            r = run_scheme(cfgS, users, scheme, options, progress=progress)
            out["schemes"][scheme].append(r.summary())
            _log(f"[ee] S_x={length:g} m {scheme}: EE {r.mean_ee:.4g}")
    return out


# ------------------------------------------------------------------ checks and tables
ORDERINGS = (
    ("dynamic >= static", "dynamic_ee_tunable", "static_ee_tunable"),
    ("static >= fixed antenna", "static_ee_tunable", "fixed_antenna"),
    ("EE-oriented >= SE-oriented (dynamic)", "dynamic_ee_tunable", "dynamic_se_tunable"),
    ("EE-oriented >= SE-oriented (static)", "static_ee_tunable", "static_se_tunable"),
    ("tunable >= fixed coupling (dynamic)", "dynamic_ee_tunable", "dynamic_ee_fixed"),
    ("tunable >= fixed coupling (static)", "static_ee_tunable", "static_ee_fixed"),
)


def orderings(power_sweep: dict, rtol: float = 1e-5) -> list:
    """The EE Fig. 2 comparisons at every ``P_max`` on mean EE (held-out when measured: :func:`headline`).

    ``a >= b`` holds when ``mean_ee(a) >= mean_ee(b) (1 - rtol)``: ties (e.g. EE- and
    SE-oriented designs coincide at low power, where Dinkelbach keeps ``P_max``)
    differ only by float rounding.

    Returns:
      rows ``{"name", "p_max_dbm", "a", "b", "ee_a", "ee_b", "ratio", "holds"}``.
    """
    rows = []
    schemes = power_sweep["schemes"]
    for i, p in enumerate(power_sweep["powers_dbm"]):
        for name, a, b in ORDERINGS:
            if a not in schemes or b not in schemes:
                continue
            ea, eb = headline(schemes[a][i])["mean_ee"], headline(schemes[b][i])["mean_ee"]
            rows.append({"name": name, "p_max_dbm": p, "a": a, "b": b, "ee_a": ea, "ee_b": eb,
                         "ratio": ea / eb if eb > 0 else float("inf"), "holds": bool(ea >= eb * (1 - rtol))})
    return rows


def generalisation(cfg: PassConfig, train_counts=(16, 64, 256), options: E.DesignOptions = E.DesignOptions(), *,
                   seed: int = 0, held_out_users=None, progress: bool = False, mesh=None) -> dict:
    """The static design's held-out EE against the number of fitting drops, by fitted gain.

    For each count D, the static (EE, tunable) design is fitted on the first D
    drops of ``seed`` with ``static_gain="random_phase"`` (the expected EE over
    the element phases) and ``"coherent"`` (the paper's sample average, the
    default), the start chosen on ``options.validation_fraction`` of the drops
    held back, then scored on ``held_out_users``; the fixed antenna on the same
    held-out drops is the reference.

    Returns:
      ``{"train_drops": [...], "fixed_antenna": EE, "schemes": {gain: [{"in_sample", "held_out"}, ...]}}``.
    """
    users = drops(cfg, max(train_counts), seed)
    fixed = E.fixed_antenna(cfg, held_out_users, options=options).mean_ee
    out = {"train_drops": [int(d) for d in train_counts], "fixed_antenna": fixed, "schemes": {}}
    for gain in ("random_phase", "coherent"):
        rows = []
        for D in train_counts:
            r = run_scheme(cfg, users[:D], "static_ee_tunable", options.replace(static_gain=gain), progress=progress)
            h = E.held_out(cfg, r, held_out_users, options, mesh=mesh)
            rows.append({"in_sample": r.mean_ee, "held_out": h.mean_ee, "seconds": r.seconds,
                         "split": [float(v) for v in r.split], "positions": [float(v) for v in r.positions[0]]})
            _log(f"[ee] static ({gain}) on {D} drops: EE {r.mean_ee:.4g} in-sample, {h.mean_ee:.4g} held-out "
                 f"(fixed antenna {fixed:.4g})")
        out["schemes"][gain] = rows
    return out


def static_vs_fixed(cfg: PassConfig, train_counts=(64, 128, 256), seeds=(0, 1, 2),
                    options: E.DesignOptions = E.DesignOptions(), *, held_out_users, progress: bool = False,
                    mesh=None, rtol: float = 1e-5) -> list:
    """Held-out static design (EE, tunable coupling, default choice on validation drops) vs the fixed antenna.

    For each fitting seed and count D, the static design is fitted on the first D
    drops of that seed (``options.validation_fraction`` of them held back to choose
    the start and iteration, :func:`jaxpass.optimize.energy.static_design`) and
    scored on ``held_out_users``, as is the fixed antenna. ``holds``: held-out
    static >= fixed antenna within ``rtol`` (float32 rounding; the fixed antenna
    itself is a candidate, the centre start before any iteration).

    Returns:
      rows ``{"seed", "train_drops", "held_out", "in_sample", "fixed_antenna", "ratio", "holds", "initial",
      "chosen_iteration", "validation_drops", "validation_score"}``.
    """
    fixed = E.fixed_antenna(cfg, held_out_users, options=options).mean_ee
    rows = []
    for seed in seeds:
        users = drops(cfg, max(train_counts), seed)
        for D in train_counts:
            r = run_scheme(cfg, users[:D], "static_ee_tunable", options, progress=progress)
            h = E.held_out(cfg, r, held_out_users, options, mesh=mesh)
            rows.append({"seed": int(seed), "train_drops": int(D), "held_out": h.mean_ee, "in_sample": r.mean_ee,
                         "fixed_antenna": fixed, "ratio": h.mean_ee / fixed if fixed > 0 else float("inf"),
                         "holds": bool(h.mean_ee >= fixed * (1 - rtol)), "initial": r.initial,
                         "chosen_iteration": r.chosen_iteration, "validation_drops": r.validation_drops,
                         "validation_score": r.validation_score, "seconds": r.seconds})
            _log(f"[ee] static on {D} drops (seed {seed}): EE {h.mean_ee:.4g} held-out, chose {r.initial} after "
                 f"{r.chosen_iteration} iterations on {r.validation_drops} validation drops (fixed antenna {fixed:.4g})")
    return rows


def monotone_histories(convergence_result: dict, rtol: float = 1e-5) -> list:
    """Rows ``{"N", "scheme", "history", "non_decreasing", "worst_drop"}`` for EE Fig. 1."""
    rows = []
    for N, by_scheme in convergence_result.items():
        for scheme, s in by_scheme.items():
            h = np.asarray(s["history"], np.float64)
            drops_ = np.diff(h)
            worst = float(min(0.0, drops_.min())) if drops_.size else 0.0
            rows.append({"N": int(N), "scheme": scheme, "history": h.tolist(),
                         "non_decreasing": bool(worst >= -rtol * abs(h[-1])), "worst_drop": worst})
    return rows


def _table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _cell(s: dict) -> str:
    """``held-out (in-sample)`` when held out, else the in-sample value."""
    if "held_out" in s:
        return f"{s['held_out']['mean_ee']:.2f} ({s['mean_ee']:.2f})"
    return f"{s['mean_ee']:.2f}"


def power_table(power_sweep: dict) -> str:
    """Markdown: mean EE [bit/s/Hz per W] per scheme (rows) and ``P_max`` (columns), + ms/drop.

    Cells are ``held-out (in-sample)`` when the designs were scored on held-out drops.
    """
    ps = power_sweep["powers_dbm"]
    rows = []
    for scheme, sums in power_sweep["schemes"].items():
        ms = np.mean([s["ms_per_drop"] for s in sums])
        rows.append([scheme] + [_cell(s) for s in sums] + [f"{ms:.1f}"])
    return _table(["scheme \\ P_max [dBm]"] + [f"{p:g}" for p in ps] + ["ms/drop"], rows)


def sweep_table(sweep: dict, key: str, unit: str) -> str:
    xs = sweep[key]
    rows = [[scheme] + [_cell(s) for s in sums] for scheme, sums in sweep["schemes"].items()]
    return _table([f"scheme \\ {unit}"] + [f"{x:g}" for x in xs], rows)


def convergence_table(conv: dict) -> str:
    rows = []
    for N, by_scheme in conv.items():
        for scheme, s in by_scheme.items():
            rows.append([N, scheme, " -> ".join(f"{v:.2f}" for v in s["history"]), f"{s['ms_per_drop']:.1f}"])
    return _table(["N", "scheme", "ergodic EE per outer iteration", "ms/drop"], rows)


def orderings_table(rows) -> str:
    return _table(["comparison", "P_max [dBm]", "EE a", "EE b", "a/b", "holds"],
                  [[r["name"], f"{r['p_max_dbm']:g}", f"{r['ee_a']:.3f}", f"{r['ee_b']:.3f}", f"{r['ratio']:.4f}",
                    "yes" if r["holds"] else "NO"] for r in rows])


# ------------------------------------------------------------------ figures
def _panels(results: dict) -> list:
    """The EE figures of ``results`` that hold data, in figure order: ``[(key, draw(ax)), ...]``."""
    styles = {"dynamic": "-", "static": "--", "fixed_antenna": ":"}
    markers = {"ee": "o", "se": "s"}
    panels = []

    conv = {N: {sch: s for sch, s in by.items() if len(s.get("history", ()))}
            for N, by in results.get("convergence", {}).items()}
    conv = {N: by for N, by in conv.items() if by}
    if conv:
        def draw_convergence(ax):
            for N, by_scheme in conv.items():
                for scheme, s in by_scheme.items():
                    h = s["history"]
                    ax.plot(range(len(h)), h, styles[SCHEMES[scheme][0]], marker="o",
                            label=f"N={N}, {SCHEMES[scheme][0]}")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set(xlabel="outer iteration", ylabel="ergodic EE [bit/s/Hz/W]", title="Fig. 1: convergence")
        panels.append(("convergence", draw_convergence))

    for key, xkey, xlabel, ttl in (("power", "powers_dbm", "P_max [dBm]", "Fig. 2: EE vs P_max"),
                                   ("elements", "element_counts", "N (elements)", "Fig. 3: EE vs N"),
                                   ("length", "lengths_m", "S_x [m]", "Fig. 4: EE vs region length")):
        sweep = results.get(key) or {}
        schemes = {sch: sums for sch, sums in sweep.get("schemes", {}).items() if len(sums)}
        if not schemes or not len(sweep.get(xkey, ())):
            continue

        def draw_sweep(ax, xs=sweep[xkey], schemes=schemes, xlabel=xlabel, ttl=ttl):
            for scheme, sums in schemes.items():
                kind, objective, coupling = SCHEMES[scheme]
                ax.plot(xs[:len(sums)], [headline(s)["mean_ee"] for s in sums], styles[kind],
                        marker=markers[objective], mfc="none" if coupling == "fixed" else None, label=LABELS[scheme])
            ax.set(xlabel=xlabel, ylabel="EE [bit/s/Hz/W]", title=ttl)
        panels.append((key, draw_sweep))
    return panels


def plot_figures(results: dict, title: str = ""):
    """EE Figs. 1-4 as one matplotlib figure: one panel per figure with data in ``results``.

    One panel is a single axes, two sit side by side, three or four on a 2x2
    grid (the unused cell of three removed); no empty panel is drawn. With no
    data at all, the figure holds one axes saying so.
    """
    from jaxpass.plotting import plt

    panels = _panels(results)
    n = len(panels)
    rows, cols = (1, max(n, 1)) if n <= 2 else (2, 2)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.5 * rows), constrained_layout=True, squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:] if n else ():
        ax.remove()
    for ax, (_, draw) in zip(flat, panels):
        draw(ax)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if not n:
        flat[0].text(0.5, 0.5, "no EE results to plot", ha="center", va="center", transform=flat[0].transAxes)
        flat[0].set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------ driver (CLI + benchmark)
FIGURES = ("convergence", "power", "elements", "length")


def run_all(cfg: PassConfig, *, figures=FIGURES, num_drops=16, seed=0, powers_dbm=(0, 10, 20, 30),
            element_counts=(2, 4, 8, 16), lengths=(10.0, 20.0, 30.0), convergence_counts=(4, 8, 16),
            convergence_iterations=5, options: E.DesignOptions = E.DesignOptions(), progress: bool = False,
            held_out_drops: int = 0, held_out_seed: int = 1000, train_counts=(), static_check_counts=(),
            static_check_seeds=(0, 1, 2), mesh=None) -> dict:
    """Run the requested figures; returns ``{figure: result}`` plus ``"orderings"``/``"monotone"``.

    With ``held_out_drops > 0``, the power and element sweeps also score every
    design on ``held_out_drops`` drops from ``held_out_seed`` (which must differ
    from ``seed``); tables and orderings then report the held-out numbers, the
    in-sample ones beside them, ``train_counts`` adds :func:`generalisation` and
    ``static_check_counts`` :func:`static_vs_fixed` (over ``static_check_seeds``). ``mesh``
    (:func:`jaxpass.parallel.drops_mesh`): the held-out evaluations run data-parallel over its devices.
    """
    for f in figures:
        if f not in FIGURES:
            raise ValueError(f"unknown figure {f!r}; choose from {FIGURES}")
    if held_out_drops and held_out_seed == seed:
        raise ValueError(f"the held-out seed must differ from the fitting seed, both are {seed}")
    users = drops(cfg, num_drops, seed)
    held = drops(cfg, held_out_drops, held_out_seed) if held_out_drops else None
    results: dict = {}
    t0 = time.perf_counter()
    if "convergence" in figures:
        results["convergence"] = convergence(cfg, users, convergence_counts, options, convergence_iterations,
                                             progress=progress)
        results["monotone"] = monotone_histories(results["convergence"])
    if "power" in figures:
        results["power"] = ee_vs_power(cfg, users, powers_dbm, options, progress=progress, held_out_users=held,
                                       mesh=mesh)
        results["orderings"] = orderings(results["power"])
    if "elements" in figures:
        results["elements"] = ee_vs_elements(cfg, users, element_counts, options, progress=progress,
                                             held_out_users=held, mesh=mesh)
    if "length" in figures:
        results["length"] = ee_vs_length(cfg, lengths, num_drops, seed, options, progress=progress)
    if train_counts and held is not None:
        results["generalisation"] = generalisation(cfg, train_counts, options, seed=seed, held_out_users=held,
                                                   progress=progress, mesh=mesh)
    if static_check_counts and held is not None:
        for sd in static_check_seeds:
            if sd == held_out_seed:
                raise ValueError(f"the held-out seed must differ from the fitting seeds, both are {sd}")
        results["static_vs_fixed"] = static_vs_fixed(cfg, static_check_counts, static_check_seeds, options,
                                                     held_out_users=held, progress=progress, mesh=mesh)
    results["wall_s"] = time.perf_counter() - t0
    return results


def static_vs_fixed_table(rows: list) -> str:
    """Markdown: per fitting seed and count, held-out static vs fixed antenna and the chosen candidate."""
    return _table(["seed", "fitting drops", "held-out static", "fixed antenna", "ratio", "chosen (start, iteration)",
                   "validation drops"],
                  [[r["seed"], r["train_drops"], f"{r['held_out']:.2f}", f"{r['fixed_antenna']:.2f}",
                    f"{r['ratio']:.4f}", f"{r['initial']}, {r['chosen_iteration']}", r["validation_drops"]]
                   for r in rows])


def report(results: dict) -> str:
    """Markdown tables of everything in ``results``."""
    out = []
    if "convergence" in results:
        out += ["### Fig. 1: ergodic EE [bit/s/Hz/W] over outer iterations", "",
                convergence_table(results["convergence"]), ""]
    if "power" in results:
        out += ["### Fig. 2: mean EE [bit/s/Hz/W] vs P_max", "", power_table(results["power"]), ""]
    if "orderings" in results:
        out += ["### Fig. 2 comparisons (mean EE)", "", orderings_table(results["orderings"]), ""]
    if "elements" in results:
        out += ["### Fig. 3: mean EE vs N", "", sweep_table(results["elements"], "element_counts", "N"), ""]
    if "length" in results:
        out += ["### Fig. 4: mean EE vs S_x", "", sweep_table(results["length"], "lengths_m", "S_x [m]"), ""]
    if "static_vs_fixed" in results:
        out += ["### Static design (start and iteration chosen on validation drops) vs fixed antenna, held-out EE", "",
                static_vs_fixed_table(results["static_vs_fixed"]), ""]
    return "\n".join(out)


def _cmd_ee(args) -> int:
    options = options_from_args(args, E.DesignOptions, DESIGN_FLAGS)
    try:
        cfg = PassConfig.energy_efficiency(num_pinches=args.num_elements, num_users=num_users_from_args(args, "ee"))
        for n in list(args.elements) + list(args.convergence_elements):
            cfg.replace(num_pinches=n)
        for length in args.lengths:
            cfg.replace(length_x=length)
    except (ValueError, TypeError) as err:
        raise UserError(str(err)) from None
    if args.held_out_drops < 0:
        raise UserError(f"--held-out-drops must be >= 0, got {args.held_out_drops}")
    if args.held_out_drops and args.held_out_seed == args.seed:
        raise UserError(f"--held-out-seed must differ from --seed (both {args.seed}): held-out drops are fresh drops")
    figures = args.figures
    progress.set_quiet(args.quiet)
    need = _check_memory(cfg, args, options)
    print(f"jaxpass ee: EE preset (K={cfg.num_users}, N={cfg.num_pinches}, S_x={float(cfg.length_x):g} m), "
          f"{args.drops} drops, seed {args.seed}, figures {', '.join(figures)}" + memory.header_note(need), flush=True)
    results = run_all(cfg, figures=figures, num_drops=args.drops, seed=args.seed, powers_dbm=args.powers_dbm,
                      element_counts=args.elements, lengths=args.lengths,
                      convergence_counts=args.convergence_elements,
                      convergence_iterations=args.outer_iterations, options=options, progress=args.progress,
                      held_out_drops=args.held_out_drops, held_out_seed=args.held_out_seed,
                      mesh=mesh_from_args(args))
    text = report(results)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    payload = {"preset": "energy_efficiency", "K": cfg.num_users, "N": cfg.num_pinches, "drops": args.drops,
               "seed": args.seed, "settings": options.asdict(), **results,
               "env": environment()}
    paths = {"json": write_json(os.path.join(args.out, "ee.json"), payload),
             "markdown": write_text(os.path.join(args.out, "ee.md"), text + "\n")}
    from jaxpass.plotting import save_figure

    paths["figure"] = save_figure(plot_figures(results, f"EE preset, {args.drops} drops"),
                                  os.path.join(args.out, "ee.png"))
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    if "orderings" in results and not all(r["holds"] for r in results["orderings"]):
        print("note: some Fig. 2 comparisons do not hold on these drops (see the table)", flush=True)
    return 0


def _check_memory(cfg: PassConfig, args, options: E.DesignOptions) -> int:
    """The run's memory estimate (:func:`jaxpass.experiments.memory.ee_bytes`); refuses grids and drops that
    cannot fit, naming the flag to change (``--grid-points``, ``--grid-spacing`` or ``--drops``)."""
    longest = cfg.replace(length_x=max([float(cfg.length_x), *args.lengths]))
    held = max(args.held_out_drops, 0)

    def points(spacing):
        return options.grid_points or E.default_grid_points(longest, spacing)

    K = cfg.num_users
    devices = memory.shards(mesh_from_args(args))
    if options.grid_points is not None:
        memory.check_fits(lambda g: memory.ee_bytes(K, args.drops, held, g, options, devices=devices), options.grid_points,
                          flag="--grid-points", hint="")
    elif options.grid_spacing is not None:
        memory.check_fits(lambda sp: memory.ee_bytes(K, args.drops, held, points(sp), options, devices=devices),
                          options.grid_spacing, flag="--grid-spacing", decreasing=True, integer=False, hint="")
    G = points(options.grid_spacing)
    return memory.check_fits(lambda d: memory.ee_bytes(K, d, held, G, options, devices=devices), args.drops, flag="--drops")


def _dbm(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a power in dBm, got {text!r}") from None
    if not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite power in dBm, got {text!r}")
    return in_range("power_dbm")(text)


def add_command(subparsers) -> None:
    """``jaxpass ee``: experiments like EE Figs. 1-4 (tables, ee.json, ee.md, ee.png)."""
    p = subparsers.add_parser(
        "ee",
        help="energy-efficient static/dynamic PASS design (EE Figs. 1-4): tables + JSON + PNG",
        description="Energy-efficiency experiments on the EE preset (docs/model.md §5): convergence of the dynamic "
        "and static designs, EE vs P_max (EE- vs SE-oriented, tunable vs fixed coupling, fixed antenna), "
        "EE vs N and EE vs region length. Writes ee.json, ee.md and ee.png to --out.",
    )
    p.add_argument("--figures", nargs="+", choices=FIGURES, default=list(FIGURES),
                   help="which experiments to run (default: all)")
    p.add_argument("--drops", type=positive_int, default=16, help="user drops (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed of the fitting drops (default: %(default)s)")
    p.add_argument("--held-out-drops", type=int, default=64,
                   help="fresh drops every design is scored on besides its fitting drops; 0 reports in-sample only "
                        "(default: %(default)s)")
    p.add_argument("--held-out-seed", type=int, default=1000,
                   help="PRNG seed of the held-out drops, not --seed (default: %(default)s)")
    add_num_users(p, 4, "4; TDMA users")
    p.add_argument("--num-elements", type=positive_int, default=8,
                   help="N, elements on the waveguide for the power and length sweeps (default: %(default)s)")
    p.add_argument("--powers-dbm", type=_dbm, nargs="+", default=[0.0, 10.0, 20.0, 30.0],
                   help="P_max values for Fig. 2 [dBm] (default: 0 10 20 30)")
    p.add_argument("--elements", type=positive_int, nargs="+", default=[2, 4, 8, 16],
                   help="N values for Fig. 3 (default: 2 4 8 16)")
    p.add_argument("--convergence-elements", type=positive_int, nargs="+", default=[4, 8, 16],
                   help="N values for Fig. 1 (default: 4 8 16)")
    p.add_argument("--lengths", type=positive_float, nargs="+", default=[10.0, 20.0, 30.0],
                   help="region lengths S_x for Fig. 4 [m] (default: 10 20 30)")
    add_options(p, E.DesignOptions, DESIGN_FLAGS)
    p.add_argument("--progress", action="store_true", help="print each design's outer iterations to stderr")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr (stdout unchanged)")
    p.add_argument("--out", default="ee_out", help="output directory (default: %(default)s)")
    add_parallel_options(p)
    p.set_defaults(func=_cmd_ee)

"""README results from the result files: ``python -m benchmarks.readme [--check]``.

Every measured number the README quotes sits in a generated block::

    <!-- BEGIN generated: NAME -->
    ...
    <!-- END generated: NAME -->

and is written here from ``benchmarks/results/*.json`` by the renderer
``NAME`` of :data:`RENDERERS` (never by hand). ``python -m benchmarks.readme``
rewrites the blocks in place; ``--check`` exits 1, naming the blocks, when the
README differs from what the result files give (``tests/test_readme_numbers.py``
runs it, so ``make test`` fails on a stale or hand-edited number).
Renderers read the files of one device (default ``cpu-2core``, the machine the
committed results were measured on). A tie (a ratio within 1e-6 of 1) is
printed as a tie, never counted as a strict win.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
DEVICE = "cpu-2core"
#: |ratio - 1| below this is a tie
TIE = 1e-6

_BLOCK = re.compile(r"(<!-- BEGIN generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END generated: (?P=name) -->)",
                    re.DOTALL)


# ------------------------------------------------------------------ helpers
def load(results: Path, name: str, device: str = DEVICE) -> dict:
    """``<results>/<name>-<device>.json`` (or ``<name>.json`` for experiment outputs without a device)."""
    for path in (results / f"{name}-{device}.json", results / f"{name}.json"):
        if path.is_file():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"no result file for {name!r} in {results} (run `python -m benchmarks --only {name}`)")


def table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def sig(x: float, digits: int = 2) -> str:
    """``digits`` significant digits without exponent noise for everyday sizes."""
    s = f"{float(x):.{digits}g}"
    return s.replace("e-0", "e-").replace("e+0", "e")


def rate(x: float) -> str:
    """A sum rate or EE, 2 decimals."""
    return f"{float(x):.2f}"


def per_s(x: float) -> str:
    """A throughput with a k/M/G prefix, 3 significant digits."""
    for scale, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def ms(seconds: float) -> str:
    return f"{sig(float(seconds) * 1e3, 2)} ms"


def env_line(payload: dict) -> str:
    env = payload.get("env") or {}
    return (f"{env.get('device', DEVICE)} ({env.get('cpu_model', 'unknown CPU')}, {env.get('cpu_count', '?')} cores), "
            f"jax {env.get('jax_version', '?')}, measured {str(env.get('date_utc', '?'))[:10]}")


def compare(ratio: float) -> str:
    """``ratio`` as ``1.07x`` or ``tie`` when within :data:`TIE` of 1."""
    return "tie" if abs(ratio - 1.0) < TIE else f"{ratio:.3g}x"


# ------------------------------------------------------------------ table1
def render_table1(results: Path) -> str:
    d = load(results, "table1")
    s = d["settings"]
    Ls = list(d["tables"])
    by = {L: {r["row"]: r for r in d["tables"][L]} for L in Ls}
    order = [r["row"] for r in d["tables"][Ls[0]]]
    rows = []
    for row in order:
        cells = [by[Ls[0]][row]["label"]]
        papers = []
        for L in Ls:
            r = by[L].get(row)
            cells += ["—", "—"] if r is None else [f"{rate(r['mean'])} ± {rate(r['std'])}", sig(r["seconds_per_drop"])]
            if r is not None and r.get("paper") is not None:
                papers.append((L, r["paper"]))
        if len(papers) == len(Ls) and papers:
            cells.append(" / ".join(f"{p:.2f}" for _, p in papers))
        elif papers:
            cells.append(", ".join(f"{p:.2f} ({L.replace('=', ' = ')})" for L, p in papers))
        else:
            cells.append("—")
        rows.append(cells)
    for L, extra in d.get("paper_only", {}).items():
        for name, value in extra.items():
            rows.append([name] + ["—", "—"] * len(Ls) + [f"{value:.2f} ({L.replace('=', ' = ')})"])
    headers = ["method"] + [h for L in Ls for h in (f"{L.replace('=', ' = ')} [bps/Hz]", "s/drop")] + ["paper (JB Table I)"]
    tune = s["tune"]
    out = [f"JB Table I, optimisation rows: K = N = 4, P = {s['power_dbm']:g} dBm, {s['drops']} drops (seed "
           f"{s['seed']}); tuning with `steps={tune['steps']}, starts={tune['starts']}`; MM-PDD in "
           f"{'float64' if s['mm_pdd_float64'] else 'float32'}; {env_line(d)} (`python -m benchmarks --only table1`, "
           "or `jaxpass reproduce table1`; `benchmarks/results/table1-cpu-2core.json`):", "",
           table(headers, rows), ""]
    tuned = [by[L][r] for L in Ls for r in by[L] if r.startswith("tune_") or r == "ablation_zf"]
    infeasible = [f"{r['label']} ({r['L']})" for r in tuned if r["feasible_fraction"] != 1.0]
    out.append("Every tuned position is feasible on every drop." if not infeasible
               else f"Infeasible positions returned by: {', '.join(infeasible)}.")
    acc = d.get("acceptance") or []
    if acc:
        out.append("Acceptance (mean >= 82 bps/Hz at L = 8, all feasible, < 2 s per drop): "
                   + ", ".join(f"{a['label']} {a['status']} ({rate(a['mean'])})" for a in acc) + ".")
    L8 = by.get("L=8", {})
    if {"uniform_zf", "ablation_zf", "tune_zf"} <= set(L8):
        u, a, t = (L8[k]["mean"] for k in ("uniform_zf", "ablation_zf", "tune_zf"))
        out.append(f"At L = 8 the gradient alone (ablation row: the same budget from the uniform and random "
                   f"starts) gains {a - u:.1f} bps/Hz over uniform + ZF, the phase-aligned starts {t - a:.1f} more.")
    if "interference_free" in L8 and "tune_zf" in L8:
        out.append(f"The interference-free reference (one dedicated, phase-aligned waveguide per user with equal "
                   f"power P/K, the best assignment per drop) is {rate(L8['interference_free']['mean'])} bps/Hz at "
                   f"L = 8; tuning (ZF) reaches {rate(L8['tune_zf']['mean'])}.")
    out.append(f"The run took {d['wall_s'] / 60:.1f} minutes.")
    return "\n".join(out[:4] + [" ".join(out[4:])])


# ------------------------------------------------------------------ sweeps
def render_sweeps(results: Path) -> str:
    d = load(results, "sweeps")
    s = d["settings"]
    labels = {"uniform_wmmse": "uniform + WMMSE", "tuning": "tuning (ZF)", "mm_pdd": "MM-PDD",
              "hybrid_mimo": "hybrid MIMO", "digital_mimo": "digital MIMO"}
    out = [f"Sweeps like JB Figs. 4-6 (`jaxpass reproduce sweeps`, {s['drops']} drops, seed {s['seed']}, tuning "
           f"`steps={s['tune']['steps']}, starts={s['tune']['starts']}`; `benchmarks/results/sweeps.{{json,md,png}}`), "
           "mean sum rate [bps/Hz]:", ""]
    for fig in d["figures"].values():
        x = fig["x"]
        head = [fig["xlabel"].split(" (")[0]] + [f"{v:g}" for v in x]
        rows = [[labels.get(m, m)] + [rate(v) for v in r["mean"]] for m, r in fig["methods"].items()
                if r.get("mean") and all(v is not None for v in r["mean"])]
        out += [table(head, rows), ""]
    p = d["figures"].get("power")
    if p and "tuning" in p["methods"]:
        m, x = p["methods"]["tuning"]["mean"], p["x"]
        u = p["methods"].get("uniform_wmmse", {}).get("mean")
        line = f"Tuned PASS gains {(m[-1] - m[0]) / (x[-1] - x[0]):.2f} bps/Hz per dB"
        if u:
            line += f" (uniform + WMMSE {(u[-1] - u[0]) / (x[-1] - x[0]):.2f})"
        out.append(line + f"; the sweeps took {d['wall_s'] / 60:.1f} minutes.")
    return "\n".join(out)


# ------------------------------------------------------------------ MM-PDD and MIMO
def render_mm_pdd(results: Path) -> str:
    d = load(results, "mm_pdd")
    c = d["config"]
    labels = {"uniform+wmmse": "uniform + WMMSE", "mm_pdd": "MM-PDD (WMMSE start)", "mm_pdd_mrt": "MM-PDD (MRT start)",
              "mimo_hybrid": "hybrid MIMO", "mimo_digital": "digital MIMO"}
    paper_key = {"mm_pdd": "mm_pdd", "mimo_hybrid": "mimo"}
    rows = []
    for r in d["records"]:
        m, L = r["metrics"], r["params"]["L"]
        paper = d["paper"].get(str(L), {}).get(paper_key.get(r["method"], ""), None)
        notes = ""
        if "B_inf_max" in m:
            notes = (f"`||B||_inf` max {m['B_inf_max']:.2e}, {m['converged_fraction'] * 100:.0f}% converged, "
                     f"{m['outer_mean']:.2f} outer iterations, max AL rise per block {sig(m['al_rise_max'], 1)}, "
                     f"`|dX|` max {sig(m['max_position_change_m'], 1)} m")
        rows.append([L, labels.get(r["method"], r["method"]), f"{rate(m['sum_rate_mean'])} ± {rate(m['sum_rate_std'])}",
                     "—" if paper is None else f"{paper:.2f}", ms(m["time_per_drop_s"]), notes])
    out = [f"`python -m benchmarks --only mm_pdd` ({c['drops']} drops, seed {c['seed']}, K = {c['K']}, N = {c['N']}, "
           f"P = {c['P_dBm']:g} dBm, MM-PDD in {c['mm_pdd_dtype']}; {env_line(d)}; "
           "`benchmarks/results/mm_pdd-cpu-2core.{json,png}`):", "",
           table(["L", "method", "sum rate [bps/Hz]", "paper", "time/drop", "notes"], rows), ""]
    paper = d["paper"]
    out.append("The paper reports " + " and ".join(f"{v['mm_pdd_s']:.2f} s (L = {L})" for L, v in paper.items())
               + " per sample for MM-PDD.")
    return "\n".join(out)


# ------------------------------------------------------------------ energy efficiency
ENERGY_LABELS = {
    "dynamic_ee_tunable": "dynamic, EE-oriented, tunable coupling",
    "dynamic_se_tunable": "dynamic, SE-oriented, tunable coupling",
    "dynamic_ee_fixed": "dynamic, EE-oriented, fixed coupling (0.5)",
    "static_ee_tunable": "static, EE-oriented, tunable coupling",
    "static_se_tunable": "static, SE-oriented, tunable coupling",
    "static_ee_fixed": "static, EE-oriented, fixed coupling (0.5)",
    "fixed_antenna": "fixed antenna at the centre",
}


def _ordering_summary(orderings: list) -> str:
    groups: dict[str, list] = {}
    for o in orderings:
        groups.setdefault(o["name"], []).append(o)
    holds = sum(o["holds"] for o in orderings)
    ties = sum(abs(o["ratio"] - 1) < TIE for o in orderings)
    parts = []
    for name, os_ in groups.items():
        strict = [o["ratio"] for o in os_ if abs(o["ratio"] - 1) >= TIE]
        tied = [f"{o['p_max_dbm']:g}" for o in os_ if abs(o["ratio"] - 1) < TIE]
        text = f"{name}: " + (f"{min(strict):.3g}-{max(strict):.3g}x" if strict else "")
        if tied:
            text += (", " if strict else "") + f"tie at {'/'.join(tied)} dBm"
        failed = [f"{o['p_max_dbm']:g}" for o in os_ if not o["holds"]]
        if failed:
            text += f", FAILS at {'/'.join(failed)} dBm"
        parts.append(text)
    return (f"Orderings: {holds} of {len(orderings)} hold ({ties} of them ties, ratio within {TIE:g} of 1); "
            + "; ".join(parts) + ".")


def _ee_cell(r: dict) -> str:
    """``held-out (in-sample)`` when the design was scored on held-out drops."""
    return f"{rate(r['held_out']['mean_ee'])} ({rate(r['mean_ee'])})" if "held_out" in r else rate(r["mean_ee"])


def _headline(r: dict) -> dict:
    return r.get("held_out", r)


def render_energy(results: Path) -> str:
    d = load(results, "energy")
    c, R = d["config"], d["results"]
    powers = R["power"]["powers_dbm"]
    held = any("held_out" in r for v in R["power"]["schemes"].values() for r in v)
    rows = [[ENERGY_LABELS.get(k, k)] + [_ee_cell(r) for r in v] + [f"{sig(sum(r['ms_per_drop'] for r in v) / len(v), 2)}"]
            for k, v in R["power"]["schemes"].items()]
    scored = (f"held-out EE on {c['held_out_drops']} fresh drops (seed {c['held_out_seed']}), in-sample EE on the "
              f"{c['num_drops']} fitting drops in brackets" if held else "EE on the drops the designs were fitted on")
    out = [f"`python -m benchmarks --only energy` (N = {c['num_elements']}, K = {c['K']}, fitted on {c['num_drops']} drops "
           f"(seed {c['seed']}), {c['outer_iterations']} outer iterations with {c['coupling_steps']} coupling steps each; "
           f"{env_line(d)}; `benchmarks/results/energy-cpu-2core.{{json,png}}`), mean EE [bit/s/Hz/W]: {scored}:", "",
           table(["scheme \\ P_max [dBm]"] + [f"{p:g}" for p in powers] + ["ms/drop (fit)"], rows), ""]
    notes = [_ordering_summary(R["orderings"]).replace("Orderings:", "Orderings (held-out):" if held else "Orderings:")]
    gaps = [r["gap"] for v in R["power"]["schemes"].values() for r in v if "gap" in r and r["kind"] == "static"]
    if gaps:
        notes.append(f"Generalisation gap of the static designs (1 - held-out / in-sample): {min(gaps) * 100:.1f}% to "
                     f"{max(gaps) * 100:.1f}%.")
    for m in R["monotone"]:
        if m["N"] == c["num_elements"]:
            notes.append(f"Fitted objective over outer iterations ({m['scheme']}, N = {m['N']}, in-sample): "
                         + " -> ".join(rate(v) for v in m["history"])
                         + (" (non-decreasing)." if m["non_decreasing"] else f" (DROPS by {m['worst_drop']:.3g})."))
    for key, axis, unit in (("elements", "element_counts", "N"), ("length", "lengths_m", "S_x [m]")):
        xs = R[key][axis]
        notes.append(f"EE vs {unit} = {' / '.join(f'{x:g}' for x in xs)}"
                     + (" (held-out where measured)" if key == "elements" and held else " (in-sample)") + ": "
                     + "; ".join(f"{ENERGY_LABELS.get(k, k)} " + " / ".join(rate(_headline(r)["mean_ee"]) for r in v)
                                 for k, v in R[key]["schemes"].items()) + ".")
    out.append(" ".join(notes))
    g = R.get("generalisation")
    if g:
        out += ["", f"Static design (EE, tunable coupling, N = {c['num_elements']}, P_max = cfg default) against the "
                f"number of fitting drops, held-out EE on the same {c['held_out_drops']} fresh drops (in-sample in "
                f"brackets); the fixed antenna scores {rate(g['fixed_antenna'])} on them:", "",
                table(["fitted gain \\ fitting drops"] + [str(n) for n in g["train_drops"]],
                      [[{"random_phase": "random phase (expected EE)",
                         "coherent": "coherent (the paper's sample average, default)"}.get(k, k)]
                       + [f"{rate(r['held_out'])} ({rate(r['in_sample'])})" for r in v]
                       for k, v in g["schemes"].items()])]
    if R.get("static_vs_fixed"):
        out += ["", _static_vs_fixed(R["static_vs_fixed"], c["settings"])]
    out.append("")
    out.append(f"The run took {d['wall_s'] / 60:.1f} minutes.")
    return "\n".join(out)


def _static_vs_fixed(rows: list, settings: dict) -> str:
    """The held-out static design against the fixed antenna, per fitting seed and number of fitting drops."""
    counts = sorted({r["train_drops"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["seed"], r["train_drops"]): r for r in rows}
    held = sum(r["holds"] for r in rows)
    ties = sum(abs(r["ratio"] - 1) < 1e-5 for r in rows)
    return "\n".join([
        f"Held-out static design (validation_fraction = {settings['validation_fraction']:g} of the fitting drops "
        "held back to choose the start and outer iteration; a candidate must beat the fixed antenna there by "
        f"{settings['validation_margin']:g} paired standard errors) against the fixed antenna "
        f"({rate(rows[0]['fixed_antenna'])} on the same held-out drops), per fitting seed and number of fitting "
        f"drops, the chosen start and iteration in brackets: held-out static >= fixed antenna (within 1e-5) in "
        f"{held} of {len(rows)} ({ties} of them ties):", "",
        table(["fitting seed \\ fitting drops"] + [str(n) for n in counts],
              [[str(sd)] + [f"{rate(by[sd, n]['held_out'])} ({by[sd, n]['initial']}, {by[sd, n]['chosen_iteration']})"
                            for n in counts] for sd in seeds])])


def render_energy_static(results: Path) -> str:
    d = load(results, "energy_static")
    c = d["config"]
    return "\n".join([
        f"`python -m benchmarks --only energy_static` (EE preset N = {c['N']}, K = {c['K']}, the energy benchmark's "
        f"grid ({c['grid_points']} points per element) and {c['outer_iterations']} outer iterations with "
        f"{c['coupling_steps']} coupling steps; fitted on the first D drops of each seed, scored on "
        f"{c['held_out_drops']} drops of seed {c['held_out_seed']}; {env_line(d)}; "
        "`benchmarks/results/energy_static-cpu-2core.json`), mean EE [bit/s/Hz/W].", "",
        _static_vs_fixed(d["results"], c["settings"]), "",
        f"The run took {d['wall_s'] / 60:.1f} minutes."])


# ------------------------------------------------------------------ power minimisation
def render_power_min(results: Path) -> str:
    d = load(results, "power_min")
    R, c = d["results"], d["config"]
    lb = c.get("lbfgs") or {"starts": c.get("starts"), "iterations": c.get("iterations")}  # schema of 11-24 kept readable
    rows = [[f"{r['blockage_rate']:g}", f"{r['proposed']['mean_dbm']:.2f}", f"{r['center']['mean_dbm']:.2f}",
             f"{r['random']['mean_dbm']:.2f}", f"{r['exhaustive']['mean_dbm']:.2f}",
             f"{r['proposed_vs_exhaustive']['within_1pct'] * 100:.1f}%"] for r in R["blockage"]["rows"]]
    out = [f"`python -m benchmarks --only power_min` ({c['drops']} drops per point, the same drops for every method, "
           f"Gamma = {c['snr_db']:g} dB, L-BFGS {lb['starts']} starts x {lb['iterations']} iterations; {env_line(d)}; "
           "`benchmarks/results/power_min-cpu-2core.{json,png}`), mean power [dBm]:", "",
           table(["beta_b [1/m]", f"proposed (L-BFGS, {lb['starts']} starts)", "Center", "Random", "exhaustive",
                  "drops with L-BFGS within 1% of exhaustive"], rows), ""]
    snr_rows = []
    for series in R["snr"]["series"]:
        by = {r["snr_db"]: r for r in series["rows"]}
        shown = [v for v in (0.0, 10.0, 20.0, 30.0) if v in by]
        ref = by.get(10.0)
        snr_rows.append([f"{series['N']} ({'PGD' if series['solver'] == 'pgd' else 'L-BFGS'})",
                         " / ".join(f"{by[v]['proposed']['mean_dbm']:.2f}" for v in shown),
                         "—" if ref is None else f"{ref['center']['mean_dbm']:.2f}",
                         "—" if ref is None else f"{ref['random']['mean_dbm']:.2f}"])
    out += [table([f"N (K = {R['snr']['K']}, beta_b = {R['snr']['blockage_rate']:g})",
                   "proposed @ 0 / 10 / 20 / 30 dB", "Center @ 10 dB", "Random @ 10 dB"], snr_rows), ""]
    corr = R["correlation"]["rows"]
    rhos = " / ".join(f"{r['rho']:g}" for r in corr)
    powers = " / ".join(f"{r['proposed']['mean_dbm']:.2f}" for r in corr)
    notes = [f"Link correlation rho = {rhos}: optimised power {powers} dBm (PB Lemma 2)."]
    cases = R["convergence"]["cases"]
    notes.append("Within 1% of the exhaustive optimum, PB Alg. 1 from 'Center' alone / the proposed multi-start: "
                 + "; ".join(f"K = {k['K']}: {k['algorithm1_vs_exhaustive']['within_1pct'] * 100:.1f}% / "
                             f"{k['proposed_vs_exhaustive']['within_1pct'] * 100:.1f}%" for k in cases)
                 + " of drops.")
    times = {r["id"]: r for r in d["records"] if r["section"] == "time"}
    names = {"time/projected_lbfgs/N=2": "L-BFGS (N = 2)", "time/algorithm1/N=2": "from Center only",
             "time/exhaustive/N=2": "exhaustive", "time/pgd/N=1": "PGD (N = 1)", "time/projected_lbfgs/N=4": "L-BFGS (N = 4)"}
    notes.append("Time per drop: " + ", ".join(f"{label} {ms(times[k]['metrics']['ms_per_drop'] / 1e3)}"
                                               for k, label in names.items() if k in times) + ".")
    return "\n".join(out + [" ".join(notes)])


# ------------------------------------------------------------------ throughput
def render_throughput(results: Path) -> str:
    d = load(results, "throughput")
    recs = {(r["section"], r["impl"], r["params"].get("batch"), r["params"].get("L"), r["params"].get("paired_batch")): r
            for r in d["records"]}
    ratios, c = d["ratios"], d["config"]
    L0 = c["L"]

    def m(section, impl, batch, key, L=..., paired=None):
        r = recs.get((section, impl, batch, L0 if L is ... else L, paired))
        return None if r is None else r["metrics"][key]

    rows = []
    for B in sorted(c["batches"], reverse=True):
        jp_ = m("channel", "jaxpass", B, "drops_per_s")
        pe = m("channel", "jaxpass", B, "path_elements_per_s")
        jj = m("channel", "jp_jit", B, "drops_per_s")
        nl = recs.get(("channel", "numpy_loop", c["numpy_drops"], L0, B))
        nv = m("channel", "naive_jax", B, "drops_per_s")
        ref = [f"`jp.jit` {per_s(jj)}" if jj else None,
               f"NumPy per-drop loop {per_s(nl['metrics']['drops_per_s'])} drops/s" if nl else None,
               f"naive JAX (`jnp.exp(-1j*kappa*r)`) {per_s(nv)}" if nv else None]
        rat = [compare(ratios[f"channel_jax_jit_over_jp_jit@B={B}"]) if jj else None,
               f"{ratios[f'channel_jaxpass_over_numpy_loop@B={B}']:.3g}x" if nl else None,
               f"{ratios[f'channel_jaxpass_over_naive_jax@B={B}']:.3g}x" if nv else None]
        rows.append([f"channel forward ({B})", f"{per_s(jp_)} drops/s = {per_s(pe)} path-elem/s",
                     "; ".join(x for x in ref if x), "; ".join(x for x in rat if x)])
    Ls = c["L_values"]
    vsL = [m("channel_vs_L", "jaxpass", c["sweep_batch"], "path_elements_per_s", L=L) for L in Ls]
    rows.append([f"channel forward vs L ({c['sweep_batch']}): L = {' / '.join(map(str, Ls))}",
                 " / ".join(per_s(v) for v in vsL) + " path-elem/s", "", ""])
    for B in sorted(c["grad_batches"], reverse=True):
        g, gj = m("grad", "jaxpass", B, "drop_steps_per_s"), m("grad", "jp_jit", B, "drop_steps_per_s")
        rows.append([f"value_and_grad of ZF sum rate w.r.t. positions ({B})", f"{per_s(g)} drop-steps/s",
                     f"`jp.jit` {per_s(gj)}" if gj else "", compare(ratios[f"grad_jax_jit_over_jp_jit@B={B}"]) if gj else ""])
    wb = c["wmmse_batch"]
    rows.append([f"WMMSE, {c['wmmse_iterations']} iterations ({wb})", f"{per_s(m('wmmse', 'jaxpass', wb, 'drops_per_s', L=None))} drops/s",
                 f"textbook WMMSE (`inv` + bisection) {per_s(m('wmmse', 'plain', wb, 'drops_per_s', L=None))}",
                 f"{ratios['wmmse_jaxpass_over_plain']:.3g}x"])
    ceil = {r["impl"]: r["metrics"] for r in d["records"] if r["section"] == "ceiling"}
    rows.append([f"machine ceiling, {c['ceiling_elements']} float32 elements",
                 f"channel {per_s(ceil['channel_jaxpass']['path_elements_per_s'])} path-elem/s (timed beside these)",
                 f"NumPy `np.sin` {per_s(ceil['numpy_sin']['elements_per_s'])} elem/s; XLA `jnp.sin` "
                 f"{per_s(ceil['jax_sin']['elements_per_s'])}; jaxpass `cis` {per_s(ceil['jaxpass_cis']['elements_per_s'])}; "
                 f"matmul {per_s(ceil['jax_matmul']['flops_per_s'])}FLOP/s",
                 f"{ratios['channel_path_elements_over_numpy_sin']:.3g}x of `np.sin`"])
    out = [f"Numbers below: **{env_line(d)}, float32, JB preset K = N = {c['K']}, L = {L0}**, from "
           "`benchmarks/results/throughput-cpu-2core.json` (`python -m benchmarks --only throughput`; on a GPU the "
           "same command writes its own file).", "",
           table(["kernel (batch)", "jaxpass (plain `jax.jit`)", "reference in the same run", "ratio"], rows), "",
           "Acceptance, printed by the benchmark (never asserted): " + "; ".join(
               f"{a['name']} {per_s(a['value'])} (target {per_s(a['target'])}): {a['status']}" for a in d["acceptance"]) + "."]
    acc = {r["impl"]: r["accuracy"] for r in d["records"] if r["section"] == "channel" and r.get("accuracy")}
    if "jaxpass" in acc and "naive_jax" in acc:
        out.append(f"The float32 channel is within {sig(acc['jaxpass']['max_rel_err'])} relative of float64 "
                   f"(max over the drops; the naive `exp(-1j*kappa*r)` version: {sig(acc['naive_jax']['max_rel_err'])}).")
    return "\n".join(out)


# ------------------------------------------------------------------ two-timescale
def render_two_timescale(results: Path) -> str:
    d = load(results, "two_timescale")
    s, o = d["settings"], d["settings"]["ssca"]
    from jaxpass.experiments import two_timescale as tt
    from jaxpass.experiments.two_timescale import ROWS, SIGMA_ROWS

    out = [f"`python -m benchmarks --only two_timescale` (or `jaxpass ssca`; TT preset N = 4, L = 8; {s['blocks']} "
           f"blocks (seed {s['seed']}) x {s['held_out_slots']} held-out slots each, the same slots for every row; "
           f"SSCA {o['iterations']} iterations x {o['slots_per_iteration']} slots, {o['wmmse_iterations']} unrolled "
           f"WMMSE updates, sigma_u = {o['sigma_u']:g} m, {o['init']} start; every WMMSE score with "
           f"{s['eval_wmmse_iterations']} updates; {env_line(d)}; `benchmarks/results/two_timescale-cpu-2core."
           "{json,png}`), held-out mean sum rate [bps/Hz]:", ""]
    for K, by_p in d["sweep"].items():
        powers = list(by_p)
        rows = [[ROWS[r]] + [rate(by_p[P][r]["mean"]) for P in powers] for r in ROWS if all(r in by_p[P] for P in powers)]
        out += [table([f"{K.replace('=', ' = ')} \\ P [dBm]"] + [P.split("=")[1] for P in powers], rows), ""]
    sweep = {int(K.split("=")[1]): {float(P.split("=")[1]): rows for P, rows in by_p.items()}
             for K, by_p in d["sweep"].items()}
    notes = [tt.checks_line(d["checks"]).replace("Checks:", "Orderings (TT Figs. 3-4 and the bound):") + "."]
    notes += tt.precoder_lines(sweep)
    notes += [line for K, by_p in sweep.items()
              if (line := tt.convergence_line(by_p, s["blocks"], o["iterations"], f"K = {K}: "))]
    notes += [line for K, by_p in sweep.items() if (line := tt.kept_line(by_p, f"K = {K}: "))]
    if d.get("envelope"):
        notes.append(tt.envelope_line(d["envelope"], s["blocks"]))
    st = d.get("step_time")
    if st:
        notes.append(f"One SSCA iteration at N_s = {st['slots']} slots (one block, WMMSE short-term) takes "
                     f"{ms(st['median_s'])}.")
    out.append("\n\n".join(notes))
    if d["sigma_study"]:
        cols = [r for r in SIGMA_ROWS if all(r in v for v in d["sigma_study"].values())]
        out += ["", table(["sigma_u [m]"] + [ROWS[r] for r in cols] + ["bound - SSCA"],
                          [[k.split("=")[1]] + [rate(v[r]["mean"]) for r in cols]
                           + [rate(v["single_timescale"]["mean"] - v["tt_wmmse"]["mean"])]
                           for k, v in d["sigma_study"].items()])]
        out.append("")
        out.append(f"(sigma_u study at K = {s['sigma_study_users']}, P = {s['sigma_study_power_dbm']:g} dBm; the run "
                   f"took {d['wall_s'] / 60:.1f} minutes.)")
    return "\n".join(out)


# ------------------------------------------------------------------ learned layouts
def render_learn_aligned(results: Path) -> str:
    d = load(results, "learn_aligned")
    rows = [[r["row"], f"{rate(r['test']['mean'])} ± {rate(r['test']['std'])}",
             f"{rate(r['fresh']['mean'])} ± {rate(r['fresh']['std'])}",
             "—" if r.get("ms_per_64") is None else f"{r['ms_per_64']:.2f}"] for r in d["rows"]]
    acc = d.get("acceptance", [])
    passing = [a["row"] for a in acc if a["status"] == "PASS" and a.get("kind", "learned") == "learned"]
    refined = [a for a in acc if a.get("kind") == "refined"]
    tr = d.get("training", {})
    out = [f"`python -m benchmarks --only learn_aligned` (the table1 drops: K = N = 4, L = 8, P = 10 dBm, 64 test drops "
           f"of seed 0 and fresh drops of another seed; float32; {env_line(d)}; "
           "`benchmarks/results/learn_aligned-cpu-2core.json`), mean ± std sum rate [bps/Hz] and ms per 64 drops "
           "(jit-compiled, after warm-up, decode and beamformer included):", "",
           table(["row", "test drops", "fresh drops", "ms / 64 drops"], rows), "",
           "Acceptance (>= 83.0 bps/Hz on both drop sets, <= 5 ms per 64 drops, no point of the tuning curve both "
           f"faster and better): {', '.join(passing) if passing else 'no learned row'} "
           f"{'passes' if len(passing) == 1 else 'pass'}"
           + (f"; the ranker trained on {tr['options']['train_drops']} drops labelled by the search "
              f"({tr['label_s']:.0f} s to label, {tr['train_s']:.0f} s to train)." if "train_s" in tr else ".")]
    if refined:
        ok = [a["row"] for a in refined if a["status"] == "PASS"]
        out += ["", "Learned start + refinement (undominated by the tuning curve and faster and better than at least "
                f"one of its points): {', '.join(ok) if ok else 'no refined row'} "
                f"{'passes' if len(ok) == 1 else 'pass'}; {len(refined) - len(ok)} of {len(refined)} refined rows "
                "do not. Figure: `benchmarks/results/learn_aligned-cpu-2core.png`."]
    return "\n".join(out)


def render_learn_table1(results: Path) -> str:
    from benchmarks.learn_table1 import report

    d = load(results, "learn_table1")
    learn = d["settings"]["learn"]
    return "\n".join([
        f"`python -m benchmarks --only learn_table1` (JB Table I scenario: K = N = 4, L = 8, P = 10 dBm; the 64 test "
        f"drops of seed {d['table_settings']['seed']}; the JB models at the papers' sizes, trained here for "
        f"{learn['steps']} steps of batch 64 on the fixed 30 000-drop split of seed "
        f"{d['table_settings']['learn_seed']}; float32; {env_line(d)}; "
        "`benchmarks/results/learn_table1-cpu-2core.{json,png}`):", "", report(d)])


def render_short_term(results: Path) -> str:
    d = load(results, "short_term")
    c, o = d["config"], d["config"]["options"]
    rows = [[str(r["params"]["K"]), f"{r['params']['P_dbm']:g}", rate(r["metrics"]["net"]), rate(r["metrics"]["wmmse"]),
             f"{100 * r['metrics']['ratio']:.1f} %", f"{100 * r['metrics']['in_sample_ratio']:.1f} %",
             f"{100 * r['metrics']['worst_block_ratio']:.1f} %"] for r in d["records"]]
    acc = d.get("acceptance", [])
    train = "; ".join(f"{k.replace('=', ' = ')}: {v['train_s']:.0f} s ({v['steps']} steps of {o['batch_size']} slots, "
                      f"{v['parameters']} parameters)" for k, v in d["training"].items())
    return "\n".join([
        f"`python -m benchmarks --only short_term` (TT preset, N = 4, L = 8; one `{o['architecture']}` network per K "
        f"for every P, trained on {o['blocks']} blocks x {o['slots_per_block']} slots of seed {c['train_seed']}, P ~ "
        f"U[{o['power_range_dbm'][0]:g}, {o['power_range_dbm'][1]:g}] dBm per slot; held out: {c['held_out_blocks']} "
        f"blocks of seed {c['held_out_seed']} x {c['held_out_slots']} slots, X fixed at each block's aligned SSCA "
        f"start; WMMSE with {c['eval_wmmse_iterations']} updates; {env_line(d)}; "
        "`benchmarks/results/short_term-cpu-2core.json`), mean sum rate [bps/Hz]:", "",
        table(["K", "P [dBm]", "network (KKT map)", "WMMSE", "held-out ratio", "in-sample ratio", "worst block"], rows),
        "",
        f"Training: {train}. Target (K = 6, held-out ratio >= 97 % at 12 and 28 dBm): "
        + (", ".join(f"{a['P_dbm']:g} dBm {a['status']}" for a in acc) or "not measured") + ".",
    ])


def render_short_term_convergence(results: Path) -> str:
    d = load(results, "short_term_convergence")
    c = d["config"]
    curves = d["curves"]
    steps = curves["kdl"]["step"]
    marks = sorted({steps[0], steps[len(steps) // 4], steps[len(steps) // 2], steps[-1]})
    rows = [[v["label"]] + [rate(v["held_out_rate"][v["step"].index(m)]) for m in marks]
            + [f"{100 * v['final_ratio']:.1f} %", f"{d['training'][k]['train_s']:.0f} s",
               str(d["training"][k]["parameters"])] for k, v in curves.items()]
    return "\n".join([
        f"`python -m benchmarks --only short_term_convergence` (TT Fig. 3: K = {c['users']}, both networks trained "
        f"{c['steps']} steps on the same pool, batches and powers (seed {c['train_seed']}), scored every "
        f"{c['every']} steps on {c['held_out_blocks']} held-out blocks x {c['held_out_slots']} slots (seed "
        f"{c['held_out_seed']}) at P = {c['power_dbm']:g} dBm; WMMSE ({c['eval_wmmse_iterations']} updates) "
        f"{rate(d['wmmse'])} bps/Hz; {env_line(d)}; `benchmarks/results/short_term_convergence-cpu-2core.{{json,png}}`), "
        "held-out mean sum rate [bps/Hz]:", "",
        table(["model"] + [f"step {m}" for m in marks] + ["final / WMMSE", "training", "parameters"], rows),
    ])


#: block name -> renderer(results folder) -> markdown
def render_scaling(results: Path) -> str:
    d = load(results, "scaling")
    rows = [[r["section"], str(r["params"]["devices"]), str(r["params"]["batch"]), per_s(r["metrics"]["drops_per_s"]),
             f"{r['metrics']['speedup']:.3g}x", f"{100 * r['metrics']['efficiency']:.0f} %",
             f"{r['metrics']['compile_s']:.2g} s"]
            for r in sorted(d["records"], key=lambda r: (r["section"], r["params"]["devices"]))]
    cores = (d.get("env") or {}).get("cpu_count", "?")
    return "\n".join([
        f"`make scaling` (= `python -m benchmarks.scaling`; {env_line(d)}; "
        f"`benchmarks/results/scaling-{DEVICE}.json`), simulated CPU devices on {cores} cores:", "",
        table(["section", "devices", "batch", "drops/s", "speed-up", "per-device efficiency", "compile"], rows), "",
        f"With {cores} cores, device counts above {cores} share cores: the rows beyond that show the sharding "
        "overhead, not a speed-up. On a GPU host the same command measures all GPUs (no GPU run is recorded yet).",
    ])


def render_size_scaling(results: Path) -> str:
    d = load(results, "size_scaling")
    sizes = [tuple(s) for s in d["config"]["sizes"]]
    label = lambda s: f"{s[0]}/{s[1]}/{s[2]}"  # noqa: E731
    comps = list(dict.fromkeys(r["component"] for r in d["records"] if r["component"] != "tune_positions"))
    by = {(r["component"], (r["params"]["K"], r["params"]["N"], r["params"]["L"])): r["metrics"] for r in d["records"]}

    def cell(comp, s, key):
        m = by.get((comp, s))
        return "-" if m is None else ms(m[key])

    run_rows = [[c] + [cell(c, s, "run_per_drop_s") for s in sizes] for c in comps]
    compile_rows = [[c] + [f"{by[(c, s)]['compile_s']:.2g} s" if (c, s) in by else "-" for s in sizes]
                    for c in comps]
    tune = [["tune_positions first call"] + [f"{by[('tune_positions', s)]['first_call_s']:.3g} s" for s in sizes],
            ["tune_positions per drop"] + [ms(by[("tune_positions", s)]["run_per_drop_s"]) for s in sizes]]
    lines = [
        f"`python -m benchmarks --only size_scaling` ({env_line(d)}; `benchmarks/results/size_scaling-{DEVICE}.json`, "
        f"figure `size_scaling-{DEVICE}.png`). K/N/L; run time per drop (batch of "
        f"{d['records'][0]['params']['drops']} drops, `jit(vmap)`, median):", "",
        table(["component"] + [label(s) for s in sizes], run_rows + tune), "",
        "compile time (trace and lowering apart in the JSON):", "",
        table(["component"] + [label(s) for s in sizes], compile_rows), "",
    ]
    for q in d["quality"]:
        line = (f"Quality at K = N = {q['K']}, L = {q['L']} ({q['drops']} drops, seed {q['seed']}): uniform + WMMSE "
                f"{rate(q['uniform_wmmse'])}; tuned ({d['config']['tune']['steps']} steps, "
                f"{d['config']['tune']['starts']} starts) with the exact assignment search {rate(q['exact'])} against "
                f"{rate(q['sampled'])} with the old random sample: paired {q['exact_minus_sampled']:+.3f} +- "
                f"{q['exact_minus_sampled_se']:.3f} bps/Hz (exact better on {q['exact_better_drops']}/{q['drops']} "
                f"drops; {ms(q['exact_s_per_drop'])} vs {ms(q['sampled_s_per_drop'])} per drop).")
        if q["curve"]:
            line += " Tuning curve (steps x starts: rate, time per drop): " + "; ".join(
                f"{c['steps']} x {c['starts']}: {rate(c['sum_rate'])}, {ms(c['s_per_drop'])}" for c in q["curve"]) + "."
        lines += [line, ""]
    held = sum(c["holds"] for c in d["checks"])
    lines += [f"Checks: {held} of {len(d['checks'])} hold (every check with its value in the JSON's `checks`).", ""]
    kinds = (("compile", "compile at every size within 3x of the 4/4/8 compile"),
             ("run-time growth", "run-time growth 4/4/8 -> 32/32/64 within 3x of the FLOP model's growth"),
             ("exact - sampled", "exact assignment search >= the random sample (paired mean)"))
    for key, text in kinds:
        group = [c for c in d["checks"] if key in c["check"]]
        if group:
            worst = max(group, key=lambda c: c["value"]) if key != "exact - sampled" else \
                min(group, key=lambda c: c["value"])
            lines.append(f"- {text}: {sum(c['holds'] for c in group)} of {len(group)} hold "
                         f"(extreme: {worst['check']}: {sig(worst['value'], 3)})")
    lines += [f"- **fails**: {c['check']}: {sig(c['value'], 3)} (target {c['target']})"
              for c in d["checks"] if not c["holds"] and not any(k in c["check"] for k, _ in kinds)]
    lines += [f"- holds: {c['check']}: {sig(c['value'], 3)} (target {c['target']})"
              for c in d["checks"] if c["holds"] and not any(k in c["check"] for k, _ in kinds)]
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[Path], str]] = {
    "table1": render_table1,
    "sweeps": render_sweeps,
    "mm_pdd": render_mm_pdd,
    "energy": render_energy,
    "energy_static": render_energy_static,
    "power_min": render_power_min,
    "throughput": render_throughput,
    "two_timescale": render_two_timescale,
    "short_term_convergence": render_short_term_convergence,
    "learn_aligned": render_learn_aligned,
    "learn_table1": render_learn_table1,
    "short_term": render_short_term,
    "scaling": render_scaling,
    "size_scaling": render_size_scaling,
}


def update(text: str, results: Path = RESULTS) -> tuple[str, list]:
    """``text`` with every generated block re-rendered, and the names of the blocks that changed."""
    changed, seen = [], []

    def sub(match):
        name = match.group("name")
        if name not in RENDERERS:
            raise KeyError(f"README block {name!r} has no renderer; known: {sorted(RENDERERS)}")
        seen.append(name)
        body = RENDERERS[name](results).rstrip("\n") + "\n"
        if body != match.group("body"):
            changed.append(name)
        return match.group(1) + body + match.group(4)

    new = _BLOCK.sub(sub, text)
    missing = sorted(set(RENDERERS) - set(seen))
    if missing:
        raise KeyError(f"README has no generated block for {missing}")
    return new, changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README differs from the result files")
    parser.add_argument("--results", type=Path, default=RESULTS, help="result folder (default: %(default)s)")
    parser.add_argument("--readme", type=Path, default=README, help="README to update (default: %(default)s)")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    new, changed = update(text, args.results)
    if args.check:
        if changed:
            print(f"README blocks out of date with {args.results}: {', '.join(changed)} "
                  "(run `python -m benchmarks.readme`)", file=sys.stderr)
            return 1
        print("README numbers match the result files")
        return 0
    if changed:
        args.readme.write_text(new)
    print(f"updated blocks: {', '.join(changed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Energy-efficiency benchmark (docs/model.md §5, EE Figs. 1-4): designs, acceptance comparisons, time per drop.

``python -m benchmarks --only energy [--quick]`` runs, on the EE preset
(``PassConfig.energy_efficiency()``: one waveguide over 20 x 5 m, K = 4 TDMA
users, N = 8 coupled elements, P_c = 20 dBm, sigma^2 = -90 dBm, 28 GHz; the
Gauss-Seidel grid spacing <= lambda/10):

1. EE Fig. 1: the ergodic objective over the outer iterations of the dynamic
   and static designs for several N;
2. EE Fig. 2: every scheme at every ``P_max`` (dynamic / static, EE- / SE-oriented,
   tunable / fixed coupling, one fixed antenna at the centre);
3. EE Figs. 3 and 4: EE against N and against the region length ``S_x``.

All designs of a sweep use the same seeded user drops. Each design is timed
by :func:`jaxpass.experiments.ee.run_scheme`: ``compile_s`` is the time JAX
spent tracing and compiling during it (``jax.monitoring`` events; near 0 once
the compiled steps are reused, e.g. from the second ``P_max`` of a sweep on),
``ms_per_drop`` the rest of its wall time divided by the number of drops (for
the static design: the whole fit over the drops, divided by them).

The acceptance block (informational: never an assert, never a non-zero exit)
checks on the benchmark means: the ergodic EE is non-decreasing over outer
iterations (relative tolerance 1e-5, float32 rounding), and at every ``P_max``:
dynamic >= static >= fixed antenna, EE-oriented >= SE-oriented in EE (dynamic
and static), tunable >= fixed coupling (dynamic and static); ties count as
holding within the same 1e-5 (EE- and SE-oriented designs coincide when
Dinkelbach keeps ``P_max``). It also checks, for every fitting size in
``static_check_counts`` and fitting seed in ``static_check_seeds``, that the
static design (start and outer iteration chosen on the validation drops it
holds back, ``DesignOptions.validation_fraction``) scores at least the fixed
antenna's EE on the held-out drops (:func:`jaxpass.experiments.ee.static_vs_fixed`).

JSON (``<out>/energy-<device>.json``, schema_version 1): the common envelope
(``benchmark``, ``env``, ``config``), ``records`` (one per design:
``{"id": "<section>/<scheme>/<param>=<v>", "section", "impl": scheme, "params",
"metrics": {"mean_ee", "mean_se", "ms_per_drop", "compile_s"}}``), ``ratios``
(``ee_<a>_over_<b>@P=<dBm>`` for the acceptance comparisons), ``results`` (the
full experiment output of :func:`jaxpass.experiments.ee.run_all`, with
``static_vs_fixed``: the rows of that check), ``acceptance``
(rows with ``status`` PASS / FAIL) and ``wall_s``. The figure is
``<out>/energy-<device>.png``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jaxpass as jp
from benchmarks import common
from benchmarks.common import log, markdown_table
from jaxpass.experiments import ee
from jaxpass.optimize import energy

NAME = "energy"

FULL = dict(
    num_drops=256,  # a static design generalises only when fitted on a few hundred drops (README, EE section)
    seed=0,
    num_elements=8,
    powers_dbm=(0, 5, 10, 15, 20, 25, 30),
    element_counts=(2, 4, 8, 16),
    lengths=(10.0, 20.0, 40.0),
    convergence_counts=(8,),
    convergence_iterations=5,
    outer_iterations=3,
    coupling_steps=3,
    grid_points=None,  # spacing <= lambda/10 (docs/model.md §5)
    held_out_drops=64,
    held_out_seed=1000,
    train_counts=(16, 64, 256),
    static_check_counts=(64, 128, 256),  # held-out static >= fixed antenna, per fitting size and seed
    static_check_seeds=(0, 1, 2),
)
QUICK = dict(
    num_drops=2,
    seed=0,
    num_elements=3,
    powers_dbm=(0, 30),
    element_counts=(2, 3),
    lengths=(20.0,),
    convergence_counts=(3,),
    convergence_iterations=2,
    outer_iterations=2,
    coupling_steps=1,
    grid_points=257,  # a coarse grid: smoke test only
    held_out_drops=2,
    held_out_seed=1000,
    train_counts=(2,),
    static_check_counts=(4,),
    static_check_seeds=(0,),
)


def _records(results: dict) -> list:
    records = []

    def add(section, scheme, params, s):
        pid = "/".join(f"{k}={v:g}" for k, v in params.items())
        records.append({"id": f"{section}/{scheme}/{pid}" if pid else f"{section}/{scheme}", "section": section,
                        "impl": scheme, "params": params,
                        "metrics": {"mean_ee": s["mean_ee"], "mean_se": s["mean_se"],
                                    "ms_per_drop": s["ms_per_drop"], "compile_s": s["compile_seconds"],
                                    **({"held_out_ee": s["held_out"]["mean_ee"], "gap": s["gap"]}
                                       if "held_out" in s else {})}})

    for N, by_scheme in results.get("convergence", {}).items():
        for scheme, s in by_scheme.items():
            add("convergence", scheme, {"N": int(N)}, s)
    for section, key, name in (("power", "powers_dbm", "P_dbm"), ("elements", "element_counts", "N"),
                               ("length", "lengths_m", "S_x")):
        if section in results:
            for scheme, sums in results[section]["schemes"].items():
                for x, s in zip(results[section][key], sums):
                    add(section, scheme, {name: x}, s)
    return records


def acceptance(results: dict) -> list:
    """Informational PASS/FAIL rows for the issue's acceptance list."""
    rows = []
    for r in results.get("monotone", []):
        rows.append({"name": f"EE non-decreasing over outer iterations ({r['scheme']}, N={r['N']})",
                     "value": r["worst_drop"], "status": "PASS" if r["non_decreasing"] else "FAIL"})
    for r in results.get("orderings", []):
        rows.append({"name": f"{r['name']} @ P_max={r['p_max_dbm']:g} dBm", "value": r["ratio"],
                     "status": "PASS" if r["holds"] else "FAIL"})
    for r in results.get("static_vs_fixed", []):
        rows.append({"name": f"held-out static >= fixed antenna ({r['train_drops']} fitting drops, seed {r['seed']})",
                     "value": r["ratio"], "status": "PASS" if r["holds"] else "FAIL"})
    return rows


def timing_table(results: dict) -> str:
    rows = []
    if "power" in results:
        for scheme, sums in results["power"]["schemes"].items():
            ms = [s["ms_per_drop"] for s in sums]
            comp = max(s["compile_seconds"] for s in sums)
            rows.append([scheme, f"{min(ms):.2f} .. {max(ms):.2f}", f"{comp:.2f}"])
    return markdown_table(["scheme (power sweep)", "ms per drop (min .. max over P_max)", "compile [s]"], rows)


def setup(quick: bool, out_dir: Path | None):
    """``(settings, out_dir, cfg, options, grid points)`` shared by the energy benchmarks."""
    s = dict(QUICK if quick else FULL)
    out_dir = Path(out_dir) if out_dir is not None else common.default_out_dir(quick)
    cfg = jp.PassConfig.energy_efficiency(num_pinches=s["num_elements"])
    options = energy.DesignOptions(outer_iterations=s["outer_iterations"], coupling_steps=s["coupling_steps"],
                                   grid_points=s["grid_points"])
    return s, out_dir, cfg, options, s["grid_points"] or energy.default_grid_points(cfg)


def run(quick: bool = False, out_dir: Path | None = None) -> dict:
    """Run the EE experiments, print tables + acceptance, write JSON + PNG."""
    s, out_dir, cfg, options, grid = setup(quick, out_dir)
    log(f"[energy] EE preset N={cfg.num_pinches}, K={cfg.num_users}, {s['num_drops']} drops, "
        f"grid {grid} points per element ({float(cfg.length_x) / (grid - 1) * 1e3:.3g} mm)")
    t0 = time.perf_counter()
    results = ee.run_all(cfg, num_drops=s["num_drops"], seed=s["seed"], powers_dbm=s["powers_dbm"],
                         element_counts=s["element_counts"], lengths=s["lengths"],
                         convergence_counts=s["convergence_counts"],
                         convergence_iterations=s["convergence_iterations"], options=options,
                         held_out_drops=s["held_out_drops"], held_out_seed=s["held_out_seed"],
                         train_counts=s["train_counts"], static_check_counts=s["static_check_counts"],
                         static_check_seeds=s["static_check_seeds"])
    wall = time.perf_counter() - t0
    accept = acceptance(results)
    ratios = {f"ee_{r['a']}_over_{r['b']}@P={r['p_max_dbm']:g}": r["ratio"] for r in results.get("orderings", [])}
    config = dict(preset="energy_efficiency", dtype="float32", K=cfg.num_users, N=cfg.num_pinches,
                  circuit_power_dbm=float(cfg.circuit_power_dbm), noise_dbm=float(cfg.noise_dbm),
                  grid_points=grid, settings=options.asdict(),
                  **{k: v for k, v in s.items() if k != "grid_points"})
    json_path = common.write_result(NAME, config=config, records=_records(results), ratios=ratios,
                                    out_dir=out_dir, quick=quick,
                                    extra={"results": results, "acceptance": accept, "wall_s": wall})
    png_path = common.result_path(out_dir, NAME, "png")
    from jaxpass.plotting import save_figure

    env = common.environment()
    save_figure(ee.plot_figures(results, f"jaxpass EE designs on {env['device']}, {s['num_drops']} drops"),
                png_path)

    print(f"## jaxpass energy efficiency — {env['device']} ({env['cpu_model'] or env['device_kind']}), "
          f"jax {env['jax_version']}, {'quick' if quick else 'full'} run\n")
    print(f"Config: EE preset, N={cfg.num_pinches}, K={cfg.num_users}, {s['num_drops']} drops (seed {s['seed']}), "
          f"P_c={float(cfg.circuit_power_dbm):g} dBm, grid {grid} points/element, "
          f"{s['outer_iterations']} outer iterations, {s['coupling_steps']} coupling steps each, float32.\n")
    print(ee.report(results))
    print("### time per drop\n")
    print(timing_table(results))
    print(f"\nwall time {wall:.1f} s; wrote {json_path} and {png_path}")
    n_fail = sum(r["status"] != "PASS" for r in accept)
    print(f"\n### acceptance (informational): {len(accept) - n_fail}/{len(accept)} PASS\n")
    print(markdown_table(["check", "value", "status"],
                         [[r["name"], f"{r['value']:.6g}", r["status"]] for r in accept]))
    return {"config": config, "results": results, "acceptance": accept, "json": json_path, "png": png_path}


def main(argv=None) -> int:
    return common.standalone_main("benchmarks.energy", run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

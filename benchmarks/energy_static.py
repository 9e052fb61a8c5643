"""The EE static design held out against the fixed antenna: ``python -m benchmarks --only energy_static``.

The acceptance check of ``benchmarks/energy.py`` (``static_check_counts`` x
``static_check_seeds``) on its own, for a short run: on the EE preset
(``PassConfig.energy_efficiency()``, N = 8, K = 4, P_max = the preset's, the
Gauss-Seidel grid spacing <= lambda/10, ``energy.FULL``'s outer iterations and
coupling steps), the static design (EE, tunable coupling, default options:
multistart, the start and outer iteration chosen on the
``DesignOptions.validation_fraction`` of the fitting drops held back, the
fixed antenna kept unless beaten there by ``validation_margin`` paired
standard errors) is fitted on the first D drops of each fitting seed and
scored on ``held_out_drops`` drops of ``held_out_seed``, as is the fixed
antenna (:func:`jaxpass.experiments.ee.static_vs_fixed`). A row holds when the
held-out static EE is at least the fixed antenna's (relative tolerance 1e-5,
float32 rounding; informational, never an assert).

JSON (``<out>/energy_static-<device>.json``, schema_version 1): the common
envelope, ``records`` (one per seed and D: ``metrics`` ``held_out_ee``,
``fixed_antenna_ee``, ``ratio``, ``in_sample_ee``), ``results`` (the rows of
:func:`~jaxpass.experiments.ee.static_vs_fixed`), ``acceptance`` and ``wall_s``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks import common
from benchmarks.common import log, markdown_table
from benchmarks.energy import setup
from jaxpass.experiments import ee

NAME = "energy_static"


def run(quick: bool = False, out_dir: Path | None = None) -> dict:
    """Run the check, print its table, write the JSON."""
    s, out_dir, cfg, options, grid = setup(quick, out_dir)
    log(f"[energy_static] EE preset N={cfg.num_pinches}, K={cfg.num_users}, fitting drops "
        f"{list(s['static_check_counts'])} x seeds {list(s['static_check_seeds'])}, grid {grid} points per element")
    t0 = time.perf_counter()
    held = ee.drops(cfg, s["held_out_drops"], s["held_out_seed"])
    rows = ee.static_vs_fixed(cfg, s["static_check_counts"], s["static_check_seeds"], options, held_out_users=held)
    wall = time.perf_counter() - t0
    records = [{"id": f"static_vs_fixed/seed={r['seed']}/D={r['train_drops']}", "section": "static_vs_fixed",
                "impl": "static_ee_tunable", "params": {"seed": r["seed"], "D": r["train_drops"]},
                "metrics": {"held_out_ee": r["held_out"], "fixed_antenna_ee": r["fixed_antenna"],
                            "ratio": r["ratio"], "in_sample_ee": r["in_sample"]}} for r in rows]
    accept = [{"name": f"held-out static >= fixed antenna ({r['train_drops']} fitting drops, seed {r['seed']})",
               "value": r["ratio"], "status": "PASS" if r["holds"] else "FAIL"} for r in rows]
    config = dict(preset="energy_efficiency", dtype="float32", K=cfg.num_users, N=cfg.num_pinches,
                  grid_points=grid, settings=options.asdict(), outer_iterations=s["outer_iterations"],
                  coupling_steps=s["coupling_steps"], held_out_drops=s["held_out_drops"],
                  held_out_seed=s["held_out_seed"], static_check_counts=list(s["static_check_counts"]),
                  static_check_seeds=list(s["static_check_seeds"]))
    json_path = common.write_result(NAME, config=config, records=records,
                                    ratios={r["id"].replace("static_vs_fixed/", "static_over_fixed@"): r["metrics"]["ratio"]
                                            for r in records},
                                    out_dir=out_dir, quick=quick,
                                    extra={"results": rows, "acceptance": accept, "wall_s": wall})
    env = common.environment()
    print(f"## jaxpass EE static design vs fixed antenna, held out — {env['device']}, jax {env['jax_version']}, "
          f"{'quick' if quick else 'full'} run\n")
    print(ee.static_vs_fixed_table(rows))
    n_fail = sum(r["status"] != "PASS" for r in accept)
    print(f"\nwall time {wall:.1f} s; wrote {json_path}\n\n### acceptance (informational): "
          f"{len(accept) - n_fail}/{len(accept)} PASS\n")
    print(markdown_table(["check", "value", "status"], [[r["name"], f"{r['value']:.6g}", r["status"]] for r in accept]))
    return {"config": config, "results": rows, "acceptance": accept, "json": json_path}


def main(argv=None) -> int:
    return common.standalone_main("benchmarks.energy_static", run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

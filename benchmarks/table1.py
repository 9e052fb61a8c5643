"""JB Table I benchmark (optimisation rows): ``python -m benchmarks --only table1 [--quick]``.

Runs :func:`jaxpass.experiments.table1.run_table1` (K = N = 4, L in {8, 16},
P = 10 dBm, 64 fixed-seed drops; ``--quick``: L = 8, 4 drops, short runs) and
prints the table plus the issue's acceptance check on the gradient-tuning rows
at L = 8: mean sum rate >= 82 bps/Hz, every returned position feasible, under
2 s per drop (one batched compiled call over all drops, compilation reported
apart). The check is informational (PASS/FAIL lines, never an exception or a
non-zero exit); in ``--quick`` mode it runs on 4 drops and short runs only.

JSON (``<out>/table1-<device>.json``, schema_version 1): the common envelope,
``records`` (one per row and L: ``{"id": "L=<L>/<row>", "section": "L=<L>",
"impl": row, "params": {"L"}, "metrics": {"mean_sum_rate", "seconds_per_drop",
"compile_s"}}``), ``ratios`` (``<tune row>_over_uniform_wmmse@L=<L>``: mean sum-rate
ratios), ``tables`` (every row's summary incl. per-drop rates and the paper's
number), ``acceptance`` and ``wall_s``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks.common import log
from jaxpass.experiments import table1

NAME = "table1"


def _records(results: dict) -> list:
    records = []
    for L, rows in results["tables"].items():
        for r in rows:
            records.append({"id": f"L={L}/{r.row}", "section": f"L={L}", "impl": r.row, "params": {"L": int(L)},
                            "metrics": {"mean_sum_rate": float(np.mean(r.rates)),
                                        "seconds_per_drop": r.seconds_per_drop, "compile_s": r.compile_s}})
    return records


def _ratios(results: dict) -> dict:
    out = {}
    for L, rows in results["tables"].items():
        by = {r.row: float(np.mean(r.rates)) for r in rows}
        base = by.get("uniform_wmmse")
        if not base:
            continue
        for row, mean in by.items():
            if row.startswith("tune_"):
                out[f"{row}_over_uniform_wmmse@L={L}"] = mean / base
    return out


def run(quick: bool = False, out_dir: Path | None = None) -> dict:
    """Run the table, print it and the acceptance check, write the JSON."""
    settings = table1.quick_settings() if quick else table1.Settings()
    out_dir = Path(out_dir) if out_dir is not None else common.default_out_dir(quick)
    log(f"[table1] L in {list(settings.num_pinches)}, {settings.drops} drops, rows {list(settings.rows)}")
    results = table1.run_table1(settings)
    payload = table1.payload(results)
    config = {"K": 4, "N": 4, "L": list(settings.num_pinches), "power_dbm": settings.power_dbm,
              "drops": settings.drops, "seed": settings.seed, "dtype": "float32 (MM-PDD float64)"}
    path = common.write_result(NAME, config=config, records=_records(results), ratios=_ratios(results),
                               out_dir=out_dir, quick=quick,
                               extra={"tables": payload["tables"], "paper_only": payload["paper_only"],
                                      "settings": payload["settings"], "acceptance": results["acceptance"],
                                      "wall_s": results["wall_s"]})
    env = common.environment()
    print(f"## jaxpass JB Table I — {env['device']} ({env['cpu_model'] or env['device_kind']}), "
          f"jax {env['jax_version']}, {'quick' if quick else 'full'} run\n")
    print(table1.markdown(results))
    n_pass = sum(a["status"] == "PASS" for a in results["acceptance"])
    print(f"### acceptance (informational{', quick sizes' if quick else ''}): "
          f"{n_pass}/{len(results['acceptance'])} tuning rows PASS "
          f"(mean >= {table1.TARGET_MEAN:g} bps/Hz at K = 4, L = 8, P = 10 dBm, all feasible, "
          f"< {table1.TARGET_SECONDS_PER_DROP:g} s/drop batched, compile apart)\n")
    print(common.markdown_table(
        ["row", "mean [bps/Hz]", "all feasible", "s/drop", "status"],
        [[a["label"], f"{a['mean']:.2f}", str(a["all_feasible"]), f"{a['seconds_per_drop']:.3g}", a["status"]]
         for a in results["acceptance"]]))
    print(f"\nwall time {results['wall_s']:.1f} s; wrote {path}")
    return {"results": results, "json": path}


def main(argv=None) -> int:
    return common.standalone_main("benchmarks.table1", run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

"""JB Table I benchmark (optimisation rows): ``python -m benchmarks --only table1 [--quick]``.

Runs :func:`jaxpass.experiments.table1.run_table1` (K = N = 4, L in {8, 16},
P = 10 dBm, 64 fixed-seed drops; ``--quick``: L = 8, 4 drops, short runs) and
prints the table plus the issue's acceptance check on the gradient-tuning rows
at L = 8: mean sum rate >= 82 bps/Hz, every returned position feasible, under
2 s per drop (one batched compiled call over all drops, compilation reported
apart). The check is informational (PASS/FAIL lines, never an exception or a
non-zero exit); in ``--quick`` mode it runs on 4 drops and short runs only.

JSON (``<out>/table1-<device>.json``): the one table1 format of
:func:`jaxpass.experiments.table1.payload` (the same as ``jaxpass reproduce
table1``'s ``table1.json``) plus ``quick``: ``env``, ``settings``, ``tables``
(every row's summary incl. per-drop rates and the paper's number),
``ratios`` (``<tune row>_over_uniform_wmmse@L=<L>``), ``paper_only``,
``acceptance`` and ``wall_s``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks import common
from benchmarks.common import log
from jaxpass.experiments import table1
from jaxpass.experiments.io import write_json

NAME = "table1"


def run(quick: bool = False, out_dir: Path | None = None) -> dict:
    """Run the table, print it and the acceptance check, write the JSON."""
    settings = table1.quick_settings() if quick else table1.Settings()
    out_dir = Path(out_dir) if out_dir is not None else common.default_out_dir(quick)
    log(f"[table1] L in {list(settings.num_pinches)}, {settings.drops} drops, rows {list(settings.rows)}")
    results = table1.run_table1(settings)
    payload = table1.payload(results)
    path = write_json(common.result_path(out_dir, NAME), dict(payload, quick=quick))
    env = payload["env"]
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

"""Two-timescale benchmark (TT Figs. 3-4): ``python -m benchmarks --only two_timescale [--quick]``.

Runs :func:`jaxpass.experiments.two_timescale.run_two_timescale` (the
``jaxpass ssca`` experiment: held-out mean sum rate vs P for K = 4 and 6 on
the TT preset, SSCA with WMMSE and RZF short-term, digital MIMO, uniform
positions, the single-timescale bound, the ``sigma_u`` study, SSCA
convergence and the time of one iteration at N_s = 100), prints its tables and
writes ``<out>/two_timescale-<device>.json`` (the experiment's JSON plus
``quick``) and the PNG. Orderings are reported (``checks``), never asserted.

The "two-timescale (SSCA, KDL short-term)" row uses the short-term networks
that ``benchmarks/short_term.py`` saved in the same folder
(``short_term-K<K>-<device>.npz``; run ``--only short_term two_timescale``);
for a K without one the row is skipped with a note.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from benchmarks import common
from benchmarks.common import log
from jaxpass.experiments import two_timescale as tt
from jaxpass.experiments.io import write_json

NAME = "two_timescale"


def run(quick: bool = False, out_dir: Path | None = None) -> dict:
    """Run the experiment, print it, write the JSON and the figure."""
    settings = tt.quick_settings() if quick else tt.Settings()
    out_dir = Path(out_dir) if out_dir is not None else common.default_out_dir(quick)
    from benchmarks.short_term import npz_path

    nets = tuple((K, os.path.relpath(npz_path(out_dir, K))) for K in settings.users if npz_path(out_dir, K).is_file())
    settings = dataclasses.replace(settings, short_term_nets=nets)
    log(f"[two_timescale] K in {list(settings.users)}, P in {list(settings.powers_dbm)} dBm, {settings.blocks} blocks, "
        f"SSCA {settings.ssca.iterations} x {settings.ssca.slots_per_iteration} slots")
    results = tt.run_two_timescale(settings)
    payload = tt.payload(results)
    path = write_json(common.result_path(out_dir, NAME), dict(payload, quick=quick))
    figure = tt.plot(results, str(common.result_path(out_dir, NAME, "png")))
    print(tt.markdown(results))
    print(f"\nwall time {results['wall_s']:.1f} s; wrote {path} and {figure}")
    return {"results": results, "json": path}


def main(argv=None) -> int:
    return common.standalone_main("benchmarks.two_timescale", run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

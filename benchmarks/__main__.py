"""``python -m benchmarks [--quick] [--only NAME ...] [--out DIR]``: run the benchmark suite.

Each suite entry is a module with ``run(quick: bool, out_dir: Path | None)``
that prints markdown tables and writes ``<out>/<name>-<device>.json`` (plus
figures). Default output folder: ``benchmarks/results`` (``benchmarks/results/quick``
with ``--quick``, git-ignored, so quick runs never overwrite committed results).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

#: name -> module (imported lazily so ``--only`` skips the others' imports)
SUITE = {
    "energy": "benchmarks.energy",
    "energy_static": "benchmarks.energy_static",
    "learn_aligned": "benchmarks.learn_aligned",
    "learn_table1": "benchmarks.learn_table1",
    "mm_pdd": "benchmarks.mm_pdd",
    "power_min": "benchmarks.power_min",
    "short_term": "benchmarks.short_term",
    "size_scaling": "benchmarks.size_scaling",
    "short_term_convergence": "benchmarks.short_term_convergence",
    "table1": "benchmarks.table1",
    "throughput": "benchmarks.throughput",
    "two_timescale": "benchmarks.two_timescale",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Run the jaxpass benchmark suite.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test, < 60 s)")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(SUITE),
                        help=f"run only these benchmarks (choices: {', '.join(sorted(SUITE))})")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default benchmarks/results, or benchmarks/results/quick with --quick)")
    args = parser.parse_args(argv)
    names = args.only or list(SUITE)
    for name in names:
        t0 = time.perf_counter()
        print(f"\n# benchmark: {name}\n", flush=True)
        importlib.import_module(SUITE[name]).run(quick=args.quick, out_dir=args.out)
        print(f"\n({name}: {time.perf_counter() - t0:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

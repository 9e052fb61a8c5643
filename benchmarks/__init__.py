"""Benchmark suite for jaxpass (``python -m benchmarks``; see ``benchmarks/README.md``).

One module per suite entry (``SUITE`` in ``benchmarks/__main__.py``), each with
``run(quick, out_dir)`` that prints markdown tables and writes
``<out>/<name>-<device>.json`` (plus a figure):

* ``throughput``: channel, gradient and WMMSE kernels against reference
  implementations and the machine's ceiling;
* ``table1``: JB Table I optimisation rows (position tuning, MM-PDD, MIMO baselines);
* ``mm_pdd``: MM-PDD (JB Alg. 1, float64) and the MIMO baselines, convergence;
* ``power_min``: PB power minimisation under LoS blockage against exhaustive
  search and the 'Center'/'Random' baselines, with sweeps;
* ``energy``: EE static and dynamic designs, baselines and sweeps.

``benchmarks/common.py`` holds the shared timing protocol (compile first, then
timed calls with ``jax.block_until_ready``), device naming and JSON output.
Numbers are measurements, never assertions.
"""

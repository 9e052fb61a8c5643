"""Shared helpers for the benchmark suite: device naming, timing, JSON output, tables.

Timing protocol:

1. compile first: ``jax.jit(fn).lower(*args).compile(compiler_options)`` is
   timed on its own (``compile_s`` = trace + lower + XLA compile).
   ``compiler_options`` is per case and ``None`` (plain ``jax.jit``) unless a
   benchmark compares an explicit per-compilation XLA option (the throughput
   benchmark's ``jp_jit`` rows);
2. one untimed warm-up call of the compiled executable (``warmup_s`` is
   recorded, never used as a throughput);
3. timed calls, each followed by ``jax.block_until_ready``, until at least
   ``repeats`` calls *and* ``min_time`` seconds have been spent (stopping early
   after ``max_time`` seconds once 3 calls are in, so slow cases stay bounded);
4. report the median and the spread (min, max, and the interquartile range).

Numbers are measurements, never assertions: nothing here fails on a slow run.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxpass.experiments import io

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
QUICK_RESULTS_DIR = RESULTS_DIR / "quick"  # git-ignored: quick runs never clobber full results


# ------------------------------------------------------------------ device, environment, files
# one implementation, shared with ``jaxpass.experiments`` (re-exported for the benchmark modules)
device_name = io.device_name
environment = io.environment
write_json_atomic = io.write_json


# ------------------------------------------------------------------ timing
@dataclass
class Timing:
    """Wall-clock statistics of one benchmarked call [s].

    ``compile_s`` is ``None`` for non-JAX (NumPy) functions; ``compiled`` is the
    ``jax.stages.Compiled`` executable (for ``memory_analysis``) or ``None``;
    ``compiler_options`` are the XLA options it was compiled with (``None`` =
    plain ``jax.jit``, or not compiled at all).
    """

    median_s: float
    min_s: float
    max_s: float
    q1_s: float
    q3_s: float
    repeats: int
    total_s: float
    warmup_s: float
    compile_s: float | None = None
    compiled: Any = field(default=None, repr=False)
    output: Any = field(default=None, repr=False)
    compiler_options: dict | None = None

    def per_second(self, count: float) -> float:
        """``count`` items per median call, per second."""
        return count / self.median_s

    def metrics(self) -> dict[str, float]:
        """Positive timing numbers for the JSON record (``compile_s`` only when compiled)."""
        out = {"median_s": self.median_s, "min_s": self.min_s, "max_s": self.max_s,
               "q1_s": self.q1_s, "q3_s": self.q3_s}
        if self.compile_s is not None:
            out["compile_s"] = self.compile_s
        return out


def _stats(samples: Sequence[float], **extra) -> Timing:
    a = np.asarray(samples, np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return Timing(median_s=float(med), min_s=float(a.min()), max_s=float(a.max()), q1_s=float(q1),
                  q3_s=float(q3), repeats=int(a.size), total_s=float(a.sum()), **extra)


def _sample_loop(call: Callable[[], Any], repeats: int, min_time: float, max_time: float,
                 max_repeats: int) -> list[float]:
    samples: list[float] = []
    total = 0.0
    while len(samples) < max_repeats:
        if len(samples) >= repeats and total >= min_time:
            break
        if len(samples) >= 3 and total >= max_time:
            break
        t0 = time.perf_counter()
        call()
        dt = time.perf_counter() - t0
        samples.append(dt)
        total += dt
    return samples


def time_fn(fn: Callable, *args, repeats: int = 5, min_time: float = 0.5, max_time: float = 30.0,
            max_repeats: int = 100_000, jit: bool = True, compiler_options: dict | None = None) -> Timing:
    """Compile ``fn`` on ``args``, then time repeated calls.

    Args:
      fn: a JAX-traceable function (``jit=True``; it is wrapped in ``jax.jit``,
        pass an already-jitted one just the same) or any Python callable
        (``jit=False``, e.g. a NumPy loop; no compile step).
      *args: the call's arguments (already on device; generated outside the timing).
      repeats: minimum number of timed calls.
      min_time: minimum total timed seconds (more calls are made until reached).
      max_time: once 3 calls are in, stop after this many timed seconds even if
        ``repeats`` is not reached (keeps very slow references bounded).
      max_repeats: hard cap on timed calls.
      jit: compile with ``jax.jit`` first and report ``compile_s``.
      compiler_options: XLA options for this compilation only
        (``Lowered.compile(compiler_options)``, the same executable as
        ``jax.jit(fn, compiler_options=...)``); ``None`` = plain ``jax.jit``.

    Returns:
      A ``Timing``; ``.output`` holds the warm-up call's result (for accuracy checks).
    """
    compile_s = None
    compiled = None
    if jit:
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile(compiler_options)
        compile_s = time.perf_counter() - t0
        target = compiled
    else:
        target = fn

    t0 = time.perf_counter()
    output = jax.block_until_ready(target(*args))
    warmup_s = time.perf_counter() - t0

    samples = _sample_loop(lambda: jax.block_until_ready(target(*args)), repeats, min_time, max_time,
                           max_repeats)
    return _stats(samples, warmup_s=warmup_s, compile_s=compile_s, compiled=compiled, output=output,
                  compiler_options=dict(compiler_options) if (jit and compiler_options) else None)


@dataclass
class Case:
    """One contender of an interleaved comparison: ``fn(*args)``, compiled with ``jax.jit`` if ``jit``.

    ``compiler_options`` go to ``Lowered.compile`` for this case only
    (``None``, the default, = plain ``jax.jit``).
    """

    fn: Callable
    args: tuple = ()
    jit: bool = True
    compiler_options: dict | None = None


def time_interleaved(cases: dict[str, Case], *, repeats: int = 5, min_time: float = 0.5,
                     max_time: float = 30.0, slot: float = 0.05, max_repeats: int = 100_000) -> dict[str, Timing]:
    """Time several functions side by side, alternating between them.

    Each case is compiled and warmed up first (as in ``time_fn``). Then rounds
    run every unfinished case for about ``slot`` seconds (at least one call;
    every call is timed on its own and blocked on), so slow drifts of the
    machine (frequency, a busy neighbour, the second core being taken) hit all
    contenders alike and their *ratio* stays meaningful. A case is finished
    once it has ``repeats`` calls and ``min_time`` seconds, or 3 calls and
    ``max_time`` seconds.

    Returns:
      ``{name: Timing}`` in the order given.
    """
    prepared = {}
    for name, case in cases.items():
        compile_s = compiled = None
        target = case.fn
        if case.jit:
            t0 = time.perf_counter()
            compiled = jax.jit(case.fn).lower(*case.args).compile(case.compiler_options)
            compile_s = time.perf_counter() - t0
            target = compiled
        t0 = time.perf_counter()
        output = jax.block_until_ready(target(*case.args))
        warmup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        jax.block_until_ready(target(*case.args))  # per-call estimate for the slot size
        estimate = time.perf_counter() - t0
        prepared[name] = dict(target=target, args=case.args, compile_s=compile_s, compiled=compiled,
                              output=output, warmup_s=warmup_s,
                              compiler_options=(dict(case.compiler_options)
                                                if (case.jit and case.compiler_options) else None),
                              per_slot=max(1, int(slot / max(estimate, 1e-9))), samples=[])

    def finished(p):
        n, total = len(p["samples"]), sum(p["samples"])
        return (n >= repeats and total >= min_time) or (n >= 3 and total >= max_time) or n >= max_repeats

    while not all(finished(p) for p in prepared.values()):
        for p in prepared.values():
            if finished(p):
                continue
            target, args, samples = p["target"], p["args"], p["samples"]
            for _ in range(p["per_slot"]):
                t0 = time.perf_counter()
                jax.block_until_ready(target(*args))
                samples.append(time.perf_counter() - t0)
    return {name: _stats(p["samples"], warmup_s=p["warmup_s"], compile_s=p["compile_s"], compiled=p["compiled"],
                         output=p["output"], compiler_options=p["compiler_options"])
            for name, p in prepared.items()}


def memory_per_item(compiled, count: int) -> dict[str, float] | None:
    """Bytes per item (e.g. per drop) from ``compiled.memory_analysis()``, or ``None``.

    ``peak_bytes`` is the executable's live set as XLA plans it:
    ``arguments + outputs + temporaries - aliased``. Backends that do not
    report (``memory_analysis()`` is ``None`` or raises) give ``None``.
    """
    if compiled is None:
        return None
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - optional backend feature
        return None
    if stats is None:
        return None
    fields = {name: getattr(stats, f"{name}_size_in_bytes", None)
              for name in ("argument", "output", "temp", "alias")}
    if any(v is None for v in fields.values()):
        return None
    peak = fields["argument"] + fields["output"] + fields["temp"] - fields["alias"]
    return {
        "argument_bytes_per_drop": fields["argument"] / count,
        "output_bytes_per_drop": fields["output"] / count,
        "temp_bytes_per_drop": fields["temp"] / count,
        "peak_bytes_per_drop": peak / count,
    }


def nominal_peak_flops(cpuinfo: str | None = None, cores: int | None = None) -> dict:
    """Nominal float32 peak of this CPU from its model: ``cores x SIMD lanes x 2 (FMA) x FMA units x clock``.

    Read from ``/proc/cpuinfo`` (or the ``cpuinfo`` text given): SIMD lanes
    from the widest float32 vector extension in ``flags`` (``avx512f``: 16,
    ``avx``/``avx2``: 8, else 4); a fused multiply-add (``fma`` flag) counts 2
    FLOPs; 2 FMA units per core (AMD Zen 2-4 and Intel server cores since
    Haswell issue two vector FMAs per cycle: an assumption, named in the
    result); the clock from ``cpu MHz`` (the current one; turbo can exceed
    it). ``cores`` defaults to the CPUs this process may run on. Returns the
    parts and ``flops_per_s``, or ``flops_per_s = None`` when the model is not readable.
    """
    import os
    import re

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    flags = set((re.search(r"^flags\s*:(.*)$", cpuinfo, re.M) or [None, ""])[1].split())
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    lanes = 16 if "avx512f" in flags else 8 if flags & {"avx", "avx2"} else 4
    fma = 2 if "fma" in flags else 1
    units = 2
    clock = float(mhz.group(1)) * 1e6 if mhz else None
    return {"model": model.group(1).strip() if model else None, "cores": cores, "simd_f32_lanes": lanes,
            "flops_per_fma": fma, "fma_units_assumed": units, "clock_hz": clock,
            "flops_per_s": None if clock is None else cores * lanes * fma * units * clock}


# ------------------------------------------------------------------ output
def result_path(out_dir: Path, name: str, suffix: str = "json", device: str | None = None) -> Path:
    """``<out_dir>/<name>-<device>.<suffix>``."""
    return Path(out_dir) / f"{name}-{device or device_name()}.{suffix}"


def default_out_dir(quick: bool) -> Path:
    """``benchmarks/results`` for full runs, ``benchmarks/results/quick`` for ``--quick``."""
    return QUICK_RESULTS_DIR if quick else RESULTS_DIR


def write_result(name: str, *, config: dict, records: list, ratios: dict, out_dir: Path,
                 quick: bool, extra: dict | None = None) -> Path:
    """Write ``<out_dir>/<name>-<device>.json`` with the common envelope (schema 1)."""
    payload = {
        "benchmark": name,
        "schema_version": 1,
        "quick": quick,
        "env": environment(),
        "config": config,
        "records": records,
        "ratios": ratios,
    }
    if extra:
        payload.update(extra)
    return Path(write_json_atomic(result_path(out_dir, name), payload))


# ------------------------------------------------------------------ printing
def fmt_num(x, digits: int = 3) -> str:
    """Engineering-style short number: ``1.23e+06 -> 1.23 M``."""
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    for scale, unit in ((1e12, " T"), (1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g}{unit}"
    return f"{x:.{digits}g}"


def fmt_time(seconds) -> str:
    """Seconds with a sensible unit (``s``, ``ms``, ``us``)."""
    if seconds is None:
        return "n/a"
    s = float(seconds)
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def fmt_ratio(r) -> str:
    return "n/a" if r is None else f"{float(r):.3g}x"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (cells already formatted as strings)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def log(msg: str) -> None:
    """Progress line on stderr (stdout carries the tables)."""
    print(msg, file=sys.stderr, flush=True)


def standalone_main(module: str, run: Callable[..., Any], doc: str | None, argv=None) -> int:
    """``python -m benchmarks.<module> [--quick] [--out DIR]``: one benchmark without the suite driver."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=(doc or module).splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default benchmarks/results, or benchmarks/results/quick with --quick)")
    args = parser.parse_args(argv)
    run(quick=args.quick, out_dir=args.out)
    return 0

"""PB experiments (power minimisation under LoS blockage, docs/model.md §6) and the ``jaxpass powermin`` command.

Experiments like the blockage paper's figures, on the ``power_min_blockage``
preset (D = 10 m, d = 3 m, 28 GHz, sigma^2 = -90 dBm, Friis eta):

- ``convergence`` (PB Fig. 2): Algorithm 1 (projected L-BFGS from 'Center', one
  start) per iteration, mean power over drops, for several K, next to the
  exhaustive optimum (N = 2) and the multi-start result;
- ``blockage`` (Fig. 3): power vs blockage rate beta_b for proposed
  (multi-start L-BFGS), 'Center', 'Random' and exhaustive search (N <= 2), with the
  fraction of drops where L-BFGS is within 1% of the exhaustive optimum;
- ``snr`` (Fig. 4): power vs SNR target for several N (N = 1: PGD, PB §III);
- ``layouts`` (Fig. 5): optimised vs exhaustive positions for users on one side
  and on the diagonal;
- ``correlation`` (PB Lemma 2): optimised power vs the link correlation rho;
- ``check_monte_carlo``: expected SNR by formula vs the Monte-Carlo mean over
  sampled (optionally correlated) blockage masks, at optimised positions.

Powers are the total ``sum_k ||w_k||^2`` [W]; tables show the mean over drops
in dBm (``10 log10(mean W) + 30``). The same user drops (common random numbers)
are used for every method and every point of a sweep. Each batched solver is
one ``jax.jit``-compiled ``vmap`` of a per-drop kernel of
:mod:`jaxpass.optimize.power_min` (``docs/execution_model.md``), compiled once
per shape and options (``cfg`` is a jit argument: changing beta_b or the SNR
does not recompile); compile time is reported apart from the time per drop.
Solver settings are the options classes (``LbfgsOptions``, ``PgdOptions``,
``ExhaustiveOptions``); the CLI builds its L-BFGS flags from them.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from jaxpass import units
from jaxpass.blockage import monte_carlo_snr
from jaxpass.config import PassConfig
from jaxpass.experiments import memory
from jaxpass.experiments.cli_args import (
    UserError,
    add_num_users,
    add_options,
    add_parallel_options,
    mesh_from_args,
    num_users_from_args,
    options_from_args,
    positive_int,
)
from jaxpass.geometry import sample_users
from jaxpass.optimize import power_min as pm
from jaxpass.runtime import progress
from jaxpass.runtime.io import environment, write_json, write_text, writes_result_set

EXPERIMENTS = ("convergence", "blockage", "snr", "layouts", "correlation")
LBFGS_FLAGS = ("starts", "iterations", "memory")


@dataclass(frozen=True)
class Settings:
    """Sizes of a run (``FULL`` for the benchmark, ``QUICK`` for smoke tests).

    Solver settings are the solvers' options objects (library defaults unless replaced).
    """

    drops: int = 200
    seed: int = 0
    snr_db: float = 10.0
    lbfgs: pm.LbfgsOptions = pm.LbfgsOptions()
    pgd: pm.PgdOptions = pm.PgdOptions()
    exhaustive: pm.ExhaustiveOptions = pm.ExhaustiveOptions()
    rates: tuple = (0.05, 0.1, 0.2, 0.3)
    snr_grid_db: tuple = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)
    k_values: tuple = (2, 4, 6)
    n_values: tuple = (1, 2, 4)
    correlations: tuple = (0.0, 0.2, 0.4, 0.6)
    layout_users: int = 6
    exhaustive_max_n: int = 2


FULL = Settings()
QUICK = Settings(drops=8, exhaustive=pm.ExhaustiveOptions(grid=61), pgd=pm.PgdOptions(iterations=20),
                 snr_grid_db=(0.0, 10.0, 20.0, 30.0), k_values=(2, 4), n_values=(1, 2),
                 correlations=(0.0, 0.4), layout_users=4)


def log(msg: str):
    progress.log(f"[powermin] {msg}")  # stderr, silenced by --quiet


def base_config(**overrides) -> PassConfig:
    """The PB preset (docs/model.md §6) with overrides."""
    return PassConfig.power_min_blockage(**overrides)


# ------------------------------------------------------------ batched solvers
# vmaps of the per-drop kernels; ``cfg`` is an argument of the compiled call (traced).
def _proposed(cfg, users, keys, snr, correlation, *, lbfgs, pgd):
    if cfg.num_waveguides == 1:  # PB §III: the convex single-pinch case, PGD from 'Center'
        return jax.vmap(lambda u: pm.pgd_drop(cfg, u, snr, pgd, correlation=correlation))(users)
    return jax.vmap(lambda k, u: pm.projected_lbfgs_drop(k, cfg, u, snr, lbfgs, correlation=correlation))(keys, users)


def _algorithm1(cfg, users, snr, correlation, *, lbfgs):
    """PB Algorithm 1 as in the paper: one start at 'Center'."""
    one = lbfgs.replace(starts=1)
    return jax.vmap(lambda u: pm.projected_lbfgs_drop(None, cfg, u, snr, one, correlation=correlation))(users)


def _exhaustive(cfg, users, snr, correlation, *, exhaustive):
    return jax.vmap(lambda u: pm.exhaustive_search_drop(cfg, u, snr, exhaustive, correlation=correlation))(users)


def _center(cfg, users, snr, correlation):
    return jax.vmap(lambda u: pm.evaluate_positions(cfg, pm.center_positions(cfg, u.dtype), u, snr,
                                                    correlation))(users)


def _random(cfg, users, keys, snr, correlation):
    return jax.vmap(lambda u, k: pm.evaluate_positions(cfg, pm.random_positions(k, cfg, u.dtype), u, snr,
                                                       correlation))(users, keys)


_SOLVERS = {"proposed": _proposed, "algorithm1": _algorithm1, "exhaustive": _exhaustive, "center": _center,
            "random": _random}


@dataclass
class Timed:
    """A batched result with its wall times [s]."""

    result: pm.PowerMinResult
    run_s: float
    compile_s: float
    drops: int

    @property
    def ms_per_drop(self) -> float:
        return 1e3 * self.run_s / self.drops


@dataclass
class Runner:
    """Compiles each batched solver once per (solver, static sizes, argument structure) and times calls.

    ``Timed.compile_s`` is the time of that one compilation (trace + lower + XLA), also on cache hits.
    With ``mesh`` (:func:`jaxpass.parallel.drops_mesh`), the arguments with a leading drop axis are padded
    and sharded over its devices, the rest replicated (same drops and keys, same results).
    """

    settings: Settings
    cache: dict = field(default_factory=dict)
    mesh: object = None

    def statics(self, name):
        s = self.settings
        return {"proposed": dict(lbfgs=s.lbfgs, pgd=s.pgd), "algorithm1": dict(lbfgs=s.lbfgs),
                "exhaustive": dict(exhaustive=s.exhaustive)}.get(name, {})

    def __call__(self, name, cfg, *args, correlation=None, repeats: int = 1) -> Timed:
        statics = self.statics(name)
        fn = _SOLVERS[name]
        drops, pad = int(np.shape(args[0])[0]), 0
        if self.mesh is not None:
            from jaxpass import parallel

            batched = [getattr(a, "ndim", 0) >= 1 for a in args]
            sharded, pad = parallel.shard_drops(self.mesh, *[a for a, b in zip(args, batched, strict=True) if b])
            it = iter(sharded)
            args = tuple(next(it) if b else parallel.replicate(self.mesh, a) for a, b in zip(args, batched, strict=True))
            cfg, correlation = parallel.replicate(self.mesh, (cfg, correlation))
        dyn = (cfg, *args, correlation)
        key = (name, tuple(sorted(statics.items())), jax.tree.structure(dyn),
               tuple((np.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(dyn)))
        if key not in self.cache:
            t0 = time.perf_counter()
            compiled = jax.jit(lambda *a: fn(*a, **statics)).lower(*dyn).compile()
            self.cache[key] = (compiled, time.perf_counter() - t0)
        compiled, compile_s = self.cache[key]
        best = np.inf
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            out = jax.block_until_ready(compiled(*dyn))
            best = min(best, time.perf_counter() - t0)
        if self.mesh is not None:
            out = parallel.gather(parallel.unpad(out, pad))
        return Timed(jax.device_get(out), best, compile_s, drops)


def _drops(cfg: PassConfig, settings: Settings, seed_offset: int = 0):
    """Users ``(B, K, 2)`` plus keys for the random starts and the 'Random' baseline."""
    base = jax.random.key(settings.seed + seed_offset)
    k_users, k_starts, k_random = jax.random.split(base, 3)
    users = sample_users(k_users, cfg, (settings.drops,))
    return users, jax.random.split(k_starts, settings.drops), jax.random.split(k_random, settings.drops)


def _snr(db) -> float:
    return float(units.db_to_linear(db))


def _mean_dbm(power) -> float:
    return float(units.watt_to_dbm(np.mean(np.asarray(power, np.float64))))


def _summary(t: Timed) -> dict:
    p = np.asarray(t.result.power, np.float64)
    return {"mean_w": float(p.mean()), "mean_dbm": _mean_dbm(p), "median_dbm": float(units.watt_to_dbm(np.median(p))),
            "ms_per_drop": t.ms_per_drop, "compile_s": t.compile_s}


def _gap(proposed: Timed, exhaustive: Timed) -> dict:
    rel = np.asarray(proposed.result.power, np.float64) / np.asarray(exhaustive.result.power, np.float64) - 1.0
    return {"within_1pct": float(np.mean(rel <= 0.01)), "median_rel_gap": float(np.median(rel)),
            "max_rel_gap": float(rel.max()), "min_rel_gap": float(rel.min())}


# ---------------------------------------------------------------- experiments
def run_convergence(cfg: PassConfig, settings: Settings, runner: Runner) -> dict:
    """PB Fig. 2: mean power per Algorithm-1 iteration (from 'Center') for each K; exhaustive reference."""
    out = {"snr_db": settings.snr_db, "cases": []}
    snr = _snr(settings.snr_db)
    for K in settings.k_values:
        c = cfg.replace(num_users=K)
        users, keys, _ = _drops(c, settings, seed_offset=K)
        alg1 = runner("algorithm1", c, users, snr)
        multi = runner("proposed", c, users, keys, snr)
        case = {"K": K, "N": c.num_waveguides,
                "history_mean_dbm": [_mean_dbm(h) for h in np.asarray(alg1.result.history).T],
                "algorithm1": _summary(alg1), "proposed": _summary(multi)}
        if c.num_waveguides <= settings.exhaustive_max_n:
            ex = runner("exhaustive", c, users, snr)
            case["exhaustive"] = _summary(ex)
            case["algorithm1_vs_exhaustive"] = _gap(alg1, ex)
            case["proposed_vs_exhaustive"] = _gap(multi, ex)
        out["cases"].append(case)
        log(f"convergence K={K}: Alg. 1 {case['history_mean_dbm'][0]:.2f} -> {case['history_mean_dbm'][-1]:.2f} dBm"
            + (f", exhaustive {case['exhaustive']['mean_dbm']:.2f} dBm" if "exhaustive" in case else ""))
    return out


def run_blockage(cfg: PassConfig, settings: Settings, runner: Runner) -> dict:
    """PB Fig. 3: power vs blockage rate for proposed, Center, Random (and exhaustive for small N)."""
    users, keys, rkeys = _drops(cfg, settings)
    snr = _snr(settings.snr_db)
    rows = []
    for rate in settings.rates:
        c = cfg.replace(blockage_rate=float(rate))
        res = {"proposed": runner("proposed", c, users, keys, snr), "center": runner("center", c, users, snr),
               "random": runner("random", c, users, rkeys, snr)}
        if c.num_waveguides <= settings.exhaustive_max_n:
            res["exhaustive"] = runner("exhaustive", c, users, snr)
        row = {"blockage_rate": float(rate), **{k: _summary(v) for k, v in res.items()}}
        if "exhaustive" in res:
            row["proposed_vs_exhaustive"] = _gap(res["proposed"], res["exhaustive"])
        rows.append(row)
        log(f"blockage beta_b={rate:g}: " + ", ".join(f"{k} {row[k]['mean_dbm']:.2f}" for k in res) + " dBm")
    return {"snr_db": settings.snr_db, "K": cfg.num_users, "N": cfg.num_waveguides, "rows": rows}


def run_snr(cfg: PassConfig, settings: Settings, runner: Runner) -> dict:
    """PB Fig. 4: power vs SNR target for each N (N = 1 solved by PGD)."""
    out = {"blockage_rate": float(cfg.blockage_rate), "K": cfg.num_users, "series": []}
    for N in settings.n_values:
        c = cfg.replace(num_waveguides=N)
        users, keys, rkeys = _drops(c, settings)
        rows = []
        for db in settings.snr_grid_db:
            snr = _snr(db)
            rows.append({"snr_db": float(db),
                         "proposed": _summary(runner("proposed", c, users, keys, snr)),
                         "center": _summary(runner("center", c, users, snr)),
                         "random": _summary(runner("random", c, users, rkeys, snr))})
        out["series"].append({"N": N, "solver": "pgd" if N == 1 else "projected_lbfgs", "rows": rows})
        log(f"snr N={N}: proposed " + ", ".join(f"{r['proposed']['mean_dbm']:.1f}" for r in rows) + " dBm")
    return out


def layout_users(kind: str, cfg: PassConfig, key):
    """PB Fig. 5 user layouts: ``"left"`` (x in [0, 0.3 D]) or ``"diagonal"`` (x ~ y along the diagonal)."""
    K, D = cfg.num_users, float(cfg.length_x)
    k1, k2 = jax.random.split(key)
    if kind == "left":
        return jnp.stack([jax.random.uniform(k1, (K,)) * 0.3 * D, jax.random.uniform(k2, (K,)) * D], axis=-1)
    if kind == "diagonal":
        t = jax.random.uniform(k1, (K,)) * D
        return jnp.clip(t[:, None] + 0.3 * jax.random.normal(k2, (K, 2)), 0.0, D)
    raise ValueError(f"layout kind must be 'left' or 'diagonal', got {kind!r}")


def run_layouts(cfg: PassConfig, settings: Settings, runner: Runner) -> dict:
    """PB Fig. 5: optimised vs exhaustive positions for two user layouts (one drop each)."""
    c = cfg.replace(num_users=settings.layout_users)
    snr = _snr(settings.snr_db)
    out = {"K": c.num_users, "N": c.num_waveguides, "cases": []}
    for i, kind in enumerate(("left", "diagonal")):
        users = layout_users(kind, c, jax.random.key(settings.seed + 100 + i))[None]
        keys = jax.random.split(jax.random.key(settings.seed + 200 + i), 1)
        prop = runner("proposed", c, users, keys, snr)
        case = {"kind": kind, "users": np.asarray(users[0]).tolist(),
                "proposed_x": np.asarray(prop.result.positions[0, :, 0]).tolist(),
                "proposed_dbm": _mean_dbm(prop.result.power)}
        if c.num_waveguides <= settings.exhaustive_max_n:
            ex = runner("exhaustive", c, users, snr)
            case["exhaustive_x"] = np.asarray(ex.result.positions[0, :, 0]).tolist()
            case["exhaustive_dbm"] = _mean_dbm(ex.result.power)
        out["cases"].append(case)
        log(f"layout {kind}: proposed x = {np.round(case['proposed_x'], 2).tolist()}"
            + (f", exhaustive x = {np.round(case['exhaustive_x'], 2).tolist()}" if "exhaustive_x" in case else ""))
    return out


def run_correlation(cfg: PassConfig, settings: Settings, runner: Runner) -> dict:
    """PB Lemma 2: optimised (and 'Center') power vs an equal link correlation rho >= 0."""
    users, keys, _ = _drops(cfg, settings)
    snr = _snr(settings.snr_db)
    rows = []
    for rho in settings.correlations:
        corr = jnp.asarray(float(rho), users.dtype)
        rows.append({"rho": float(rho),
                     "proposed": _summary(runner("proposed", cfg, users, keys, snr, correlation=corr)),
                     "center": _summary(runner("center", cfg, users, snr, correlation=corr))})
    log("correlation: proposed " + ", ".join(f"rho={r['rho']:g}: {r['proposed']['mean_dbm']:.2f}" for r in rows) + " dBm")
    return {"snr_db": settings.snr_db, "blockage_rate": float(cfg.blockage_rate), "rows": rows}


RUNNERS = {"convergence": run_convergence, "blockage": run_blockage, "snr": run_snr, "layouts": run_layouts,
           "correlation": run_correlation}


def run_experiments(cfg: PassConfig, settings: Settings, only=EXPERIMENTS, runner: Runner | None = None) -> dict:
    """Run the named experiments; returns a JSON-ready dict (plus ``wall_s``)."""
    runner = runner or Runner(settings)
    t0 = time.perf_counter()
    results = {"settings": dataclasses.asdict(settings),
               "config": {"K": cfg.num_users, "N": cfg.num_waveguides, "D_m": float(cfg.length_x),
                          "height_m": float(cfg.height), "carrier_hz": float(cfg.carrier_freq),
                          "noise_dbm": float(cfg.noise_dbm), "blockage_rate": float(cfg.blockage_rate)}}
    for name in only:
        results[name] = RUNNERS[name](cfg, settings, runner)
    results["wall_s"] = time.perf_counter() - t0
    return results


# ---------------------------------------------------------------- Monte Carlo
def check_monte_carlo(cfg: PassConfig, settings: Settings, *, samples: int = 20_000, correlation=None,
                      runner: Runner | None = None) -> dict:
    """Expected SNR by formula vs the Monte-Carlo mean, at optimised positions with the closed-form beamformers.

    Per drop and user: ``z = (MC mean - formula) / standard error``. With a correct
    formula, ``|z| < 3`` for ~99.7% of them. ``all_finite`` is False (and those
    ``z`` are NaN, so they never count as ``|z| < 3``) where the formula, the
    mean or the standard error is not finite; the CLI then reports FAIL, exit 1.
    """
    runner = runner or Runner(settings)
    users, keys, _ = _drops(cfg, settings)
    snr = _snr(settings.snr_db)
    corr = None if correlation is None else jnp.asarray(float(correlation), users.dtype)
    prop = runner("proposed", cfg, users, keys, snr, correlation=corr)
    X = jnp.asarray(prop.result.positions)
    W = jnp.asarray(prop.result.beamformer)
    if corr is not None:  # realisability of rho for these drops, checked on concrete values
        from jaxpass.blockage import sample_los
        from jaxpass.channel import los_probability

        for b in range(users.shape[0]):
            try:
                sample_los(jax.random.key(0), los_probability(cfg, X[b], users[b])[..., 0], float(correlation), 1)
            except ValueError as err:
                raise UserError(f"--correlation {correlation:g} on drop {b}: {err}") from None
    mc_keys = jax.random.split(jax.random.key(settings.seed + 7), users.shape[0])
    t0 = time.perf_counter()
    check = jax.jit(jax.vmap(lambda k, x, u, w: monte_carlo_snr(k, cfg, x, u, w, num_samples=samples, correlation=corr)))
    res = jax.block_until_ready(check(mc_keys, X, users, W))
    wall = time.perf_counter() - t0
    z = np.asarray(res.z_scores())
    finite = np.isfinite(np.asarray(res.expected)) & np.isfinite(np.asarray(res.mean)) \
        & np.isfinite(np.asarray(res.std_err)) & np.isfinite(z)
    z = np.where(finite, z, np.nan)  # never a |z| < 3 "pass" from an infinite standard error
    return {"all_finite": bool(finite.all()), "nonfinite_pairs": int(finite.size - finite.sum()),
            "samples": samples, "correlation": correlation, "drops": int(users.shape[0]), "snr_db": settings.snr_db,
            "formula": np.asarray(res.expected).tolist(), "mc_mean": np.asarray(res.mean).tolist(),
            "mc_std_err": np.asarray(res.std_err).tolist(), "z": z.tolist(),
            "fraction_abs_z_below_3": float(np.mean(np.abs(z) < 3)), "max_abs_z": float(np.nanmax(np.abs(z)))
            if finite.any() else float("nan"),
            "target_linear": snr, "wall_s": wall}


# ------------------------------------------------------------------- reports
def tables(results: dict) -> str:
    """Markdown tables of whatever experiments ``results`` holds."""
    out = []
    if "blockage" in results:
        b = results["blockage"]
        methods = [m for m in ("proposed", "center", "random", "exhaustive") if m in b["rows"][0]]
        out.append(f"Power vs blockage rate (N = {b['N']}, K = {b['K']}, Gamma = {b['snr_db']:g} dB), "
                   "mean over drops [dBm]; L-BFGS within 1% of exhaustive:\n")
        head = "| beta_b [1/m] | " + " | ".join(methods) + (" | within 1% | ms/drop (proposed) |" if "exhaustive" in methods
                                                           else " | ms/drop (proposed) |")
        out += [head, "|" + "---|" * (len(methods) + 2 + ("exhaustive" in methods))]
        for r in b["rows"]:
            cells = [f"{r[m]['mean_dbm']:.2f}" for m in methods]
            if "exhaustive" in methods:
                cells.append(f"{100 * r['proposed_vs_exhaustive']['within_1pct']:.0f}%")
            cells.append(f"{r['proposed']['ms_per_drop']:.3f}")
            out.append(f"| {r['blockage_rate']:g} | " + " | ".join(cells) + " |")
        out.append("")
    if "snr" in results:
        s = results["snr"]
        dbs = [r["snr_db"] for r in s["series"][0]["rows"]]
        out.append(f"Power vs SNR target (K = {s['K']}, beta_b = {s['blockage_rate']:g}), mean [dBm]:\n")
        out += ["| N | method | " + " | ".join(f"{d:g} dB" for d in dbs) + " |", "|---|---|" + "---|" * len(dbs)]
        for ser in s["series"]:
            for m in ("proposed", "center", "random"):
                label = f"{m} ({ser['solver']})" if m == "proposed" else m
                out.append(f"| {ser['N']} | {label} | " + " | ".join(f"{r[m]['mean_dbm']:.2f}" for r in ser["rows"]) + " |")
        out.append("")
    if "convergence" in results:
        c = results["convergence"]
        out.append(f"Convergence of Algorithm 1 from 'Center' (Gamma = {c['snr_db']:g} dB), mean power [dBm]:\n")
        out += ["| K | iter 0 | iter 1 | iter 2 | iter 5 | final | multi-start | exhaustive | Alg. 1 within 1% |",
                "|---|---|---|---|---|---|---|---|---|"]
        for case in c["cases"]:
            h = case["history_mean_dbm"]
            ex = case.get("exhaustive", {}).get("mean_dbm")
            w = case.get("algorithm1_vs_exhaustive", {}).get("within_1pct")
            out.append(f"| {case['K']} | {h[0]:.2f} | {h[min(1, len(h) - 1)]:.2f} | {h[min(2, len(h) - 1)]:.2f} | "
                       f"{h[min(5, len(h) - 1)]:.2f} | {h[-1]:.2f} | {case['proposed']['mean_dbm']:.2f} | "
                       + (f"{ex:.2f}" if ex is not None else "-") + " | "
                       + (f"{100 * w:.0f}%" if w is not None else "-") + " |")
        out.append("")
    if "correlation" in results:
        c = results["correlation"]
        out.append(f"Lemma 2: power vs link correlation rho (beta_b = {c['blockage_rate']:g}, Gamma = {c['snr_db']:g} dB) [dBm]:\n")
        out += ["| rho | proposed | center |", "|---|---|---|"]
        out += [f"| {r['rho']:g} | {r['proposed']['mean_dbm']:.2f} | {r['center']['mean_dbm']:.2f} |" for r in c["rows"]]
        out.append("")
    if "layouts" in results:
        out.append("Layouts (PB Fig. 5): pinch x positions [m]\n")
        out += ["| users | proposed x | exhaustive x | proposed [dBm] | exhaustive [dBm] |", "|---|---|---|---|---|"]
        for case in results["layouts"]["cases"]:
            ex = case.get("exhaustive_x")
            out.append(f"| {case['kind']} | {', '.join(f'{v:.2f}' for v in case['proposed_x'])} | "
                       + (", ".join(f"{v:.2f}" for v in ex) if ex else "-") + f" | {case['proposed_dbm']:.2f} | "
                       + (f"{case['exhaustive_dbm']:.2f}" if ex else "-") + " |")
        out.append("")
    return "\n".join(out)


def plot_results(results: dict, cfg: PassConfig, path) -> str:
    """One PNG with a panel per experiment present (convergence, blockage, SNR, correlation, layouts)."""
    from jaxpass.plotting import plot_layout, plt, save_figure

    panels = [n for n in ("convergence", "blockage", "snr", "correlation") if n in results]
    layouts = results.get("layouts", {}).get("cases", [])
    n = len(panels) + len(layouts)
    cols = min(3, max(n, 1))
    rows = -(-max(n, 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    axes = list(axes.ravel())
    styles = {"proposed": "o-", "center": "s--", "random": "^:", "exhaustive": "kx:"}
    for name in panels:
        ax = axes.pop(0)
        if name == "convergence":
            for case in results["convergence"]["cases"]:
                h = case["history_mean_dbm"]
                line, = ax.plot(range(len(h)), h, "o-", ms=3, label=f"Alg. 1, K={case['K']}")
                if "exhaustive" in case:
                    ax.axhline(case["exhaustive"]["mean_dbm"], color=line.get_color(), ls="--", lw=1,
                               label=f"exhaustive, K={case['K']}")
            ax.set(xlabel="iteration", ylabel="mean power [dBm]",
                   title=f"convergence (Gamma = {results['convergence']['snr_db']:g} dB)")
        elif name == "blockage":
            b = results["blockage"]
            rates = [r["blockage_rate"] for r in b["rows"]]
            for m in ("proposed", "center", "random", "exhaustive"):
                if m in b["rows"][0]:
                    ax.plot(rates, [r[m]["mean_dbm"] for r in b["rows"]], styles[m], label=m,
                            **({"lw": 1, "ms": 9} if m == "exhaustive" else {}))
            ax.set(xlabel="blockage rate beta_b [1/m]", ylabel="mean power [dBm]",
                   title=f"power vs blockage (N={b['N']}, K={b['K']})")
        elif name == "snr":
            s = results["snr"]
            for ser in s["series"]:
                dbs = [r["snr_db"] for r in ser["rows"]]
                line, = ax.plot(dbs, [r["proposed"]["mean_dbm"] for r in ser["rows"]], "o-", label=f"proposed N={ser['N']}")
                ax.plot(dbs, [r["center"]["mean_dbm"] for r in ser["rows"]], "s--", color=line.get_color(),
                        label=f"center N={ser['N']}", alpha=0.7)
                ax.plot(dbs, [r["random"]["mean_dbm"] for r in ser["rows"]], "^:", color=line.get_color(),
                        label=f"random N={ser['N']}", alpha=0.5)
            ax.set(xlabel="SNR target Gamma [dB]", ylabel="mean power [dBm]", title=f"power vs SNR (K={s['K']})")
        else:
            c = results["correlation"]
            rhos = [r["rho"] for r in c["rows"]]
            for m in ("proposed", "center"):
                ax.plot(rhos, [r[m]["mean_dbm"] for r in c["rows"]], styles[m], label=m)
            ax.set(xlabel="link correlation rho", ylabel="mean power [dBm]", title="Lemma 2: correlation lowers power")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    lay = results.get("layouts", {})
    for case in layouts:
        ax = axes.pop(0)
        c = cfg.replace(num_users=lay["K"], num_waveguides=lay["N"])
        X = np.asarray(case["proposed_x"])[:, None]
        plot_layout(c, X, np.asarray(case["users"]), ax=ax, title=f"users {case['kind']}: proposed (dots)"
                    + (" vs exhaustive (circles)" if "exhaustive_x" in case else ""))
        if "exhaustive_x" in case:
            ax.plot(case["exhaustive_x"], np.asarray(c.lane_y), "o", mfc="none", color="red", ms=12, mew=1.5,
                    label="exhaustive")
    for ax in axes:
        ax.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, path)


@writes_result_set("powermin")
def write_results(results: dict, cfg: PassConfig, out_dir, name: str = "powermin") -> dict:
    """Write ``<name>.json``, ``<name>.md`` and ``<name>.png`` atomically into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    payload = dict(results, env=environment())
    paths = {"json": write_json(os.path.join(out_dir, f"{name}.json"), payload),
             "markdown": write_text(os.path.join(out_dir, f"{name}.md"), tables(results) + "\n")}
    if any(k in results for k in RUNNERS):
        paths["figure"] = plot_results(results, cfg, os.path.join(out_dir, f"{name}.png"))
    return paths


# ----------------------------------------------------------------------- CLI
def add_command(subparsers):
    """``jaxpass powermin``: PB experiments (Figs. 2-5, Lemma 2) or the Monte-Carlo check."""
    p = subparsers.add_parser(
        "powermin",
        help="PB power minimisation under LoS blockage: experiments (Figs. 2-5) or a Monte-Carlo check",
        description="Minimise the transmit power under probabilistic LoS blockage (docs/model.md §6) on random drops of "
        "the power_min_blockage preset: projected L-BFGS (PB Alg. 1), PGD (N = 1), 'Center', 'Random' and "
        "exhaustive search; writes powermin.json, powermin.md and powermin.png. With --check-mc, compares the "
        "expected SNR formula with the Monte-Carlo mean over sampled blockage masks instead.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run, well under a minute)")
    p.add_argument("--only", nargs="+", choices=EXPERIMENTS, default=None, metavar="NAME",
                   help=f"experiments to run (default: all of {', '.join(EXPERIMENTS)})")
    p.add_argument("--drops", type=positive_int, default=None, help="user drops per point (default 200, quick 8)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default: %(default)s)")
    p.add_argument("--snr-db", type=float, default=10.0, help="SNR target Gamma [dB] (default: %(default)s)")
    p.add_argument("--blockage-rate", type=float, default=None, help="blockage rate beta_b [1/m] (default: preset 0.1)")
    add_num_users(p, None, "preset 4")
    p.add_argument("--waveguides", type=positive_int, default=None, help="N (default: preset 2)")
    add_options(p, pm.LbfgsOptions, LBFGS_FLAGS)  # --starts, --iterations, --memory: defaults from the options class
    p.add_argument("--check-mc", action="store_true", help="run the Monte-Carlo check of the expected SNR instead")
    p.add_argument("--samples", type=positive_int, default=20_000, help="Monte-Carlo masks per drop (default: %(default)s)")
    p.add_argument("--correlation", type=float, default=None,
                   help="equal link correlation rho in [-1, 1] for --check-mc (default: independent links)")
    p.add_argument("--out", default="powermin_out", help="output directory (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr (stdout unchanged)")
    add_parallel_options(p)
    p.set_defaults(func=_cmd_powermin)
    return p


def _settings_from_args(args) -> Settings:
    s = QUICK if args.quick else FULL
    if not np.isfinite(args.snr_db):
        raise UserError(f"--snr-db must be finite, got {args.snr_db}")
    from jaxpass._checks import RANGES

    if not RANGES["snr_db"].holds(args.snr_db):
        raise UserError(f"--snr-db must lie in {RANGES['snr_db'].describe()} (jaxpass.config.RANGES['snr_db']), "
                        f"got {args.snr_db:g}")
    over = {"seed": args.seed, "snr_db": args.snr_db, "lbfgs": options_from_args(args, pm.LbfgsOptions, LBFGS_FLAGS)}
    if args.drops is not None:
        over["drops"] = args.drops
    return dataclasses.replace(s, **over)


def _cmd_powermin(args) -> int:
    settings = _settings_from_args(args)
    over = {k: v for k, v in (("blockage_rate", args.blockage_rate), ("num_users", num_users_from_args(args, "powermin")),
                              ("num_waveguides", args.waveguides)) if v is not None}
    try:
        cfg = base_config(**over)
    except (ValueError, TypeError) as err:
        raise UserError(str(err)) from None
    if args.correlation is not None and not -1.0 <= args.correlation <= 1.0:
        raise UserError(f"--correlation must lie in [-1, 1], got {args.correlation}")
    if args.correlation is not None and not args.check_mc:
        raise UserError("--correlation is used by --check-mc only (the 'correlation' experiment sweeps rho itself)")
    progress.set_quiet(args.quiet)
    K = max(cfg.num_users, settings.layout_users, *settings.k_values)
    N = min(max(cfg.num_waveguides, *settings.n_values), settings.exhaustive_max_n)  # the exhaustive grid's N
    samples = args.samples if args.check_mc else 0
    need = memory.check_fits(lambda d: memory.powermin_bytes(K, N, d, chunk=settings.exhaustive.chunk, samples=samples,
                                                           devices=memory.shards(mesh_from_args(args))),
                             settings.drops, flag="--drops")
    print(f"jaxpass powermin: PB preset K={cfg.num_users}, N={cfg.num_waveguides}, D={float(cfg.length_x):g} m, "
          f"beta_b={float(cfg.blockage_rate):g}/m, Gamma={settings.snr_db:g} dB, {settings.drops} drops, "
          f"seed {settings.seed}{' (quick)' if args.quick else ''}" + memory.header_note(need), flush=True)
    if args.check_mc:
        mc = check_monte_carlo(cfg, settings, samples=args.samples, correlation=args.correlation,
                               runner=Runner(settings, mesh=mesh_from_args(args)))
        print(f"Monte-Carlo check ({mc['samples']} masks per drop, correlation "
              f"{'independent' if args.correlation is None else args.correlation}): |z| < 3 for "
              f"{100 * mc['fraction_abs_z_below_3']:.1f}% of {mc['drops']} x {cfg.num_users} (drop, user) pairs, "
              f"max |z| = {mc['max_abs_z']:.2f}")
        z = np.asarray(mc["z"])
        print("| drop | formula SNR (all users) | MC mean ± s.e. | z |\n|---|---|---|---|")
        for b in range(min(5, mc["drops"])):
            print(f"| {b} | {np.asarray(mc['formula'][b]).round(3).tolist()} | "
                  + ", ".join(f"{m:.3f}±{e:.3f}" for m, e in zip(mc["mc_mean"][b], mc["mc_std_err"][b]))
                  + f" | {np.round(z[b], 2).tolist()} |")
        os.makedirs(args.out, exist_ok=True)
        path = write_json(os.path.join(args.out, "powermin_mc.json"), dict(mc, env=environment()))
        print(f"wrote json: {path}")
        if not mc["all_finite"]:
            print(f"jaxpass powermin: FAIL: Monte-Carlo check not valid: {mc['nonfinite_pairs']} of "
                  f"{mc['drops']} x {cfg.num_users} (drop, user) pairs have a non-finite formula, mean or standard "
                  "error (z shown as nan)", file=sys.stderr)
            return 1
        return 0
    only = tuple(args.only) if args.only else EXPERIMENTS
    if cfg.num_waveguides > settings.exhaustive_max_n and "layouts" in only:
        log(f"layouts: N={cfg.num_waveguides} > {settings.exhaustive_max_n}, no exhaustive reference")
    results = run_experiments(cfg, settings, only, Runner(settings, mesh=mesh_from_args(args)))
    print(tables(results))
    for kind, path in write_results(results, cfg, args.out).items():
        print(f"wrote {kind}: {path}")
    return 0

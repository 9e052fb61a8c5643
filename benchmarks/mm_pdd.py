"""MM-PDD (JB Alg. 1) and the conventional MIMO baselines on the JB Table I drops.

Run ``python -m benchmarks --only mm_pdd [--quick]`` (or ``python -m benchmarks.mm_pdd``).

Setup (JB §V / Table I, docs/model.md §3.3-§3.6): ``PassConfig.joint_beamforming()``,
K = N = 4, L in {8, 16}, P = 10 dBm, 64 drops from a fixed seed (``--quick``: 4 drops,
L = 8, fewer iterations). Rows:

* ``uniform+wmmse``: uniform pinches, WMMSE (the MM-PDD start, for reference);
* ``mm_pdd``: ``jaxpass.optimize.mm_pdd.mm_pdd_drop`` with ``MmPddOptions`` defaults (JB: rho0 = 1e-4,
  eps = 1e-6; WMMSE start, consistent auxiliaries, normalised units), float64;
* ``mm_pdd_mrt``: the same from an MRT beamformer (shows a moving trajectory);
* ``mimo_hybrid``: sub-connected hybrid array, N RF chains x L antennas (JB's MIMO baseline);
* ``mimo_digital``: fully digital N-antenna ULA + WMMSE (TT's MIMO baseline).

Each is one ``jax.jit(jax.vmap(kernel))`` over the drops with ``cfg`` a traced argument: compiled first
(``compile_s``), then one timed call with ``block_until_ready``; time per drop =
call time / drops (the batch runs until its slowest drop stops). Printed: mean
+- std sum rate, MM-PDD's final ``||B||_inf`` (max over drops), converged
fraction, iterations. Writes ``mm_pdd-<device>.json`` and ``mm_pdd-<device>.png``
(sum rate, ``||B||_inf`` and penalty ``rho`` vs outer iteration, raw trajectories).
Numbers are measurements, never assertions.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxpass as jp
from benchmarks import common
from jaxpass.optimize import mimo, mm_pdd

PAPER = {8: {"mm_pdd": 49.76, "mm_pdd_s": 255.51, "mimo": 32.14, "mimo_s": 157.21},
         16: {"mm_pdd": 47.20, "mm_pdd_s": 408.12, "mimo": 28.54, "mimo_s": 179.24}}


def _timed(fn, *args):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, compile_s, time.perf_counter() - t0


def _stats(x):
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(x.std())


def run(quick: bool = False, out_dir: Path | None = None) -> dict:
    out_dir = Path(out_dir) if out_dir is not None else common.default_out_dir(quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    drops = 4 if quick else 64
    L_values = (8,) if quick else (8, 16)
    pdd_opts = mm_pdd.MmPddOptions(max_outer=20, max_inner=20) if quick else mm_pdd.MmPddOptions()
    hyb_opts = mimo.HybridOptions(iterations=40) if quick else mimo.HybridOptions()
    dig_opts = mimo.DigitalOptions()
    seed = 2025
    records, histories = [], {}
    rows = []
    t_all = time.perf_counter()
    for L in L_values:
        cfg = jp.PassConfig.joint_beamforming(num_pinches=L)
        users32 = jp.sample_users(jax.random.key(seed), cfg, (drops,))
        X_uni = jp.uniform_positions(cfg)

        def uniform_wmmse(c, users):
            def one(u):
                H = jp.effective_channel(c, jp.uniform_positions(c), u)
                return jp.sum_rate(H, jp.beamforming.wmmse(H, c.power, c.noise_power), c.noise_power)
            return jax.vmap(one)(users)

        results = {}
        common.log(f"[mm_pdd] L={L}: uniform+wmmse")
        out, c_s, r_s = _timed(uniform_wmmse, cfg, users32)
        results["uniform+wmmse"] = dict(rates=np.asarray(out), compile_s=c_s, run_s=r_s)
        with jax.enable_x64(True):
            users64 = users32.astype(jnp.float64)
            for name, opts in (("mm_pdd", pdd_opts), ("mm_pdd_mrt", pdd_opts.replace(D0="mrt"))):
                common.log(f"[mm_pdd] L={L}: {name} (float64, {drops} drops)")
                run = jax.vmap(lambda c, u, o=opts: mm_pdd.mm_pdd_drop(c, u, o), in_axes=(None, 0))
                out, c_s, r_s = _timed(run, cfg, users64)
                out = jax.device_get(out)
                results[name] = dict(
                    rates=np.asarray(out.sum_rate), compile_s=c_s, run_s=r_s,
                    final_rates=np.asarray(out.final_sum_rate), initial_rates=np.asarray(out.initial_sum_rate),
                    B_inf=np.asarray(out.B_inf), converged=np.asarray(out.converged),
                    outer=np.asarray(out.outer_iterations), sweeps=np.asarray(out.inner_iterations),
                    al_rise=float(np.nanmax(out.history["al_rise"])),
                    feasible=bool(np.all(jax.vmap(lambda X: jp.is_feasible(cfg, X))(out.positions))),
                    move=float(np.max(np.abs(out.positions - np.asarray(X_uni, np.float64)))),
                )
                histories[f"{name}/L={L}"] = {k: np.asarray(v[: min(drops, 4)]) for k, v in out.history.items()}
        common.log(f"[mm_pdd] L={L}: mimo_hybrid")
        out, c_s, r_s = _timed(jax.vmap(lambda c, u: mimo.hybrid_drop(None, c, u, hyb_opts).sum_rate,
                                        in_axes=(None, 0)), cfg, users32)
        results["mimo_hybrid"] = dict(rates=np.asarray(out), compile_s=c_s, run_s=r_s)
        common.log(f"[mm_pdd] L={L}: mimo_digital")
        out, c_s, r_s = _timed(jax.vmap(lambda c, u: mimo.digital_drop(c, u, dig_opts).sum_rate,
                                        in_axes=(None, 0)), cfg, users32)
        results["mimo_digital"] = dict(rates=np.asarray(out), compile_s=c_s, run_s=r_s)

        for name, res in results.items():
            mean, std = _stats(res["rates"])
            rec = {"id": f"{name}/L={L}", "method": name, "params": {"K": 4, "N": 4, "L": L, "P_dBm": 10.0,
                                                                      "drops": drops, "seed": seed},
                   "metrics": {"sum_rate_mean": mean, "sum_rate_std": std, "compile_s": res["compile_s"],
                               "time_per_drop_s": res["run_s"] / drops, "batch_s": res["run_s"]}}
            extra = ""
            if name.startswith("mm_pdd"):
                fmean, fstd = _stats(res["final_rates"])
                rec["metrics"].update(final_sum_rate_mean=fmean, final_sum_rate_std=fstd,
                                      initial_sum_rate_mean=_stats(res["initial_rates"])[0],
                                      B_inf_max=float(res["B_inf"].max()), converged_fraction=float(res["converged"].mean()),
                                      outer_mean=float(res["outer"].mean()), sweeps_mean=float(res["sweeps"].mean()),
                                      al_rise_max=res["al_rise"], max_position_change_m=res["move"])
                rec["feasible"] = res["feasible"]
                extra = (f"final {fmean:.2f}; B_inf max {res['B_inf'].max():.2e}; converged "
                         f"{res['converged'].mean():.0%}; outer {res['outer'].mean():.1f}, sweeps "
                         f"{res['sweeps'].mean():.0f}; AL rise {res['al_rise']:.1e}; |dX| max {res['move']:.1e} m")
            paper = PAPER[L].get("mm_pdd" if name == "mm_pdd" else "mimo" if name == "mimo_hybrid" else "", None)
            rows.append([f"L={L}", name, f"{mean:.2f} ± {std:.2f}", "n/a" if paper is None else f"{paper}",
                         common.fmt_time(res["run_s"] / drops), common.fmt_time(res["compile_s"]), extra])
            records.append(rec)

    print(common.markdown_table(["L", "method", "sum rate [bps/Hz]", "paper", "time/drop", "compile", "notes"],
                                rows))
    print("\npaper times: MM-PDD 255.51 s/sample (L=8), 408.12 s (L=16); MIMO 157.21 s / 179.24 s (A40 host)")
    path = common.write_result("mm_pdd", config={"preset": "joint_beamforming", "K": 4, "N": 4,
                                                 "L_values": list(L_values), "P_dBm": 10.0, "drops": drops,
                                                 "seed": seed, "mm_pdd": pdd_opts.asdict(),
                                                 "hybrid": hyb_opts.asdict(), "digital": dig_opts.asdict(),
                                                 "mm_pdd_dtype": "float64", "mimo_dtype": "float32"},
                               records=records, ratios={}, out_dir=out_dir, quick=quick,
                               extra={"wall_s": time.perf_counter() - t_all, "paper": PAPER})
    png = _plot(histories, common.result_path(out_dir, "mm_pdd", "png"))
    print(f"\nwrote {path}\nwrote {png}")
    return {"json": str(path), "png": str(png)}


def _plot(histories: dict, path: Path) -> str:
    from jaxpass.plotting import plt, save_figure

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, (name, h) in enumerate(histories.items()):
        color = f"C{i}"
        for d in range(h["sum_rate"].shape[0]):
            it = np.arange(1, h["sum_rate"].shape[1] + 1)
            label = name if d == 0 else None
            axes[0].plot(it, h["sum_rate"][d], "o-", color=color, lw=1, ms=3, alpha=0.8, label=label)
            axes[1].semilogy(it, h["B_inf"][d], "o-", color=color, lw=1, ms=3, alpha=0.8)
            axes[2].semilogy(it, h["rho"][d], "o-", color=color, lw=1, ms=3, alpha=0.8)
    axes[0].set_ylabel("sum rate [bps/Hz]")
    axes[1].set_ylabel(r"$\|B\|_\infty$")
    axes[2].set_ylabel(r"penalty $\rho$")
    for ax in axes:
        ax.set_xlabel("outer iteration")
        ax.grid(alpha=0.3)
    axes[1].axhline(1e-6, color="k", lw=0.8, ls="--")
    axes[0].legend(fontsize=7)
    fig.suptitle("MM-PDD (JB Alg. 1): raw trajectories, first drops of each run", fontsize=10)
    return save_figure(fig, path)


def main(argv=None) -> int:
    return common.standalone_main("benchmarks.mm_pdd", run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

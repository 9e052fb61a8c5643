"""The papers' learning models trained (JB Table I learned rows) and their training throughput.

``python -m benchmarks --only learn_table1 [--quick]``. Two parts, in one run:

1. **Throughput** of the authors' KDL-Transformer size (d_model 256, 4 heads,
   2 + 2 layers, FFN 512, dropout 0.1; JB §V), float32, batch 64, on the
   JB Table I scenario (K = N = 4, L = 8, P = 10 dBm): one training step
   (forward, backward through the KKT beamformer and the true channel, Adam
   update; :func:`jaxpass.learn.train.train_step` as :func:`~jaxpass.learn.train.train`
   compiles it) and one inference call (decode + beamformer, 64 drops),
   timed side by side with a float32 ``matmul`` of ``matmul_n``^2
   (:func:`benchmarks.common.time_interleaved`, so a busy neighbour slows all
   alike). The work of each call is XLA's own count
   (``compiled.cost_analysis()["flops"]``), and its fraction of the machine's
   float32 matmul peak is ``(flops / t) / (2 matmul_n^3 / t_matmul)``.
   Acceptance (issue 13, informational): training at >= 50 % of the peak.
2. **Table I learned rows** (:func:`jaxpass.experiments.table1.learned_row`):
   the five JB models trained here for a step budget (``learn``: batch 64 on
   the authors' fixed 30 000-drop split of seed ``learn_seed``, evaluated on
   the 64 table1 test drops of seed 0 every ``eval_every`` steps), jaxpass's
   aligned model and the aligned model + refinement, beside uniform + WMMSE
   and ``tune_positions`` (the table1 references) on the same drops: mean ±
   std, inference ms per 64 drops, training time, samples/s, the last
   in-sample training rate, and the paper's number. The metrics logs give
   the sum-rate-vs-epoch figure (JB Fig. 3).

Writes ``<out>/learn_table1-<device>.json`` and ``.png``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from benchmarks import common
from benchmarks.common import log
from jaxpass.experiments import table1
from jaxpass.experiments.io import environment, write_json
from jaxpass.learn import count_parameters, data
from jaxpass.learn import train as tr
from jaxpass.learn.decode import predict

NAME = "learn_table1"
TARGET_PEAK_FRACTION = 0.5
REFERENCE_ROWS = ("uniform_wmmse", "tune_zf")


@dataclasses.dataclass(frozen=True)
class Settings:
    rows: tuple = REFERENCE_ROWS + tuple(table1.LEARNED_ROWS)
    learn: dict = dataclasses.field(default_factory=lambda: dict(steps=1000, eval_every=50, log_every=50))
    learn_sizes: dict = dataclasses.field(default_factory=dict)
    aligned: dict = dataclasses.field(default_factory=dict)
    refine_steps: int = 20
    throughput_batch: int = 64
    throughput_model: dict = dataclasses.field(default_factory=dict)  # the authors' size: the model's defaults
    matmul_n: int = 2048
    repeats: int = 10
    min_time: float = 3.0


def quick_settings() -> Settings:
    q = table1.quick_settings()
    return Settings(learn=q.learn, learn_sizes=q.learn_sizes, aligned=q.aligned, refine_steps=q.refine_steps,
                    throughput_batch=8, throughput_model=dict(table1.QUICK_MODEL_SIZES["kdl-transformer"]),
                    matmul_n=256, repeats=3, min_time=0.05)


def _flops(fn, *args) -> float | None:
    """XLA's flop count of ``jax.jit(fn)`` on ``args`` (None where the backend gives none)."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def throughput(cfg, s: Settings) -> dict:
    """Training and inference of the KDL-Transformer at batch ``throughput_batch`` vs the float32 matmul peak."""
    options = tr.TrainOptions(model="kdl-transformer", batch_size=s.throughput_batch,
                              model_kwargs=s.throughput_model)
    model = tr.build_model(cfg, options, np.float32)
    optimizer = nnx.Optimizer(model, tr.make_optimizer(options), wrt=nnx.Param)
    graphdef, model_state = nnx.split(model)
    model.eval()
    eval_graphdef = nnx.split(model)[0]
    state = (model_state, nnx.state(optimizer))
    users = jnp.asarray(data.sample_drops(1000, cfg, s.throughput_batch))
    replicated = NamedSharding(tr.data_mesh(jax.devices()[:1]), P())
    loss_fn = tr._default_loss()
    cfg = tr.canonical_cfg(cfg)

    def step(state, users):
        return tr._jit_step(graphdef, state, cfg, users, options, loss_fn, replicated)

    def infer(params, users):
        return predict(nnx.merge(eval_graphdef, params), cfg, users)

    n = s.matmul_n
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    cases = {"train step": common.Case(step, (state, users)), "inference": common.Case(infer, (model_state, users)),
             "matmul": common.Case(jnp.matmul, (a, b))}
    flops = {"train step": _flops(step, state, users), "inference": _flops(infer, model_state, users),
             "matmul": 2.0 * n**3}
    log(f"[{NAME}] throughput: KDL-Transformer ({count_parameters(model)} parameters), batch {s.throughput_batch}, "
        f"vs a float32 matmul {n}^2")
    t = common.time_interleaved(cases, repeats=s.repeats, min_time=s.min_time)
    peak = flops["matmul"] / t["matmul"].median_s
    nominal = common.nominal_peak_flops()
    out = {"parameters": count_parameters(model), "batch": s.throughput_batch, "model_kwargs": dict(s.throughput_model),
           "matmul_n": n, "peak_flops_per_s": peak, "nominal_peak": nominal,
           "matmul_nominal_fraction": None if nominal["flops_per_s"] is None else peak / nominal["flops_per_s"],
           "timing": {k: v.metrics() for k, v in t.items()}}
    for name in ("train step", "inference"):
        sec = t[name].median_s
        f = flops[name]
        out[name] = {"seconds": sec, "samples_per_s": s.throughput_batch / sec,
                     "ms_per_64": sec * 1e3 * 64 / s.throughput_batch, "flops": f,
                     "flops_per_s": None if f is None else f / sec,
                     "peak_fraction": None if f is None else f / sec / peak,
                     "nominal_peak_fraction": None if f is None or nominal["flops_per_s"] is None
                     else f / sec / nominal["flops_per_s"]}
    frac = out["train step"]["peak_fraction"]
    out["acceptance"] = {"target": TARGET_PEAK_FRACTION, "peak_fraction": frac,
                         "status": "n/a" if frac is None else ("PASS" if frac >= TARGET_PEAK_FRACTION else "FAIL")}
    return out


def run(quick: bool = False, out_dir: Path | None = None) -> dict:
    s = quick_settings() if quick else Settings()
    out_dir = Path(out_dir) if out_dir is not None else common.default_out_dir(quick)
    t_start = time.perf_counter()
    base = table1.quick_settings() if quick else table1.Settings()
    ts = dataclasses.replace(base, num_pinches=(8,), rows=s.rows, learn=s.learn, learn_sizes=s.learn_sizes,
                             aligned=s.aligned, refine_steps=s.refine_steps)
    cfg = table1.table_config(8, ts.power_dbm)
    tp = throughput(cfg, s)
    log(f"[{NAME}] train step {tp['train step']['samples_per_s']:.0f} samples/s "
        f"({_pct(tp['train step']['peak_fraction'])} of the matmul peak), inference "
        f"{tp['inference']['ms_per_64']:.2f} ms / 64 drops")
    results = table1.run_table1(ts)
    rows = results["tables"][8]
    summaries = []
    for r in rows:
        d = r.summary()
        d.pop("rates")
        d["ms_per_64"] = r.seconds_per_drop * 64e3
        summaries.append(d)
    wall = time.perf_counter() - t_start
    payload = {"benchmark": NAME, "schema_version": 1, "quick": quick, "env": environment(),
               "settings": dataclasses.asdict(s), "table_settings": {"drops": ts.drops, "seed": ts.seed,
                                                                    "power_dbm": ts.power_dbm, "tune": ts.tune,
                                                                    "learn_seed": ts.learn_seed},
               "throughput": tp, "rows": summaries, "wall_s": wall}
    path = write_json(common.result_path(out_dir, NAME), payload)
    png = _plot(summaries, common.result_path(out_dir, NAME, "png"))

    env = payload["env"]
    print(f"## JB Table I learned rows and KDL training throughput — {env['device']} "
          f"({env['cpu_model'] or env['device_kind']}), jax {env['jax_version']}, {'quick' if quick else 'full'} run\n")
    print(report(payload))
    print(f"\nwall time {wall:.1f} s; wrote {path}, {png}")
    return {"payload": payload, "json": path, "png": png}


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f} %"


def _nominal_note(tp: dict) -> str:
    """`` (x % of the nominal peak ...)`` for results that carry the nominal peak (older files do not)."""
    nom = tp.get("nominal_peak") or {}
    if nom.get("flops_per_s") is None:
        return ""
    return (f" ({_pct(tp['matmul_nominal_fraction'])} of the nominal {nom['flops_per_s'] / 1e9:.0f} GFLOP/s = "
            f"{nom['cores']} cores x {nom['simd_f32_lanes']} lanes x {nom['flops_per_fma']} (FMA) x "
            f"{nom['fma_units_assumed']} FMA units (assumed) x {nom['clock_hz'] / 1e9:.2f} GHz, {nom['model']})")


def report(payload: dict) -> str:
    """Markdown: the throughput table and the Table I rows (also rendered into the README)."""
    tp = payload["throughput"]
    lines = [common.markdown_table(
        ["KDL-Transformer, batch " + str(tp["batch"]), "ms / call", "samples/s", "ms / 64 drops", "GFLOP / call",
         "fraction of the f32 matmul peak (same run)", "fraction of the nominal f32 peak"],
        [[name, f"{tp[name]['seconds'] * 1e3:.1f}", f"{tp[name]['samples_per_s']:.0f}", f"{tp[name]['ms_per_64']:.1f}",
          "n/a" if tp[name]["flops"] is None else f"{tp[name]['flops'] / 1e9:.2f}", _pct(tp[name]["peak_fraction"]),
          _pct(tp[name].get("nominal_peak_fraction"))]
         for name in ("train step", "inference")]),
        "", f"float32 matmul peak ({tp['matmul_n']}^2, same run): {tp['peak_flops_per_s'] / 1e9:.1f} GFLOP/s"
        + _nominal_note(tp) + "; "
        f"{tp['parameters']} parameters; acceptance (training >= {100 * TARGET_PEAK_FRACTION:.0f} % of the peak): "
        f"{tp['acceptance']['status']}.", ""]

    def train_cell(d, key, fmt, missing="—"):
        t = d.get("train") or {}
        return missing if t.get(key) is None else fmt(t[key])

    def training(d):
        if not d.get("train"):
            return "(the aligned row's model)" if d["row"] == "aligned_refine" else "—"
        return train_cell(d, "train_s", lambda v: f"{v:.0f} s") + train_cell(d, "steps", lambda v: f" / {v} steps", "")

    lines.append(common.markdown_table(
        ["row", "test drops [bps/Hz]", "ms / 64 drops", "training", "samples/s", "in-sample (last log)",
         "paper (JB Table I)"],
        [[r["label"], f"{r['mean']:.2f} ± {r['std']:.2f}", f"{r['ms_per_64']:.2f}",
          training(r),
          train_cell(r, "samples_per_s", lambda v: f"{v:.0f}"),
          train_cell(r, "in_sample_sum_rate", lambda v: f"{v:.2f}"),
          "—" if r.get("paper") is None else f"{r['paper']:.2f}"] for r in payload["rows"]]))
    return "\n".join(lines)


def _plot(rows: list, path: Path) -> str:
    """JB Fig. 3 style: test sum rate vs epoch of each trained JB model, the reference rows as lines."""
    from jaxpass.plotting import plt, save_figure

    fig, ax = plt.subplots(figsize=(10, 4.4))
    i = 0
    for r in rows:
        hist = [h for h in r.get("history") or [] if h.get("test_sum_rate_mean") is not None]
        if not hist:
            continue
        t = r.get("train") or {}
        scale = t.get("batch_size", 64) / t.get("train_drops", 30000)
        ax.plot([h["step"] * scale for h in hist], [h["test_sum_rate_mean"] for h in hist], "-", color=f"C{i}",
                lw=1.3, label=r["label"])
        if r.get("paper") is not None:
            ax.axhline(r["paper"], color=f"C{i}", lw=0.7, ls=":")
        i += 1
    refs = [r for r in rows if not r.get("history")]
    for j, r in enumerate(refs):  # the non-trained references and jaxpass's aligned rows, in the legend
        ax.axhline(r["mean"], color=f"{0.15 + 0.6 * j / max(len(refs) - 1, 1):.2f}", lw=1.0,
                   ls=("--", "-.", ":", (0, (5, 1)))[j % 4], label=f"{r['label']}: {r['mean']:.2f}")
    ax.set_xlabel("epochs (of the 30 000-drop training split)")
    ax.set_ylabel("mean sum rate, 64 test drops [bps/Hz]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(right=0.62)
    ax.set_title("JB models trained on the true channel (dotted: the paper's Table I value)", fontsize=9)
    return save_figure(fig, path)


def main(argv=None) -> int:
    return common.standalone_main(f"benchmarks.{NAME}", run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

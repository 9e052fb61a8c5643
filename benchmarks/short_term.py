"""Two-timescale short-term network vs WMMSE: ``python -m benchmarks --only short_term [--quick]``.

One network per K (K = 6, where N = 4 antennas cannot serve every user and
WMMSE must choose, and K = 4) on the TT preset (N = 4, L = 8), trained by
:func:`jaxpass.learn.short_term.fit_short_term` on blocks and slots of the
training seed, with one network for every P (``P ~ U[12, 28] dBm`` per
sample). Scored on held-out blocks (homes from ``held_out_seed``) and slots
(``slot_seed``), with ``X`` fixed per block at the aligned SSCA start
(:func:`jaxpass.optimize.ssca.initial_positions` at that P, screened on
slots of ``screen_seed``): the mean sum rate of the network's KKT beamformer
and of WMMSE with ``eval_wmmse_iterations`` updates (20, as the
two-timescale benchmark scores), their ratio, and the same in-sample (on the
first ``in_sample`` channels of the training pool, at each P).

Acceptance (informational): held-out ratio >= 0.97 at 12 and 28 dBm for K = 6.

Writes ``<out>/short_term-<device>.json`` and the trained parameters
``<out>/short_term-K<K>-<device>.npz`` (:func:`jaxpass.learn.short_term.save_short_term`),
which ``benchmarks/two_timescale.py`` loads for its "two-timescale (SSCA, KDL
short-term)" row.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks import common
from benchmarks.common import log
from jaxpass.experiments.io import environment, write_json
from jaxpass.learn import count_parameters
from jaxpass.learn import short_term as st
from jaxpass.optimize import ssca
from jaxpass.slots import sample_homes, sample_slots

NAME = "short_term"
TARGET_RATIO = 0.97
TARGET_POWERS = (12.0, 28.0)


@dataclasses.dataclass(frozen=True)
class Settings:
    users: tuple = (6, 4)
    powers_dbm: tuple = (12.0, 16.0, 20.0, 24.0, 28.0)
    options: st.ShortTermOptions = st.ShortTermOptions()
    train_seed: int = 0
    held_out_blocks: int = 16
    held_out_slots: int = 64
    held_out_seed: int = 2026
    screen_seed: int = 7
    slot_seed: int = 3000
    screen_slots: int = 50
    eval_wmmse_iterations: int = 20
    in_sample: int = 1024


def quick_settings() -> Settings:
    return Settings(users=(4,), powers_dbm=(12.0, 28.0), options=st.quick_options(), held_out_blocks=2, held_out_slots=8, screen_slots=4, in_sample=32)


def npz_path(out_dir: Path, K: int) -> Path:
    """Where the K-user network is saved: ``<out>/short_term-K<K>-<device>.npz``."""
    return common.result_path(out_dir, f"{NAME}-K{K}", "npz")


def held_out(cfg, s: Settings):
    """``(X (B, N, L), slots (B, S, K, 2))``: held-out homes, their aligned SSCA start at cfg's P, and slots."""
    B = s.held_out_blocks
    homes = jax.vmap(lambda k: sample_homes(k, cfg))(jax.random.split(jax.random.key(s.held_out_seed), B))
    opts = ssca.SscaOptions(slots_per_iteration=s.screen_slots, wmmse_iterations=5, sigma_u=s.options.sigma_u)
    X = jax.jit(jax.vmap(lambda k, h: ssca.initial_positions(k, cfg, h, opts)))(
        jax.random.split(jax.random.key(s.screen_seed), B), homes)
    slots = jax.vmap(lambda k, h: sample_slots(k, cfg, h, s.held_out_slots, s.options.sigma_u))(
        jax.random.split(jax.random.key(s.slot_seed), B), homes)
    return X, slots


def run(quick: bool = False, out_dir: Path | None = None) -> dict:
    s = quick_settings() if quick else Settings()
    out_dir = Path(out_dir) if out_dir is not None else common.default_out_dir(quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    records, training, files = [], {}, {}
    for K in s.users:
        cfg = st.default_config(K)
        log(f"[{NAME}] K = {K}: training {s.options.steps} steps x {s.options.batch_size} slots "
            f"({s.options.blocks} blocks x {s.options.slots_per_block} slots, seed {s.train_seed})")
        fit = st.fit_short_term(jax.random.key(s.train_seed), K, s.options)
        h = fit.history
        tail = max(1, min(50, len(h) // 5))
        training[f"K={K}"] = {"train_s": fit.seconds, "data_s": fit.data_seconds, "steps": s.options.steps,
                              "parameters": count_parameters(fit.model), "pool": int(fit.channels.shape[0]),
                              "final_batch_ratio": float(h[-tail:, 1].mean()),
                              "final_batch_rate": float(h[-tail:, 2].mean())}
        files[f"K={K}"] = st.save_short_term(npz_path(out_dir, K), fit.model, s.options, cfg, train_seed=s.train_seed,
                                             train_s=fit.seconds)
        log(f"[{NAME}] K = {K}: trained in {fit.seconds:.0f} s (+{fit.data_seconds:.0f} s data), "
            f"{training[f'K={K}']['parameters']} parameters")
        for P in s.powers_dbm:
            c = cfg.replace(power_dbm=P)
            X, slots = held_out(c, s)
            ho = st.short_term_score(fit.model, c, X, slots, wmmse_iterations=s.eval_wmmse_iterations)
            ins = st.score_channels(fit.model, c, fit.channels[:s.in_sample], wmmse_iterations=s.eval_wmmse_iterations)
            records.append({"id": f"K={K}/P={P:g}", "params": {"K": K, "P_dbm": P},
                            "metrics": {"net": ho["net"], "wmmse": ho["wmmse"], "ratio": ho["ratio"],
                                        "in_sample_net": ins["net"], "in_sample_wmmse": ins["wmmse"],
                                        "in_sample_ratio": ins["ratio"],
                                        "worst_block_ratio": float(np.min(np.asarray(ho["net_per_block"])
                                                                          / np.asarray(ho["wmmse_per_block"])))}})
            log(f"[{NAME}] K = {K}, P = {P:g} dBm: held-out {ho['net']:.2f} / {ho['wmmse']:.2f} = {ho['ratio']:.4f}; "
                f"in-sample {ins['ratio']:.4f}")
    acceptance = [{"K": r["params"]["K"], "P_dbm": r["params"]["P_dbm"], "ratio": r["metrics"]["ratio"],
                   "status": "PASS" if r["metrics"]["ratio"] >= TARGET_RATIO else "FAIL"}
                  for r in records if r["params"]["K"] == 6 and r["params"]["P_dbm"] in TARGET_POWERS]
    wall = time.perf_counter() - t_start
    settings = dataclasses.asdict(s) | {"options": s.options.asdict()}
    payload = {"benchmark": NAME, "schema_version": 1, "quick": quick, "env": environment(), "config": settings,
               "records": records, "ratios": {r["id"]: r["metrics"]["ratio"] for r in records},
               "training": training, "files": {k: Path(v).name for k, v in files.items()},
               "acceptance": acceptance, "wall_s": wall}
    path = write_json(common.result_path(out_dir, NAME), payload)

    env = payload["env"]
    print(f"## Short-term network vs WMMSE — {env['device']} ({env['cpu_model'] or env['device_kind']}), "
          f"jax {env['jax_version']}, {'quick' if quick else 'full'} run\n")
    print(f"TT preset (N = 4, L = 8); {s.held_out_blocks} held-out blocks (seed {s.held_out_seed}) x "
          f"{s.held_out_slots} slots, X = the aligned SSCA start per block; WMMSE with {s.eval_wmmse_iterations} "
          "updates; in-sample: the training pool's first channels.\n")
    print(common.markdown_table(
        ["K", "P [dBm]", "net [bps/Hz]", "WMMSE [bps/Hz]", "ratio (held-out)", "ratio (in-sample)", "worst block"],
        [[r["params"]["K"], f"{r['params']['P_dbm']:g}", f"{r['metrics']['net']:.2f}", f"{r['metrics']['wmmse']:.2f}",
          f"{r['metrics']['ratio']:.4f}", f"{r['metrics']['in_sample_ratio']:.4f}",
          f"{r['metrics']['worst_block_ratio']:.4f}"] for r in records]))
    print("\n" + "; ".join(f"{k}: {v['train_s']:.0f} s training ({v['steps']} steps), {v['data_s']:.0f} s data, "
                           f"{v['parameters']} parameters" for k, v in training.items()))
    print("acceptance (K = 6, ratio >= 0.97 at 12 and 28 dBm): "
          + ", ".join(f"{a['P_dbm']:g} dBm {a['status']}" for a in acceptance))
    print(f"\nwall time {wall:.1f} s; wrote {path}")
    return {"payload": payload, "json": path}


def main(argv=None) -> int:
    return common.standalone_main(f"benchmarks.{NAME}", run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

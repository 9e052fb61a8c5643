"""TT Fig. 3, short-term convergence: KDL network vs black box vs WMMSE.

``python -m benchmarks --only short_term_convergence [--quick]``.

For K = 6 on the TT preset (N = 4, L = 8; more users than antennas, where the
short-term problem is hardest) two networks are trained on the same pool of
slot channels, with the same batches, powers and schedule
(:func:`jaxpass.learn.short_term.fit_short_term`, the ``short_term``
benchmark's options except ``steps``):

* ``kdl``: the KKT network (``architecture="gram"``: slot channel -> duals ->
  ``beamforming.kkt``, TT eq. (17)), with its teacher term for the first steps;
* ``blackbox``: TT Fig. 3's black box (``architecture="blackbox"``: slot
  channel -> the beamformer itself, end-to-end and unsupervised), with about
  the KKT network's parameter count (``blackbox_width``).

Every ``every`` steps both are scored on held-out slots (the ``short_term``
benchmark's held-out blocks and slots, X fixed at each block's aligned SSCA
start) at ``power_dbm``; WMMSE with ``eval_wmmse_iterations`` updates on the
same slots is the reference line. The saved networks of the ``short_term``
benchmark (used by ``two_timescale``) are not touched. Writes
``<out>/short_term_convergence-<device>.json`` and the PNG (held-out sum rate
vs training step).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import jax

from benchmarks import common
from benchmarks import short_term as stb
from benchmarks.common import log
from jaxpass.channel import effective_channel
from jaxpass.experiments.io import environment, write_json
from jaxpass.learn import count_parameters
from jaxpass.learn import short_term as st

NAME = "short_term_convergence"
MODELS = {"kdl": "KDL (KKT network, gram)", "blackbox": "black box (beamformer directly)"}


@dataclasses.dataclass(frozen=True)
class Settings:
    users: int = 6
    steps: int = 800
    every: int = 50
    #: the black box's hidden width: 192 gives it about the KKT network's parameter count (93 k vs 88 k)
    blackbox_width: int = 192
    power_dbm: float = 20.0
    train_seed: int = 0
    held_out: stb.Settings = stb.Settings()


def quick_settings() -> Settings:
    return Settings(users=4, steps=20, every=5, blackbox_width=16, held_out=stb.quick_settings())


def held_out_channels(cfg, s: Settings):
    """``(B * S, K, N)``: the effective channels of the held-out slots at each block's aligned start."""
    X, slots = stb.held_out(cfg, s.held_out)
    H = jax.vmap(lambda x, u: jax.vmap(lambda v: effective_channel(cfg, x, v))(u))(X, slots)
    return H.reshape((-1,) + H.shape[2:])


def run(quick: bool = False, out_dir: Path | None = None) -> dict:
    s = quick_settings() if quick else Settings()
    out_dir = Path(out_dir) if out_dir is not None else common.default_out_dir(quick)
    t_start = time.perf_counter()
    cfg = st.default_config(s.users, s.power_dbm)
    H = held_out_channels(cfg, s)
    it = s.held_out.eval_wmmse_iterations
    wmmse = st.score_channels(st.build_short_term(cfg, s.held_out.options), cfg, H, wmmse_iterations=it)["wmmse"]
    curves, training = {}, {}
    base = s.held_out.options.replace(steps=s.steps)
    variants = {"kdl": base.replace(architecture="gram", supervised_steps=min(base.supervised_steps, s.steps)),
                "blackbox": base.replace(architecture="blackbox", supervised_steps=0, width=s.blackbox_width)}
    for name, opts in variants.items():
        arch = opts.architecture
        points = []

        def score(t, model, row, points=points, name=name):
            net = st.score_channels(model, cfg, H, wmmse_iterations=1)["net"]  # the network's rate only
            model.train()
            points.append((t + 1, net, float(row[2])))
            if (t + 1) % (4 * s.every) == 0 or t + 1 == s.steps:
                log(f"[{NAME}] {name}: step {t + 1}/{s.steps}, held-out {net:.2f} bps/Hz ({100 * net / wmmse:.1f} % "
                    f"of WMMSE), batch {row[2]:.2f}")

        log(f"[{NAME}] K = {s.users}: training {name} ({arch}), {s.steps} steps x {opts.batch_size} slots")
        fit = st.fit_short_term(jax.random.key(s.train_seed), s.users, opts, callback=score,
                                callback_every=s.every)
        curves[name] = {"label": MODELS[name], "architecture": arch, "step": [p[0] for p in points],
                        "held_out_rate": [p[1] for p in points], "batch_rate": [p[2] for p in points],
                        "final": points[-1][1], "final_ratio": points[-1][1] / wmmse}
        training[name] = {"train_s": fit.seconds, "data_s": fit.data_seconds, "parameters": count_parameters(fit.model),
                          "options": opts.asdict()}
    wall = time.perf_counter() - t_start
    payload = {"benchmark": NAME, "schema_version": 1, "quick": quick, "env": environment(),
               "config": {"users": s.users, "steps": s.steps, "every": s.every, "power_dbm": s.power_dbm,
                          "train_seed": s.train_seed, "held_out_blocks": s.held_out.held_out_blocks,
                          "held_out_slots": s.held_out.held_out_slots, "held_out_seed": s.held_out.held_out_seed,
                          "eval_wmmse_iterations": it},
               "wmmse": wmmse, "curves": curves, "training": training, "wall_s": wall}
    path = write_json(common.result_path(out_dir, NAME), payload)
    figure = plot(payload, common.result_path(out_dir, NAME, "png"))
    env = payload["env"]
    print(f"## Short-term convergence (TT Fig. 3) — {env['device']}, jax {env['jax_version']}, "
          f"{'quick' if quick else 'full'} run\n")
    print(f"K = {s.users}, P = {s.power_dbm:g} dBm; held-out: {s.held_out.held_out_blocks} blocks x "
          f"{s.held_out.held_out_slots} slots (seed {s.held_out.held_out_seed}); WMMSE ({it} updates) "
          f"{wmmse:.2f} bps/Hz\n")
    recorded = curves["kdl"]["step"]
    marks = sorted({recorded[0], recorded[len(recorded) // 4], recorded[len(recorded) // 2], recorded[-1]})
    rows = [[c["label"]] + [f"{c['held_out_rate'][c['step'].index(m)]:.2f}" for m in marks]
            + [f"{100 * c['final_ratio']:.1f} %", f"{training[k]['train_s']:.0f} s"] for k, c in curves.items()]
    print(common.markdown_table(["model"] + [f"step {m}" for m in marks] + ["final / WMMSE", "training"], rows))
    print(f"\nwall time {wall:.1f} s; wrote {path} and {figure}")
    return {"payload": payload, "json": path}


def plot(payload: dict, path) -> str:
    """Held-out sum rate vs training step for each network, WMMSE as a line."""
    from jaxpass.plotting import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for c in payload["curves"].values():
        ax.plot(c["step"], c["held_out_rate"], marker="o", markersize=3, label=c["label"])
    ax.axhline(payload["wmmse"], color="k", linestyle="--",
               label=f"WMMSE ({payload['config']['eval_wmmse_iterations']} updates)")
    cfg = payload["config"]
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out mean sum rate [bps/Hz]")
    ax.set_title(f"short-term convergence, K = {cfg['users']}, P = {cfg['power_dbm']:g} dBm")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, str(path))


def main(argv=None) -> int:
    return common.standalone_main(f"benchmarks.{NAME}", run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

"""The demo job: uniform pinch positions with MRT, ZF, RZF and WMMSE on a preset.

``jaxpass demo`` (and ``make demo``) run :func:`run_demo` then :func:`write_demo`.
Everything numeric is one jit-compiled, vmapped computation per method; the
compile time is measured apart from the per-drop time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax
import numpy as np

from jaxpass import beamforming as bf
from jaxpass.channel import effective_channel
from jaxpass.config import PassConfig
from jaxpass.experiments.cli_args import run_batched
from jaxpass.geometry import sample_users, uniform_positions
from jaxpass.metrics import sum_rate
from jaxpass.optimize.positions import TuneOptions, tune_batch, tuning_inputs
from jaxpass.runtime.io import environment, write_json, write_text, writes_result_set
from jaxpass.runtime.progress import Progress

PRESETS = {
    "joint_beamforming": PassConfig.joint_beamforming,
    "two_timescale": PassConfig.two_timescale,
    "energy_efficiency": PassConfig.energy_efficiency,
    "power_min_blockage": PassConfig.power_min_blockage,
}


def preset(name: str, **overrides) -> PassConfig:
    """Look a preset up by name (clear error listing the choices)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name](**overrides)


def beamformer_table(cfg: PassConfig, wmmse_iterations: int = 100) -> dict:
    """Method name -> ``H -> W`` for the demo (ZF only when K <= N)."""
    K, N = cfg.num_users, cfg.num_waveguides
    methods = {"MRT": lambda H: bf.mrt(H, cfg.power)}
    if K <= N:
        methods["ZF"] = lambda H: bf.zf(H, cfg.power)
    methods["RZF"] = lambda H: bf.rzf(H, cfg.power, K * cfg.noise_power / cfg.power)
    methods["WMMSE"] = lambda H: bf.wmmse(H, cfg.power, cfg.noise_power, iterations=wmmse_iterations)
    return methods


@dataclass
class MethodResult:
    name: str
    rates: np.ndarray  # (drops,) bps/Hz
    ms_per_drop: float
    compile_s: float


def run_demo(cfg: PassConfig, drops: int = 64, seed: int = 0, wmmse_iterations: int = 100, tune_steps: int = 300,
             progress: bool = False, mesh=None):
    """Evaluate each beamformer on ``drops`` user drops with uniform pinch positions,
    then tune the positions per drop for the ZF sum rate (``jaxpass.optimize.tune_positions``;
    only when K <= N, the sum-rate problem of JB; ``tune_steps = 0`` skips it).

    With ``progress``, each method's compilation and run are shown on stderr
    (:mod:`jaxpass.runtime.progress`; silenced by ``set_quiet``). With ``mesh``
    (:func:`jaxpass.parallel.drops_mesh`) the drops run data-parallel over its devices
    (:func:`jaxpass.experiments.cli_args.run_batched`: same drops and keys, same results).

    Returns:
      ``(results, users, X, tuned)``: a list of :class:`MethodResult`, the ``(drops, K, 2)``
      users, the uniform ``(N, L)`` positions and the tuned ``(drops, N, L)`` positions
      (``None`` without tuning).
    """
    if drops < 1:
        raise ValueError(f"drops must be >= 1, got {drops}")
    users = sample_users(jax.random.key(seed), cfg, (drops,))
    X = uniform_positions(cfg)
    results = []
    table = beamformer_table(cfg, wmmse_iterations)
    do_tune = tune_steps > 0 and cfg.num_users <= cfg.num_waveguides
    bar = Progress("demo", len(table) + do_tune, enabled=None if progress else False)
    for i, (name, beamformer) in enumerate(table.items()):
        def batch(X, users, beamformer=beamformer):
            def one(u):
                H = effective_channel(cfg, X, u)
                return sum_rate(H, beamformer(H), cfg.noise_power)
            return jax.vmap(one)(users)

        rates, seconds, compile_s = run_batched(batch, X, users, mesh=mesh, in_axes=(None, 0), repeats=3,
                                                progress=bar, what=name)
        results.append(MethodResult(name, np.asarray(rates), 1e3 * seconds / drops, compile_s))
        bar.update(i + 1, f"{name} done")
    tuned = None
    if do_tune:
        beamformer = "zf"
        opts = TuneOptions(beamformer=beamformer, steps=tune_steps)
        keys, batch = tuning_inputs(cfg, users, jax.random.key(seed + 1), opts)
        res, seconds, compile_s = run_batched(tune_batch, keys, cfg, batch, mesh=mesh, in_axes=(0, None, 0),
                                              options=opts, progress=bar,
                                              what=f"tuning {drops} drops x {tune_steps} steps")
        results.append(MethodResult(f"tuned + {beamformer.upper()}", np.asarray(res.sum_rate),
                                    1e3 * seconds / drops, compile_s))
        tuned = np.asarray(res.positions)
        bar.update(len(table) + 1, "tuning done")
    bar.close()
    return results, users, X, tuned


def results_table(results) -> str:
    """Markdown table: mean +- std sum rate and ms per drop per method."""
    lines = ["| method | sum rate [bps/Hz] | ms/drop | compile [s] |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.rates.mean():.2f} ± {r.rates.std():.2f} | {r.ms_per_drop:.3f} | {r.compile_s:.2f} |")
    return "\n".join(lines)


@writes_result_set("demo")
def write_demo(cfg: PassConfig, results, users, X, out_dir, *, preset_name: str, seed: int, tuned=None) -> dict:
    """Write ``demo.json``, ``demo.md`` and ``demo.png`` (layouts + rate per method) atomically."""
    from jaxpass.plotting import save_figure

    os.makedirs(out_dir, exist_ok=True)
    payload = {
        "preset": preset_name,
        "seed": seed,
        "drops": int(users.shape[0]),
        "K": cfg.num_users, "N": cfg.num_waveguides, "L": cfg.num_pinches,
        "power_dbm": float(cfg.power_dbm),
        "methods": {
            r.name: {"mean": float(r.rates.mean()), "std": float(r.rates.std()),
                     "ms_per_drop": r.ms_per_drop, "compile_s": r.compile_s}
            for r in results
        },
        "env": environment(),
    }
    paths = {
        "json": write_json(os.path.join(out_dir, "demo.json"), payload),
        "markdown": write_text(os.path.join(out_dir, "demo.md"), results_table(results) + "\n"),
    }
    fig = demo_figure(cfg, results, users, X, preset_name=preset_name, tuned=tuned)
    paths["figure"] = save_figure(fig, os.path.join(out_dir, "demo.png"))
    return paths


def demo_figure(cfg: PassConfig, results, users, X, *, preset_name: str, tuned=None):
    """The ``demo.png`` figure: drop 0's uniform (and tuned) layout, and the sum rate per method.

    Constrained layout; the methods are rows of a horizontal box plot
    (:func:`jaxpass.plotting.plot_method_rates`), so their labels never overlap.
    """
    from jaxpass.plotting import plot_layout, plot_method_rates, plt

    layouts = [(X, "drop 0: uniform pinch positions")]
    if tuned is not None:
        layouts.append((tuned[0], f"drop 0: tuned positions ({results[-1].rates[0]:.1f} bps/Hz)"))
    fig, axes = plt.subplots(1, len(layouts) + 1, figsize=(6.5 * len(layouts) + 5, 4.2), layout="constrained",
                             gridspec_kw={"width_ratios": [1.6] * len(layouts) + [1]})
    for ax, (positions, title) in zip(axes, layouts):
        plot_layout(cfg, positions, users[0], ax=ax, title=title)
    plot_method_rates({r.name: r.rates for r in results}, ax=axes[-1],
                      title=f"{preset_name}, {users.shape[0]} drops, P = {float(cfg.power_dbm):g} dBm")
    return fig

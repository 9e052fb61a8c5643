"""Sum-rate sweeps like JB Figs. 4-6 (``jaxpass reproduce sweeps``).

On the JB preset (K = N = 4, 30 GHz, h = 2.5 m, 20 x 10 m, sigma^2 = -90 dBm):

* ``power``: sum rate vs the power budget P in {10, 12, ..., 24} dBm (L = 8);
* ``pinches``: vs L in {8, 16, 24, 32} (P = 10 dBm);
* ``length``: vs the waveguide length / area length S_x in {5, 10, 15, 20, 25} m
  (L = 8, P = 10 dBm; users uniform over S_x x S_y).

Methods: ``uniform + WMMSE``, ``tuning`` (:func:`jaxpass.optimize.tune_positions`,
ZF, default options), ``MM-PDD`` (JB Alg. 1 from uniform positions, float64),
``hybrid MIMO`` and ``digital MIMO`` (:mod:`jaxpass.optimize.mimo`). Every point
uses the same ``drops`` seeded drops (the length sweep samples them over its
own area with the same key). Power and length enter the compiled functions as
traced scalars, so those sweeps compile each method once; every L compiles anew.
Progress goes to stderr, one line per point. With ``mesh``
(:func:`jaxpass.parallel.drops_mesh`; ``jaxpass reproduce sweeps --devices N``)
the drops of every point run data-parallel over its devices
(:func:`jaxpass.parallel.place`: padded, sharded; same drops and keys per drop,
the rates equal the one-device run to rounding).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from jaxpass import beamforming as bf
from jaxpass import parallel
from jaxpass.channel import effective_channel
from jaxpass.config import PassConfig
from jaxpass.geometry import sample_users, uniform_positions
from jaxpass.metrics import sum_rate
from jaxpass.optimize import positions as tuning
from jaxpass.runtime.io import environment, write_json, write_text, writes_result_set

FIGURES = ("power", "pinches", "length")
METHODS = {
    "uniform_wmmse": "uniform + WMMSE",
    "tuning": "tuning (ZF)",
    "mm_pdd": "MM-PDD",
    "hybrid_mimo": "hybrid MIMO",
    "digital_mimo": "digital MIMO",
}
#: MM-PDD stays at its uniform start (see jaxpass.optimize.mm_pdd), so it draws on top of
#: uniform + WMMSE: a dashed line with crosses keeps both visible
_STYLES = {"uniform_wmmse": "o-", "tuning": "s-", "mm_pdd": "x--", "hybrid_mimo": "^-", "digital_mimo": "v-"}
_AXES = {"power": ("power_dbm", "P [dBm]"), "pinches": ("num_pinches", "L (pinches per waveguide)"),
         "length": ("length_x", "S_x [m]")}


@dataclass(frozen=True)
class Settings:
    figures: tuple = FIGURES
    methods: tuple = tuple(METHODS)
    drops: int = 16
    seed: int = 0
    powers_dbm: tuple = (10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 22.0, 24.0)
    pinches: tuple = (8, 16, 24, 32)
    lengths: tuple = (5.0, 10.0, 15.0, 20.0, 25.0)
    tune: dict = field(default_factory=lambda: dict(steps=300, starts=8))
    wmmse_iterations: int = 100
    mm_pdd: dict = field(default_factory=lambda: dict(max_outer=100, max_inner=50))
    hybrid_iterations: int = 200
    tune_seed: int = 1


def quick_settings() -> Settings:
    """A smoke test: 2 drops, two points per sweep, short runs."""
    return Settings(drops=2, powers_dbm=(10.0, 24.0), pinches=(8, 16), lengths=(10.0, 20.0),
                    tune=dict(steps=10, starts=1, assignments=2, spacings=(0.0,), random_starts=0),
                    wmmse_iterations=10, mm_pdd=dict(max_outer=2, max_inner=3), hybrid_iterations=10)


def _log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def _rates_fn(name: str, s: Settings):
    """``(cfg, users (B, K, 2), keys (B,)) -> (B,)`` sum rates of one method; ``cfg`` is a traced argument.

    ``keys`` (:func:`drop_keys`) are the per-drop keys of the tuning's random starts.
    """

    def one(cfg, u, key):
        if name == "tuning":
            return tuning.tune_drop(key, cfg, u, tuning.TuneOptions(beamformer="zf", **s.tune)).sum_rate
        if name == "uniform_wmmse":
            X = uniform_positions(cfg, u.dtype)
            H = effective_channel(cfg, X, u)
            return sum_rate(H, bf.wmmse(H, cfg.power, cfg.noise_power, iterations=s.wmmse_iterations),
                            cfg.noise_power)
        if name == "mm_pdd":
            from jaxpass.optimize import mm_pdd
            return mm_pdd.mm_pdd(cfg, u, **s.mm_pdd).sum_rate
        from jaxpass.optimize import mimo
        if name == "hybrid_mimo":
            return mimo.hybrid(cfg, u, iterations=s.hybrid_iterations).sum_rate
        return mimo.digital(cfg, u, wmmse_iterations=s.wmmse_iterations).sum_rate

    def run(cfg, users, keys):
        return jax.vmap(lambda u, k: one(cfg, u, k))(users, keys)

    return run


def drop_keys(s: Settings, drops: int):
    """``(drops,)`` per-drop keys: ``jax.random.split(jax.random.key(s.tune_seed), drops)``."""
    return jax.random.split(jax.random.key(s.tune_seed), drops)


class _Method:
    """One method, compiled once per static configuration (power and length are traced); ``mesh``: the
    drops padded and sharded over its devices (:func:`jaxpass.parallel.place`), ``None``: one device."""

    def __init__(self, name: str, s: Settings, mesh=None):
        self.name, self.s, self.mesh = name, s, mesh
        self.jitted = jax.jit(_rates_fn(name, s))
        self.compiled = None
        self.compile_s = 0.0
        self.float64 = name == "mm_pdd"

    def __call__(self, cfg: PassConfig, users):
        """Rates of ``users`` under ``cfg`` (same static fields as the first call): ``(rates, seconds)``."""
        with jax.enable_x64(True) if self.float64 else contextlib.nullcontext():
            u = jnp.asarray(np.asarray(users), jnp.float64 if self.float64 else users.dtype)
            args, pad = (cfg, u, drop_keys(self.s, u.shape[0])), 0
            if self.mesh is not None:
                args, _, pad = parallel.place(self.mesh, args, (None, 0, 0))
            if self.compiled is None:
                t0 = time.perf_counter()
                self.compiled = self.jitted.lower(*args).compile()
                self.compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            rates = jax.block_until_ready(self.compiled(*args))
            seconds = time.perf_counter() - t0
            return np.asarray(parallel.gather(parallel.unpad(rates, pad)), np.float64), seconds


def _points(s: Settings, figure: str):
    base = PassConfig.joint_beamforming()
    if figure == "power":
        return [(p, base.replace(power_dbm=float(p))) for p in s.powers_dbm]
    if figure == "pinches":
        return [(L, base.replace(num_pinches=int(L))) for L in s.pinches]
    return [(x, base.replace(length_x=float(x))) for x in s.lengths]


def run_sweeps(settings: Settings | None = None, *, mesh=None) -> dict:
    """Run the chosen sweeps (``mesh``: each point's drops data-parallel over its devices).

    Returns ``{"settings", "figures": {figure: {...}}, "wall_s"}``.
    """
    s = settings or Settings()
    bad = [f for f in s.figures if f not in FIGURES] + [m for m in s.methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown figure(s)/method(s) {bad}; figures {FIGURES}, methods {list(METHODS)}")
    t_start = time.perf_counter()
    figures = {}
    total = sum(len(_points(s, f)) for f in s.figures) * len(s.methods)
    done = 0
    for figure in s.figures:
        points = _points(s, figure)
        field_name, xlabel = _AXES[figure]
        res = {"x": [float(x) for x, _ in points], "xlabel": xlabel, "field": field_name,
               "methods": {m: {"mean": [], "std": [], "ms_per_drop": [], "compile_s": []} for m in s.methods}}
        methods = {}
        for x, cfg in points:
            users = sample_users(jax.random.key(s.seed), cfg, (s.drops,))
            for m in s.methods:
                key = (m, cfg.num_pinches)
                if key not in methods:  # a new static configuration: compile anew
                    methods[key] = _Method(m, s, mesh)
                rates, seconds = methods[key](cfg, users)
                entry = res["methods"][m]
                entry["mean"].append(float(rates.mean()))
                entry["std"].append(float(rates.std()))
                entry["ms_per_drop"].append(1e3 * seconds / s.drops)
                entry["compile_s"].append(methods[key].compile_s)
                done += 1
                _log(f"[sweeps {done}/{total}] {figure}: {xlabel} = {x:g}, {METHODS[m]}: "
                     f"{rates.mean():.2f} bps/Hz ({1e3 * seconds / s.drops:.3g} ms/drop)")
        figures[figure] = res
    return {"settings": s, "figures": figures, "wall_s": time.perf_counter() - t_start}


def markdown(results: dict) -> str:
    """One markdown table per sweep: mean sum rate [bps/Hz] per method and point."""
    lines = []
    for res in results["figures"].values():
        methods = list(res["methods"])
        lines += [f"### sum rate [bps/Hz] vs {res['xlabel']}", "",
                  "| " + res["xlabel"] + " | " + " | ".join(METHODS[m] for m in methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        for i, x in enumerate(res["x"]):
            cells = [f"{res['methods'][m]['mean'][i]:.2f}" for m in methods]
            lines.append(f"| {x:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict):
    """One panel per sweep: mean ± std sum rate vs the swept parameter, one line per method."""
    from jaxpass.plotting import plt

    figs = results["figures"]
    fig, axes = plt.subplots(1, len(figs), figsize=(5.2 * len(figs), 4.0), squeeze=False)
    for ax, res in zip(axes[0], figs.values()):
        x = np.asarray(res["x"])
        for m, entry in res["methods"].items():
            mean, std = np.asarray(entry["mean"]), np.asarray(entry["std"])
            ax.plot(x, mean, _STYLES.get(m, "o-"), label=METHODS[m], ms=5)
            ax.fill_between(x, mean - std, mean + std, alpha=0.12)
        ax.set_xlabel(res["xlabel"])
        ax.set_ylabel("sum rate [bps/Hz]")
        ax.grid(alpha=0.3)
        ax.set_title(f"sum rate vs {res['xlabel']}")
    axes[0][0].legend(fontsize=8)
    s = results["settings"]
    fig.suptitle(f"JB preset, K = N = 4, {s.drops} drops (seed {s.seed})", fontsize=10)
    fig.tight_layout()
    return fig


@writes_result_set("reproduce sweeps")
def write_outputs(results: dict, out_dir) -> dict:
    """``sweeps.json``, ``sweeps.md`` and ``sweeps.png`` in ``out_dir`` (atomic writes)."""
    import dataclasses

    from jaxpass.plotting import save_figure

    os.makedirs(out_dir, exist_ok=True)
    s = results["settings"]
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(s).items()}
    payload = {"experiment": "sweeps", "settings": settings, "figures": results["figures"],
               "wall_s": results["wall_s"], "env": environment()}
    return {"json": write_json(os.path.join(out_dir, "sweeps.json"), payload),
            "markdown": write_text(os.path.join(out_dir, "sweeps.md"), markdown(results) + "\n"),
            "figure": save_figure(plot(results), os.path.join(out_dir, "sweeps.png"))}

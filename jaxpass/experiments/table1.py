"""JB Table I: optimisation rows, and learned rows on request (``jaxpass reproduce table1``; docs/model.md §3.3-§3.5).

K = N = 4 users and waveguides, L in {8, 16} pinches, P = 10 dBm, the JB preset
(``PassConfig.joint_beamforming``), ``drops`` test drops from a fixed seed
(default 64 drops, seed 0: ``sample_users(jax.random.key(seed), cfg, (drops,))``,
the same drops for every row and both L). Rows:

* ``uniform + ZF``, ``uniform + WMMSE``: evenly spread pinches, closed-form /
  iterative transmit beamforming (docs/model.md §3.1);
* ``tuning (ZF|RZF|WMMSE|KKT)``: :func:`jaxpass.optimize.positions.tune_positions`
  with that beamformer (physics-guided starts + projected Adam);
* ``MM-PDD``: JB Algorithm 1 (:mod:`jaxpass.optimize.mm_pdd`), run in float64
  (its residual tolerance ``eps = 1e-6`` on ~1e4 rad phases is below float32
  resolution; docs/model.md §3.3), from uniform positions, its best feasible iterate;
* ``hybrid MIMO`` (JB's conventional baseline) and ``digital MIMO`` (TT's):
  :mod:`jaxpass.optimize.mimo`, same drops, same power budget;
* ``interference-free reference``: :func:`interference_free_rate`, what one
  dedicated, perfectly phase-aligned waveguide per user would give with equal
  power and no interference (a reference, not a bound: ZF can place pinches
  off the user's x and beat the equal-power split).

Learned rows (:data:`LEARNED_ROWS`, opt-in through ``rows``; :func:`learned_row`):
the papers' KDL-Transformer, its OCA variant, KDL-ResNet and the black-box
Transformer / ResNet (JB §IV-§V, :mod:`jaxpass.learn.models`), loaded from
``learned_dir`` (``jaxpass train --out``) or trained here for a step budget
(``learn``) on drops of ``learn_seed`` (never the table's); a saved model must
match its row (:func:`check_saved_model`: the model name in its metadata, not
the folder's, the scenario, and ``learn``'s step count); jaxpass's aligned
model (:mod:`jaxpass.learn.aligned`, fitted here) and the same model's layout
refined by ``refine_steps`` projected Adam steps. Their s/drop is the
compiled inference (decode and beamformer); the training time, samples/s and
the in-sample training rate go to the JSON beside the held-out rates.

Columns: mean +- std sum rate over the drops [bps/Hz], the fraction of drops
whose returned positions are feasible (PASS rows only), seconds per drop (one
batched, compiled call over all drops divided by their number; compilation
excluded and reported apart) and the paper's number (JB Table I / docs/model.md §3.4:
MM-PDD 49.76 at L = 8 and 47.20 at L = 16, conventional MIMO 32.14; the
KDL-Transformer's 65.83 is listed as a paper-only row).

Every row is one ``jaxpass.jit``-compiled, vmapped computation: compiled first
(``lower().compile()``, timed as ``compile_s``), then called once and blocked on.
With ``mesh`` (:func:`jaxpass.parallel.drops_mesh`; ``jaxpass reproduce table1
--devices N``) every row's drops run data-parallel over its devices
(:func:`jaxpass.experiments.cli_args.run_batched`: padded, sharded, unpadded;
same drops and keys, the rates equal the one-device run to rounding).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxpass import beamforming as bf
from jaxpass.channel import effective_channel, radiation_amplitudes
from jaxpass.config import PassConfig
from jaxpass.experiments.cli_args import run_batched
from jaxpass.geometry import is_feasible, sample_users, uniform_positions
from jaxpass.metrics import sum_rate
from jaxpass.optimize import positions as tuning
from jaxpass.optimize.assignment import best_assignment
from jaxpass.runtime.io import environment, write_json, write_text, writes_result_set

#: optimisation row id -> label, in table order (the default rows)
OPTIMISATION_ROWS = {
    "uniform_zf": "uniform + ZF",
    "uniform_wmmse": "uniform + WMMSE",
    "tune_zf": "tuning (ZF)",
    "tune_rzf": "tuning (RZF)",
    "tune_wmmse": "tuning (WMMSE)",
    "tune_kkt": "tuning (KKT duals)",
    "ablation_zf": "tuning (ZF), no aligned starts (ablation)",
    "mm_pdd": "MM-PDD (JB Alg. 1)",
    "hybrid_mimo": "hybrid MIMO",
    "digital_mimo": "digital MIMO",
    "interference_free": "interference-free reference (one waveguide per user, equal power)",
}

#: learned row id -> label (JB §IV's models and jaxpass's aligned model): opt-in with ``rows``
LEARNED_ROWS = {
    "kdl_transformer": "KDL-Transformer (JB)",
    "kdl_oca": "KDL-Transformer, OCA (JB)",
    "kdl_resnet": "KDL-ResNet (JB)",
    "blackbox_transformer": "black-box Transformer (JB)",
    "blackbox_resnet": "black-box ResNet (JB)",
    "aligned": "aligned model (jaxpass, learned)",
    "aligned_refine": "aligned model + refinement (jaxpass)",
}

#: learned row id -> :data:`jaxpass.learn.models.ARCHITECTURES` name (the papers' models, trained by ``jaxpass train``)
JB_MODEL_NAMES = {"kdl_transformer": "kdl-transformer", "kdl_oca": "kdl-transformer-oca", "kdl_resnet": "kdl-resnet",
                "blackbox_transformer": "blackbox-transformer", "blackbox_resnet": "blackbox-resnet"}

#: every row id -> label
ROWS = {**OPTIMISATION_ROWS, **LEARNED_ROWS}

#: JB Table I (K = 4, P = 10 dBm) as quoted in docs/model.md §3.4, by (row, L) [bps/Hz]
PAPER = {("mm_pdd", 8): 49.76, ("mm_pdd", 16): 47.20, ("hybrid_mimo", 8): 32.14, ("kdl_transformer", 8): 65.83,
         ("kdl_oca", 8): 55.61, ("kdl_resnet", 8): 43.03, ("blackbox_transformer", 8): 15.99,
         ("blackbox_resnet", 8): 16.46}
#: paper-only rows (no jaxpass counterpart in this table), by L
PAPER_ONLY = {8: {"KDL-Transformer (JB, paper)": 65.83}}

#: the issue's acceptance targets for the tuning rows at K = N = 4, L = 8, P = 10 dBm
TARGET_MEAN = 82.0
TARGET_SECONDS_PER_DROP = 2.0


@dataclass(frozen=True)
class Settings:
    """Sizes and iteration counts of one table run (defaults: the full table)."""

    num_pinches: tuple = (8, 16)
    drops: int = 64
    seed: int = 0
    power_dbm: float = 10.0
    rows: tuple = tuple(OPTIMISATION_ROWS)
    tune: dict = field(default_factory=lambda: dict(steps=1000, starts=16))
    #: the papers' models: :class:`jaxpass.learn.train.TrainOptions` overrides (a step budget; JB §V's sizes)
    learn: dict = field(default_factory=lambda: dict(steps=1000, eval_every=50, log_every=50))
    #: folder of trained models, ``<learned_dir>/<model>-L<L>`` (``jaxpass train --out``); None: train, keep nothing
    learned_dir: str | None = None
    #: model size kwargs by model name (default: the papers' sizes)
    learn_sizes: dict = field(default_factory=dict)
    learn_seed: int = 1000
    #: the aligned model: :class:`jaxpass.learn.aligned.AlignedOptions` overrides; top_k and refine steps
    aligned: dict = field(default_factory=dict)
    refine_steps: int = 20
    wmmse_iterations: int = 100
    mm_pdd: dict = field(default_factory=lambda: dict(max_outer=100, max_inner=50))
    mm_pdd_float64: bool = True
    hybrid_iterations: int = 200
    tune_seed: int = 1


def quick_settings() -> Settings:
    """``--quick``: L = 8 only, 4 drops, short tuning and MM-PDD runs (a smoke test, < 2 min on CPU)."""
    return Settings(num_pinches=(8,), drops=4,
                    tune=dict(steps=20, starts=2, assignments=4, spacings=(0.0,), random_starts=1),
                    wmmse_iterations=20, mm_pdd=dict(max_outer=3, max_inner=5), hybrid_iterations=20,
                    learn=dict(steps=4, train_drops=256, eval_every=2, log_every=2), learn_sizes=QUICK_MODEL_SIZES,
                    aligned=dict(train_drops=256, steps=30, hidden=16, layers=1, batch_size=64), refine_steps=2)


_QUICK_TRANSFORMER = dict(d_model=16, num_heads=2, ffn=32)
_QUICK_RESNET = dict(width=16, hidden=32, num_blocks=2)
#: ``--quick`` model sizes by model name (the full table uses the papers', ``jaxpass.learn.models``' defaults)
QUICK_MODEL_SIZES = {"kdl-transformer": _QUICK_TRANSFORMER, "kdl-transformer-oca": _QUICK_TRANSFORMER,
                     "blackbox-transformer": _QUICK_TRANSFORMER, "kdl-resnet": _QUICK_RESNET,
                     "blackbox-resnet": _QUICK_RESNET}


@dataclass
class RowResult:
    """One row of the table for one L."""

    row: str
    label: str
    num_pinches: int
    rates: np.ndarray  # (drops,) [bps/Hz]
    seconds: float  # wall time of the compiled batched call [s]
    compile_s: float
    feasible: np.ndarray | None = None  # (drops,) bool, rows that return positions
    extra: dict = field(default_factory=dict)
    model: Any = field(default=None, repr=False)  # learned rows: the trained model (not serialised)

    @property
    def seconds_per_drop(self) -> float:
        return self.seconds / len(self.rates)

    def summary(self) -> dict:
        out = {"row": self.row, "label": self.label, "L": self.num_pinches,
               "mean": float(np.mean(self.rates)), "std": float(np.std(self.rates)),
               "min": float(np.min(self.rates)), "max": float(np.max(self.rates)),
               "seconds_per_drop": self.seconds_per_drop, "compile_s": self.compile_s,
               "feasible_fraction": None if self.feasible is None else float(np.mean(self.feasible)),
               "paper": PAPER.get((self.row, self.num_pinches)),
               "rates": [float(r) for r in self.rates]}
        out.update(self.extra)
        return out


def _log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def table_config(num_pinches: int = 8, power_dbm: float = 10.0) -> PassConfig:
    """The JB Table I scenario: ``PassConfig.joint_beamforming(num_pinches=L, power_dbm=P)``."""
    return PassConfig.joint_beamforming(num_pinches=int(num_pinches), power_dbm=float(power_dbm))


def table_drops(cfg: PassConfig, drops: int = 64, seed: int = 0):
    """The fixed test drops: ``(drops, K, 2)`` users uniform over the area, ``jax.random.key(seed)``."""
    return sample_users(jax.random.key(seed), cfg, (drops,))


# ------------------------------------------------------------------ rows
def uniform_row(cfg: PassConfig, users, beamformer: str, wmmse_iterations: int = 100, *, mesh=None) -> RowResult:
    """Uniform positions + ZF or WMMSE (``beamformer`` in ``{"zf", "wmmse"}``)."""
    X = uniform_positions(cfg, users.dtype)

    def run(users):
        def one(u):
            H = effective_channel(cfg, X, u)
            if beamformer == "zf":
                W = bf.zf(H, cfg.power)
            else:
                W = bf.wmmse(H, cfg.power, cfg.noise_power, iterations=wmmse_iterations)
            return sum_rate(H, W, cfg.noise_power)
        return jax.vmap(one)(users)

    rates, seconds, compile_s = run_batched(run, users, mesh=mesh)
    row = "uniform_zf" if beamformer == "zf" else "uniform_wmmse"
    feasible = np.full(users.shape[0], bool(is_feasible(cfg, X)))
    return RowResult(row, ROWS[row], cfg.num_pinches, np.asarray(rates), seconds, compile_s, feasible)


def tuning_row(cfg: PassConfig, users, beamformer: str, key, row: str | None = None, *, mesh=None,
               **options) -> RowResult:
    """``tune_positions`` with ``beamformer`` on all drops in one compiled call (row id default ``tune_<beamformer>``)."""
    opts = tuning.TuneOptions(beamformer=beamformer, **options)
    keys, batch = tuning.tuning_inputs(cfg, users, key, opts)
    res, seconds, compile_s = run_batched(tuning.tune_batch, keys, cfg, batch, mesh=mesh, in_axes=(0, None, 0),
                                          options=opts)
    row = row or f"tune_{beamformer}"
    extra = {"start_rate_mean": float(jnp.mean(res.start_rate)),
             "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.asdict().items()}}
    return RowResult(row, ROWS[row], cfg.num_pinches, np.asarray(res.sum_rate), seconds, compile_s,
                     np.asarray(is_feasible(cfg, res.positions)), extra)


def mm_pdd_row(cfg: PassConfig, users, *, float64: bool = True, mesh=None, **options) -> RowResult:
    """JB Algorithm 1 (:func:`jaxpass.optimize.mm_pdd.mm_pdd`) on every drop, vmapped.

    Runs under ``jax.enable_x64`` with float64 users when ``float64`` (docs/model.md §3.3:
    ``eps = 1e-6`` needs it). Reports the best feasible iterate's rate and, in
    ``extra``, the fraction of drops that reached ``||B||_inf <= eps``, the mean
    outer iterations and the mean rate of the raw final iterate.
    """
    from jaxpass.optimize import mm_pdd

    ctx = jax.enable_x64(True) if float64 else contextlib.nullcontext()
    with ctx:
        u = jnp.asarray(np.asarray(users), jnp.float64 if float64 else users.dtype)
        res, seconds, compile_s = run_batched(lambda uu: jax.vmap(lambda d: mm_pdd.mm_pdd(cfg, d, **options))(uu), u,
                                              mesh=mesh)
        feasible = np.asarray(is_feasible(cfg, res.positions))
        extra = {"float64": bool(float64),
                 "converged_fraction": float(np.mean(np.asarray(res.converged))),
                 "outer_iterations_mean": float(np.mean(np.asarray(res.outer_iterations))),
                 "final_iterate_mean": float(np.mean(np.asarray(res.final_sum_rate))),
                 "initial_mean": float(np.mean(np.asarray(res.initial_sum_rate))),
                 "options": dict(options)}
        rates = np.asarray(res.sum_rate, np.float64)
    return RowResult("mm_pdd", ROWS["mm_pdd"], cfg.num_pinches, rates, seconds, compile_s, feasible, extra)


def mimo_row(cfg: PassConfig, users, kind: str, *, hybrid_iterations: int = 200,
             wmmse_iterations: int = 100, mesh=None) -> RowResult:
    """Conventional MIMO baselines (:mod:`jaxpass.optimize.mimo`): ``kind`` = ``"hybrid"`` or ``"digital"``."""
    from jaxpass.optimize import mimo

    if kind == "hybrid":
        def run(users):
            def one(u):
                r = mimo.hybrid(cfg, u, iterations=hybrid_iterations)
                return r.sum_rate, mimo.unit_modulus_error(r.analog)
            return jax.vmap(one)(users)
    elif kind == "digital":
        def run(users):
            return jax.vmap(lambda u: (mimo.digital(cfg, u, wmmse_iterations=wmmse_iterations).sum_rate,
                                       jnp.zeros((), users.dtype)))(users)
    else:
        raise ValueError(f"kind must be 'hybrid' or 'digital', got {kind!r}")
    (rates, um), seconds, compile_s = run_batched(run, users, mesh=mesh)
    row = f"{kind}_mimo"
    extra = {"unit_modulus_error": float(jnp.max(um))} if kind == "hybrid" else {}
    return RowResult(row, ROWS[row], cfg.num_pinches, np.asarray(rates), seconds, compile_s, None, extra)



def interference_free_rate(cfg: PassConfig, users):
    """Interference-free reference sum rate of one drop [bps/Hz], scalar (K = N).

    ``max_a sum_n log2(1 + (P/K) beta (sum_l a[n,l])^2 / (sigma^2 (h^2 + (y_{a(n)} - y_n)^2)))``
    over the waveguide-to-user permutations ``a`` (solved exactly by
    :func:`jaxpass.optimize.assignment.best_assignment`): waveguide n serves
    user ``a(n)`` alone with power P/K, its L pinches right at the user's x and
    adding coherently (docs/model.md §3.1: the LoS channel with amplitudes
    ``a[n,l]``, ``(sum_l a)^2 = L`` for equal radiation). ``users (K, 2)``
    metres. Needs ``K == N`` (one user per waveguide).
    """
    if cfg.num_users != cfg.num_waveguides:
        raise ValueError(f"the interference-free reference needs K == N, got K={cfg.num_users}, N={cfg.num_waveguides}")
    dt = users.dtype
    coherent = jnp.sum(radiation_amplitudes(cfg, dtype=dt), axis=-1) ** 2  # (N,)
    dy2 = (cfg.lane_y.astype(dt)[:, None] - users[None, :, 1]) ** 2  # (N, K)
    snr = (cfg.power / cfg.num_users) * cfg.beta * coherent[:, None] / (cfg.noise_power * (cfg.height ** 2 + dy2))
    _, neg_rate = best_assignment(-jnp.log2(1.0 + snr))  # exact: a linear assignment problem
    return -neg_rate


def interference_free_row(cfg: PassConfig, users, *, mesh=None) -> RowResult:
    """:func:`interference_free_rate` on every drop (no positions returned: feasibility not applicable)."""
    rates, seconds, compile_s = run_batched(jax.vmap(lambda u: interference_free_rate(cfg, u)), users, mesh=mesh)
    row = "interference_free"
    return RowResult(row, ROWS[row], cfg.num_pinches, np.asarray(rates), seconds, compile_s, None)


def run_row(row: str, cfg: PassConfig, users, settings: Settings, *, mesh=None, model=None) -> RowResult:
    """Dispatch one row id of :data:`ROWS` (``mesh``: the drops data-parallel over its devices;
    ``model``: a learned row's trained model, e.g. the ``aligned`` row's for ``aligned_refine``)."""
    if row in ("uniform_zf", "uniform_wmmse"):
        return uniform_row(cfg, users, row.split("_")[1], settings.wmmse_iterations, mesh=mesh)
    if row.startswith("tune_"):
        return tuning_row(cfg, users, row[5:], jax.random.key(settings.tune_seed), mesh=mesh, **settings.tune)
    if row == "ablation_zf":  # the same budget without the phase-aligned starts: uniform + random ones
        options = dict(settings.tune, assignments=0, random_starts=settings.tune.get("starts", 8) - 1)
        return tuning_row(cfg, users, "zf", jax.random.key(settings.tune_seed), row=row, mesh=mesh, **options)
    if row == "mm_pdd":
        return mm_pdd_row(cfg, users, float64=settings.mm_pdd_float64, mesh=mesh, **settings.mm_pdd)
    if row in ("hybrid_mimo", "digital_mimo"):
        return mimo_row(cfg, users, row.split("_")[0], hybrid_iterations=settings.hybrid_iterations,
                        wmmse_iterations=settings.wmmse_iterations, mesh=mesh)
    if row == "interference_free":
        return interference_free_row(cfg, users, mesh=mesh)
    if row in LEARNED_ROWS:
        return learned_row(cfg, users, row, settings, mesh=mesh, model=model)
    raise ValueError(f"unknown row {row!r}; choose from {list(ROWS)}")


def run_table1(settings: Settings | None = None, *, mesh=None) -> dict:
    """Run every row for every L; progress on stderr (``mesh``: the drops data-parallel over its devices).

    Returns:
      ``{"settings": ..., "tables": {L: [RowResult, ...]}, "acceptance": [...], "wall_s": ...}``.
    """
    s = settings or Settings()
    unknown = [r for r in s.rows if r not in ROWS]
    if unknown:
        raise ValueError(f"unknown row(s) {unknown}; choose from {list(ROWS)}")
    t_start = time.perf_counter()
    tables = {}
    for L in s.num_pinches:
        cfg = table_config(L, s.power_dbm)
        users = table_drops(cfg, s.drops, s.seed)
        tables[int(L)] = []
        for i, row in enumerate(s.rows, start=1):
            t0 = time.perf_counter()
            previous = {p.row: p.model for p in tables[int(L)]}
            r = run_row(row, cfg, users, s, mesh=mesh, model=previous.get("aligned") if row == "aligned_refine" else None)
            tables[int(L)].append(r)
            _log(f"[table1] L={L} [{i}/{len(s.rows)}] {r.label}: {np.mean(r.rates):.2f} ± {np.std(r.rates):.2f} "
                 f"bps/Hz, {r.seconds_per_drop * 1e3:.3g} ms/drop, compile {r.compile_s:.1f} s "
                 f"({time.perf_counter() - t0:.1f} s)")
    return {"settings": s, "tables": tables, "acceptance": acceptance(tables, s),
            "wall_s": time.perf_counter() - t_start}


# ------------------------------------------------------------------ learned rows
def learned_folder(settings: Settings, row: str, num_pinches: int) -> str | None:
    """``<learned_dir>/<model>-L<L>``, where the JB learned row ``row`` is loaded from or saved to (None: no folder)."""
    if settings.learned_dir is None:
        return None
    return os.path.join(settings.learned_dir, f"{JB_MODEL_NAMES[row]}-L{int(num_pinches)}")


def _paper_options(row: str, settings: Settings, drops: int):
    """The :class:`~jaxpass.learn.train.TrainOptions` a JB learned row is trained with here."""
    from jaxpass.learn import train as tr

    name = JB_MODEL_NAMES[row]
    return tr.TrainOptions(model=name, data_seed=settings.learn_seed, test_seed=settings.seed,
                           test_drops=drops, checkpoint_every=0,
                           model_kwargs=settings.learn_sizes.get(name, ())).replace(**settings.learn)


def check_saved_model(meta: dict, folder, row: str, cfg: PassConfig, settings: Settings) -> None:
    """Refuse a saved model that is not what the row asks for: another model (the folder name is not trusted),
    another scenario, another training length than ``settings.learn``'s (``--train-steps``), or training drops
    of the table's seed.

    Raises:
      ValueError: one line naming the folder, the saved value and the requested one.
    """
    from jaxpass.learn import checkpoint as ckpt
    from jaxpass.learn import train as tr

    name = JB_MODEL_NAMES[row]
    if meta.get("model") != name:
        raise ValueError(f"the checkpoint in {folder} holds model {meta.get('model')!r}, not {name!r} (the "
                         f"{LEARNED_ROWS[row]} row); put a {name} run there (jaxpass train --model {name})")
    saved_cfg = ckpt.cfg_from_dict(meta["cfg"])
    if ckpt.cfg_to_dict(tr.canonical_cfg(saved_cfg)) != ckpt.cfg_to_dict(tr.canonical_cfg(cfg)):
        raise ValueError(f"the checkpoint in {folder} was trained on another scenario than this table's "
                         f"(K = N = 4, L = {cfg.num_pinches}, P = {settings.power_dbm:g} dBm)")
    steps = _paper_options(row, settings, settings.drops).total_steps
    if int(meta.get("step", -1)) != steps:
        raise ValueError(f"the checkpoint in {folder} is at step {meta.get('step')}, but the table asks for "
                         f"{steps} training steps (--train-steps); give --train-steps {meta.get('step')} to use it, "
                         "or another --learned-dir")
    saved = meta.get("options", {})
    if saved.get("data_seed") == settings.seed and not saved.get("stream"):
        raise ValueError(f"the model in {folder} was trained on drops of seed {settings.seed}, which holds this "
                         f"table's test drops; train it on another seed (jaxpass train --data-seed 1000)")


def check_learned_dir(settings: Settings) -> None:
    """:func:`check_saved_model` for every saved model the table would load (metadata only, nothing runs).

    Raises:
      ValueError: the first saved model that does not match (also a missing or corrupt checkpoint folder
        that has saved steps, as :class:`~jaxpass.learn.checkpoint.CheckpointError`).
    """
    from jaxpass.learn import checkpoint as ckpt

    for L in settings.num_pinches:
        for row in settings.rows:
            folder = learned_folder(settings, row, L) if row in JB_MODEL_NAMES else None
            if folder is not None and ckpt.checkpoint_steps(os.path.join(folder, "checkpoints")):
                meta = ckpt.read_metadata(os.path.join(folder, "checkpoints"))
                check_saved_model(meta, folder, row, table_config(L, settings.power_dbm), settings)


def _paper_model(cfg: PassConfig, row: str, settings: Settings, drops: int):
    """The trained model of a JB learned row: loaded from ``learned_dir`` or trained here; ``(model, extra)``.

    Training (:func:`jaxpass.learn.train.train`): ``settings.learn`` overrides
    :class:`~jaxpass.learn.train.TrainOptions` (default: 1000 steps of batch 64
    on the authors' fixed 30 000-drop split, JB §V sizes and schedule); the
    training drops come from seed ``learn_seed``, never the table's, and the
    test drops it evaluates on during training are the table's drops (so its
    metrics log is the sum-rate-vs-epoch curve of JB Fig. 3 on the rows' drops).
    """
    from jaxpass.learn import checkpoint as ckpt
    from jaxpass.learn import train as tr

    folder = learned_folder(settings, row, cfg.num_pinches)
    if folder is not None and ckpt.checkpoint_steps(os.path.join(folder, "checkpoints")):
        model, saved_cfg, meta = tr.load_checkpoint(folder)
        check_saved_model(meta, folder, row, cfg, settings)
        history = tr.read_metrics(os.path.join(folder, "metrics.jsonl"), meta["step"])
        return model, {"source": f"checkpoint {folder} (step {meta['step']})", "train": {"steps": meta["step"]},
                       "history": history}
    options = _paper_options(row, settings, drops)
    res = tr.train(cfg, options, out_dir=folder, progress=False)
    last = next((r for r in reversed(res.history) if r.get("train_sum_rate") is not None), {})
    train = {"steps": res.step, "batch_size": options.batch_size, "train_drops": options.train_drops,
             "epochs": res.step * options.batch_size / options.train_drops, "train_s": res.train_seconds,
             "samples_per_s": res.samples_per_s, "in_sample_sum_rate": last.get("train_sum_rate"),
             "options": options.asdict()}
    return res.model, {"source": "trained here" + ("" if folder is None else f" (saved to {folder})"),
                       "train": train, "history": res.history}


def _aligned_model(cfg: PassConfig, settings: Settings):
    """jaxpass's aligned model (:mod:`jaxpass.learn.aligned`), fitted here on drops of ``learn_seed``."""
    from flax import nnx

    from jaxpass.learn import aligned as al

    options = al.AlignedOptions(**settings.aligned)
    t0 = time.perf_counter()
    fit = al.fit_aligned(jax.random.key(settings.learn_seed), cfg, options)
    jax.block_until_ready(nnx.state(fit.model))
    train_s = time.perf_counter() - t0
    steps = options.steps + options.finetune_steps
    return fit.model, {"source": "trained here", "train": {
        "steps": steps, "batch_size": options.batch_size, "train_drops": options.train_drops, "train_s": train_s,
        "samples_per_s": steps * min(options.batch_size, options.train_drops) / train_s,
        "options": options.asdict()}}


def learned_row(cfg: PassConfig, users, row: str, settings: Settings, *, mesh=None, model=None) -> RowResult:
    """A learned row of :data:`LEARNED_ROWS` on the table's drops (compiled inference timed as every row).

    The papers' models are loaded from ``settings.learned_dir`` or trained
    here (:func:`_paper_model`); the aligned model is fitted here
    (``aligned_refine`` reuses ``model``, the ``aligned`` row's, when given).
    Inference: positions and beamformer of every drop in one compiled call
    (decode and beamformer included; ``aligned_refine``: plus
    ``refine_steps`` projected Adam steps from the decoded layout,
    :func:`jaxpass.learn.aligned.refine`). ``extra`` holds the training record
    (steps, time, samples/s, the last in-sample training sum rate) and, for
    the papers' models, the metrics history (test sum rate per evaluation).
    """
    from flax import nnx

    from jaxpass.learn import aligned as al
    from jaxpass.learn.decode import predict

    if row in JB_MODEL_NAMES:
        model, extra = _paper_model(cfg, row, settings, users.shape[0])
    elif row in ("aligned", "aligned_refine"):
        extra = {"source": "the aligned row's model"}
        if model is None:
            model, extra = _aligned_model(cfg, settings)
    else:
        raise ValueError(f"unknown learned row {row!r}; choose from {list(LEARNED_ROWS)}")
    graphdef, state = nnx.split(model)
    refine = tuning.TuneOptions(beamformer="zf", steps=settings.refine_steps) if row == "aligned_refine" else None

    def run(state, users):
        m = nnx.merge(graphdef, state)
        if refine is not None:
            out = al.refine(m, cfg, users, refine)
            return out.positions, out.sum_rate
        if isinstance(m, al.AlignedNet):
            out = m.decode_info(cfg, m(users))
            return out.positions, out.sum_rate
        X, W = predict(m, cfg, users)
        return X, jax.vmap(lambda X, W, u: sum_rate(effective_channel(cfg, X, u), W, cfg.noise_power))(X, W, users)

    (X, rates), seconds, compile_s = run_batched(run, state, users, mesh=mesh, in_axes=(None, 0))
    if refine is not None:
        extra = {**extra, "refine_steps": settings.refine_steps}
    return RowResult(row, ROWS[row], cfg.num_pinches, np.asarray(rates), seconds, compile_s,
                     np.asarray(is_feasible(cfg, X)), extra, model)


def acceptance(tables: dict, settings: Settings) -> list:
    """The issue's check on the tuning rows at L = 8 (informational rows with ``status``)."""
    out = []
    for r in tables.get(8, []):
        if not r.row.startswith("tune_"):
            continue
        mean = float(np.mean(r.rates))
        feasible = bool(np.all(r.feasible))
        ok = mean >= TARGET_MEAN and feasible and r.seconds_per_drop < TARGET_SECONDS_PER_DROP
        out.append({"row": r.row, "label": r.label, "mean": mean, "all_feasible": feasible,
                    "seconds_per_drop": r.seconds_per_drop, "drops": len(r.rates),
                    "power_dbm": settings.power_dbm,
                    "status": "PASS" if ok else "FAIL"})
    return out


# ------------------------------------------------------------------ output
def markdown(results: dict) -> str:
    """Markdown tables (one per L) and the acceptance lines."""
    s = results["settings"]
    kind = "with learned rows" if any(r in LEARNED_ROWS for r in s.rows) else "optimisation rows"
    lines = [f"JB Table I ({kind}): K = N = 4, P = {s.power_dbm:g} dBm, {s.drops} drops (seed {s.seed}); "
             "sum rate mean ± std [bps/Hz], time per drop with compilation apart", ""]
    for L, rows in results["tables"].items():
        lines += [f"### L = {L}", "",
                  "| method | sum rate [bps/Hz] | feasible | s/drop | compile [s] | paper (JB Table I) |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            feas = "—" if r.feasible is None else f"{np.mean(r.feasible) * 100:.0f}%"
            paper = PAPER.get((r.row, L))
            lines.append(f"| {r.label} | {np.mean(r.rates):.2f} ± {np.std(r.rates):.2f} | {feas} | "
                         f"{r.seconds_per_drop:.3g} | {r.compile_s:.1f} | {'—' if paper is None else f'{paper:.2f}'} |")
        for name, value in ({} if any(r.row == "kdl_transformer" for r in rows) else PAPER_ONLY.get(L, {})).items():
            lines.append(f"| {name} | — | — | — | — | {value:.2f} |")
        lines.append("")
        for r in rows:
            t = r.extra.get("train")
            if t:
                in_sample = t.get("in_sample_sum_rate")
                lines.append(f"- {r.label}: {r.extra['source']}, {t['steps']} steps"
                             + (f" in {t['train_s']:.0f} s ({t['samples_per_s']:.0f} samples/s)" if "train_s" in t else "")
                             + ("" if in_sample is None else f", last in-sample training rate {in_sample:.2f}"))
            elif r.row in LEARNED_ROWS:
                lines.append(f"- {r.label}: {r.extra.get('source', '')}")
        if any(r.row in LEARNED_ROWS for r in rows):
            lines.append("")
    if results["acceptance"]:
        lines += [f"Acceptance (L = 8): mean >= {TARGET_MEAN:g} bps/Hz, all positions feasible, "
                  f"< {TARGET_SECONDS_PER_DROP:g} s per drop (batched, compile apart):", ""]
        for a in results["acceptance"]:
            lines.append(f"- {a['label']}: mean {a['mean']:.2f}, feasible {a['all_feasible']}, "
                         f"{a['seconds_per_drop']:.3g} s/drop -> {a['status']}")
        lines.append("")
    return "\n".join(lines)


def ratios(results: dict) -> dict:
    """``<tune row>_over_uniform_wmmse@L=<L>``: mean sum-rate ratios of the tuning rows over uniform + WMMSE."""
    out = {}
    for L, rows in results["tables"].items():
        by = {r.row: float(np.mean(r.rates)) for r in rows}
        base = by.get("uniform_wmmse")
        if base:
            out.update({f"{row}_over_uniform_wmmse@L={L}": mean / base for row, mean in by.items()
                        if row.startswith("tune_")})
    return out


def payload(results: dict) -> dict:
    """The one JSON format of a :func:`run_table1` result (``jaxpass reproduce table1`` and the benchmark)."""
    s = results["settings"]
    return {"experiment": "table1", "schema_version": 2, "ratios": ratios(results), "settings": dataclasses.asdict(s) | {"rows": list(s.rows),
                                                                       "num_pinches": list(s.num_pinches)},
            "tables": {f"L={L}": [r.summary() for r in rows] for L, rows in results["tables"].items()},
            "paper_only": {f"L={L}": v for L, v in PAPER_ONLY.items()},
            "acceptance": results["acceptance"], "wall_s": results["wall_s"], "env": environment()}


@writes_result_set("reproduce table1")
def write_outputs(results: dict, out_dir) -> dict:
    """Write ``table1.json`` and ``table1.md`` to ``out_dir`` (atomically)."""
    os.makedirs(out_dir, exist_ok=True)
    return {"json": write_json(os.path.join(out_dir, "table1.json"), payload(results)),
            "markdown": write_text(os.path.join(out_dir, "table1.md"), markdown(results) + "\n")}

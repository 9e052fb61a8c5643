"""Two-timescale experiments like TT Figs. 3-4 (``jaxpass ssca``; docs/model.md §4).

Average sum rate vs the power budget P for K users on the TT preset
(``PassConfig.two_timescale``: N = 4 waveguides, L = 8), over ``blocks``
channel-statistics blocks (homes from ``seed``), every row scored on the SAME
held-out slots (``held_out_slots`` per block, drawn from ``held_out_seed``,
never seen by an optimiser). Rows (:data:`ROWS`):

* ``tt_wmmse``: long-term X by SSCA (:func:`jaxpass.optimize.ssca.ssca`) with
  the unrolled-WMMSE short-term beamformer, then WMMSE per held-out slot;
* ``tt_start``: the SSCA run's own start (physics-guided layout screened on
  one mini-batch, or uniform), scored the same way: what SSCA adds;
* ``tt_uniform``: the same SSCA from evenly spread pinches (``init="uniform"``),
  scored the same way: what the physics-guided start adds;
* ``home_tuned``: the baseline a user would try first: :func:`jaxpass.optimize.tune_positions`
  (``Settings.home_tune``) on the block's home positions, as if the users stood still
  there, then WMMSE per held-out slot;
* ``ssca_thp``: TT's SSCA-THP baseline: SSCA with the short-term precoder
  fixed to RZF, scored with RZF (its precoder);
* ``digital_mimo``: an N-antenna ULA at the origin with WMMSE per slot;
* ``uniform_wmmse``: evenly spread pinches with WMMSE per slot;
* ``single_timescale``: beyond the paper, the bound that the slow timescale
  gives up: positions re-tuned for EVERY held-out slot by
  :func:`jaxpass.optimize.tune_positions` (ZF when K <= N, unrolled WMMSE
  otherwise), then scored with WMMSE like the others.

Every WMMSE score uses ``eval_wmmse_iterations`` updates (default 20) for
every row, so rows differ only in where the pinches are, except:

* ``tt_kdl`` (TT's proposed): SSCA with the KKT beamformer whose duals come
  from a trained short-term network (``solver=kkt_solver(held_duals_fn(model))``:
  the gradient flows through the KKT map, the duals held;
  :mod:`jaxpass.learn.short_term`), scored on the same held-out slots with
  that network as the short-term beamformer (the deployed system). It needs
  a network per K (``Settings.short_term_nets`` or
  ``run_two_timescale(short_term=...)``); without one it is skipped with a
  note (the quick run trains none).

Same positions, other precoders: every SSCA row (and ``tt_start``) is also
scored on the same held-out slots with WMMSE (``eval_wmmse_iterations``
updates), with RZF and with the short-term beamformer its SSCA ascended
(``same_positions`` in the JSON, per block; ``scored_with`` names the one
the row is reported with). So a gap between two rows splits into a
precoder part (the other precoder at the same positions) and a positions
part (the same precoder at the other positions): :func:`checks`.

Every SSCA row returns the better of its start and its final iterate on a
validation mini-batch of slots SSCA did not ascend on
(:func:`jaxpass.optimize.ssca.keep_better`), scored as the row is (WMMSE
with ``eval_wmmse_iterations`` updates, RZF, the network); the row records which was kept
per block (``kept``), both validation scores and the mini-batch slots left
out as non-finite (``nonfinite_slots``).

Every ordering check (:func:`checks`) compares the row means and, paired over
the blocks (the same homes and held-out slots), gives the mean difference and
its standard error; ``verdict`` is ``"holds"``, ``"tie"`` (the wrong way by
at most :data:`TIE_SE` standard errors: not a significant difference) or
``"fails"``.

Also measured: SSCA convergence (the first iteration whose relative change of
the averaged surrogate value is below ``1e-3``, and the time per block to get
there), the time of one SSCA iteration at ``N_s = 100`` slots, and the
``sigma_u`` study (how much of the single-timescale bound survives averaging
over the users' motion, for each ``sigma_u`` in ``sigma_study``, beside the
home-tuned layout and SSCA's start) and the envelope study (``mode="envelope"``
beside the total gradient at one K and P, paired over the blocks:
:func:`envelope_study`).

Drivers only (timing, progress, files); the solvers are the pure kernels of
:mod:`jaxpass.optimize.ssca`, :mod:`jaxpass.optimize.positions` and
:mod:`jaxpass.optimize.mimo`, each compiled once per K and row (the power is a
traced field of the config, so the P sweep reuses the compilation).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from dataclasses import dataclass, field

import jax
import numpy as np

from jaxpass import beamforming as bf
from jaxpass import parallel
from jaxpass._checks import drop_keys
from jaxpass.channel import effective_channel
from jaxpass.config import PassConfig
from jaxpass.experiments import memory
from jaxpass.geometry import is_feasible, uniform_positions
from jaxpass.metrics import sum_rate
from jaxpass.optimize import mimo, ssca
from jaxpass.optimize.positions import tune_positions
from jaxpass.runtime import progress
from jaxpass.runtime.io import environment, write_json, write_text, writes_result_set
from jaxpass.slots import draw_slots, sample_homes

#: row id -> label, in table order
ROWS = {
    "tt_wmmse": "two-timescale (SSCA, WMMSE short-term)",
    "tt_kdl": "two-timescale (SSCA, KDL short-term)",
    "tt_start": "SSCA start, no SSCA (WMMSE short-term)",
    "home_tuned": "positions tuned at the homes (tune_positions) + WMMSE",
    "tt_uniform": "two-timescale from uniform pinches (SSCA, WMMSE short-term)",
    "ssca_thp": "SSCA-THP (SSCA, RZF short-term)",
    "digital_mimo": "digital MIMO (N-antenna ULA) + WMMSE",
    "uniform_wmmse": "uniform positions + WMMSE",
    "single_timescale": "single-timescale bound (positions re-tuned per slot)",
}
#: rows of the sigma_u study (run only when all of them are selected)
SIGMA_ROWS = ("tt_start", "tt_wmmse", "home_tuned", "uniform_wmmse", "single_timescale")
#: rows the sigma_u study needs (``home_tuned`` joins it when selected)
SIGMA_NEEDS = ("tt_start", "tt_wmmse", "uniform_wmmse", "single_timescale")
#: relative change of the averaged surrogate value that counts as converged
CONVERGED = 1e-3
#: an ordering the wrong way by at most this many paired standard errors (over blocks) is a tie
TIE_SE = 2.0
#: ... or by at most this much [bps/Hz]: below what float32 rates of ~100 bps/Hz resolve after averaging
TIE_ABS = 1e-3


@dataclass(frozen=True)
class Settings:
    """Sizes of one run (defaults: the full experiment; :func:`quick_settings` for a smoke run)."""

    users: tuple = (4, 6)
    powers_dbm: tuple = (12.0, 16.0, 20.0, 24.0, 28.0)
    blocks: int = 16
    seed: int = 0
    held_out_slots: int = 64
    held_out_seed: int = 1000
    ssca: ssca.SscaOptions = ssca.SscaOptions(iterations=100, slots_per_iteration=50, wmmse_iterations=5)
    eval_wmmse_iterations: int = 20
    rows: tuple = tuple(ROWS)
    bound_tune: dict = field(default_factory=lambda: dict(steps=30, starts=2))
    #: ``tune_positions`` options of the ``home_tuned`` row (empty: its defaults, what a user would run)
    home_tune: dict = field(default_factory=dict)
    #: ``(K, P [dBm])`` of the envelope study (SSCA mode "envelope" beside "total"); None: skipped
    envelope_study: tuple | None = (6, 20.0)
    sigma_study: tuple = (0.05, 0.5, 2.0)
    sigma_study_users: int = 4
    sigma_study_power_dbm: float = 20.0
    step_time_slots: int = 100
    short_term_nets: tuple = ()  # ((K, path), ...): saved short-term networks (jaxpass.learn.short_term) for tt_kdl
    #: folder of short-term networks ``short_term-K<K>.npz``: a K without one is trained there (None: never train)
    short_term_dir: str | None = None
    #: options of a network trained here (None: ``ShortTermOptions()``)
    short_term_options: object = None
    #: training key of a network trained here: ``jax.random.key(short_term_seed)``
    short_term_seed: int = 0


def quick_settings() -> Settings:
    """A smoke run (< 2 min on 2 CPU cores): K = 4, two powers, 2 blocks, a few iterations and slots."""
    return Settings(users=(4,), powers_dbm=(12.0, 28.0), blocks=2, held_out_slots=6,
                    ssca=ssca.SscaOptions(iterations=4, slots_per_iteration=4, wmmse_iterations=2, assignments=4),
                    eval_wmmse_iterations=5, bound_tune=dict(steps=2, starts=1, assignments=4, random_starts=0),
                    home_tune=dict(steps=2, starts=1, assignments=4, random_starts=0),
                    sigma_study=(0.5,), step_time_slots=8, envelope_study=(4, 28.0))


def _log(msg: str):
    progress.log(msg)  # stderr, silenced by --quiet


def scenario(num_users: int, power_dbm: float = 20.0) -> PassConfig:
    """The TT preset with K users (N = 4, L = 8) at ``power_dbm``."""
    return PassConfig.two_timescale(num_users=num_users, power_dbm=power_dbm)


def block_homes(cfg: PassConfig, blocks: int, seed: int):
    """``(blocks, K, 2)`` home positions [m], one block per key of ``jax.random.split(key(seed), blocks)``."""
    return jax.vmap(lambda k: sample_homes(k, cfg))(jax.random.split(jax.random.key(seed), blocks))


def held_out_slots(cfg: PassConfig, homes, settings: Settings, options: ssca.SscaOptions):
    """``(B, S, K, 2)``: the held-out slots every row is scored on (the slots :func:`ssca.held_out_rate` draws)."""
    keys = drop_keys(jax.random.key(settings.held_out_seed), (homes.shape[0],))
    S = settings.held_out_slots
    return jax.vmap(lambda k, h: draw_slots(k, cfg, h, S, options.slot_model, options.sigma_u))(keys, homes)


def _wmmse_rate(cfg, X, users, iterations: int):
    H = effective_channel(cfg, X, users)
    return sum_rate(H, bf.wmmse(H, cfg.power, cfg.noise_power, iterations=iterations), cfg.noise_power)


@functools.partial(jax.jit, static_argnames="iterations")
def _per_slot_wmmse_rates(cfg, X, slots, *, iterations: int):
    """``(B, S)`` WMMSE sum rates of per-slot positions ``X (B, S, N, L)`` at the slots ``(B, S, K, 2)``."""
    return jax.vmap(jax.vmap(lambda x, u: _wmmse_rate(cfg, x, u, iterations)))(X, slots)


@functools.partial(jax.jit, static_argnames="iterations")
def _digital_rates(cfg, slots, *, iterations: int):
    """``(B, S)`` digital-MIMO (N-antenna ULA + WMMSE) sum rates at the slots ``(B, S, K, 2)``."""
    opts = mimo.DigitalOptions(wmmse_iterations=iterations)
    return jax.vmap(jax.vmap(lambda u: mimo.digital_drop(cfg, u, opts).sum_rate))(slots)


def _timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    jax.block_until_ready(out)
    return out, time.perf_counter() - t0


def _summary(per_block, seconds: float, **extra) -> dict:
    per_block = np.asarray(per_block, np.float64)
    return {"mean": float(per_block.mean()), "std_over_blocks": float(per_block.std()),
            "per_block": [float(v) for v in per_block], "seconds": seconds, **extra}


def converged_iteration(avg_rate) -> np.ndarray:
    """Per block, the first iteration t >= 1 with ``|a_t - a_{t-1}| < 1e-3 |a_t|`` (``-1`` if none).

    ``avg_rate (B, T)``: minus the averaged surrogate value per iteration (:class:`ssca.SscaResult`).
    """
    a = np.asarray(avg_rate, np.float64)
    rel = np.abs(np.diff(a, axis=-1)) / np.maximum(np.abs(a[..., 1:]), 1e-12)
    ok = rel < CONVERGED
    return np.where(ok.any(-1), ok.argmax(-1) + 1, -1)


def run_point(cfg: PassConfig, homes, settings: Settings, rows=None, *, key=None, mesh=None,
              short_term=None) -> dict:
    """Every row at one scenario (one K, one P, one ``sigma_u`` in ``settings.ssca``) -> ``{row: summary}``.

    ``short_term``: a trained short-term network for ``cfg``'s K (a
    :class:`jaxpass.learn.ShortTermNet`); the ``tt_kdl`` row runs only with one.

    ``mesh`` (:func:`jaxpass.parallel.drops_mesh`): the blocks (and the bound's slots) run data-parallel
    over its devices, same results as one device (``None``: one device).
    """
    rows = tuple(settings.rows if rows is None else rows)
    opts = settings.ssca
    if not opts.validation_wmmse_iterations:  # SSCA keeps the better of start and end as the rows are scored
        opts = opts.replace(validation_wmmse_iterations=settings.eval_wmmse_iterations)
    eval_opts = opts.replace(short_term="wmmse", wmmse_iterations=settings.eval_wmmse_iterations)
    rzf_opts = opts.replace(short_term="rzf")
    ev = dict(key=jax.random.key(settings.held_out_seed), num_slots=settings.held_out_slots, mesh=mesh)
    key = jax.random.key(settings.seed + 1) if key is None else key
    it = settings.eval_wmmse_iterations
    out = {}

    def ssca_row(options, scored_with, solver=None):
        """(SSCA result, row summary): SSCA with ``options``/``solver``, scored on the held-out slots."""
        res, sec = _timed(ssca.ssca, cfg, homes, options, key=key, solver=solver, mesh=mesh)
        summary = _scored(cfg, res.positions, homes, ev, _scorers(eval_opts, rzf_opts, options, solver), scored_with,
                          sec, feasible=bool(np.asarray(is_feasible(cfg, res.positions)).all()), **kept_fields(res))
        return res, summary

    if "tt_wmmse" in rows or "tt_start" in rows:
        wm_opts = opts.replace(short_term="wmmse")
        res, row = ssca_row(wm_opts, "wmmse")
        conv = converged_iteration(res.avg_rate)
        row.update(converged_iteration=[int(c) for c in conv],
                   avg_rate_history_mean=[float(v) for v in np.asarray(res.avg_rate).mean(0)])
        if "tt_wmmse" in rows:
            out["tt_wmmse"] = row
        if "tt_start" in rows:
            out["tt_start"] = _scored(cfg, res.initial, homes, ev, _scorers(eval_opts, rzf_opts, wm_opts), "wmmse",
                                      0.0)
    if "tt_uniform" in rows:
        out["tt_uniform"] = ssca_row(opts.replace(short_term="wmmse", init="uniform"), "wmmse")[1]
    if "tt_kdl" in rows and short_term is not None:
        # the gradient flows through the KKT map with the network's duals held (the reading measured in
        # jaxpass.learn.short_term); scored with the network, the deployed system
        from jaxpass.learn.short_term import held_duals_fn

        short_term.eval()
        out["tt_kdl"] = ssca_row(opts.replace(short_term="kkt"), "ssca_short_term",
                                 ssca.kkt_solver(held_duals_fn(short_term)))[1]
    if "ssca_thp" in rows:
        out["ssca_thp"] = ssca_row(rzf_opts, "rzf")[1]
    if "home_tuned" in rows:
        beam = "zf" if cfg.num_users <= cfg.num_waveguides else "wmmse"
        tuned, sec = _timed(tune_positions, cfg, homes, key=jax.random.fold_in(key, 11), beamformer=beam, mesh=mesh,
                            **settings.home_tune)
        rate = ssca.held_out_rate(cfg, tuned.positions, homes, eval_opts, **ev)
        out["home_tuned"] = _summary(rate, sec, beamformer=beam,
                                     feasible=bool(np.asarray(is_feasible(cfg, tuned.positions)).all()))
    slots = None
    if {"digital_mimo", "single_timescale"} & set(rows):
        slots = held_out_slots(cfg, homes, settings, opts)
    if "digital_mimo" in rows:
        rates, sec = _timed(parallel.batch_call, _digital_rates, cfg, slots, mesh=mesh, in_axes=(None, 0),
                            iterations=it)
        out["digital_mimo"] = _summary(np.asarray(rates).mean(-1), sec)
    if "uniform_wmmse" in rows:
        rate, sec = _timed(ssca.held_out_rate, cfg, uniform_positions(cfg, homes.dtype), homes, eval_opts, **ev)
        out["uniform_wmmse"] = _summary(rate, sec)
    if "single_timescale" in rows:
        B, S = slots.shape[:2]
        beam = "zf" if cfg.num_users <= cfg.num_waveguides else "wmmse"
        flat = slots.reshape((B * S,) + slots.shape[2:])
        tuned, sec = _timed(tune_positions, cfg, flat, key=jax.random.fold_in(key, 7), beamformer=beam, mesh=mesh,
                            **settings.bound_tune)
        X = tuned.positions.reshape((B, S) + tuned.positions.shape[1:])
        rates = parallel.batch_call(_per_slot_wmmse_rates, cfg, X, slots, mesh=mesh, in_axes=(None, 0, 0),
                                    iterations=it)
        out["single_timescale"] = _summary(np.asarray(rates).mean(-1), sec, beamformer=beam,
                                           feasible=bool(np.asarray(is_feasible(cfg, tuned.positions)).all()))
    return out


def kept_fields(res) -> dict:
    """Per block: which layout SSCA returned (``kept``: "final" or "start"), both validation scores and the
    slots left out as non-finite (:class:`jaxpass.optimize.ssca.SscaResult`)."""
    rates = np.asarray(res.validation_rate, np.float64)
    return {"kept": ["final" if k else "start" for k in np.asarray(res.kept_final).reshape(-1)],
            "validation_start": [float(v) for v in rates[..., 0].reshape(-1)],
            "validation_final": [float(v) for v in rates[..., 1].reshape(-1)],
            "nonfinite_slots": [int(v) for v in np.asarray(res.nonfinite_slots).reshape(-1)]}


def _scorers(eval_opts, rzf_opts, options, solver=None) -> dict:
    """``{name: (options, solver)}``: WMMSE (the table's updates), RZF and the short-term beamformer SSCA ascended."""
    return {"wmmse": (eval_opts, None), "rzf": (rzf_opts, None), "ssca_short_term": (options, solver)}


def _scored(cfg, X, homes, ev: dict, scorers: dict, scored_with: str, seconds: float, **extra) -> dict:
    """The summary of positions ``X (B, N, L)`` scored with ``scorers[scored_with]``, plus ``same_positions``.

    ``same_positions``: ``{name: per-block held-out rate}`` of ``X`` with every scorer
    (the same held-out slots); a scorer equal to an earlier one is not recomputed.
    """
    t0 = time.perf_counter()
    same, done = {}, {}
    for name, (options, solver) in scorers.items():
        ident = (options, id(solver))
        if ident not in done:
            done[ident] = [float(v) for v in np.asarray(ssca.held_out_rate(cfg, X, homes, options, solver=solver,
                                                                           **ev))]
        same[name] = done[ident]
    return _summary(same[scored_with], seconds, eval_seconds=time.perf_counter() - t0, scored_with=scored_with,
                    same_positions=same, **extra)


def short_term_file(folder, num_users: int) -> str:
    """``<folder>/short_term-K<K>.npz``: where :func:`short_term_models` loads or saves the K-user network."""
    return os.path.join(folder, f"short_term-K{num_users}.npz")


def short_term_models(settings: Settings, models: dict | None = None) -> tuple[dict, list]:
    """``({K: network}, notes)`` for the ``tt_kdl`` row, per K of ``settings.users``.

    In order: ``models``; the files of ``settings.short_term_nets``; then, with
    ``settings.short_term_dir``, its ``short_term-K<K>.npz`` (:func:`short_term_file`)
    or, if missing, a network trained now (:func:`jaxpass.learn.short_term.fit_short_term`
    with ``settings.short_term_options`` and key ``settings.short_term_seed``,
    progress on stderr) and saved there. Without a network for some K the
    ``tt_kdl`` row is skipped there, with a note.
    """
    nets, notes = dict(models or {}), []
    if "tt_kdl" not in settings.rows:
        return nets, notes
    from jaxpass.learn import short_term as st

    for K, path in settings.short_term_nets:
        if K in settings.users and K not in nets:
            nets[K] = st.load_short_term(path, scenario(K))[0]
    for K, net in nets.items():
        if not isinstance(net, st.ShortTermNet):
            raise ValueError(f"the K = {K} network is a {type(net).__name__}: the KDL row needs a network of KKT "
                             "duals (architecture gram or transformer)")
    for K in settings.users:
        if K in nets or settings.short_term_dir is None:
            continue
        path = short_term_file(settings.short_term_dir, K)
        if os.path.isfile(path):
            nets[K] = st.load_short_term(path, scenario(K))[0]
            _log(f"[two-timescale] K = {K}: short-term network loaded from {path}")
            continue
        opts = st.ShortTermOptions.resolve(settings.short_term_options)
        _log(f"[two-timescale] K = {K}: training a short-term network, {opts.steps} steps x {opts.batch_size} slots "
             f"(seed {settings.short_term_seed})")

        def report(t, model, row, K=K, steps=opts.steps):
            _log(f"[two-timescale] K = {K}: step {t + 1}/{steps}, batch rate {row[2]:.2f} bps/Hz = "
                 f"{100 * row[1]:.1f} % of WMMSE")

        fit = st.fit_short_term(jax.random.key(settings.short_term_seed), K, opts, callback=report)
        os.makedirs(settings.short_term_dir, exist_ok=True)
        st.save_short_term(path, fit.model, opts, scenario(K), train_seed=settings.short_term_seed,
                           train_s=fit.seconds)
        _log(f"[two-timescale] K = {K}: trained in {fit.seconds:.0f} s, saved {path}")
        nets[K] = fit.model
    for K in settings.users:
        if K not in nets:
            notes.append(f"tt_kdl skipped at K = {K}: no trained short-term network (Settings.short_term_nets, "
                         "short_term_dir; jaxpass ssca --short-term-net / --short-term-dir)")
    return nets, notes


def step_time(cfg: PassConfig, homes, settings: Settings) -> dict:
    """Wall time of one jit-compiled :func:`ssca.ssca_step` (one block, ``step_time_slots`` slots, WMMSE)."""
    opts = settings.ssca.replace(slots_per_iteration=settings.step_time_slots, short_term="wmmse")
    state = ssca.ssca_init(cfg, uniform_positions(cfg, homes.dtype), opts)
    step = jax.jit(lambda k, c, h, s: ssca.ssca_step(k, c, h, s, opts))
    t0 = time.perf_counter()
    compiled = step.lower(jax.random.key(0), cfg, homes[0], state).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(5):
        t0 = time.perf_counter()
        state, _ = compiled(jax.random.key(i), cfg, homes[0], state)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - t0)
    return {"slots": settings.step_time_slots, "median_s": float(np.median(times)), "compile_s": compile_s}


def run_two_timescale(settings: Settings | None = None, *, mesh=None, short_term: dict | None = None) -> dict:
    """The whole experiment; progress on stderr. Returns the JSON-ready results (:func:`payload`).

    ``short_term``: optional ``{K: trained ShortTermNet}`` for the ``tt_kdl`` row
    (besides ``settings.short_term_nets``; :func:`short_term_models`).

    ``mesh`` (:func:`jaxpass.parallel.drops_mesh`): the blocks run data-parallel over its devices.
    """
    s = settings or Settings()
    unknown = [r for r in s.rows if r not in ROWS]
    if unknown:
        raise ValueError(f"unknown row(s) {unknown}; choose from {list(ROWS)}")
    t_start = time.perf_counter()
    nets, notes = short_term_models(s, short_term)
    for note in notes:
        _log(f"[two-timescale] {note}")
    sweep = {}
    for K in s.users:
        cfg = scenario(K)
        homes = block_homes(cfg, s.blocks, s.seed)
        sweep[K] = {}
        for P in s.powers_dbm:
            t0 = time.perf_counter()
            sweep[K][P] = run_point(cfg.replace(power_dbm=P), homes, s, mesh=mesh, short_term=nets.get(K))
            _log(f"[two-timescale] K={K} P={P:g} dBm: " + ", ".join(
                f"{r} {v['mean']:.2f}" for r, v in sweep[K][P].items()) + f" ({time.perf_counter() - t0:.1f} s)")
    cfg = scenario(s.sigma_study_users, s.sigma_study_power_dbm)
    homes = block_homes(cfg, s.blocks, s.seed)
    sigma = {}
    sigma_rows = tuple(r for r in SIGMA_ROWS if r in s.rows)
    for sig in s.sigma_study if all(r in s.rows for r in SIGMA_NEEDS) else ():
        t0 = time.perf_counter()
        study = dataclasses.replace(s, ssca=s.ssca.replace(sigma_u=sig))
        sigma[sig] = run_point(cfg, homes, study, rows=sigma_rows, mesh=mesh)
        _log(f"[two-timescale] sigma_u={sig:g} m: " + ", ".join(f"{r} {v['mean']:.2f}" for r, v in sigma[sig].items())
             + f" ({time.perf_counter() - t0:.1f} s)")
    envelope = envelope_study(s, sweep, mesh=mesh) if s.envelope_study and "tt_wmmse" in s.rows else None
    timing = step_time(cfg, homes, s) if "tt_wmmse" in s.rows else None
    return {"settings": s, "sweep": sweep, "sigma": sigma, "envelope": envelope, "step_time": timing,
            "checks": checks(sweep) + sigma_checks(sigma, s.sigma_study_users, s.sigma_study_power_dbm),
            "notes": notes, "wall_s": time.perf_counter() - t_start}


def envelope_study(s: Settings, sweep: dict | None = None, *, mesh=None) -> dict:
    """SSCA (WMMSE short-term) with ``mode="envelope"`` (``f_W`` dropped) beside ``mode="total"``.

    At ``s.envelope_study = (K, P)``: the same homes, SSCA key and held-out slots
    as the sweep's ``tt_wmmse`` row (reused from ``sweep`` when it ran there with
    the total gradient), so the two are paired over the blocks.

    Returns:
      ``{"K", "P_dbm", "total", "envelope"}`` (row summaries) plus :func:`paired`'s
      ``diff_mean`` / ``diff_se`` of total minus envelope [bps/Hz].
    """
    K, P = s.envelope_study
    cfg = scenario(K, P)
    homes = block_homes(cfg, s.blocks, s.seed)
    t0 = time.perf_counter()
    total = (sweep or {}).get(K, {}).get(P, {}).get("tt_wmmse") if s.ssca.mode == "total" else None
    if total is None:
        total = run_point(cfg, homes, dataclasses.replace(s, ssca=s.ssca.replace(mode="total")), rows=("tt_wmmse",),
                          mesh=mesh)["tt_wmmse"]
    env = run_point(cfg, homes, dataclasses.replace(s, ssca=s.ssca.replace(mode="envelope")), rows=("tt_wmmse",),
                    mesh=mesh)["tt_wmmse"]
    out = {"K": K, "P_dbm": P, "total": total, "envelope": env}
    out.update({k: v for k, v in paired(out, "total", "envelope").items() if k in ("diff_mean", "diff_se")})
    _log(f"[two-timescale] envelope study K={K} P={P:g} dBm: total {total['mean']:.2f}, envelope {env['mean']:.2f} "
         f"({time.perf_counter() - t0:.1f} s)")
    return out


def sigma_checks(sigma: dict, K: int, P: float) -> list:
    """"SSCA >= its start" in the sigma_u study, paired over the blocks (rows as :func:`checks`, with ``sigma_u``)."""
    out = []
    for sig, rows in sigma.items():
        if "tt_wmmse" in rows and "tt_start" in rows:
            va, vb = rows["tt_wmmse"]["mean"], rows["tt_start"]["mean"]
            stats = paired(rows, "tt_wmmse", "tt_start")
            holds = bool(va >= vb)
            out.append({"K": K, "P_dbm": P, "sigma_u": sig, "check": "tt_wmmse >= tt_start", "a": va, "b": vb,
                        "holds": holds, **stats, "verdict": verdict(holds, stats)})
    return out


def paired(rows: dict, a: str, b: str) -> dict:
    """Row ``a`` minus row ``b``, paired over the blocks (the same homes and held-out slots).

    Returns ``{}`` without per-block rates for both (or fewer than 2 blocks), else
    ``diff_mean``, ``diff_se`` (the standard error of the mean difference,
    ``std(ddof=1) / sqrt(B)``) [bps/Hz] and, where ``a`` was also scored with
    ``b``'s precoder (``same_positions``), the split of ``diff_mean`` into
    ``positions_part`` (``b``'s precoder at ``a``'s positions minus ``b``) and
    ``precoder_part`` (``a``'s precoder minus ``b``'s, both at ``a``'s positions).
    """
    pa, pb = rows[a].get("per_block"), rows[b].get("per_block")
    if pa is None or pb is None or len(pa) != len(pb) or len(pa) < 2:
        return {}
    d = np.asarray(pa, np.float64) - np.asarray(pb, np.float64)
    out = {"diff_mean": float(d.mean()), "diff_se": float(d.std(ddof=1) / np.sqrt(d.size))}
    other = rows[a].get("same_positions", {}).get(rows[b].get("scored_with"))
    if other is not None:
        pos = float(np.mean(np.asarray(other, np.float64) - np.asarray(pb, np.float64)))
        out.update(positions_part=pos, precoder_part=out["diff_mean"] - pos)
    return out


def verdict(holds: bool, stats: dict) -> str:
    """``"holds"``; ``"tie"`` when the wrong way by at most :data:`TIE_SE` paired standard errors
    (or :data:`TIE_ABS`); else ``"fails"``."""
    if holds:
        return "holds"
    if stats and abs(stats["diff_mean"]) <= max(TIE_SE * stats["diff_se"], TIE_ABS):
        return "tie"
    return "fails"


def checks(sweep: dict) -> list:
    """The issue's orderings, per K and P (informational; never raised).

    Each pair check has ``holds`` (the means are ordered as asked), the paired
    statistics of :func:`paired` and a :func:`verdict`; each row also gets a
    "rises with P" check (strictly increasing means).
    """
    pairs = [("tt_wmmse", "tt_start", ">="), ("tt_uniform", "uniform_wmmse", ">="),  # SSCA >= its start
             ("tt_wmmse", "ssca_thp", ">="), ("tt_wmmse", "digital_mimo", ">="), ("ssca_thp", "digital_mimo", ">="),
             ("tt_wmmse", "uniform_wmmse", ">="), ("tt_wmmse", "single_timescale", "<="),
             ("tt_kdl", "ssca_thp", ">="), ("tt_kdl", "digital_mimo", ">="), ("tt_kdl", "uniform_wmmse", ">="),
             ("tt_kdl", "single_timescale", "<=")]
    out = []
    for K, by_p in sweep.items():
        for P, rows in by_p.items():
            for a, b, op in pairs:
                if a in rows and b in rows:
                    va, vb = rows[a]["mean"], rows[b]["mean"]
                    holds = bool(va >= vb if op == ">=" else va <= vb)
                    stats = paired(rows, a, b)
                    out.append({"K": K, "P_dbm": P, "check": f"{a} {op} {b}", "a": va, "b": vb, "holds": holds,
                                **stats, "verdict": verdict(holds, stats)})
        for row in ROWS:
            means = [rows[row]["mean"] for rows in by_p.values() if row in rows]
            if len(means) > 1:
                holds = bool(np.all(np.diff(means) > 0))
                out.append({"K": K, "check": f"{row} rises with P", "values": means, "holds": holds,
                            "verdict": "holds" if holds else "fails"})
    return out


def checks_line(checks_: list) -> str:
    """One line: how many checks hold, which are ties (with their paired difference) and which fail."""
    def where(c):
        return (f"K={c['K']}" + (f" P={c['P_dbm']:g}" if "P_dbm" in c else "")
                + (f" sigma_u={c['sigma_u']:g}" if "sigma_u" in c else "") + f" {c['check']}")

    ties = [c for c in checks_ if c["verdict"] == "tie"]
    fails = [c for c in checks_ if c["verdict"] == "fails"]
    line = f"Checks: {len(checks_) - len(ties) - len(fails)} of {len(checks_)} hold"
    if ties:
        line += (f"; {len(ties)} ties (the wrong way by at most {TIE_SE:g} paired standard errors over the blocks, "
                 f"or {TIE_ABS:g} bps/Hz): "
                 + "; ".join(f"{where(c)} ({c['diff_mean']:+.3f} ± {c['diff_se']:.3f})" for c in ties))
    if fails:
        line += f"; {len(fails)} fail: " + "; ".join(where(c) for c in fails)
    return line


def convergence_line(by_p: dict, blocks: int, iterations: int, prefix: str = "") -> str:
    """SSCA (WMMSE) convergence over the powers of one K: iterations and time per block ("" without the row).

    ``prefix`` starts the line (e.g. ``"K = 4: "``).

    The time per iteration and block is the batched run's wall time divided by
    ``blocks x iterations``, from the powers after the first (the first
    includes compilation; with one power it is used, compilation included).
    """
    runs = [by_p[P]["tt_wmmse"] for P in by_p if "tt_wmmse" in by_p[P]]
    if not runs:
        return ""
    conv = [c for r in runs for c in r["converged_iteration"]]
    ok = [c for c in conv if c >= 0]
    secs = [r["seconds"] for r in runs]
    warm = secs[1:] or secs
    per_it = float(np.median(warm)) / (blocks * iterations)
    line = (f"{prefix}SSCA (WMMSE short-term) reached a relative surrogate change below {CONVERGED:g} in {len(ok)} of "
            f"{len(conv)} block runs")
    if ok:
        line += (f", after {np.mean(ok):.1f} iterations on average (median {np.median(ok):g}, max {max(ok)}): "
                 f"{np.mean(ok) * per_it * 1e3:.0f} ms per block")
    run = per_it * iterations
    took = f"{run:.2f} s" if run >= 1 else f"{run * 1e3:.1f} ms"
    compiled = "compilation excluded" if len(secs) > 1 else "compilation included"
    return line + f"; {iterations} iterations take {took} per block (batched over {blocks} blocks, {compiled})."


def kept_line(by_p: dict, prefix: str = "") -> str:
    """Over the powers of one K: how often each SSCA row returned its final iterate (else its start), and the
    mini-batch slots left out as non-finite ("" without SSCA rows)."""
    parts, nonfinite = [], 0
    for row in ROWS:
        kept = [k for rows in by_p.values() if row in rows for k in rows[row].get("kept", [])]
        nonfinite += sum(n for rows in by_p.values() if row in rows for n in rows[row].get("nonfinite_slots", []))
        if kept:
            parts.append(f"{row} {kept.count('final')} of {len(kept)}")
    if not parts:
        return ""
    return (f"{prefix}SSCA returned its final iterate (else its start, which scored higher on the validation "
            f"mini-batch) in: {'; '.join(parts)} block runs; non-finite mini-batch slots left out: {nonfinite}.")


def envelope_line(env: dict, blocks: int) -> str:
    """One line: the envelope study's means and total - envelope, paired over the blocks."""
    line = (f"Envelope mode (K = {env['K']}, P = {env['P_dbm']:g} dBm, SSCA with WMMSE short-term): total gradient "
            f"{env['total']['mean']:.2f}, envelope (f_W dropped) {env['envelope']['mean']:.2f} bps/Hz")
    if "diff_mean" in env:
        line += f"; total - envelope = {env['diff_mean']:+.2f} ± {env['diff_se']:.2f} (paired over {blocks} blocks)"
    return line + "."


def precoder_lines(sweep: dict) -> list:
    """Per K: the precoder's share of ``tt_kdl - ssca_thp`` (:func:`paired`'s split), over the powers."""
    lines = []
    for K, by_p in sweep.items():
        split = [(P, paired(rows, "tt_kdl", "ssca_thp")) for P, rows in by_p.items()
                 if "tt_kdl" in rows and "ssca_thp" in rows]
        split = [(P, st) for P, st in split if "precoder_part" in st]
        if split:
            lines.append(f"K = {K}: two-timescale (KDL) minus SSCA-THP = precoder part (the network vs RZF at the "
                         "KDL row's positions) + positions part (RZF at both rows' positions): " + "; ".join(
                             f"{P:g} dBm {st['diff_mean']:+.3f} = {st['precoder_part']:+.3f} + "
                             f"{st['positions_part']:+.3f}" for P, st in split) + " bps/Hz.")
    return lines


# ------------------------------------------------------------------ output
def payload(results: dict) -> dict:
    """The JSON of a run (``two_timescale.json``)."""
    s = results["settings"]
    settings = dataclasses.asdict(s) | {"ssca": s.ssca.asdict()}
    if s.short_term_options is not None:
        settings["short_term_options"] = s.short_term_options.asdict()
    return {"experiment": "two_timescale", "schema_version": 1, "settings": settings,
            "sweep": {f"K={K}": {f"P={P:g}": rows for P, rows in by_p.items()} for K, by_p in results["sweep"].items()},
            "sigma_study": {f"sigma_u={k:g}": v for k, v in results["sigma"].items()},
            "envelope": results.get("envelope"),
            "step_time": results["step_time"], "checks": results["checks"], "notes": results.get("notes", []),
            "wall_s": results["wall_s"],
            "env": environment()}


def markdown(results: dict) -> str:
    """Tables: rate vs P per K (rows x powers), the sigma_u study, convergence and timing, the checks."""
    s = results["settings"]
    lines = [f"Two-timescale design (TT preset, N = 4, L = 8): held-out mean sum rate [bps/Hz] over {s.blocks} blocks "
             f"x {s.held_out_slots} slots; SSCA {s.ssca.iterations} iterations x {s.ssca.slots_per_iteration} slots, "
             f"sigma_u = {s.ssca.sigma_u:g} m", ""]
    for K, by_p in results["sweep"].items():
        powers = list(by_p)
        lines += [f"### K = {K}", "", "| row | " + " | ".join(f"{P:g} dBm" for P in powers) + " |",
                  "|---|" + "---|" * len(powers)]
        for row in ROWS:
            if all(row in by_p[P] for P in powers):
                lines.append(f"| {ROWS[row]} | " + " | ".join(f"{by_p[P][row]['mean']:.2f}" for P in powers) + " |")
        conv = convergence_line(by_p, s.blocks, s.ssca.iterations)
        if conv:
            lines += ["", conv]
        kept = kept_line(by_p)
        if kept:
            lines += ["", kept]
        lines.append("")
    if results["sigma"]:
        cols = [r for r in SIGMA_ROWS if all(r in rows for rows in results["sigma"].values())]
        lines += [f"### sigma_u study (K = {s.sigma_study_users}, P = {s.sigma_study_power_dbm:g} dBm)", "",
                  "| sigma_u [m] | " + " | ".join(ROWS[r] for r in cols) + " | bound - SSCA |",
                  "|---|" + "---|" * (len(cols) + 1)]
        for sig, rows in results["sigma"].items():
            lines.append(f"| {sig:g} | " + " | ".join(f"{rows[r]['mean']:.2f}" for r in cols)
                + f" | {rows['single_timescale']['mean'] - rows['tt_wmmse']['mean']:.2f} |")
        lines.append("")
    if results.get("envelope"):
        lines += [envelope_line(results["envelope"], s.blocks), ""]
    st = results["step_time"]
    if st:
        lines += [f"One SSCA iteration at N_s = {st['slots']} slots (WMMSE short-term, one block): "
                  f"{st['median_s'] * 1e3:.1f} ms (compile {st['compile_s']:.1f} s).", ""]
    lines += [f"Note: {n}" for n in results.get("notes", [])]
    lines += precoder_lines(results["sweep"])
    lines.append(checks_line(results["checks"]))
    return "\n".join(lines)


def plot(results: dict, path: str) -> str:
    """Rate vs P per K (one panel per K), every row; the sigma_u study as a last panel."""
    from jaxpass.plotting import plt, save_figure

    Ks = list(results["sweep"])
    panels = len(Ks) + bool(results["sigma"])
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2), squeeze=False)
    for ax, K in zip(axes[0], Ks):
        by_p = results["sweep"][K]
        powers = list(by_p)
        for row, label in ROWS.items():
            if all(row in by_p[P] for P in powers):
                ax.plot(powers, [by_p[P][row]["mean"] for P in powers], marker="o", label=label)
        ax.set_xlabel("P [dBm]")
        ax.set_ylabel("held-out mean sum rate [bps/Hz]")
        ax.set_title(f"K = {K}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if not results["sigma"]:
        return save_figure(fig, path)
    ax = axes[0][-1]
    sig = list(results["sigma"])
    for row in SIGMA_ROWS:
        if all(row in results["sigma"][v] for v in sig):
            ax.plot(sig, [results["sigma"][v][row]["mean"] for v in sig], marker="o", label=ROWS[row])
    ax.set_xscale("log")
    ax.set_xlabel("sigma_u [m]")
    ax.set_title("motion within a block")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


@writes_result_set("ssca")
def write_outputs(results: dict, out_dir) -> dict:
    """``two_timescale.json``, ``.md`` and ``.png`` in ``out_dir`` (atomically)."""
    os.makedirs(out_dir, exist_ok=True)
    return {"json": write_json(os.path.join(out_dir, "two_timescale.json"), payload(results)),
            "markdown": write_text(os.path.join(out_dir, "two_timescale.md"), markdown(results) + "\n"),
            "figure": plot(results, os.path.join(out_dir, "two_timescale.png"))}


# ------------------------------------------------------------------ command line
#: SSCA options the ``ssca`` command exposes (defaults and help from :class:`ssca.SscaOptions`)
CLI_OPTIONS = ("iterations", "slots_per_iteration", "tau", "max_first_step", "wmmse_iterations", "init", "mode",
               "sigma_u")


def _memory_bytes(s: Settings, blocks: int, devices: int = 1) -> int:
    """Peak-memory estimate (:func:`jaxpass.experiments.memory.ssca_bytes`) of a run with ``blocks`` blocks
    sharded over ``devices`` (:func:`jaxpass.experiments.memory.shards`)."""
    cfg = scenario(max(s.users))
    slots = max(s.held_out_slots, s.ssca.slots_per_iteration, s.step_time_slots)
    bound = dict(s.bound_tune) if "single_timescale" in s.rows else None
    return memory.ssca_bytes(cfg.num_users, cfg.num_waveguides, cfg.num_pinches, blocks, slots, bound,
                             devices=devices)


def _cmd_ssca(args) -> int:
    from jaxpass.experiments.cli_args import UserError, mesh_from_args

    base = quick_settings() if args.quick else Settings()
    given = {name: getattr(args, name) for name in CLI_OPTIONS if getattr(args, name) is not None}
    try:
        opts = base.ssca.replace(**given)  # flags change the run's options on top of its preset sizes
    except (TypeError, ValueError) as err:
        raise UserError(str(err)) from None
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in (
        ("users", args.num_users), ("powers_dbm", args.powers_dbm), ("blocks", args.blocks), ("rows", args.rows),
        ("held_out_slots", args.held_out_slots), ("sigma_study", args.sigma_study)) if v is not None}
    s = dataclasses.replace(base, seed=args.seed, ssca=opts, **changes)
    try:
        for K in s.users:
            scenario(K)
    except (ValueError, TypeError) as err:
        raise UserError(str(err)) from None
    s = _short_term_args(s, args)
    progress.set_quiet(args.quiet)
    mesh = mesh_from_args(args)
    devices = memory.shards(mesh)
    need = memory.check_fits(lambda b: _memory_bytes(s, b, devices), s.blocks, flag="--blocks")
    print(f"jaxpass ssca: K in {list(s.users)}, P in {list(s.powers_dbm)} dBm, {s.blocks} blocks (seed {s.seed}), "
          f"rows {list(s.rows)}{' [quick]' if args.quick else ''}" + memory.header_note(need), flush=True)
    results = run_two_timescale(s, mesh=mesh)
    print(markdown(results))
    for kind, path in write_outputs(results, args.out).items():
        print(f"wrote {kind}: {path}")
    return 0


def _short_term_args(s: Settings, args) -> Settings:
    """``--short-term-net`` / ``--short-term-dir`` / ``--short-term-steps`` into ``s`` (checked: one line, exit 2)."""
    from jaxpass.experiments.cli_args import UserError
    from jaxpass.learn import short_term as st

    nets = {}
    for path in args.short_term_net or ():
        try:
            K = st.read_meta(path)["num_users"]
            net = st.load_short_term(path, scenario(K))[0]
        except (ValueError, OSError) as err:
            raise UserError(f"--short-term-net: {err}") from None
        if not isinstance(net, st.ShortTermNet):
            raise UserError(f"--short-term-net: {path} holds a {type(net).__name__}; the KDL row needs a network "
                            "of KKT duals (architecture gram or transformer)")
        if K in nets:
            raise UserError(f"--short-term-net: two networks for K = {K}: {nets[K]} and {path}")
        if K not in s.users:
            raise UserError(f"--short-term-net: {path} is a network for K = {K} users, but this run has K in "
                            f"{list(s.users)} (--num-users); give a network trained for that K")
        nets[K] = path
    folder = args.short_term_dir
    if folder is not None and os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"--short-term-dir {folder} exists and is not a folder")
    if args.short_term_steps is not None and folder is None:
        raise UserError("--short-term-steps needs --short-term-dir (where the trained networks are saved)")
    options = st.quick_options() if args.quick else st.ShortTermOptions()
    if args.short_term_steps is not None:
        options = options.replace(steps=args.short_term_steps,
                                  supervised_steps=min(options.supervised_steps, args.short_term_steps))
    return dataclasses.replace(s, short_term_nets=tuple(nets.items()), short_term_dir=folder,
                               short_term_options=options)


def add_command(subparsers) -> None:
    """``jaxpass ssca``: the two-timescale experiments (rate vs P per K, sigma_u study, timing)."""
    from jaxpass.experiments.cli_args import add_options, add_parallel_options, positive_float, positive_int

    p = subparsers.add_parser(
        "ssca",
        help="two-timescale design: SSCA long-term positions vs baselines on held-out slots (TT Figs. 3-4)",
        description="Run jaxpass.experiments.two_timescale: held-out mean sum rate vs P for each K (SSCA with "
        "WMMSE or RZF short-term, digital MIMO, uniform positions, the single-timescale bound), the sigma_u "
        "study and SSCA timing; writes two_timescale.{json,md,png} to --out.",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: K = 4, two powers, 2 blocks, few iterations")
    p.add_argument("--num-users", type=positive_int, nargs="+", default=None, help="K values (default: 4 6)")
    p.add_argument("--powers-dbm", type=float, nargs="+", default=None, help="power budgets [dBm] (default: 12..28)")
    p.add_argument("--blocks", type=positive_int, default=None, help="channel-statistics blocks (default: 16)")
    p.add_argument("--held-out-slots", type=positive_int, default=None, help="held-out slots per block (default: 64)")
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=None, help="rows to run (default: all)")
    p.add_argument("--sigma-study", type=positive_float, nargs="*", default=None,
                   help="sigma_u values [m] of the motion study (default: 0.05 0.5 2; none to skip)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed of the homes and SSCA (default: %(default)s)")
    add_options(p, ssca.SscaOptions, CLI_OPTIONS)
    full, quick = Settings().ssca, quick_settings().ssca
    for action in p._actions:  # the run's own defaults (not SscaOptions'): None = take the preset's value
        if action.dest in CLI_OPTIONS:
            action.default = None
            action.help = action.help.replace("(default: %(default)s)", f"(default: {getattr(full, action.dest)}; "
                                              f"--quick: {getattr(quick, action.dest)})")
    p.add_argument("--short-term-net", nargs="+", default=None, metavar="PATH",
                   help="trained short-term networks for the KDL row, one per K (files of "
                   "jaxpass.learn.short_term.save_short_term, e.g. benchmarks/results/short_term-K4-cpu-2core.npz)")
    p.add_argument("--short-term-dir", default=None, metavar="DIR",
                   help="folder of short-term networks short_term-K<K>.npz for the KDL row: a K without one is "
                   "trained now (ShortTermOptions defaults; --quick: a tiny one) and saved there")
    p.add_argument("--short-term-steps", type=positive_int, default=None,
                   help="training steps of a network trained for --short-term-dir (default: 800; --quick: 20)")
    p.add_argument("--out", default="ssca_out", help="output folder (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr (stdout unchanged)")
    add_parallel_options(p)
    p.set_defaults(func=_cmd_ssca)

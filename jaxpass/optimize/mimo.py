"""Conventional MIMO baselines (docs/model.md §3.5): a fully digital ULA and a sub-connected hybrid array.

Both place a uniform linear array at the origin, along x at height ``h``
(``jaxpass.channel.ula_channel``: the same spherical-wave free-space model as
the pinches, element ``m`` at ``(m d, 0, h)``, ``d = lambda/2``), serve the same
users under the same total power budget ``cfg.power`` and noise ``cfg.noise_power``
as the PASS problem, and report the sum rate of docs/model.md §2.

* ``digital`` (TT's MIMO baseline): ``M`` antennas (default ``N``, one per RF
  chain), each with its own RF chain; WMMSE precoder (docs/model.md §3.1).
* ``hybrid`` (JB's "conventional massive MIMO", JB §V): ``N`` RF chains, chain
  ``n`` drives the ``L`` consecutive elements ``n L .. n L + L - 1`` of an
  ``N L``-element ULA through unit-modulus phase shifters ``F[n, l] = e^{j phi}``
  (sub-connected). The effective ``(K, N)`` channel is
  ``Heff[k, n] = sum_l Hula[k, n L + l] F[n, l] / sqrt(L)``; the ``1/sqrt(L)``
  splits each chain's power equally over its elements (as PASS's equal
  radiation, JB eq. (3)), so the digital precoder's ``||W||_F^2`` *is* the total
  radiated power and the budget is the same ``P`` as PASS.
  JB optimises it by PDD [27]; here (same problem, documented substitute) by
  alternating updates: the digital precoder by WMMSE (warm-started), the
  phases ``phi`` by Adam steps along the gradient of the sum rate at fixed
  digital precoder. At a WMMSE stationary point that partial gradient *is*
  the total gradient of ``phi -> max_W R(phi, W)`` (envelope theorem: the
  precoder's own derivative is orthogonal to the power sphere), so the pair of
  updates is a gradient ascent on the rate with the precoder re-optimised.
  Unit modulus holds by construction (``F = e^{j phi}``); the best iterate is
  returned. (Exact element-wise BCD on the weighted MSE at fixed digital
  precoder, the textbook alternative, was tried and stalls at high SNR: with
  interference weights ``alpha |v|^2 ~ 1e10`` every single phase is locked by
  the zero-forcing structure of the precoder.)

Execution model (``docs/execution_model.md``): :func:`digital_drop` and
:func:`hybrid_drop` are pure per-drop kernels (``cfg`` an argument, traced under
a caller's ``jax.jit(jax.vmap(...))``; fixed iteration counts, ``lax`` loops;
the hybrid kernel takes its optional key first); :class:`DigitalOptions` and
:class:`HybridOptions` hold the static choices; :func:`digital` and
:func:`hybrid` are the drivers (validation, any leading drop dimensions, a
module-level ``jax.jit``)::

    opts = HybridOptions(iterations=100)
    run = jax.jit(jax.vmap(lambda c, u: hybrid_drop(None, c, u, opts), in_axes=(None, 0)))
    res = run(cfg, users)                   # == hybrid(cfg, users, opts)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxpass import beamforming, parallel
from jaxpass._checks import check_array, check_int, check_number, check_users_in_area, drop_keys, is_tracer
from jaxpass._options import Options, option
from jaxpass.channel import ula_channel
from jaxpass.config import PassConfig
from jaxpass.metrics import sum_rate


class DigitalResult(NamedTuple):
    """Fully digital ULA + WMMSE.

    Attributes:
      W: ``(M, K)`` complex precoder, ``||W||_F^2 = cfg.power`` [sqrt(W)].
      H: ``(K, M)`` complex ULA channel.
      sum_rate: scalar [bps/Hz].
    """

    W: jax.Array
    H: jax.Array
    sum_rate: jax.Array


class HybridResult(NamedTuple):
    """Sub-connected hybrid array: analog phases + digital WMMSE.

    Attributes:
      analog: ``(N, L)`` complex unit-modulus phase-shifter weights ``e^{j phi}``.
      digital: ``(N, K)`` complex digital precoder, ``||digital||_F^2 = cfg.power``.
      H: ``(K, N)`` effective channel ``Hula F / sqrt(L)`` seen by the digital precoder.
      H_array: ``(K, N L)`` complex channel of the full ULA.
      sum_rate: scalar [bps/Hz] of ``(H, digital)``.
      history: ``(iterations + 1,)`` sum rate at the start and after every step (not monotone).
    """

    analog: jax.Array
    digital: jax.Array
    H: jax.Array
    H_array: jax.Array
    sum_rate: jax.Array
    history: jax.Array


@dataclasses.dataclass(frozen=True)
class DigitalOptions(Options):
    """Options of :func:`digital` (static for ``jit``)."""

    num_antennas: int | None = option(None, help="ULA antennas = RF chains M (default: cfg.num_waveguides, TT)",
                                      type=int)
    wmmse_iterations: int = option(100, help="WMMSE updates of the precoder (docs/model.md §3.1), fixed count")

    def validate(self):
        if self.num_antennas is not None:
            check_int("num_antennas", self.num_antennas, low=1, unit="antennas")
        check_int("wmmse_iterations", self.wmmse_iterations, low=1, unit="WMMSE updates")


@dataclasses.dataclass(frozen=True)
class HybridOptions(Options):
    """Options of :func:`hybrid` (static for ``jit``)."""

    iterations: int = option(200, help="alternating phase (Adam) / WMMSE steps")
    learning_rate: float = option(0.05, help="Adam step size on the phases [rad] (cosine decay to a tenth)")
    wmmse_iterations: int = option(5, help="warm-started WMMSE updates of the digital precoder per step")
    initial_wmmse_iterations: int = option(50, help="WMMSE updates at the start phases")
    final_wmmse_iterations: int = option(50, help="WMMSE updates at the best phases (kept if not worse)")

    def validate(self):
        check_int("iterations", self.iterations, low=1, unit="steps")
        check_number("learning_rate", self.learning_rate, low=0.0, low_open=True, unit="rad")
        check_int("wmmse_iterations", self.wmmse_iterations, low=1, unit="WMMSE updates")
        check_int("initial_wmmse_iterations", self.initial_wmmse_iterations, low=1, unit="WMMSE updates")
        check_int("final_wmmse_iterations", self.final_wmmse_iterations, low=1, unit="WMMSE updates")


def _check_inputs(cfg: PassConfig, users, spacing, *, batch=False):
    """Boundary checks (shapes always, values when concrete); returns the drops' batch shape."""
    drops = check_array("users", users, (cfg.num_users, 2), batch=batch, unit="m")
    check_users_in_area(cfg, users)
    if spacing is not None:
        check_array("spacing", spacing, (), unit="m")
        if not is_tracer(spacing) and not float(spacing) > 0:
            raise ValueError(f"spacing must be > 0 [m], got {float(spacing)}")
    return drops


def _float_users(users):
    users = jnp.asarray(users)
    if not jnp.issubdtype(users.dtype, jnp.floating):
        users = users.astype(jnp.result_type(float))
    return users


def _flat(x, batch, core):
    """``x`` broadcast to ``batch + core``, flattened to ``(B,) + core``."""
    return jnp.broadcast_to(jnp.asarray(x), tuple(batch) + tuple(core)).reshape((-1,) + tuple(core))


def _unflat(tree, batch):
    return jax.tree.map(lambda a: a.reshape(tuple(batch) + a.shape[1:]), tree)


def digital_drop(cfg: PassConfig, users, options: DigitalOptions | None = None, *, spacing=None) -> DigitalResult:
    """Fully digital ULA at the origin with a WMMSE precoder, one drop (pure kernel; docs/model.md §3.5).

    Args:
      cfg: the scenario (power, noise, carrier, height; K users); may be traced.
      users: ``(K, 2)`` user coordinates [m].
      options: :class:`DigitalOptions` (antenna count, WMMSE updates).
      spacing: element spacing [m] (default ``lambda/2``); may be traced.

    Returns:
      ``DigitalResult`` with ``W (M, K)``, ``H (K, M)`` and the sum rate [bps/Hz].
    """
    options = DigitalOptions.resolve(options)
    _check_inputs(cfg, users, spacing)
    users = _float_users(users)
    M = cfg.num_waveguides if options.num_antennas is None else options.num_antennas
    H = ula_channel(cfg, users, M, spacing)
    W = beamforming.wmmse(H, cfg.power, cfg.noise_power, iterations=options.wmmse_iterations,
                          init="zf" if cfg.num_users <= M else "mrt")
    return DigitalResult(W=W, H=H, sum_rate=sum_rate(H, W, cfg.noise_power))


@functools.partial(jax.jit, static_argnames="options")
def _digital_batch(cfg, users, *, spacing, options):
    return jax.vmap(lambda u: digital_drop(cfg, u, options, spacing=spacing))(users)


def digital(cfg: PassConfig, users, options: DigitalOptions | None = None, *, spacing=None, mesh=None,
            **changes) -> DigitalResult:
    """Fully digital ULA + WMMSE (TT's MIMO baseline) on one drop or a batch: the driver of :func:`digital_drop`.

    Args:
      cfg: the scenario.
      users: ``(..., K, 2)`` user coordinates [m], any leading drop dimensions (none for one drop).
      options: :class:`DigitalOptions`; ``changes`` (e.g. ``num_antennas=8``) are applied to it.
      spacing: element spacing [m] shared by all drops (default ``lambda/2``).
      mesh: ``None`` or a mesh from :func:`jaxpass.parallel.drops_mesh` (drops data-parallel, same results).

    Returns:
      ``DigitalResult`` with the drops' leading dimensions.
    """
    options = DigitalOptions.resolve(options, **changes)
    batch = _check_inputs(cfg, users, spacing, batch=True)
    out = parallel.batch_call(_digital_batch, cfg, _flat(users, batch, (cfg.num_users, 2)), spacing=spacing,
                              options=options, mesh=mesh, in_axes=(None, 0))
    return _unflat(out, batch)


def hybrid_channel(H_array, analog):
    """``Heff[k, n] = sum_l H_array[k, n L + l] analog[n, l] / sqrt(L)``, shape ``(K, N)``.

    Args:
      H_array: ``(K, N L)`` ULA channel (consecutive elements per RF chain).
      analog: ``(N, L)`` phase-shifter weights (unit modulus).
    """
    N, L = analog.shape
    K = H_array.shape[0]
    Hb = H_array.reshape(K, N, L)
    return jnp.sum(Hb * analog[None], axis=-1) / jnp.sqrt(jnp.asarray(L, Hb.real.dtype))


def _initial_analog(cfg: PassConfig, H_array, key):
    """Start phases: per chain ``n``, co-phase to user ``n mod K`` (``key=None``), or uniform random."""
    K = cfg.num_users
    N, L = cfg.num_waveguides, cfg.num_pinches
    if key is not None:
        phi = jax.random.uniform(key, (N, L), H_array.real.dtype, 0.0, 2.0 * jnp.pi)
        return jnp.exp(1j * phi).astype(H_array.dtype)
    Hb = H_array.reshape(K, N, L)
    target = Hb[jnp.arange(N) % K, jnp.arange(N)]  # (N, L): chain n's elements to user n mod K
    mag = jnp.abs(target)
    return jnp.where(mag > 0, jnp.conj(target) / jnp.where(mag > 0, mag, 1.0), 1.0).astype(H_array.dtype)


def hybrid_drop(key, cfg: PassConfig, users, options: HybridOptions | None = None, *, spacing=None) -> HybridResult:
    """Sub-connected hybrid array at the origin, one drop (pure kernel; docs/model.md §3.5, JB §V).

    ``N = cfg.num_waveguides`` RF chains, ``L = cfg.num_pinches`` elements each
    (a ``N L``-element ULA along x, ``lambda/2`` spacing by default). Alternating
    gradient/WMMSE updates (module docstring), in normalised units (unit noise,
    unit budget):

    1. start phases (co-phasing or random), digital WMMSE (``initial_wmmse_iterations``);
    2. ``iterations`` times: one Adam step (``learning_rate`` [rad], cosine decay to
       10%) on the phases along ``d R(phi, W) / d phi`` at fixed ``W``, then
       ``wmmse_iterations`` WMMSE updates of ``W`` warm-started from the previous one;
    3. the best iterate's phases get ``final_wmmse_iterations`` more WMMSE updates
       (kept only if they do not lower its rate).

    Fixed counts (``lax.scan``).

    Args:
      key: ``None`` co-phases chain ``n`` to user ``n mod K`` (analog beam steering);
        a PRNG key draws uniformly random start phases.
      cfg: the scenario; may be traced.
      users: ``(K, 2)`` [m].
      options: :class:`HybridOptions`.
      spacing: element spacing [m] (default ``lambda/2``).

    Returns:
      ``HybridResult``; ``analog`` is unit-modulus, ``||digital||_F^2 = cfg.power`` [W];
      ``history`` holds the start rate and the rate after every step [bps/Hz] (raw trajectory).
    """
    import optax

    options = HybridOptions.resolve(options)
    _check_inputs(cfg, users, spacing)
    users = _float_users(users)
    K, N, L = cfg.num_users, cfg.num_waveguides, cfg.num_pinches
    H_array = ula_channel(cfg, users, N * L, spacing)
    rdt = H_array.real.dtype
    power = jnp.asarray(cfg.power, rdt)
    noise = jnp.asarray(cfg.noise_power, rdt)
    G_array = H_array * jnp.sqrt(power / noise)  # unit noise, unit power budget
    init = "zf" if K <= N else "mrt"

    def channel(phi):
        return hybrid_channel(G_array, jnp.exp(1j * phi).astype(G_array.dtype))

    def rate(phi, W):
        return sum_rate(channel(phi), W, 1.0)

    phi0 = jnp.angle(_initial_analog(cfg, H_array, key)).astype(rdt)
    W0 = beamforming.wmmse(channel(phi0), 1.0, 1.0, iterations=options.initial_wmmse_iterations, init=init)
    r0 = rate(phi0, W0)
    opt = optax.adam(optax.cosine_decay_schedule(options.learning_rate, options.iterations, alpha=0.1))
    grad = jax.grad(rate)

    def step(carry, _):
        phi, W, state, best = carry
        updates, state = opt.update(-grad(phi, W), state, phi)
        phi = optax.apply_updates(phi, updates)
        W = beamforming.wmmse(channel(phi), 1.0, 1.0, iterations=options.wmmse_iterations, init=W)
        r = rate(phi, W)
        better = r > best[2]
        best = jax.tree.map(lambda new, old: jnp.where(better, new, old), (phi, W, r), best)
        return (phi, W, state, best), r

    carry = (phi0, W0, opt.init(phi0), (phi0, W0, r0))
    (_, _, _, (phi, W, r_best)), rates = jax.lax.scan(step, carry, None, length=options.iterations)
    W_final = beamforming.wmmse(channel(phi), 1.0, 1.0, iterations=options.final_wmmse_iterations, init=W)
    W = jnp.where(rate(phi, W_final) >= r_best, W_final, W)
    F = jnp.exp(1j * phi).astype(H_array.dtype)
    digital_W = W * jnp.sqrt(power)
    H = hybrid_channel(H_array, F)
    return HybridResult(analog=F, digital=digital_W, H=H, H_array=H_array,
                        sum_rate=sum_rate(H, digital_W, noise), history=jnp.concatenate([r0[None], rates]))


@functools.partial(jax.jit, static_argnames="options")
def _hybrid_batch(keys, cfg, users, *, spacing, options):
    return jax.vmap(lambda k, u: hybrid_drop(k, cfg, u, options, spacing=spacing))(keys, users)


def hybrid(cfg: PassConfig, users, options: HybridOptions | None = None, *, key=None, spacing=None, mesh=None,
           **changes) -> HybridResult:
    """Sub-connected hybrid array (JB's MIMO baseline) on one drop or a batch: the driver of :func:`hybrid_drop`.

    Args:
      cfg: the scenario.
      users: ``(..., K, 2)`` [m], any leading drop dimensions (none for one drop).
      options: :class:`HybridOptions`; ``changes`` (e.g. ``iterations=100``) are applied to it.
      key: ``None`` (co-phased start, deterministic) or random start phases: one key per drop
        (shape ``(...)``) or a single key, used as is for one drop and split into
        ``jax.random.split(key, B)`` for ``B`` drops (flattened in C order).
      spacing: element spacing [m] shared by all drops (default ``lambda/2``).
      mesh: ``None`` or a mesh from :func:`jaxpass.parallel.drops_mesh` (drops data-parallel, same results).

    Returns:
      ``HybridResult`` with the drops' leading dimensions.
    """
    options = HybridOptions.resolve(options, **changes)
    batch = _check_inputs(cfg, users, spacing, batch=True)
    keys = None if key is None else _flat(drop_keys(key, batch), batch, ())
    out = parallel.batch_call(_hybrid_batch, keys, cfg, _flat(users, batch, (cfg.num_users, 2)), spacing=spacing,
                              options=options, mesh=mesh, in_axes=(None if keys is None else 0, None, 0))
    return _unflat(out, batch)


def unit_modulus_error(analog):
    """``max | |analog| - 1 |``: how far phase-shifter weights are from unit modulus."""
    return jnp.max(jnp.abs(jnp.abs(analog) - 1.0))


__all__ = ["DigitalOptions", "DigitalResult", "HybridOptions", "HybridResult", "digital", "digital_drop", "hybrid",
           "hybrid_channel", "hybrid_drop", "unit_modulus_error"]

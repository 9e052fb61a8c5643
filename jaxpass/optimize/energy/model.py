"""The EE channel and metrics (docs/model.md §5): element coefficients, gains, EE and SE, starting points.

One waveguide along x carries ``N = cfg.num_pinches`` elements at positions
``x (N,)`` [m]; element n couples out the fraction ``delta_n`` (``split``) of the
power still in the guide (``jaxpass.channel.coupled_amplitudes``). All
functions are pure and take ``cfg`` as an argument (traced under ``jax.jit``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpass.channel import coupled_amplitudes, equal_split, free_space_links, pinch_response
from jaxpass.geometry import project_positions, uniform_positions


def element_coefficients(cfg, x, users):
    """Unit-amplitude path coefficients ``c[k, n] = sqrt(eta) e^{-j kappa (r_kn + n_eff x_n)} / r_kn``.

    docs/model.md §5 (the factors of ``h_k`` before the radiation amplitudes ``a_n``), from
    the library's ``free_space_links`` and ``pinch_response`` (so in-waveguide loss,
    if configured, is included).

    Args:
      cfg: single-waveguide scenario (``num_waveguides = 1``, ``N = num_pinches``).
      x: ``(N,)`` element positions [m].
      users: ``(K, 2)`` user coordinates [m].

    Returns:
      ``(K, N)`` complex; ``h_k = c[k] @ a``.
    """
    X = jnp.asarray(x)[None, :]
    links = free_space_links(cfg, X, users)[:, 0, :]  # (K, N)
    guide = pinch_response(cfg, X, amplitudes=jnp.ones((cfg.num_pinches,), X.dtype))[0]  # (N,)
    return links * guide[None, :]


def single_coefficient(cfg1, xn, users):
    """``c[k]`` of one element at scalar position ``xn``: ``(K,)`` complex (``cfg1``: one pinch)."""
    X = jnp.reshape(xn, (1, 1))
    links = free_space_links(cfg1, X, users)[:, 0, 0]
    guide = pinch_response(cfg1, X, amplitudes=jnp.ones((1,), X.dtype))[0, 0]
    return links * guide


def random_phases(num_elements: int, num_samples: int, dtype=None):
    """``(S, N)`` unit phasors ``e^{j phi}``, ``phi ~ U[0, 2 pi)`` i.i.d., from a FIXED key.

    The common random numbers of the ``"random_phase"`` gain: the same draws in
    every evaluation, so the smoothed objective is a deterministic function of
    the design (a Gauss-Seidel grid and a line search can compare values).
    """
    dtype = dtype or jnp.result_type(float)
    phi = jax.random.uniform(jax.random.key(20250531), (num_samples, num_elements), dtype) * (2 * jnp.pi)
    return jax.lax.complex(jnp.cos(phi), jnp.sin(phi))


def channel_gains(cfg, x, split, users, gain: str = "coherent", phase_samples: int = 16):
    """SNR per watt of input power [1/W] (docs/model.md §5): ``(K,)`` coherent, ``(S, K)`` random-phase.

    ``gain="coherent"``: the physics, ``g_k = |h_k|^2 / sigma^2`` with
    ``h_k = sum_n a_n c[k, n]``.

    ``gain="random_phase"``: ``g[s, k] = |sum_n a_n |c[k, n]| e^{j phi[s, n]}|^2 / sigma^2``
    for ``S = phase_samples`` fixed draws ``phi[s] ~ U[0, 2 pi)^N``
    (:func:`random_phases`): the channel of the same geometry with the element
    phases replaced by independent uniform ones. A user who is not known at
    design time sits at a random position, and the phase difference of two
    elements at the user, ``kappa (r_kn - r_km + n_eff (x_n - x_m))``, turns
    once every few millimetres of user motion, so over the user distribution it
    is close to uniform, while the magnitudes ``|c[k, n]|`` vary on a metre
    scale. Averaging a design value over these draws estimates its EXPECTED
    value over the users (the per-slot fading of a spread array included: the
    EE is concave in ``g``, so the phase-averaged mean gain would overrate
    spread arrays). It ignores the phase relation that closely spaced elements
    keep over a region of users, so it underrates compact sub-arrays: the
    static design fits the coherent gain by default (package docstring).

    Args:
      x: ``(N,)`` element positions [m]; split: ``(N,)`` coefficients in ``[0, 1]``;
      users: ``(K, 2)``; gain: ``"coherent"`` or ``"random_phase"``;
      phase_samples: S, draws of the random-phase gain.
    """
    C = element_coefficients(cfg, x, users)
    a = coupled_amplitudes(split).astype(C.real.dtype)
    noise = jnp.asarray(cfg.noise_power, C.real.dtype)
    if gain == "random_phase":
        mag = jnp.sqrt(C.real**2 + C.imag**2)  # (K, N)
        h = jnp.einsum("kn,sn->sk", (mag * a).astype(C.dtype), random_phases(C.shape[-1], phase_samples, C.real.dtype))
        return (h.real**2 + h.imag**2) / noise
    if gain != "coherent":
        raise ValueError(f"gain must be 'coherent' or 'random_phase', got {gain!r}")
    h = C @ a.astype(C.dtype)
    return (h.real**2 + h.imag**2) / noise


def energy_efficiency_of(gains, power, circuit_power):
    """``(EE, SE)`` of TDMA powers ``p`` on gains ``g`` (docs/model.md §5).

    ``SE = mean_k log2(1 + p_k g_k)`` [bps/Hz], ``EE = SE / (mean_k p_k + P_c)``
    [bit/s/Hz per W].

    Args:
      gains: ``(K,)`` SNR per watt [1/W]; power: ``(K,)`` [W]; circuit_power: P_c [W] > 0.
    """
    gains = jnp.asarray(gains)
    se = jnp.mean(jnp.log2(1.0 + power * gains))
    return se / (jnp.mean(power) + circuit_power), se


def initial_point(cfg, dtype=None):
    """The paper's initial point (EE §V): uniform ``x_n = (n + 1/2) S_x / N``, ``delta_n = 1/(N - n)``.

    Returns:
      ``(x (N,) [m], split (N,))``.
    """
    dtype = dtype or jnp.result_type(float)
    return uniform_positions(cfg, dtype)[0], equal_split(cfg.num_pinches, dtype)


def centre_antenna_point(cfg, dtype=None):
    """The fixed-antenna baseline as a PASS point: element 0 at ``S_x/2`` radiating everything.

    ``delta_0 = 1`` (the others get no power; ``delta_n = 1/(N - n)`` kept for them),
    ``x_n = S_x/2 + n max(delta_min, S_x/(2N))`` (projected onto the feasible set, which
    leaves element 0 at the centre whenever ``S_x/2 >= (N-1) delta_min``).

    Returns:
      ``(x (N,) [m], split (N,))``.
    """
    dtype = dtype or jnp.result_type(float)
    N = cfg.num_pinches
    length = jnp.asarray(cfg.length_x, dtype)
    gap = jnp.maximum(jnp.asarray(cfg.min_spacing, dtype), 0.5 * length / N)
    x = project_positions(cfg, (0.5 * length + gap * jnp.arange(N, dtype=dtype))[None])[0]
    return x, equal_split(N, dtype).at[0].set(1.0)


def fixed_split(cfg, value, dtype):
    """``(N,)`` equal split coefficients ``value`` (the fixed-coupling baseline)."""
    return jnp.full((cfg.num_pinches,), value, dtype)

"""Unit conversions and physical constants (docs/model.md §1-§2).

Everything inside jaxpass is SI (metres, hertz, watts). Decibel quantities
are converted only at the edges, with the helpers below. All helpers accept
Python scalars or arrays (NumPy or JAX) and are differentiable.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

SPEED_OF_LIGHT: float = 299_792_458.0
"""Speed of light in vacuum [m/s]."""


def db_to_linear(db):
    """Power ratio in dB -> linear ratio: ``10 ** (db / 10)``."""
    return 10.0 ** (jnp.asarray(db) / 10.0)


def linear_to_db(x):
    """Linear power ratio -> dB: ``10 log10(x)``."""
    return 10.0 * jnp.log10(jnp.asarray(x))


def dbm_to_watt(dbm):
    """Power in dBm -> watts: ``10 ** ((dbm - 30) / 10)``."""
    return 10.0 ** ((jnp.asarray(dbm) - 30.0) / 10.0)


def watt_to_dbm(watt):
    """Power in watts -> dBm: ``10 log10(watt) + 30``."""
    return 10.0 * jnp.log10(jnp.asarray(watt)) + 30.0


def wavelength(carrier_freq):
    """Free-space wavelength ``c / f`` [m] for a carrier frequency [Hz]."""
    return SPEED_OF_LIGHT / carrier_freq


def beta_seed(carrier_freq: float) -> float:
    """Channel gain at 1 m in the JB/TT ("seed") convention: ``c / (4 pi f)``.

    JB eq. (2) and TT eq. (1) write ``sqrt(beta)`` with ``beta = c/(4 pi f_c)``;
    this is the default of the JB/TT presets so numbers compare with theirs.
    """
    return SPEED_OF_LIGHT / (4.0 * math.pi * float(carrier_freq))


def beta_friis(carrier_freq: float) -> float:
    """Free-space (Friis) gain at 1 m: ``(c / (4 pi f))**2`` (EE, PB, Ding et al.)."""
    return beta_seed(carrier_freq) ** 2

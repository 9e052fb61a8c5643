"""Slot statistics of a channel-statistics block: where the users are in each short-term slot.

The two-timescale problem (docs/model.md §4) averages the sum rate over the
channel of a *slot* (here: the users' positions in that slot) within one
channel-statistics *block*, during which the statistics stay fixed and the
pinch positions ``X`` are held. The statistics are a **reconstruction**
(docs/model.md §4): the paper gives none beyond "users randomly distributed".

* ``"gaussian"`` (default): each user has a home position, uniform over the
  area ``[0, S_x] x [0, S_y]`` (:func:`sample_homes`); each slot draws
  ``home + N(0, sigma_u^2 I)`` clipped to the area (:func:`sample_slots`,
  ``sigma_u`` default 0.5 m).
* ``"uniform"``: i.i.d. uniform positions in every slot, no homes
  (:func:`sample_uniform_slots`); the block then carries no position
  information and the best long-term ``X`` serves the whole area.

All samplers are pure, take the key first and draw a whole batch of slots at
once (the slot axis leads), so they run under a caller's ``jax.jit`` /
``jax.vmap`` with ``cfg`` traced. The name: a *slot* is the short timescale of
the two-timescale design; this module holds their statistics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpass._checks import check_choice, check_positive_int, check_shape, is_tracer
from jaxpass.config import PassConfig

#: slot models: ``"gaussian"`` (homes + Gaussian motion) or ``"uniform"`` (i.i.d. uniform drops)
SLOT_DISTRIBUTIONS = ("gaussian", "uniform")

#: default standard deviation of a user's position around its home in a slot [m] (docs/model.md §4)
SIGMA_U = 0.5


def _extent(cfg: PassConfig, dtype):
    return jnp.stack([jnp.asarray(cfg.length_x, dtype), jnp.asarray(cfg.width_y, dtype)])


def _check_cfg(cfg):
    if not isinstance(cfg, PassConfig):
        raise TypeError(f"cfg must be a PassConfig, got {type(cfg).__name__}")


def sample_homes(key, cfg: PassConfig, dtype=None):
    """Home positions of one block's users: uniform over ``[0, S_x] x [0, S_y]`` (docs/model.md §4).

    Args:
      key: ``jax.random`` key.
      cfg: the scenario (``num_users``, ``length_x``, ``width_y``; traced lengths allowed).
      dtype: float dtype (default: JAX's default float).

    Returns:
      ``(K, 2)`` home coordinates [m].
    """
    _check_cfg(cfg)
    dtype = dtype or jnp.result_type(float)
    u = jax.random.uniform(key, (cfg.num_users, 2), dtype)
    return u * _extent(cfg, dtype)


def sample_slots(key, cfg: PassConfig, homes, num_slots: int, sigma_u=SIGMA_U):
    """User positions in ``num_slots`` slots of one block: ``home + N(0, sigma_u^2 I)``, clipped to the area.

    The reconstructed slot statistics of docs/model.md §4. Clipping (not
    reflection or resampling) keeps the sampler a fixed-shape pure function;
    users near an edge then sit on it with positive probability.

    Args:
      key: ``jax.random`` key.
      cfg: the scenario.
      homes: ``(K, 2)`` home coordinates [m] (:func:`sample_homes`).
      num_slots: S, slots to draw (static: it sets a shape).
      sigma_u: standard deviation of each coordinate around the home [m], ``>= 0``
        (may be traced).

    Returns:
      ``(S, K, 2)`` user coordinates [m], inside ``[0, S_x] x [0, S_y]``.
    """
    _check_cfg(cfg)
    check_positive_int("num_slots", num_slots)
    check_shape("homes", homes, (cfg.num_users, 2))
    if not is_tracer(sigma_u):
        try:
            bad = not float(sigma_u) >= 0
        except (TypeError, ValueError):
            raise TypeError(f"sigma_u must be a number [m], got {sigma_u!r}") from None
        if bad:
            raise ValueError(f"sigma_u must be a finite number >= 0 [m], got {sigma_u!r}")
    homes = jnp.asarray(homes)
    dtype = homes.dtype if jnp.issubdtype(homes.dtype, jnp.floating) else jnp.result_type(float)
    homes = homes.astype(dtype)
    noise = jax.random.normal(key, (num_slots,) + homes.shape, dtype)
    return jnp.clip(homes + jnp.asarray(sigma_u, dtype) * noise, 0.0, _extent(cfg, dtype))


def sample_uniform_slots(key, cfg: PassConfig, num_slots: int, dtype=None):
    """User positions in ``num_slots`` slots drawn i.i.d. uniform over the area (no homes; docs/model.md §4).

    Returns:
      ``(S, K, 2)`` user coordinates [m].
    """
    _check_cfg(cfg)
    check_positive_int("num_slots", num_slots)
    dtype = dtype or jnp.result_type(float)
    u = jax.random.uniform(key, (num_slots, cfg.num_users, 2), dtype)
    return u * _extent(cfg, dtype)


def draw_slots(key, cfg: PassConfig, homes, num_slots: int, model: str = "gaussian", sigma_u=SIGMA_U):
    """Slots of one block by ``model`` (``"gaussian"``: :func:`sample_slots`; ``"uniform"``: ignores ``homes``).

    Returns:
      ``(S, K, 2)`` user coordinates [m], in the dtype of ``homes``.
    """
    check_choice("model", model, SLOT_DISTRIBUTIONS)
    if model == "gaussian":
        return sample_slots(key, cfg, homes, num_slots, sigma_u)
    homes = jnp.asarray(homes)
    dtype = homes.dtype if jnp.issubdtype(homes.dtype, jnp.floating) else None
    return sample_uniform_slots(key, cfg, num_slots, dtype)


__all__ = ["SIGMA_U", "SLOT_DISTRIBUTIONS", "draw_slots", "sample_homes", "sample_slots", "sample_uniform_slots"]

"""Boundary validation of the energy-efficiency drivers (outside ``jit``; value checks skip tracers)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpass._checks import RANGES, check_finite, check_number, check_shape, check_users_in_area, is_tracer
from jaxpass.config import PassConfig
from jaxpass.geometry import is_feasible


def _concrete_cfg(cfg) -> bool:
    return not any(is_tracer(leaf) for leaf in jax.tree.leaves(cfg))


def check_cfg(cfg):
    if not isinstance(cfg, PassConfig):
        raise TypeError(f"cfg must be a PassConfig, got {type(cfg).__name__}")
    if cfg.num_waveguides != 1:
        raise ValueError(
            "energy-efficiency design (docs/model.md §5) needs a single waveguide: "
            f"cfg.num_waveguides must be 1, got {cfg.num_waveguides}"
        )
    return cfg


def check_users(cfg, users, *, batched: bool):
    users = jnp.asarray(users)
    check_shape("users", users, ((None,) if batched else ()) + (cfg.num_users, 2))
    check_finite("users", users)
    check_users_in_area(cfg, users)
    return users


def check_split(cfg, split):
    split = jnp.asarray(split)
    check_shape("split", split, (cfg.num_pinches,))
    check_finite("split", split)
    if not is_tracer(split):
        arr = np.asarray(split)
        if np.any(arr < 0) or np.any(arr > 1):
            raise ValueError(f"split coefficients must lie in [0, 1], got min {arr.min():.4g}, max {arr.max():.4g}")
    return split


def check_positions(cfg, x, *, batched: bool = False):
    x = jnp.asarray(x)
    check_shape("x (positions)", x, ((None,) if batched else ()) + (cfg.num_pinches,))
    check_finite("x (positions)", x)
    if not is_tracer(x) and _concrete_cfg(cfg) and not bool(jnp.all(is_feasible(cfg, x[..., None, :]))):
        raise ValueError(
            "x (positions) must be feasible: 0 <= x_0, x_n - x_{n-1} >= min_spacing "
            f"= {float(cfg.min_spacing):.4g} m, x_{{N-1}} <= length_x = {float(cfg.length_x):.4g} m"
        )
    return x


def check_p_max(p_max):
    """A power budget [W]: a finite number in ``RANGES["power_w"]``, [0, 1e3] W (a tracer passes)."""
    if p_max is None or is_tracer(p_max):
        return p_max
    arr = np.asarray(p_max)
    if arr.ndim != 0:
        raise ValueError(f"p_max must be a scalar power budget [W], got shape {arr.shape}")
    value = check_number("p_max", arr.item(), unit="W", low=0.0)
    if not RANGES["power_w"].holds(value):
        raise ValueError(f"p_max must lie in {RANGES['power_w'].describe()} (60 dBm), got {value:g}")
    return value


def design_inputs(cfg, X, split, users):
    """Validate a design's inputs; ``X (N,)`` is broadcast to one layout per drop ``(D, N)``."""
    check_cfg(cfg)
    split = check_split(cfg, split)
    users = check_users(cfg, users, batched=True)
    X = jnp.asarray(X)
    X = check_positions(cfg, X, batched=X.ndim == 2)
    if X.ndim == 1:
        X = jnp.broadcast_to(X, (users.shape[0],) + X.shape)
    elif X.shape[0] != users.shape[0]:
        raise ValueError(f"X has {X.shape[0]} layouts but users has {users.shape[0]} drops; they must match")
    return X, split, users


def float_dtype(*arrays):
    """The common floating dtype of ``arrays`` (float32 by default, float64 under x64)."""
    return jnp.result_type(*[jnp.asarray(a).dtype for a in arrays], float)


def budget(cfg, p_max, dtype):
    """``p_max`` [W] (default ``cfg.power``) as a ``dtype`` scalar, checked."""
    return jnp.asarray(cfg.power if p_max is None else check_p_max(p_max), dtype)

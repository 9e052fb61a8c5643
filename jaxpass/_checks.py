"""Boundary validation helpers: run outside ``jit`` on concrete inputs, skip tracers.

Every public entry point calls these on its arguments so that a user gets a
``ValueError``/``TypeError`` naming the argument, its value and what was
expected, instead of a NaN or a shape error deep inside XLA.
"""

from __future__ import annotations

import jax
import numpy as np


def is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def shape_of(x):
    shape = getattr(x, "shape", None)
    if shape is None:
        shape = np.shape(x)
    return tuple(shape)


def check_shape(name: str, x, expected: tuple, *, batch: bool = False):
    """Check that ``x`` has shape ``expected`` (``None`` matches any size).

    With ``batch=True`` any number of leading batch dimensions is allowed.
    """
    shape = shape_of(x)
    n = len(expected)
    core = shape[len(shape) - n :] if batch else shape
    ok = (len(shape) >= n if batch else len(shape) == n) and all(
        e is None or e == s for e, s in zip(expected, core)
    )
    if not ok:
        want = "(..., " + ", ".join("?" if e is None else str(e) for e in expected) + ")" if batch else str(
            tuple("?" if e is None else e for e in expected)
        )
        raise ValueError(f"{name} must have shape {want}, got {shape}")
    return shape


def check_finite(name: str, x):
    """Raise if concrete ``x`` holds NaN or inf (tracers pass through)."""
    if is_tracer(x):
        return
    arr = np.asarray(x)
    if np.issubdtype(arr.dtype, np.number) and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")


def check_nonnegative(name: str, x):
    """Raise if concrete ``x`` is negative or non-finite (tracers pass through)."""
    check_finite(name, x)
    if is_tracer(x):
        return
    arr = np.asarray(x)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0, got {arr if arr.ndim == 0 else arr.min()}")


def check_positive_int(name: str, x):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {x!r}")
    if x <= 0:
        raise ValueError(f"{name} must be >= 1, got {x}")

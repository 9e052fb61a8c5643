"""Boundary validation helpers: run outside ``jit`` on concrete inputs, skip tracers.

Every public entry point calls these on its arguments so that a user gets a
``ValueError``/``TypeError`` naming the argument, its value and what was
expected, instead of a NaN or a shape error deep inside XLA.
"""

from __future__ import annotations

from typing import NamedTuple

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

    Shapes are static under ``jit``/``vmap``, so this runs on tracers too (a
    vmapped argument shows its per-drop shape); only value checks skip tracers.

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


def check_nonnegative_int(name: str, x):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {x!r}")
    if x < 0:
        raise ValueError(f"{name} must be >= 0, got {x}")


def check_number(name: str, x, *, unit: str = "", low=None, high=None, low_open: bool = False):
    """Check a concrete finite number within ``[low, high]`` (``(low, high]`` with ``low_open``).

    The message names the argument, the value, the allowed range and its unit,
    e.g. ``learning_rate must be a finite number > 0 [m], got -1.0``.
    """
    if isinstance(x, bool) or is_tracer(x):
        raise TypeError(f"{name} must be a Python/NumPy number, got {x!r}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {x!r}") from None
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"<= {high:g}")
    want = f"a finite number{' ' + ' and '.join(bounds) if bounds else ''}{' [' + unit + ']' if unit else ''}"
    ok = np.isfinite(v) and (low is None or (v > low if low_open else v >= low)) and (high is None or v <= high)
    if not ok:
        raise ValueError(f"{name} must be {want}, got {x!r}")
    return v


def check_choice(name: str, x, choices):
    if x not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {x!r}")
    return x


def check_key(key, name: str = "key"):
    """A single ``jax.random`` key (new-style or legacy ``uint32[2]``), returned as a typed key."""
    if key is None:
        raise TypeError(f"{name} must be a jax.random key (e.g. jax.random.key(0)), got None")
    k = key if isinstance(key, jax.Array) else np.asarray(key)
    if jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key):
        if k.shape != ():
            raise ValueError(f"{name} must be a single PRNG key, got shape {k.shape}")
        return k
    if k.dtype != np.uint32 or k.shape != (2,):
        raise TypeError(f"{name} must be a jax.random key (jax.random.key or PRNGKey), got {k.dtype}{k.shape}")
    return jax.random.wrap_key_data(k)


# ----------------------------------------------- driver-boundary helpers (solvers)
def check_int(name: str, x, *, low: int = 1, high=None, unit: str = ""):
    """An ``int`` (not a bool) in ``[low, high]``, returned as ``int``.

    The message names the argument, the value, the allowed range and its unit,
    e.g. ``grid must be >= 2 [points per axis], got 1``.
    """
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {x!r}")
    if x < low or (high is not None and x > high):
        want = f">= {low}" + (f" and <= {high}" if high is not None else "")
        raise ValueError(f"{name} must be {want}{' [' + unit + ']' if unit else ''}, got {x}")
    return int(x)


def check_array(name: str, x, shape: tuple, *, batch: bool = False, low=None, high=None, unit: str = ""):
    """Validate an array argument at a driver boundary; return its leading batch shape.

    The shape is always checked (shapes are static under ``jit``, see
    :func:`check_shape`); finiteness and the range ``[low, high]`` only for
    concrete values (a tracer, or a traced bound, skips the value check).
    """
    full = check_shape(name, x, shape, batch=batch)
    check_finite(name, x)
    if not is_tracer(x) and (low is not None or high is not None):
        arr = np.asarray(x)
        lo = None if low is None or is_tracer(low) else np.asarray(low)
        hi = None if high is None or is_tracer(high) else np.asarray(high)
        if arr.size and ((lo is not None and np.any(arr < lo)) or (hi is not None and np.any(arr > hi))):
            lo_s = "-inf" if lo is None else f"{float(np.max(lo)):g}"
            hi_s = "inf" if hi is None else f"{float(np.min(hi)):g}"
            raise ValueError(
                f"{name} must lie in [{lo_s}, {hi_s}]"
                f"{' ' + unit if unit else ''}, got range [{arr.min():.6g}, {arr.max():.6g}]"
            )
    return full[: len(full) - len(shape)]


def check_broadcastable(name: str, x, shape: tuple):
    """Raise unless ``x`` broadcasts to ``shape`` (e.g. a scalar or ``(K,)`` target for ``(B, K)`` drops)."""
    xs = shape_of(x)
    try:
        ok = np.broadcast_shapes(xs, tuple(shape)) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a scalar or broadcastable to shape {tuple(shape)}, got shape {xs}")
    return xs


def drop_keys(key, batch_shape: tuple, name: str = "key"):
    """One typed PRNG key per drop, shape ``batch_shape``, for a driver's batched call.

    ``key`` is either a key array of shape ``batch_shape`` (used as is) or a
    single key: used as is for one drop (``batch_shape == ()``), otherwise
    ``jax.random.split(key, prod(batch_shape))`` reshaped to ``batch_shape``.
    """
    batch_shape = tuple(batch_shape)
    k = key if isinstance(key, jax.Array) else (None if key is None else np.asarray(key))
    if k is not None and batch_shape:
        if jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key) and k.shape == batch_shape:
            return k
        if k.dtype == np.uint32 and k.shape == batch_shape + (2,):
            return jax.random.wrap_key_data(k)
    k = check_key(key, name)
    if not batch_shape:
        return k
    return jax.random.split(k, int(np.prod(batch_shape))).reshape(batch_shape)


def check_spacings(name: str, x) -> tuple:
    """A non-empty sequence of finite pinch spacings >= 0 [m], returned as a tuple of floats."""
    try:
        spacings = tuple(float(s) for s in np.atleast_1d(np.asarray(x, dtype=float)))
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers [m], got {x!r}") from None
    if not spacings or not all(np.isfinite(s) and s >= 0 for s in spacings):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers >= 0 [m], got {x!r}")
    return spacings


# ------------------------------------------------------- physical ranges (one table)
class Range(NamedTuple):
    """The allowed values of one physical quantity: ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    low: float
    high: float
    unit: str
    low_open: bool = False
    why: str = ""

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]{unit}"

    def holds(self, arr):
        """Elementwise: ``arr`` lies in the range (NaN fails)."""
        arr = np.asarray(arr)
        lower = arr > self.low if self.low_open else arr >= self.low
        return lower & (arr <= self.high)


RANGES = {
    # config fields (jaxpass.config.PassConfig); each number must stay finite in float32 and give a usable SNR
    "power_dbm": Range(-100.0, 60.0, "dBm", why="1e-13 W .. 1 kW; 300 dBm overflows float32 (|W|^2 ~ 1e54)"),
    "circuit_power_dbm": Range(-100.0, 60.0, "dBm", why="as power_dbm"),
    "noise_dbm": Range(-200.0, 0.0, "dBm", why="thermal noise is -174 dBm/Hz; 0 dBm = 1 mW of noise"),
    "carrier_freq": Range(1e8, 1e12, "Hz", why="100 MHz .. 1 THz (lambda 3 m .. 0.3 mm)"),
    "n_eff": Range(1.0, 10.0, "", why="a dielectric waveguide: 1 <= n_eff (silicon is ~3.5)"),
    "height": Range(0.0, 1e4, "m", low_open=True, why="h > 0 keeps every distance > 0"),
    "length_x": Range(0.0, 1e4, "m", low_open=True, why="up to 10 km: the phase of a 10 km path stays exact"),
    "width_y": Range(0.0, 1e4, "m", low_open=True, why="as length_x"),
    "min_spacing": Range(0.0, 1e4, "m", low_open=True, why="as length_x"),
    "beta": Range(0.0, 1.0, "", low_open=True, why="a gain at 1 m: c/(4 pi f) <= 0.24 for f >= 100 MHz"),
    "loss_db_per_m": Range(0.0, 100.0, "dB/m", why="dielectric waveguides lose ~0.01-1 dB/m"),
    "blockage_rate": Range(0.0, 100.0, "1/m", why="0 = always LoS; 100/m blocks every link beyond ~5 cm"),
    # driver and CLI arguments
    "power_w": Range(0.0, 1e3, "W", why="a power budget in watts: 0 .. 1 kW (= 60 dBm, as power_dbm)"),
    "snr_db": Range(-50.0, 100.0, "dB", why="an SNR target; beyond 100 dB the required power and the "
                    "Monte-Carlo spread overflow float32"),
    "snr_target": Range(0.0, 1e10, "(linear)", why="a linear SNR target Gamma_k: 0 .. 100 dB (as snr_db)"),
}
"""The physical range of every checked quantity (name -> :class:`Range`); docs/execution_model.md lists them.

Each bound keeps the quantity finite in float32 and its SNR non-degenerate:
e.g. 60 dBm (1 kW) over -200 dBm of noise is at most 260 dB before path loss,
whose square still fits float32 (3e38). Configs check their fields
(``PassConfig.validate``), the CLI its dB/W arguments (:func:`check_range`).
"""


def check_range(name: str, x, key: str | None = None):
    """A concrete finite number (or array) within ``RANGES[key or name]``; tracers pass through.

    Raises ``TypeError`` for a non-number and ``ValueError`` naming ``name``,
    the value, the range and its unit otherwise. Returns ``x``.
    """
    if is_tracer(x):
        return x
    rng = RANGES[key or name]
    if isinstance(x, (str, bytes)) or isinstance(x, bool):
        raise TypeError(f"{name} must be a number [{rng.unit or 'dimensionless'}], got {x!r}")
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real number [{rng.unit or 'dimensionless'}], got {x!r}")
    good = rng.holds(arr)
    if not np.all(good):
        bad = float(arr.reshape(-1)[np.argmin(good.reshape(-1))])
        raise ValueError(f"{name} must be a finite number in {rng.describe()}, got {bad:g}")
    return x


def check_users_in_area(cfg, users, name: str = "users", *, rtol: float = 1e-6):
    """Raise ``ValueError`` if concrete ``users (..., K, 2)`` [m] leave the area ``[0, S_x] x [0, S_y]``.

    The message names the first offending drop and user, its coordinates and
    the area. Skipped for tracers and for traced or stacked (non-scalar)
    ``cfg.length_x`` / ``cfg.width_y``; ``rtol`` of the extent absorbs float32
    rounding. Returns ``users``.
    """
    if is_tracer(users) or is_tracer(cfg.length_x) or is_tracer(cfg.width_y):
        return users
    sx, sy = np.asarray(cfg.length_x), np.asarray(cfg.width_y)
    if sx.ndim or sy.ndim:
        return users
    arr = np.asarray(users)
    if arr.dtype.kind not in "iuf" or arr.ndim < 2 or arr.shape[-1] != 2 or not arr.size:
        return users
    sx, sy = float(sx), float(sy)
    x, y = arr[..., 0], arr[..., 1]
    out = (x < -rtol * sx) | (x > sx * (1 + rtol)) | (y < -rtol * sy) | (y > sy * (1 + rtol))
    if np.any(out):
        idx = np.unravel_index(int(np.argmax(out.reshape(-1))), out.shape)
        where = (f"drop {idx[0]}, user {idx[-1]}" if len(idx) == 2
                 else f"drop {tuple(int(i) for i in idx[:-1])}, user {idx[-1]}" if len(idx) > 2
                 else f"user {idx[-1]}")
        ux, uy = arr[idx]
        raise ValueError(f"{name}: {where} at ({float(ux):g}, {float(uy):g}) m lies outside the area "
                         f"[0, {sx:g}] x [0, {sy:g}] m (length_x x width_y); {int(out.sum())} user(s) outside")
    return users

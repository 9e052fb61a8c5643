"""``PassConfig``: one immutable pytree describing a PASS scenario.

This class alone decides which scenario fields are *static* (part of the
pytree structure, so of every ``jax.jit`` cache key) and which are *traced*
leaves (``docs/execution_model.md``):

* static: the shapes ``num_users``, ``num_waveguides``, ``num_pinches``; the
  string choice ``radiation``; and the two numbers that set the phase,
  ``carrier_freq`` and ``n_eff``. Those two are static for float32 accuracy:
  the channel needs ``f / c`` and ``n_eff f / c`` to ~1e-11 relative precision
  (a 10 m path is ~1000 cycles at 30 GHz), which a float32 leaf cannot carry
  (float32 rounds 30e9 / c to ~4e-8 relative, i.e. a 1e-4-cycle phase error per
  1000 cycles). As host constants they are split into float32 (hi, lo) pairs in
  float64 at trace time. A carrier or refractive-index sweep therefore compiles
  once per value;
* traced: every other physical number (powers, noise, gains, heights, lengths,
  lanes, spacing, loss, blockage, circuit power). A power, noise, length or
  height sweep compiles once, gradients with respect to them work, and configs
  can be stacked (:meth:`PassConfig.stack`) and vmapped over scenarios.

Validation runs on construction whenever the values are concrete (not
tracers) and raises ``ValueError``/``TypeError`` naming the field, the value
and the allowed range. Traced fields may carry leading scenario dimensions
(a stacked config); each entry is checked. Text (``"10"``) or complex values
for a number are a ``TypeError``. Every numeric field must lie in its physical
range, :data:`RANGES` (defined in ``jaxpass._checks``, listed in
docs/execution_model.md "Physical ranges"): e.g. powers in [-100, 60] dBm,
noise in [-200, 0] dBm, carrier in [1e8, 1e12] Hz, heights and lengths in
(0, 1e4] m, so that every power is a finite float32 in watts and every SNR is
usable (a 300 dBm budget would overflow ``|W|^2`` and silently give zero rates).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxpass import units
from jaxpass._checks import RANGES

RADIATION_CHOICES = ("equal", "coupled")


def _concrete(value: Any):
    """Return ``value`` as a NumPy array if it is concrete numeric data, else None."""
    if value is None or isinstance(value, jax.core.Tracer):
        return None
    try:
        arr = np.asarray(value)
    except Exception:  # pragma: no cover - sentinel leaves JAX uses internally
        return None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        return None
    return arr


def _first_violation(arr, ok):
    """The first entry of ``arr`` failing ``ok`` (as a float), or None when all pass."""
    good = np.asarray(ok(arr))
    if np.all(good):
        return None
    return float(arr.reshape(-1)[np.argmin(good.reshape(-1))])


#: numeric fields of :class:`PassConfig` (everything but the shapes, ``radiation`` and ``waveguide_y``)
NUMERIC_FIELDS = ("carrier_freq", "n_eff", "height", "length_x", "width_y", "power_dbm", "noise_dbm", "beta",
                  "min_spacing", "loss_db_per_m", "blockage_rate", "circuit_power_dbm")


def _check_types(cfg) -> None:
    """``TypeError`` naming the field for text or complex values given for a number.

    (Booleans and other non-numeric leaves pass: JAX builds configs with sentinel leaves.)"""
    for name in NUMERIC_FIELDS + ("waveguide_y",):
        value = getattr(cfg, name)
        items = value if name == "waveguide_y" and isinstance(value, (list, tuple)) else (value,)
        for v in items:
            if v is None or isinstance(v, jax.core.Tracer):
                continue
            if isinstance(v, (str, bytes)):
                raise TypeError(f"PassConfig.{name} must be a real number, got {type(v).__name__} {v!r}")
            if isinstance(v, (list, tuple)):  # a stacked field given as a sequence
                try:
                    v = np.asarray(v)
                except Exception:  # ragged or exotic: left to the value checks
                    continue
            kind = getattr(getattr(v, "dtype", None), "kind", None)
            if isinstance(v, complex) or kind in ("c", "U", "S"):
                raise TypeError(f"PassConfig.{name} must be a real number, got {v!r}")


def _static(default):
    """A static field: part of the pytree structure (so of every ``jax.jit`` cache key), never a traced leaf."""
    return dataclasses.field(default=default, metadata={"static": True})


@dataclasses.dataclass(frozen=True)
class PassConfig:
    """A pinching-antenna scenario (docs/model.md §1-§6), SI units throughout.

    Attributes:
      num_users: K, single-antenna users (static).
      num_waveguides: N, waveguides = RF chains (static).
      num_pinches: L, pinches per waveguide (static).
      radiation: ``"equal"`` (``a = 1/sqrt(L)``, JB eq. (3)) or ``"coupled"``
        (power-split model of docs/model.md §5) (static).
      carrier_freq: f_c [Hz] (static: sets the phase, see the module docstring).
      n_eff: effective refractive index of the waveguide (static, as ``carrier_freq``).
      height: pinch height h above the users' plane [m].
      length_x: S_x, waveguide length and area extent along x [m].
      width_y: S_y, area extent along y [m].
      waveguide_y: ``None`` for centred lanes ``(n + 1/2) S_y / N`` or a
        length-N tuple of lane coordinates [m].
      power_dbm: transmit power budget P [dBm].
      noise_dbm: noise power sigma^2 [dBm].
      beta: channel gain at 1 m (``units.beta_seed`` / ``units.beta_friis``).
      min_spacing: minimum pinch spacing delta_min [m] (presets: lambda/2).
      loss_db_per_m: in-waveguide loss alpha [dB/m].
      blockage_rate: LoS blockage rate beta_b [1/m]; 0 = always LoS (docs/model.md §6).
      circuit_power_dbm: circuit power P_c for energy efficiency [dBm] (docs/model.md §5).

    Numeric fields must lie in :data:`RANGES` (module docstring), checked on
    construction for concrete values and skipped for tracers.
    """

    num_users: int = _static(4)
    num_waveguides: int = _static(4)
    num_pinches: int = _static(8)
    radiation: str = _static("equal")
    carrier_freq: float = _static(30e9)
    n_eff: float = _static(1.4)
    height: Any = 2.5
    length_x: Any = 20.0
    width_y: Any = 10.0
    waveguide_y: Any = None
    power_dbm: Any = 10.0
    noise_dbm: Any = -90.0
    beta: Any = units.SPEED_OF_LIGHT / (4.0 * math.pi * 30e9)
    min_spacing: Any = units.SPEED_OF_LIGHT / 30e9 / 2.0
    loss_db_per_m: Any = 0.0
    blockage_rate: Any = 0.0
    circuit_power_dbm: Any = 20.0

    def replace(self, **changes) -> PassConfig:
        """A copy with ``changes`` applied (``dataclasses.replace``: validated again on construction)."""
        return dataclasses.replace(self, **changes)

    def __post_init__(self):
        _check_types(self)
        for name in ("carrier_freq", "n_eff"):  # static fields must be hashable host numbers
            value = getattr(self, name)
            arr = _concrete(value)
            if arr is not None and arr.ndim == 0:
                object.__setattr__(self, name, float(arr))
            elif arr is not None:
                raise ValueError(f"PassConfig.{name} is static (it sets the phase) and must be a scalar, "
                                 f"got shape {arr.shape}")
        lanes = self.waveguide_y
        if isinstance(lanes, (list, tuple)):  # one leaf, so stacked configs carry (C, N) lanes
            concrete = all(_concrete(v) is not None for v in lanes)
            object.__setattr__(self, "waveguide_y", np.asarray(lanes, np.float64) if concrete else jnp.stack(
                [jnp.asarray(v) for v in lanes]))
        self.validate()

    @classmethod
    def stack(cls, configs) -> PassConfig:
        """Stack configs that differ only in traced fields into one config with a leading axis.

        ``jax.vmap(f)(PassConfig.stack([cfg.replace(power_dbm=p) for p in grid]))``
        runs ``f`` over the scenarios in one compiled call. Raises ``ValueError``
        if the configs differ in a static field (shape, radiation, carrier, n_eff).
        """
        configs = list(configs)
        if not configs or not all(isinstance(c, cls) for c in configs):
            raise TypeError("PassConfig.stack needs a non-empty sequence of PassConfig")
        first = jax.tree.structure(configs[0])
        for c in configs[1:]:
            if jax.tree.structure(c) != first:
                diff = [n for n in STATIC_FIELDS if getattr(c, n) != getattr(configs[0], n)]
                raise ValueError(f"PassConfig.stack: configs differ in static field(s) {diff or ['waveguide_y']}; "
                                 "only traced fields can be stacked")
        return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *configs)

    # ------------------------------------------------------------------ checks
    def validate(self) -> PassConfig:
        """Raise a clear error if the scenario is meaningless; return self."""
        for name in ("num_users", "num_waveguides", "num_pinches"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"PassConfig.{name} must be an int, got {v!r}")
            if v <= 0:
                raise ValueError(f"PassConfig.{name} must be >= 1, got {v}")
        if self.radiation not in RADIATION_CHOICES:
            raise ValueError(
                f"PassConfig.radiation must be one of {RADIATION_CHOICES}, got {self.radiation!r}"
            )
        positive = ("carrier_freq", "n_eff", "height", "length_x", "width_y", "beta", "min_spacing")
        nonnegative = ("loss_db_per_m", "blockage_rate")
        finite = ("power_dbm", "noise_dbm", "circuit_power_dbm")
        values = {}
        for name in positive + nonnegative + finite:
            arr = _concrete(getattr(self, name))
            if arr is None:
                continue
            if arr.ndim != 0 and name in ("carrier_freq", "n_eff"):
                raise ValueError(f"PassConfig.{name} must be a scalar, got shape {arr.shape}")
            # traced fields may carry leading scenario dimensions (PassConfig.stack): check each entry
            bad = _first_violation(arr, np.isfinite)
            if bad is not None:
                raise ValueError(f"PassConfig.{name} must be finite, got {bad}")
            if name in positive and (bad := _first_violation(arr, lambda a: a > 0)) is not None:
                raise ValueError(f"PassConfig.{name} must be > 0, got {bad}")
            if name in nonnegative and (bad := _first_violation(arr, lambda a: a >= 0)) is not None:
                raise ValueError(f"PassConfig.{name} must be >= 0, got {bad}")
            if name == "n_eff" and arr < 1.0:
                raise ValueError(f"PassConfig.n_eff must be >= 1 (a dielectric waveguide), got {float(arr)}")
            rng = RANGES[name]
            if (bad := _first_violation(arr, rng.holds)) is not None:
                raise ValueError(f"PassConfig.{name} must lie in {rng.describe()}, got {bad:g} "
                                 "(physical ranges: jaxpass.config.RANGES)")
            values[name] = arr
        if "min_spacing" in values and "length_x" in values:
            spacing, length = (a.reshape(-1) for a in np.broadcast_arrays(values["min_spacing"], values["length_x"]))
            i = int(np.argmax(self.num_pinches * spacing - length))
            spacing, length = float(spacing[i]), float(length[i])
            if self.num_pinches * spacing > length:
                raise ValueError(
                    "PassConfig: num_pinches * min_spacing = "
                    f"{self.num_pinches} * {spacing:.6g} = {self.num_pinches * spacing:.6g} m exceeds "
                    f"length_x = {length:.6g} m; no feasible pinch layout exists"
                )
        if self.waveguide_y is not None:
            lanes = _concrete(self.waveguide_y)
            if lanes is not None:
                if lanes.shape[-1:] != (self.num_waveguides,):
                    raise ValueError(
                        f"PassConfig.waveguide_y must have length num_waveguides={self.num_waveguides}, "
                        f"got shape {lanes.shape}"
                    )
                if not np.all(np.isfinite(lanes)):
                    raise ValueError(f"PassConfig.waveguide_y must be finite, got {lanes}")
                width = values.get("width_y")
                if width is not None and (np.any(lanes < 0) or np.any(lanes > np.asarray(width)[..., None])):
                    raise ValueError(
                        f"PassConfig.waveguide_y must lie in [0, width_y={np.squeeze(width)}] m, got {lanes}"
                    )
        return self

    # -------------------------------------------------------------- properties
    @property
    def power(self):
        """Transmit power budget P [W]."""
        return units.dbm_to_watt(self.power_dbm)

    @property
    def noise_power(self):
        """Noise power sigma^2 [W]."""
        return units.dbm_to_watt(self.noise_dbm)

    @property
    def circuit_power(self):
        """Circuit power P_c [W] (energy efficiency, docs/model.md §5)."""
        return units.dbm_to_watt(self.circuit_power_dbm)

    @property
    def wavelength(self):
        """Free-space wavelength lambda = c / f_c [m]."""
        return units.SPEED_OF_LIGHT / jnp.asarray(self.carrier_freq)

    @property
    def wavenumber(self):
        """Free-space wavenumber kappa = 2 pi / lambda [rad/m]."""
        return 2.0 * jnp.pi / self.wavelength

    @property
    def lane_y(self):
        """Waveguide lane coordinates y_n, shape ``(N,)`` [m]."""
        if self.waveguide_y is not None:
            return jnp.asarray(self.waveguide_y)
        n = jnp.arange(self.num_waveguides)
        return (n + 0.5) * jnp.asarray(self.width_y) / self.num_waveguides

    # ----------------------------------------------------------------- presets
    @classmethod
    def joint_beamforming(cls, **overrides) -> PassConfig:
        """JB §V / Table I: K = N = 4, L = 8, 30 GHz, 20 x 10 m, h = 2.5 m,
        P = 10 dBm, sigma^2 = -90 dBm, delta_min = lambda/2, seed beta (docs/model.md §3.6)."""
        return _preset(
            dict(num_users=4, num_waveguides=4, num_pinches=8, carrier_freq=30e9, n_eff=1.4,
                 height=2.5, length_x=20.0, width_y=10.0, power_dbm=10.0, noise_dbm=-90.0,
                 beta_convention="seed"),
            overrides,
        )

    @classmethod
    def two_timescale(cls, **overrides) -> PassConfig:
        """TT §IV: K = N = 4, L = 8, 20 x 10 m, P = 20 dBm (grid 12..28), sigma^2 = -90 dBm;
        remaining physics as JB (docs/model.md §4): the JB preset at 20 dBm."""
        return cls.joint_beamforming(**{"power_dbm": 20.0, **overrides})

    @classmethod
    def energy_efficiency(cls, **overrides) -> PassConfig:
        """EE (reconstructed, docs/model.md §5): one waveguide at y = 2.5 m over 20 x 5 m, h = 3 m,
        28 GHz, K = 4 TDMA users, N = 8 coupled elements, P_max = 20 dBm, P_c = 20 dBm,
        sigma^2 = -90 dBm, Friis beta."""
        return _preset(
            dict(num_users=4, num_waveguides=1, num_pinches=8, radiation="coupled",
                 carrier_freq=28e9, n_eff=1.4, height=3.0, length_x=20.0, width_y=5.0,
                 waveguide_y=(2.5,), power_dbm=20.0, noise_dbm=-90.0, circuit_power_dbm=20.0,
                 beta_convention="friis"),
            overrides,
        )

    @classmethod
    def power_min_blockage(cls, **overrides) -> PassConfig:
        """PB (reconstructed, docs/model.md §6): D = 10 m square, d = 3 m, 28 GHz, N = 2 waveguides
        with one pinch each, K = 4 TDMA users, blockage rate 0.1 /m, sigma^2 = -90 dBm,
        Friis beta."""
        return _preset(
            dict(num_users=4, num_waveguides=2, num_pinches=1, carrier_freq=28e9, n_eff=1.4,
                 height=3.0, length_x=10.0, width_y=10.0, power_dbm=30.0, noise_dbm=-90.0,
                 blockage_rate=0.1, beta_convention="friis"),
            overrides,
        )


STATIC_FIELDS = tuple(f.name for f in dataclasses.fields(PassConfig) if f.metadata.get("static", False))
"""Fields that are part of the pytree structure (every jit cache key): shapes, choices, phase constants."""

TRACED_FIELDS = tuple(f.name for f in dataclasses.fields(PassConfig) if f.name not in STATIC_FIELDS)
"""Fields that are traced leaves: sweeping them reuses one compilation."""

# A registered dataclass, so the core needs no flax: the traced fields are the pytree's leaves (in field
# order), the static ones its auxiliary data, compared with ``==`` when JAX looks up a jit cache entry.
jax.tree_util.register_dataclass(PassConfig, data_fields=list(TRACED_FIELDS), meta_fields=list(STATIC_FIELDS))


def _preset(base: dict, overrides: dict) -> PassConfig:
    """Merge a preset with user overrides; fill beta and min_spacing from the carrier
    frequency by the preset's named convention unless given explicitly."""
    unknown = set(overrides) - set(PassConfig.__dataclass_fields__) - {"beta_convention"}
    if unknown:
        raise TypeError(f"unknown PassConfig field(s): {sorted(unknown)}")
    params = {**base, **overrides}
    convention = params.pop("beta_convention")
    if convention not in ("seed", "friis"):
        raise ValueError(f"beta_convention must be 'seed' or 'friis', got {convention!r}")
    freq = params["carrier_freq"]
    if isinstance(freq, (str, bytes)):
        raise TypeError(f"PassConfig.carrier_freq must be a real number, got {type(freq).__name__} {freq!r}")
    freq_c = _concrete(freq)
    if freq_c is None or freq_c.ndim != 0 or not np.isfinite(freq_c) or freq_c <= 0:
        raise ValueError(f"PassConfig.carrier_freq must be a finite number > 0, got {freq!r}")
    if "beta" not in params:
        params["beta"] = units.beta_seed(freq_c) if convention == "seed" else units.beta_friis(freq_c)
    if "min_spacing" not in params:
        params["min_spacing"] = units.SPEED_OF_LIGHT / float(freq_c) / 2.0
    return PassConfig(**params)

"""jaxpass: a GPU-first, differentiable simulator and optimiser for pinching-antenna systems.

Public API (explicit re-exports; see README for the conventions)::

    import jaxpass as jp
    cfg = jp.PassConfig.joint_beamforming()
    users = jp.sample_users(key, cfg)                  # (K, 2)
    X = jp.uniform_positions(cfg)                      # (N, L)
    H = jp.effective_channel(cfg, X, users)            # (K, N) complex
    W = jp.beamforming.wmmse(H, cfg.power, cfg.noise_power)
    r = jp.sum_rate(H, W, cfg.noise_power)             # bps/Hz

``import jaxpass`` needs only jax, numpy and optax. ``jaxpass.learn`` (the
``[learn]`` extra: flax, orbax-checkpoint) is imported on first use of
``jp.learn`` or by ``import jaxpass.learn``; ``jaxpass.plotting`` needs ``[plot]``.
"""

from jaxpass import (
    beamforming,
    blockage,
    channel,
    geometry,
    linalg,
    metrics,
    optimize,  # noqa: E402  (after the core it builds on)
    parallel,
    phase,
    units,
)
from jaxpass import compile as _compile  # noqa: F401  first: sets XLA's CPU flags before any computation
from jaxpass.channel import (
    blockage_covariance,
    coupled_amplitudes,
    distances,
    effective_channel,
    equal_split,
    free_space_links,
    los_probability,
    pinch_response,
    radiation_amplitudes,
    ula_channel,
)
from jaxpass.compile import compiler_options, jit
from jaxpass.config import PassConfig
from jaxpass.geometry import (
    is_feasible,
    positions_from_spacings,
    project_positions,
    sample_users,
    uniform_positions,
)
from jaxpass.metrics import (
    energy_efficiency,
    expected_snr,
    rates,
    sinr,
    spectral_efficiency,
    sum_rate,
    tdma_rates,
    tdma_snr,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    """``jp.learn``: the [learn] extra, imported on first use so ``import jaxpass`` needs no flax."""
    if name == "learn":
        import importlib

        return importlib.import_module("jaxpass.learn")
    raise AttributeError(f"module 'jaxpass' has no attribute {name!r}")


__all__ = [
    "PassConfig",
    "beamforming",
    "blockage",
    "blockage_covariance",
    "channel",
    "compiler_options",
    "coupled_amplitudes",
    "distances",
    "effective_channel",
    "energy_efficiency",
    "equal_split",
    "expected_snr",
    "free_space_links",
    "geometry",
    "is_feasible",
    "jit",
    "linalg",
    "los_probability",
    "metrics",
    "optimize",
    "parallel",
    "phase",
    "pinch_response",
    "positions_from_spacings",
    "project_positions",
    "radiation_amplitudes",
    "rates",
    "sample_users",
    "sinr",
    "spectral_efficiency",
    "sum_rate",
    "tdma_rates",
    "tdma_snr",
    "ula_channel",
    "uniform_positions",
    "units",
]

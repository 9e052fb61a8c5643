"""Optimisers built on the core (one module per algorithm family; docs/execution_model.md).

- :mod:`~jaxpass.optimize.positions`: :func:`tune_positions`, projected-gradient pinching beamforming (JB);
- :mod:`~jaxpass.optimize.mm_pdd`: JB Algorithm 1;
- :mod:`~jaxpass.optimize.mimo`: digital and hybrid MIMO baselines (docs/model.md §3.5);
- :mod:`~jaxpass.optimize.energy`: EE Dinkelbach, Gauss-Seidel, coupling ascent, static/dynamic designs;
- :mod:`~jaxpass.optimize.power_min`: PB closed-form beamformers, PGD, projected L-BFGS, exhaustive search;
- :mod:`~jaxpass.optimize.ssca`: TT two-timescale design, long-term positions by stochastic SCA (docs/model.md §4).
"""

from jaxpass.optimize import energy, mimo, mm_pdd, positions, power_min, ssca
from jaxpass.optimize.positions import TuneResult, tune_positions

__all__ = ["TuneResult", "energy", "mimo", "mm_pdd", "positions", "power_min", "ssca", "tune_positions"]

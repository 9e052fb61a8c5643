"""Optimisers built on the core (one module per algorithm family, see DESIGN.md)."""

from jaxpass.optimize import energy  # noqa: E402,F401
from jaxpass.optimize import power_min  # noqa: E402,F401
from jaxpass.optimize import mimo, mm_pdd  # noqa: E402,F401
from jaxpass.optimize.positions import TuneResult, tune_positions  # noqa: E402,F401

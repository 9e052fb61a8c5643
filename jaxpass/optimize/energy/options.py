"""Options of the energy-efficiency solvers (docs/model.md §5; docs/execution_model.md).

Frozen, hashable, self-validating (:class:`jaxpass._options.Options`): static
for ``jax.jit``; equal options share one compilation. The ``jaxpass ee``
command builds its flags from these fields.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxpass import units
from jaxpass._checks import (
    check_choice,
    check_nonnegative_int,
    check_number,
    check_positive_int,
    is_tracer,
)
from jaxpass._options import Options, option

OBJECTIVES = ("ee", "se")
COUPLINGS = ("tunable", "fixed")
INITIALS = ("auto", "paper", "centre", "split", "multistart")
GAINS = ("coherent", "random_phase")


def _optional(check, name, value, **kwargs):
    if value is not None:
        check(name, value, **kwargs)


@dataclasses.dataclass(frozen=True)
class DinkelbachOptions(Options):
    """Options of :func:`~jaxpass.optimize.energy.dinkelbach` (EE Alg. 1)."""

    iterations: int = option(12, help="Dinkelbach steps (a fixed count, lax.scan); 12 reach float32 "
                                      "resolution on the EE preset")

    def validate(self) -> None:
        check_nonnegative_int("iterations", self.iterations)


@dataclasses.dataclass(frozen=True)
class DesignOptions(Options):
    """Options of the EE designs and their blocks (EE Algs. 1-3, docs/model.md §5).

    One class serves :func:`static_design`, :func:`dynamic_design`,
    :func:`fixed_antenna` and the blocks they are built from
    (:func:`gauss_seidel_sweep`, :func:`coupling_step`, :func:`evaluate_design`,
    :func:`ergodic_objective`); each uses the fields it needs.

    The Gauss-Seidel grid has ``grid_points`` points per element; ``None``
    means ``ceil(S_x / spacing) + 1`` with ``spacing = grid_spacing`` (default
    ``lambda/10``), which needs a concrete ``cfg.length_x``: the drivers
    resolve it (:func:`grid_size`); a kernel run under ``jax.jit`` with a
    traced config needs ``grid_points`` set.
    """

    objective: str = option("ee", help="design objective: 'ee' (energy efficiency, Dinkelbach powers) or "
                                       "'se' (spectral efficiency at full power, the SE-oriented baseline)",
                            choices=OBJECTIVES)
    coupling: str = option("tunable", help="split coefficients: 'tunable' (EE Alg. 3) or 'fixed' "
                                           "(every delta_n = fixed_split)", choices=COUPLINGS)
    outer_iterations: int = option(3, help="outer iterations of the designs (each: gs_sweeps location sweeps, "
                                           "then coupling_steps coupling steps)")
    gs_sweeps: int = option(1, help="Gauss-Seidel location sweeps per outer iteration (EE Alg. 2)")
    coupling_steps: int = option(3, help="coupling-ascent steps per outer iteration (EE Alg. 3)")
    fixed_split: float = option(0.5, help="split coefficient of every element for the fixed-coupling "
                                          "baseline, a fraction in [0, 1]")
    grid_points: int | None = option(None, help="Gauss-Seidel grid points per element; None: from grid_spacing",
                                     type=int)
    grid_spacing: float | None = option(None, help="Gauss-Seidel grid spacing bound [m]; None: lambda/10",
                                        type=float)
    grid_batch: int = option(2048, help="grid points per vectorised evaluation (bounds memory)")
    dinkelbach_iterations: int = option(12, help="Dinkelbach steps per evaluation (EE Alg. 1)")
    line_search: int = option(10, help="coupling line-search candidates (step lengths 2^-j, j < line_search)")
    gain: str = option("coherent", help="channel gain the blocks compute: 'coherent' |sum_n a_n c_n|^2 / sigma^2 "
                                        "(the physics) or 'random_phase' (each element's phase replaced by "
                                        "phase_samples fixed uniform draws, the values averaged)", choices=GAINS)
    static_gain: str = option("coherent", help="gain the STATIC design fits its layout and couplings to: "
                                               "'coherent' (the paper's sample average; generalises once fitted on "
                                               "enough drops, a few hundred) or 'random_phase' (element phases "
                                               "replaced by uniform draws: generalises from few drops but loses the "
                                               "gain of compact coherent sub-arrays)", choices=GAINS)
    phase_samples: int = option(16, help="phase draws per drop of the 'random_phase' gain (fixed, common to "
                                         "every evaluation, so the objective is deterministic)")
    static_grid_spacing: float = option(0.05, help="Gauss-Seidel grid spacing of the random-phase static fit [m]: "
                                                   "its objective varies on the metre scale of the path loss, "
                                                   "not the millimetre scale of the phase")
    initial: str = option("auto", help="initial point: 'paper' (uniform x, delta_n = 1/(N-n)), 'centre' "
                                       "(the fixed antenna as a PASS point), 'split' (the centre layout with every "
                                       "delta_n = fixed_split: a compact array, the fixed-coupling baseline's "
                                       "best start), 'multistart' (all of them, keep the best fitted objective) "
                                       "or 'auto' (multistart for the static design, paper for the dynamic one)", choices=INITIALS)
    validation_fraction: float = option(0.25, help="fraction of the drops the STATIC design holds back from its fit "
                                                   "to choose among its candidates (each start after each outer "
                                                   "iteration) on drops it was not fitted on; used when it has "
                                                   "several starts and at least 2 drops (at least 1 held back, at "
                                                   "least 1 fitted); 0: choose on the fitted objective (in-sample)")
    validation_margin: float = option(2.0, help="paired standard errors (over the validation drops) by which the "
                                               "best candidate must beat the centre start's iteration 0 (the fixed "
                                               "antenna) to be chosen over it; 0: the best candidate")

    def validate(self) -> None:
        check_choice("objective", self.objective, OBJECTIVES)
        check_choice("coupling", self.coupling, COUPLINGS)
        check_choice("initial", self.initial, INITIALS)
        check_choice("gain", self.gain, GAINS)
        check_choice("static_gain", self.static_gain, GAINS)
        check_positive_int("phase_samples", self.phase_samples)
        check_number("static_grid_spacing", self.static_grid_spacing, unit="m", low=0.0, low_open=True)
        check_positive_int("outer_iterations", self.outer_iterations)
        check_positive_int("gs_sweeps", self.gs_sweeps)
        check_nonnegative_int("coupling_steps", self.coupling_steps)
        check_number("fixed_split", self.fixed_split, low=0.0, high=1.0)
        _optional(check_positive_int, "grid_points", self.grid_points)
        _optional(check_number, "grid_spacing", self.grid_spacing, unit="m", low=0.0, low_open=True)
        if self.grid_points is not None and self.grid_spacing is not None:
            raise ValueError(f"set grid_points or grid_spacing, not both (got grid_points={self.grid_points}, "
                             f"grid_spacing={self.grid_spacing} m)")
        check_positive_int("grid_batch", self.grid_batch)
        check_positive_int("dinkelbach_iterations", self.dinkelbach_iterations)  # 0: EE would silently be SE
        check_positive_int("line_search", self.line_search)
        check_number("validation_fraction", self.validation_fraction, low=0.0, high=1.0)
        check_number("validation_margin", self.validation_margin, low=0.0)

    @property
    def dinkelbach(self) -> DinkelbachOptions:
        return DinkelbachOptions(iterations=self.dinkelbach_iterations)

    def restricted(self, *names: str) -> DesignOptions:
        """A copy keeping only the fields ``names`` (the others at their defaults).

        A compiled block passes the fields it reads, so designs that differ
        elsewhere (``outer_iterations``, ``initial``, ...) share its compilation.
        """
        defaults = DesignOptions()
        return self.replace(**{f.name: getattr(defaults, f.name) for f in dataclasses.fields(self)
                               if f.name not in names})


def default_grid_points(cfg, spacing=None) -> int:
    """Grid size per element so that the spacing is at most ``spacing`` [m] (default ``lambda/10``).

    The interval of one element is at most ``S_x`` long and the grid spans it
    with ``G`` points, so ``G = ceil(S_x / spacing) + 1`` guarantees the bound
    (docs/model.md §5: the phase varies on a wavelength scale). Needs a
    concrete ``cfg.length_x`` (the largest entry of a stacked config).
    """
    lam = units.SPEED_OF_LIGHT / float(cfg.carrier_freq)
    spacing = lam / 10.0 if spacing is None else check_number("grid spacing", spacing, unit="m", low=0.0,
                                                                low_open=True)
    if is_tracer(cfg.length_x):
        raise TypeError("the default Gauss-Seidel grid needs a concrete cfg.length_x; under jax.jit with a "
                        "traced config set DesignOptions.grid_points (e.g. default_grid_points(cfg))")
    length = float(np.max(np.asarray(cfg.length_x)))
    return int(math.ceil(length / spacing)) + 1


def validation_count(options: DesignOptions, num_drops: int) -> int:
    """Drops the static design holds back for choosing among its candidates: ``round(fraction * D)``.

    At least 1 when the fraction is positive, and at most ``D - 1`` (the fit keeps
    a drop); 0 for a single drop or ``validation_fraction = 0``.
    """
    if options.validation_fraction <= 0 or num_drops < 2:
        return 0
    return min(max(int(round(options.validation_fraction * num_drops)), 1), num_drops - 1)


def grid_size(cfg, options: DesignOptions) -> int:
    """The Gauss-Seidel grid size ``options`` give for ``cfg`` (``grid_points`` or from the spacing)."""
    if options.grid_points is not None:
        return options.grid_points
    return default_grid_points(cfg, options.grid_spacing)


def with_grid(cfg, options: DesignOptions) -> DesignOptions:
    """``options`` with ``grid_points`` resolved for a concrete ``cfg`` (the drivers' static key)."""
    if options.grid_points is not None:
        return options
    return options.replace(grid_points=grid_size(cfg, options), grid_spacing=None)

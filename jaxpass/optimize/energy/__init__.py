"""Energy-efficient PASS design: static and dynamic (docs/model.md §5; EE paper Algs. 1-3).

One waveguide along x carries ``N = cfg.num_pinches`` pinching elements at
``x_0 < ... < x_{N-1}`` (spacing >= ``delta_min``); element n couples out the
fraction ``delta_n`` (the *split coefficient*) of the power still in the guide,
so it radiates the amplitude ``a_n = sqrt(delta_n) prod_{i<n} sqrt(1 - delta_i)``
(``jaxpass.channel.coupled_amplitudes``). K users are served by TDMA in equal
slots; user k's slot gets the input power ``p_k <= P_max``::

    h_k  = sum_n a_n c_kn(x_n),   c_kn = sqrt(eta) e^{-j kappa (r_kn + n_eff x_n)} / r_kn
    g_k  = |h_k|^2 / sigma^2                                   (SNR per watt)   [1/W]
    SE   = (1/K) sum_k log2(1 + p_k g_k)                        [bps/Hz]
    EE   = SE / ((1/K) sum_k p_k + P_c)                         [bit/s/Hz per W]

Modules (one job each):

* :mod:`.model`: coefficients, gains, EE/SE, the initial and centre-antenna points;
* :mod:`.options`: :class:`DinkelbachOptions`, :class:`DesignOptions` (frozen, validated,
  static for ``jit``; the ``jaxpass ee`` flags are built from them);
* :mod:`.dinkelbach` (EE Alg. 1): energy-efficient water-filling and Dinkelbach;
* :mod:`.objective`: per-drop values, the ergodic objective (EE eqs. (20), (25)), evaluation;
* :mod:`.location` (EE Alg. 2): Gauss-Seidel grid search of the locations;
* :mod:`.coupling` (EE Alg. 3): projected gradient ascent of the split coefficients
  (envelope-theorem gradient);
* :mod:`.design`: the static, dynamic and fixed-antenna designs.

Execution model (docs/execution_model.md): each solver has a pure kernel taking
``cfg`` as an argument (:func:`dinkelbach`, :func:`gauss_seidel_kernel`,
:func:`coupling_kernel`, :func:`dynamic_drop`, :func:`evaluate_drop`,
:func:`ergodic_objective`) that runs under a caller's ``jax.jit(jax.vmap(...))``
with ``cfg`` traced, and a driver (:func:`gauss_seidel_sweep`,
:func:`coupling_step`, :func:`evaluate_design`, :func:`static_design`,
:func:`dynamic_design`, :func:`fixed_antenna`) that validates concrete inputs,
batches over drops and calls a module-level ``jax.jit`` with the options
static. Everything but the shapes, ``radiation``, ``carrier_freq`` and ``n_eff``
is traced, so a power (``P_max``), noise or circuit-power sweep compiles once.

**Objectives.** ``objective="ee"`` maximises the energy efficiency (powers by
Dinkelbach); ``objective="se"`` is the SE-oriented baseline of EE Fig. 2: it
maximises the spectral efficiency with the same machinery, whose optimal powers
are ``p_k = P_max`` (SE increases in every ``p_k``), and its EE is then
``SE / (P_max + P_c)``.

**Reading of the paper (choices written down):**

* *Dynamic* design: one set of locations per drop (shared by the K TDMA slots
  of that drop), as docs/model.md §5 states; couplings shared by all drops.
* The *static* design is meant for users not yet known, so it must be judged
  on drops it was not fitted on (:func:`held_out`). Fitted to the paper's
  sample average (``static_gain="coherent"``, default) it chases the sample's
  millimetre phase ripples when the sample is small and generalises once it
  holds a few hundred drops (the benchmark's generalisation table).
  ``static_gain="random_phase"`` replaces every element's phase by fixed
  uniform draws (an expected-EE surrogate that cannot overfit the phases, on a
  coarse grid): it generalises from few drops but is not better, because
  compact sub-arrays keep a coherent gain over a region of users that
  independent phases deny them. ``initial="auto"`` (default) runs the static
  design from the paper's point, from the centre antenna and (tunable
  coupling) from the compact centre layout with the fixed split, and chooses
  among the starts (and their outer iterations) on validation drops held back
  from the fit (``validation_fraction``, ``validation_margin``: the fixed
  antenna, the centre start before any iteration, is kept unless another
  candidate beats it there significantly).
* *Fixed coupling* baseline: every element has the same split coefficient
  (``fixed_split``, default 0.5: most power leaves through the first few
  elements, as EE Fig. 3 describes); locations are still optimised.
* *Fixed antenna* baseline: one antenna at the centre of the region
  (``x = S_x/2`` on the waveguide) radiating all the input power, with
  Dinkelbach powers per drop.
* Both designs start from the paper's initial point (uniform ``x``,
  ``delta_n = 1/(N - n)``; the dynamic design in every drop) and only accept
  improving steps, so their ergodic objective is non-decreasing over outer
  iterations. ``initial="multistart"`` also runs from the centre-antenna point
  (element 0 at ``S_x/2`` with ``delta_0 = 1``: the fixed-antenna baseline as a
  PASS point) and, with tunable coupling, from the centre layout with every
  ``delta_n = fixed_split`` (``initial="split"``), and keeps the design chosen
  on the validation drops, which makes "static >= fixed antenna" hold by
  construction on them (with ``validation_fraction=0``: the best fitted
  objective, and then on the fitting drops).

Shapes: ``x (N,)`` positions [m] on the waveguide, ``split (N,)``, ``users (K, 2)``
for one drop or ``(D, K, 2)`` for D drops.
"""

from jaxpass.optimize.energy.coupling import coupling_kernel, coupling_step
from jaxpass.optimize.energy.design import (
    DesignResult,
    DropDesign,
    dynamic_design,
    dynamic_drop,
    fingerprint,
    fixed_antenna,
    held_out,
    static_design,
)
from jaxpass.optimize.energy.dinkelbach import DinkelbachResult, dinkelbach, drop_metrics, water_filling
from jaxpass.optimize.energy.location import gauss_seidel_kernel, gauss_seidel_sweep
from jaxpass.optimize.energy.model import (
    centre_antenna_point,
    channel_gains,
    element_coefficients,
    energy_efficiency_of,
    initial_point,
)
from jaxpass.optimize.energy.objective import ergodic_objective, evaluate_design, evaluate_drop
from jaxpass.optimize.energy.options import (
    COUPLINGS,
    GAINS,
    INITIALS,
    OBJECTIVES,
    DesignOptions,
    DinkelbachOptions,
    default_grid_points,
    grid_size,
)

__all__ = [
    "DinkelbachResult",
    "DesignResult",
    "COUPLINGS",
    "GAINS",
    "DesignOptions",
    "DinkelbachOptions",
    "DropDesign",
    "INITIALS",
    "OBJECTIVES",
    "centre_antenna_point",
    "channel_gains",
    "coupling_kernel",
    "coupling_step",
    "default_grid_points",
    "dinkelbach",
    "drop_metrics",
    "dynamic_design",
    "dynamic_drop",
    "element_coefficients",
    "energy_efficiency_of",
    "ergodic_objective",
    "evaluate_design",
    "evaluate_drop",
    "fingerprint",
    "fixed_antenna",
    "held_out",
    "gauss_seidel_kernel",
    "gauss_seidel_sweep",
    "grid_size",
    "initial_point",
    "static_design",
    "water_filling",
]

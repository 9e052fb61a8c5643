"""Energy-efficient pinching-antenna design (docs/model.md §5): Dinkelbach powers, dynamic vs static designs.

One waveguide over a 20 x 5 m room, N = 4 pinching elements with tunable power-split
coefficients, K = 4 TDMA users, P_max = 20 dBm, P_c = 20 dBm. A coarse location grid
(2 mm) keeps this example quick; the default is lambda/10 (~1 mm).

Run: python examples/energy_efficiency.py
"""

import jax
import jax.numpy as jnp

import jaxpass as jp
from jaxpass.optimize import energy

cfg = jp.PassConfig.energy_efficiency(num_pinches=4)
users = jp.sample_users(jax.random.key(0), cfg, (6,))             # (D, K, 2): 6 drops

# one drop: the channel gains of the paper's initial point and the EE-optimal powers
x0, split0 = energy.initial_point(cfg)                             # uniform x, delta_n = 1/(N - n)
gains = energy.channel_gains(cfg, x0, split0, users[0])            # |h_k|^2 / sigma^2 [1/W]
res = energy.dinkelbach(gains, cfg.power, cfg.circuit_power)
print(f"drop 0 at the initial point: EE {float(res.ee):.2f} bit/s/Hz/W with powers "
      f"{[round(float(p) * 1e3, 2) for p in res.power]} mW (P_max = {float(cfg.power) * 1e3:.0f} mW); "
      f"Dinkelbach q: {float(res.history[0]):.2f} -> {float(res.history[-1]):.2f}")

# gradient of the ergodic EE with respect to the split coefficients (envelope theorem)
grad = jax.grad(lambda s: energy.ergodic_objective(cfg, x0, s, users))(split0)
print("d EE / d delta:", jnp.round(grad, 2))

# the designs: one DesignOptions (frozen, validated) shared by the drivers; fields can be overridden per call
opts = energy.DesignOptions(outer_iterations=2, coupling_steps=2, grid_points=energy.default_grid_points(cfg, 2e-3))
designs = {
    "dynamic (locations per drop)": energy.dynamic_design(cfg, users, options=opts),
    "static (one layout)": energy.static_design(cfg, users, options=opts),
    "static, fixed coupling 0.5": energy.static_design(cfg, users, options=opts, coupling="fixed"),
    "dynamic, SE-oriented": energy.dynamic_design(cfg, users, options=opts, objective="se"),
    "fixed antenna at the centre": energy.fixed_antenna(cfg, users),
}
for name, r in designs.items():
    print(f"{name:30s} mean EE {r.mean_ee:7.2f} bit/s/Hz/W, SE {r.mean_se:5.2f} bps/Hz, "
          f"mean power {1e3 * r.power.mean():6.2f} mW, history {[round(float(v), 2) for v in r.ee_history]}")

# the pure kernels compose with your own jax.jit / jax.vmap with cfg as an argument (traced), so sweeping a
# traced field such as the power budget reuses one compilation: EE of the static layout vs P_max
static = designs["static (one layout)"]
per_drop = jax.vmap(energy.evaluate_drop, in_axes=(None, None, None, 0))  # over drops
mean_ee = jax.jit(lambda c: per_drop(c, static.positions[0], static.split, users)[0].mean())
print("static layout, mean EE at P_max = 0/10/20/30 dBm:",
      [round(float(mean_ee(cfg.replace(power_dbm=p))), 2) for p in (0.0, 10.0, 20.0, 30.0)])

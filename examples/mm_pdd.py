"""MM-PDD (JB Algorithm 1) on one drop, in float64, with its raw convergence history.

Run: python examples/mm_pdd.py
"""

import jax
import numpy as np

import jaxpass as jp
from jaxpass.optimize import mm_pdd

jax.config.update("jax_enable_x64", True)            # theta ~ 1e4 rad: eps = 1e-6 needs float64

cfg = jp.PassConfig.joint_beamforming()              # K = N = 4, L = 8, P = 10 dBm
users = jp.sample_users(jax.random.key(0), cfg).astype(np.float64)
opts = mm_pdd.MmPddOptions(D0="mrt", max_outer=30, max_inner=30)
res = mm_pdd.mm_pdd(cfg, users, opts)                # driver: one drop here, (..., K, 2) batches too

T = int(res.outer_iterations)
print(f"start (uniform + MRT) {float(res.initial_sum_rate):.2f} bps/Hz -> best visited {float(res.sum_rate):.2f},"
      f" last iterate {float(res.final_sum_rate):.2f}")
print(f"||B||_inf = {float(res.B_inf):.2e} after {T} outer / {int(res.inner_iterations)} BCD sweeps,"
      f" converged: {bool(res.converged)}, feasible: {bool(jp.is_feasible(cfg, res.positions))}")
print("outer  sum rate  ||B||_inf    rho       max AL rise")
for t in range(T):
    h = {k: float(v[t]) for k, v in res.history.items()}
    print(f"{t + 1:5d}  {h['sum_rate']:8.2f}  {h['B_inf']:.2e}  {h['rho']:.2e}  {h['al_rise']:.1e}")

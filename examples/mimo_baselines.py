"""Conventional MIMO baselines (docs/model.md §3.5) next to PASS on the same drops and power budget.

Run: python examples/mimo_baselines.py
"""

import jax

import jaxpass as jp
from jaxpass.optimize import mimo

cfg = jp.PassConfig.joint_beamforming()             # K = N = 4, L = 8, P = 10 dBm
users = jp.sample_users(jax.random.key(0), cfg, (8,))

digital = jp.jit(jax.vmap(lambda u: mimo.digital(cfg, u)))(users)            # N-antenna ULA + WMMSE
hybrid = jp.jit(jax.vmap(lambda u: mimo.hybrid(cfg, u, iterations=100)))(users)  # N x L sub-connected


def pass_uniform(u):
    H = jp.effective_channel(cfg, jp.uniform_positions(cfg), u)
    return jp.sum_rate(H, jp.beamforming.wmmse(H, cfg.power, cfg.noise_power), cfg.noise_power)


pass_rates = jax.vmap(pass_uniform)(users)
print(f"digital ULA ({cfg.num_waveguides} antennas) + WMMSE : {float(digital.sum_rate.mean()):6.2f} bps/Hz")
print(f"hybrid ({cfg.num_waveguides} RF x {cfg.num_pinches} antennas)       : {float(hybrid.sum_rate.mean()):6.2f} bps/Hz,"
      f" max ||F|-1| = {float(mimo.unit_modulus_error(hybrid.analog)):.1e}")
print(f"PASS uniform pinches + WMMSE     : {float(pass_rates.mean()):6.2f} bps/Hz")

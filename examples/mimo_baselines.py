"""Conventional MIMO baselines (docs/model.md §3.5) next to PASS on the same drops and power budget.

Run: python examples/mimo_baselines.py
"""

import jax

import jaxpass as jp
from jaxpass.optimize import mimo

cfg = jp.PassConfig.joint_beamforming()             # K = N = 4, L = 8, P = 10 dBm
users = jp.sample_users(jax.random.key(0), cfg, (8,))

digital = mimo.digital(cfg, users)                                   # N-antenna ULA + WMMSE, 8 drops
hybrid = mimo.hybrid(cfg, users, mimo.HybridOptions(iterations=100))  # N x L sub-connected, 8 drops


@jax.jit
def pass_uniform(c, users):                         # cfg traced: a power sweep would compile once
    def one(u):
        H = jp.effective_channel(c, jp.uniform_positions(c), u)
        return jp.sum_rate(H, jp.beamforming.wmmse(H, c.power, c.noise_power), c.noise_power)
    return jax.vmap(one)(users)


pass_rates = pass_uniform(cfg, users)
print(f"digital ULA ({cfg.num_waveguides} antennas) + WMMSE : {float(digital.sum_rate.mean()):6.2f} bps/Hz")
print(f"hybrid ({cfg.num_waveguides} RF x {cfg.num_pinches} antennas)       : {float(hybrid.sum_rate.mean()):6.2f} bps/Hz,"
      f" max ||F|-1| = {float(mimo.unit_modulus_error(hybrid.analog)):.1e}")
print(f"PASS uniform pinches + WMMSE     : {float(pass_rates.mean()):6.2f} bps/Hz")

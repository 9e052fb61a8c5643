"""Quick start: one drop of the JB Table I scenario, the channel, and three beamformers.

Run: python examples/quickstart.py
"""

import jax

import jaxpass as jp

cfg = jp.PassConfig.joint_beamforming()            # K = N = 4, L = 8, 30 GHz, P = 10 dBm
key = jax.random.key(0)
users = jp.sample_users(key, cfg)                  # (K, 2) metres
X = jp.uniform_positions(cfg)                      # (N, L) metres, feasible
H = jp.effective_channel(cfg, X, users)            # (K, N) complex64
for name, W in {
    "zf": jp.beamforming.zf(H, cfg.power),
    "wmmse": jp.beamforming.wmmse(H, cfg.power, cfg.noise_power),
}.items():
    print(f"{name:6s} sum rate = {float(jp.sum_rate(H, W, cfg.noise_power)):.2f} bps/Hz")

# gradient of the ZF sum rate with respect to the pinch positions, for 256 drops at once
def zf_rate(X, users):
    H = jp.effective_channel(cfg, X, users)
    return jp.sum_rate(H, jp.beamforming.zf(H, cfg.power), cfg.noise_power)

batch_users = jp.sample_users(key, cfg, (256,))
rates, grads = jax.jit(jax.vmap(jax.value_and_grad(zf_rate), in_axes=(None, 0)))(X, batch_users)
X_step = jp.project_positions(cfg, X + 1e-4 * grads[0])   # one projected ascent step, still feasible
print(f"256 drops: mean ZF sum rate {float(rates.mean()):.2f} bps/Hz, |grad| max {float(abs(grads).max()):.1f} per m,"
      f" feasible after a step: {bool(jp.is_feasible(cfg, X_step))}")

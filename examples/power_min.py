"""Power minimisation under probabilistic LoS blockage (PB, docs/model.md §6), one drop and a small batch.

Closed-form beamformers, projected L-BFGS on the pinch positions, the exhaustive
optimum, and a Monte-Carlo check of the expected SNR. The drivers take one drop
or a batch and compile once (docs/execution_model.md); the per-drop kernels
(``*_drop``) compose with your own ``jax.jit(jax.vmap(...))``.
Run: python examples/power_min.py
"""

import jax

import jaxpass as jp
from jaxpass import blockage
from jaxpass.optimize import power_min as pm

cfg = jp.PassConfig.power_min_blockage()            # N = 2 waveguides, 1 pinch each, K = 4, D = 10 m, beta_b = 0.1
gamma = float(jp.units.db_to_linear(10.0))          # SNR target 10 dB for every user
users = jp.sample_users(jax.random.key(0), cfg)     # (K, 2) metres
opts = pm.LbfgsOptions(starts=4, iterations=30)     # static solver options (hashable, validated)

center = pm.evaluate_positions(cfg, pm.center_positions(cfg), users, gamma)
best = pm.projected_lbfgs(cfg, users, gamma, opts, key=jax.random.key(1))
exact = pm.exhaustive_search(cfg, users, gamma)
dbm = lambda w: float(jp.units.watt_to_dbm(w))      # noqa: E731
print(f"Center {dbm(center.power):.2f} dBm | L-BFGS {dbm(best.power):.2f} dBm at x = {best.positions[:, 0]} "
      f"| exhaustive {dbm(exact.power):.2f} dBm at x = {exact.positions[:, 0]}")

# the closed-form beamformer meets each expected-SNR target with equality: check it by Monte Carlo
mc = jax.jit(lambda k, X, u, W: blockage.monte_carlo_snr(k, cfg, X, u, W, num_samples=20_000))(
    jax.random.key(2), best.positions, users, best.beamformer)
print("expected SNR (formula):", mc.expected.round(3), " Monte-Carlo mean:", mc.mean.round(3),
      " z:", mc.z_scores().round(2))

# positively correlated links need less power (PB Lemma 2)
corr = pm.projected_lbfgs(cfg, users, gamma, opts, key=jax.random.key(1), correlation=0.5)
print(f"with link correlation 0.5: {dbm(corr.power):.2f} dBm")

# a batch of drops: the driver splits one key over the drops ...
batch = jp.sample_users(jax.random.key(3), cfg, (64,))
print(f"64 drops: mean power {dbm(pm.projected_lbfgs(cfg, batch, gamma, opts, key=jax.random.key(4)).power.mean()):.2f} dBm")

# ... or your own jit(vmap) of the kernel, cfg traced: a noise sweep compiles once
solve = jax.jit(jax.vmap(lambda k, c, u: pm.projected_lbfgs_drop(k, c, u, gamma, opts).power, in_axes=(0, None, 0)))
keys = jax.random.split(jax.random.key(4), 64)
for noise in (-90.0, -80.0):
    print(f"noise {noise:g} dBm: mean power {dbm(solve(keys, cfg.replace(noise_dbm=noise), batch).mean()):.2f} dBm")

"""Power minimisation under probabilistic LoS blockage (PB, docs/model.md §6), one drop and a small batch.

Closed-form beamformers, projected L-BFGS on the pinch positions, the exhaustive
optimum, and a Monte-Carlo check of the expected SNR.
Run: python examples/power_min.py
"""

import jax

import jaxpass as jp
from jaxpass import blockage
from jaxpass.optimize import power_min as pm

cfg = jp.PassConfig.power_min_blockage()            # N = 2 waveguides, 1 pinch each, K = 4, D = 10 m, beta_b = 0.1
gamma = float(jp.units.db_to_linear(10.0))          # SNR target 10 dB for every user
users = jp.sample_users(jax.random.key(0), cfg)     # (K, 2) metres

center = pm.evaluate_positions(cfg, pm.center_positions(cfg), users, gamma)
best = jp.jit(lambda u, k: pm.projected_lbfgs(cfg, u, gamma, key=k, starts=4, iterations=30))(users, jax.random.key(1))
exact = jp.jit(lambda u: pm.exhaustive_search(cfg, u, gamma))(users)
dbm = lambda w: float(jp.units.watt_to_dbm(w))      # noqa: E731
print(f"Center {dbm(center.power):.2f} dBm | L-BFGS {dbm(best.power):.2f} dBm at x = {best.positions[:, 0]} "
      f"| exhaustive {dbm(exact.power):.2f} dBm at x = {exact.positions[:, 0]}")

# the closed-form beamformer meets each expected-SNR target with equality: check it by Monte Carlo
mc = jp.jit(lambda k, X, u, W: blockage.monte_carlo_snr(k, cfg, X, u, W, num_samples=20_000))(
    jax.random.key(2), best.positions, users, best.beamformer)
print("expected SNR (formula):", mc.expected.round(3), " Monte-Carlo mean:", mc.mean.round(3),
      " z:", mc.z_scores().round(2))

# positively correlated links need less power (PB Lemma 2)
corr = jp.jit(lambda u, k: pm.projected_lbfgs(cfg, u, gamma, key=k, correlation=0.5))(users, jax.random.key(1))
print(f"with link correlation 0.5: {dbm(corr.power):.2f} dBm")

# a batch of drops: vmap + jaxpass.jit
batch = jp.sample_users(jax.random.key(3), cfg, (64,))
keys = jax.random.split(jax.random.key(4), 64)
solve = jp.jit(jax.vmap(lambda u, k: pm.projected_lbfgs(cfg, u, gamma, key=k).power))
print(f"64 drops: mean power {dbm(solve(batch, keys).mean()):.2f} dBm")

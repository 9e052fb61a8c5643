"""Train a tiny two-timescale short-term network (slot channel -> KKT duals) and score it against WMMSE.

K = 6 users, N = 4 waveguides (more users than antennas: WMMSE has to choose
whom to serve), L = 8 pinches held fixed (evenly spread here, to keep the run
short). The network is trained for every power in [12, 28] dBm at once and
scored on slots of another seed. ``python -m benchmarks --only short_term``
trains the full-size networks (minutes); this example runs in seconds and
stays well short of them.
"""

import jax

from jaxpass.geometry import uniform_positions
from jaxpass.learn import duals_fn
from jaxpass.learn import short_term as st
from jaxpass.optimize import ssca
from jaxpass.slots import sample_homes, sample_slots

K = 6
cfg = st.default_config(K, power_dbm=20.0)
opts = st.ShortTermOptions(width=32, layers=2, steps=100, batch_size=32, blocks=4, slots_per_block=16,
                           aligned_fraction=0.0, supervised_steps=30, warmup_steps=10, teacher_iterations=10,
                           learning_rate=3e-3)
fit = st.fit_short_term(jax.random.key(0), K, opts)
print(f"trained {opts.steps} steps in {fit.seconds:.1f} s; last batch: net / WMMSE = {fit.history[-1, 1]:.3f}")

# held-out: 2 blocks (homes of another seed), evenly spread pinches, 32 slots each
homes = jax.vmap(lambda k: sample_homes(k, cfg))(jax.random.split(jax.random.key(100), 2))
slots = jax.vmap(lambda k, h: sample_slots(k, cfg, h, 32))(jax.random.split(jax.random.key(101), 2), homes)
X = jax.numpy.broadcast_to(uniform_positions(cfg), (2,) + uniform_positions(cfg).shape)
for p_dbm in (12.0, 28.0):
    score = st.short_term_score(fit.model, cfg.replace(power_dbm=p_dbm), X, slots, wmmse_iterations=20)
    print(f"P = {p_dbm:g} dBm: network {score['net']:.2f} bps/Hz, WMMSE {score['wmmse']:.2f} bps/Hz, "
          f"ratio {score['ratio']:.3f}")

# the same network as SSCA's short-term beamformer (the KKT map with the network's duals)
solver = ssca.kkt_solver(duals_fn(fit.model))
rate = ssca.held_out_rate(cfg, X, homes, ssca.SscaOptions(), key=jax.random.key(102), num_slots=16, solver=solver)
print(f"held-out rate through ssca.kkt_solver at 20 dBm: {[round(float(r), 2) for r in rate]} bps/Hz")

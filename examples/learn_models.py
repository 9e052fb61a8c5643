"""The papers' learning models (JB §IV, TT §III-C) at a tiny size: untrained predictions and their sum rate.

Every model maps users ``(B, K, 2)`` to always-feasible pinch positions and a
beamformer at full power; the short-term network gives KKT duals for the
two-timescale solver. Training lives in ``jaxpass.learn.train``.

Run: python examples/learn_models.py
"""

import jax
import jax.numpy as jnp
from flax import nnx

import jaxpass as jp
from jaxpass.learn import ARCHITECTURES, ShortTermNet, count_parameters, decode, duals_fn
from jaxpass.optimize import ssca

cfg = jp.PassConfig.joint_beamforming(num_users=3, num_waveguides=2, num_pinches=4)
users = jp.sample_users(jax.random.key(0), cfg, (8,))  # 8 drops, (8, K, 2) metres
tiny = {"transformer": dict(d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, ffn=32),
        "resnet": dict(width=16, hidden=32, num_blocks=2)}


forward = nnx.jit(lambda model, users: model(users))  # raw outputs (logits), one compile per model


@jax.jit
def decoded(cfg, raw, users):
    """Raw outputs -> (X, W) -> sum rate; cfg is an argument, one compile per output layout."""
    if "w" in raw:  # black box: X and W directly
        X, W = decode.blackbox_decode(cfg, raw)
    else:  # KDL: positions (JB (53)-(55)) + KKT beamformer (JB (44)); lam_max is the models' default
        X, W = decode.kdl_decode(cfg, raw)
    return decode.sum_rates(cfg, X, W, users), jp.is_feasible(cfg, X), jnp.sum(jnp.abs(W) ** 2, axis=(1, 2))


for name, cls in ARCHITECTURES.items():
    model = cls(cfg, **tiny["resnet" if "resnet" in name else "transformer"], rngs=nnx.Rngs(0))
    model.eval()  # dropout off
    rate, feasible, power = decoded(cfg, forward(model, users), users)  # = predict(model, cfg, users), staged
    print(f"{name:21s} {count_parameters(model):6d} params  untrained sum rate {float(rate.mean()):6.2f} bps/Hz"
          f"  feasible {bool(feasible.all())}  ||W||^2/P {float(power.mean() / cfg.power):.4f}")

# two-timescale: the short-term network's duals inside the SSCA KKT solver, gradient w.r.t. X
net = ShortTermNet(cfg, d_model=16, num_heads=2, num_layers=1, ffn=32, rngs=nnx.Rngs(1))
net.eval()
solver = ssca.kkt_solver(duals_fn(net))
X = jp.uniform_positions(cfg)
value, grad = jax.jit(jax.value_and_grad(lambda x, s: ssca.slot_objective(cfg, x, users[0], solver=s)))(X, solver)
print(f"short-term net + KKT map: sum rate {-float(value):.2f} bps/Hz, |d rate / d X| max {float(abs(grad).max()):.1f} per m")

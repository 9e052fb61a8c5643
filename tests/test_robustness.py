"""No NaN or inf in outputs or gradients on degenerate but legal inputs (DESIGN 'Errors')."""

import jax
import jax.numpy as jnp
import pytest

import jaxpass as jp
from jaxpass import beamforming as bf


def all_finite(tree):
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


BEAMFORMERS = {
    "zf": lambda H, c: bf.zf(H, c.power),
    "rzf": lambda H, c: bf.rzf(H, c.power, c.num_users * c.noise_power / jnp.maximum(c.power, 1e-30)),
    "mrt": lambda H, c: bf.mrt(H, c.power),
    "wmmse": lambda H, c: bf.wmmse(H, c.power, c.noise_power, iterations=10),
    "kkt": lambda H, c: bf.kkt(H, jnp.full((c.num_users,), 1e4), jnp.ones(c.num_users), c.power),
}


def degenerate_cases(cfg):
    X = jp.uniform_positions(cfg)
    under = jnp.stack([X[jnp.arange(4), jnp.arange(4)], cfg.lane_y], axis=-1)  # each user exactly under a pinch
    same = jnp.tile(jnp.array([[7.0, 3.0]]), (4, 1))  # all users coincident
    pair = jnp.array([[5.0, 5.0], [5.0, 5.0], [12.0, 2.0], [17.0, 8.0]])  # two coincident users
    return {"under_pinch": (cfg, X, under), "coincident": (cfg, X, same), "pair": (cfg, X, pair)}


@pytest.mark.parametrize("case", ["under_pinch", "coincident", "pair", "zero_power"])
@pytest.mark.parametrize("name", sorted(BEAMFORMERS))
def test_no_nan_in_rates_or_gradients(case, name):
    base = jp.PassConfig.joint_beamforming()
    if case == "zero_power":
        cfg, X, users = base, jp.uniform_positions(base), degenerate_cases(base)["pair"][2]
        power_override = 0.0
    else:
        cfg, X, users = degenerate_cases(base)[case]
        power_override = None

    def loss(X):
        H = jp.effective_channel(cfg, X, users)
        c = cfg if power_override is None else _ZeroPower(cfg)
        W = BEAMFORMERS[name](H, c)
        return jp.sum_rate(H, W, cfg.noise_power), W

    (rate, W), grad = jax.value_and_grad(loss, has_aux=True)(X)
    assert all_finite((rate, W, grad)), (rate, grad)
    if power_override == 0.0:
        assert float(rate) == 0.0 and float(jnp.abs(W).max()) == 0.0


class _ZeroPower:
    """A config view with a zero power budget (P = 0 W is not expressible in dBm)."""

    def __init__(self, cfg):
        self._cfg = cfg
        self.power = 0.0

    def __getattr__(self, name):
        return getattr(self._cfg, name)


def test_zero_channel_gives_zero_not_nan():
    H = jnp.zeros((4, 4), jnp.complex64)
    for W in (bf.zf(H, 1.0), bf.mrt(H, 1.0), bf.wmmse(H, 1.0, 1e-12, iterations=3), bf.kkt(H, jnp.ones(4), jnp.ones(4), 1.0)):
        assert all_finite(W)
    assert float(jp.sum_rate(H, bf.zf(H, 1.0), 1e-12)) == 0.0


def test_projection_and_channel_finite_on_extremes():
    cfg = jp.PassConfig.joint_beamforming()
    X = jnp.full((4, 8), 1e6)  # far outside
    P = jp.project_positions(cfg, X)
    assert bool(jp.is_feasible(cfg, P)) and all_finite(P)
    g = jax.grad(lambda x: jnp.sum(jp.project_positions(cfg, x)))(X)
    assert all_finite(g)

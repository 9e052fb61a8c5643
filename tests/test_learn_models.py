"""jaxpass.learn.models / decode: the papers' networks (JB §IV, TT §III-C) and their differentiable decoding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxpass as jp
from jaxpass.learn import ARCHITECTURES, ShortTermNet, count_parameters, decode, duals_fn, predict, sum_rate_loss
from jaxpass.learn.models import KDLTransformer, KDLTransformerOCA
from jaxpass.optimize import ssca

CFG = jp.PassConfig.joint_beamforming(num_users=3, num_waveguides=2, num_pinches=3)
TINY_T = dict(d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, ffn=32)
TINY_R = dict(width=16, hidden=32, num_blocks=2)
# the test graphs are tiny and run once: LLVM's -O0 halves XLA's CPU compile time (same numerics)
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def tiny(name, cfg=CFG, seed=0):
    return ARCHITECTURES[name](cfg, **(TINY_R if "resnet" in name else TINY_T), rngs=nnx.Rngs(seed))


def fast_jit(fn, **kw):
    return jax.jit(fn, compiler_options=FAST_COMPILE, **kw)


@functools.partial(fast_jit, static_argnums=0)
def _apply(graphdef, state, users):
    model = nnx.merge(graphdef, state)
    return model(users), nnx.state(model)


def _call(model, users):
    """``model(users)`` compiled once per model and mode; the advanced dropout key is written back."""
    graphdef, state = nnx.split(model)
    raw, state = _apply(graphdef, state, users)
    nnx.update(model, state)
    return raw


def users_of(cfg=CFG, B=4, seed=1):
    return jp.sample_users(jax.random.key(seed), cfg, (B,))


def _run_and_grads(model, cfg, users):
    """Decoded ``(X, W)``, ``(loss, aux)`` and the loss gradient w.r.t. every ``nnx.Param``, in one jit."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def f(p):
        m = nnx.merge(graphdef, p, rest)
        X, W = predict(m, cfg, users)
        rates = decode.sum_rates(cfg, X, W, users)
        return -jnp.mean(rates), (rates, X, W)

    (loss, (rates, X, W)), grads = fast_jit(jax.value_and_grad(f, has_aux=True))(params)
    return X, W, loss, rates, grads


@fast_jit
def _reference_rates(X, W, users):
    return jax.vmap(lambda x, w, u: jp.sum_rate(jp.effective_channel(CFG, x, u), w, CFG.noise_power))(X, W, users)


def random_raw(cfg=CFG, B=3, direct=False, seed=0):
    """Random logits in the layout the models emit (the decoders do not care where they came from)."""
    K, N, L = cfg.num_users, cfg.num_waveguides, cfg.num_pinches
    k = jax.random.split(jax.random.key(seed), 4)
    raw = {"x_end": jax.random.normal(k[0], (B, N)), "spacing": jax.random.normal(k[1], (B, N, L))}
    if direct:
        raw["w"] = jax.random.normal(k[2], (B, N, K, 2))
    else:
        raw["lam"], raw["mu"] = jax.random.normal(k[2], (2, B, K))
        raw["users"] = users_of(cfg, B, seed=seed + 1)
    return raw


def test_registry_names():
    assert set(ARCHITECTURES) == {"kdl-transformer", "kdl-transformer-oca", "kdl-resnet", "blackbox-transformer",
                           "blackbox-resnet"}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_feasible_full_power_and_gradients_reach_every_parameter(name):
    model = tiny(name)
    model.eval()
    assert isinstance(model, ARCHITECTURES[name])
    users = users_of()
    X, W, loss, rates, grads = _run_and_grads(model, CFG, users)
    assert X.shape == (4, 2, 3) and W.shape == (4, 2, 3) and jnp.iscomplexobj(W)
    assert bool(jnp.all(jp.is_feasible(CFG, X)))
    np.testing.assert_allclose(jnp.sum(jnp.abs(W) ** 2, axis=(1, 2)), CFG.power, rtol=1e-5)

    assert rates.shape == (4,) and bool(jnp.all(rates > 0))
    # the loss is the sum rate under the true channel of the decoded (X, W)
    np.testing.assert_allclose(rates, _reference_rates(X, W, users), rtol=1e-3, atol=1e-3)
    flat = jax.tree_util.tree_leaves_with_path(grads)
    assert flat
    for path, g in flat:
        where = jax.tree_util.keystr(path)
        assert bool(jnp.all(jnp.isfinite(g))), where
        if "key" in where and "bias" in where:
            # softmax is shift invariant: q.(k_j + b) shifts every logit of a row by q.b,
            # so the key bias has an identically zero gradient (up to rounding)
            assert float(jnp.max(jnp.abs(g))) < 1e-3, where
        else:
            assert float(jnp.max(jnp.abs(g))) > 0, where


def test_sum_rate_loss_is_minus_the_mean_sum_rate_of_predict():
    model = tiny("blackbox-resnet")
    model.eval()
    users = users_of()
    loss, aux = fast_jit(lambda u: sum_rate_loss(model, CFG, u))(users)
    X, W = fast_jit(lambda u: predict(model, CFG, u))(users)
    assert set(aux) == {"sum_rate"} and aux["sum_rate"].shape == (4,)
    np.testing.assert_allclose(aux["sum_rate"], _reference_rates(X, W, users), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(loss, -jnp.mean(aux["sum_rate"]), rtol=1e-6)


@pytest.mark.parametrize("name", ["kdl-transformer", "kdl-resnet"])
def test_eval_is_deterministic_and_train_uses_dropout(name):
    model = tiny(name)
    users = users_of()
    model.eval()
    a, b = _call(model, users), _call(model, users)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    model.train()
    c, d = _call(model, users), _call(model, users)
    assert not np.allclose(c["spacing"], d["spacing"])  # fresh dropout masks per call
    assert not np.allclose(c["spacing"], a["spacing"])
    np.testing.assert_array_equal(c["users"], users)  # the users pass through untouched
    model.eval()
    e = _call(model, users)
    np.testing.assert_array_equal(e["spacing"], a["spacing"])


def test_oca_is_the_same_class_without_cross_attention():
    oca = tiny("kdl-transformer-oca")
    full = tiny("kdl-transformer")
    assert isinstance(oca, KDLTransformer) and not oca.cross_attention and full.cross_attention
    assert all(layer.cross_attn is None for layer in oca.decoder)
    assert all(layer.cross_attn is not None for layer in full.decoder)
    flag = KDLTransformer(CFG, **TINY_T, cross_attention=False, rngs=nnx.Rngs(0))
    assert count_parameters(flag) == count_parameters(oca) < count_parameters(full)
    assert isinstance(KDLTransformerOCA(CFG, **TINY_T, cross_attention=True, rngs=nnx.Rngs(0)).decoder[0].cross_attn,
                      nnx.MultiHeadAttention)


def _transformer_params(d, f, T, enc, dec, cross=True):
    """Analytic parameter count of the KDL-Transformer (post-LN layers, biased projections)."""
    mha = 4 * (d * d + d)
    ln = 2 * d
    ffn = d * f + f + f * d + d
    enc_layer = mha + 2 * ln + ffn
    dec_layer = (2 * mha + 3 * ln + ffn) if cross else enc_layer
    return (d + d) + T * d + enc * enc_layer + dec * dec_layer + (d + 1)


def test_parameter_count_matches_the_architecture():
    K, N, L = 3, 2, 3
    T = N + N * L + 2 * K
    assert count_parameters(tiny("kdl-transformer")) == _transformer_params(16, 32, T, 1, 1)
    assert count_parameters(tiny("kdl-transformer-oca")) == _transformer_params(16, 32, T, 1, 1, cross=False)
    # the authors' size on the JB preset (K = N = 4, L = 8): reported, derived from the layout
    paper = nnx.eval_shape(lambda: KDLTransformer(jp.PassConfig.joint_beamforming(), rngs=nnx.Rngs(0)))
    assert count_parameters(paper) == _transformer_params(256, 512, 4 + 32 + 8, 2, 2) == 2_647_809


def test_decode_under_user_jit_vmap_matches_the_batched_call():
    """Per-drop decoding under the user's jit(vmap) with cfg as an argument == the batched call."""
    raw = random_raw()
    X0, W0 = fast_jit(decode.kdl_decode)(CFG, raw)
    X1, W1 = fast_jit(jax.vmap(lambda r, c: decode.kdl_decode(c, r), in_axes=(0, None)))(raw, CFG)
    np.testing.assert_allclose(X1, X0, rtol=1e-6, atol=1e-6)
    # float32: differently fused channels differ in the last bits of the phase
    # (~1000 cycles per path at 30 GHz), which the KKT solve carries into W
    np.testing.assert_allclose(W1, W0, rtol=0, atol=2e-3 * float(jnp.max(jnp.abs(W0))))

    raw = random_raw(direct=True)
    X0, W0 = decode.blackbox_decode(CFG, raw)  # eager
    X1, W1 = fast_jit(jax.vmap(lambda r, c: decode.blackbox_decode(c, r), in_axes=(0, None)))(raw, CFG)
    np.testing.assert_allclose(X1, X0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(W1, W0, rtol=1e-5, atol=1e-8)

    # the power is a traced leaf of cfg: one compiled function, two budgets
    f = fast_jit(lambda c, r: decode.blackbox_decode(c, r)[1])
    for dbm in (10.0, 20.0):
        c = jp.PassConfig.joint_beamforming(num_users=3, num_waveguides=2, num_pinches=3, power_dbm=dbm)
        np.testing.assert_allclose(jnp.sum(jnp.abs(f(c, raw)) ** 2, axis=(1, 2)), c.power, rtol=1e-5)
    assert f._cache_size() == 1


def test_positions_are_feasible_for_extreme_logits_and_follow_jb53():
    cfg = CFG
    N, L = cfg.num_waveguides, cfg.num_pinches
    rng = np.random.default_rng(0)
    x_end = jnp.asarray(rng.normal(size=(6, N)) * 30.0, jnp.float32)
    spacing = jnp.asarray(rng.normal(size=(6, N, L)) * 30.0, jnp.float32)
    spacing = spacing.at[0].set(0.0).at[1].set(-80.0)  # equal weights; all sigmoids underflow-ish
    X = decode.positions(cfg, x_end, spacing)
    assert bool(jnp.all(jp.is_feasible(cfg, X)))
    delta = float(cfg.min_spacing)
    end = L * delta + jax.nn.sigmoid(x_end) * (float(cfg.length_x) - L * delta)  # JB eq. (53)
    np.testing.assert_allclose(X[..., -1], end, rtol=1e-5)
    np.testing.assert_allclose(jnp.diff(X[0], axis=-1), (X[0, :, -1:] / L) * jnp.ones((N, L - 1)), rtol=1e-4)


def test_kdl_duals_and_kkt_beamformer_reproduce_wmmse():
    lam, share = decode.kdl_duals(CFG, jnp.zeros((2, 3)), jnp.asarray([[0.0, 0.0, 0.0], [5.0, -5.0, 0.0]]))
    np.testing.assert_allclose(lam, CFG.power / (3 * CFG.noise_power) * jnp.ones((2, 3)), rtol=1e-6)
    np.testing.assert_allclose(share.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(share[0], 1 / 3, rtol=1e-6)
    assert bool(jnp.all(share >= 0))
    # WMMSE's duals through the batched KKT map rebuild WMMSE's rate (docs/model.md §3.2)
    users = users_of(B=3)
    X = jnp.broadcast_to(jp.uniform_positions(CFG), (3, 2, 3))

    @fast_jit
    def run(X, users):
        H = decode.channels(CFG, X, users)
        info = jax.vmap(lambda h: jp.beamforming.wmmse(h, CFG.power, CFG.noise_power, iterations=30,
                                                       return_info=True))(H)
        W = decode.kkt_beamformer(CFG, H, info.lam, info.share)
        return W, decode.sum_rates(CFG, X, W, users), info.sum_rates[:, -1]

    W, ours, theirs = run(X, users)
    np.testing.assert_allclose(jnp.sum(jnp.abs(W) ** 2, axis=(1, 2)), CFG.power, rtol=1e-5)
    np.testing.assert_allclose(ours, theirs, rtol=2e-3)


def test_direct_beamformer_keeps_the_direction_at_full_power():
    w = jnp.asarray(np.random.default_rng(1).normal(size=(2, 2, 3, 2)), jnp.float32)
    W = decode.direct_beamformer(CFG, w)
    raw = w[..., 0] + 1j * w[..., 1]
    np.testing.assert_allclose(jnp.sum(jnp.abs(W) ** 2, axis=(-2, -1)), CFG.power, rtol=1e-5)
    ratio = W / raw
    np.testing.assert_allclose(ratio, ratio[..., :1, :1] * jnp.ones_like(ratio), rtol=1e-4)


@functools.partial(fast_jit, static_argnums=0)
def _duals_apply(graphdef, state, cfg, H):
    return nnx.merge(graphdef, state).duals(cfg, H)


def _duals(net, cfg, H):
    return _duals_apply(*nnx.split(net), cfg, H)


def test_short_term_net_duals_and_ssca_kkt_solver():
    cfg = jp.PassConfig.two_timescale(num_users=3, num_waveguides=2, num_pinches=3)
    net = ShortTermNet(cfg, d_model=16, num_heads=2, num_layers=1, ffn=32, rngs=nnx.Rngs(0))
    net.eval()
    X = jp.uniform_positions(cfg)
    users = users_of(cfg, B=4)
    H = fast_jit(decode.channels)(cfg, X, users)
    lam, share = _duals(net, cfg, H)
    assert lam.shape == share.shape == (4, 3)
    assert bool(jnp.all(lam >= 0)) and bool(jnp.all(share >= 0))
    np.testing.assert_allclose(share.sum(-1), 1.0, rtol=1e-6)
    # a set of users: permuting the rows of H permutes the duals
    perm = jnp.asarray([2, 0, 1])
    lam_p, share_p = _duals(net, cfg, H[:, perm])
    np.testing.assert_allclose(lam_p, lam[:, perm], rtol=1e-4)
    np.testing.assert_allclose(share_p, share[:, perm], rtol=1e-4)

    # inside ssca's KKT solver, under jit, with the network's parameters as traced leaves
    solver = ssca.kkt_solver(duals_fn(net))
    value_grad = fast_jit(jax.value_and_grad(lambda x, s: ssca.slot_objective(cfg, x, users[0], solver=s),
                                            argnums=(0, 1), allow_int=True))
    v, (g, g_solver) = value_grad(X, solver)
    ref = fast_jit(lambda h, a, p: jp.sum_rate(h, jp.beamforming.kkt(h, a, p, cfg.power), cfg.noise_power))
    np.testing.assert_allclose(-v, ref(H[0], lam[0], share[0]), rtol=1e-4)
    assert g.shape == X.shape and bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g))) > 0
    floats = [leaf for leaf in jax.tree.leaves(g_solver) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    assert floats and any(float(jnp.max(jnp.abs(leaf))) > 0 for leaf in floats)
    # the gradient in X is the derivative of the value: a first-order check along g
    step = 1e-5 / float(jnp.max(jnp.abs(g)))
    v_step = value_grad(X - step * g, solver)[0]
    assert float(v_step) < float(v)
    # new parameter values reuse the compiled function
    other = jax.tree.map(lambda a: a * 1.5 if jnp.issubdtype(a.dtype, jnp.floating) else a, solver)
    before = value_grad._cache_size()
    v2 = value_grad(X, other)[0]
    assert value_grad._cache_size() == before and not np.isclose(v2, v)


def _one_line_value_error(fn, match):
    with pytest.raises(ValueError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)


def test_bad_inputs_give_one_line_errors():
    model = tiny("kdl-transformer")
    _one_line_value_error(lambda: model(jnp.zeros((3, 2))), "users must have shape")
    _one_line_value_error(lambda: model(jnp.zeros((2, 4, 2))), "users must have shape")
    other = jp.PassConfig.joint_beamforming(num_users=3, num_waveguides=2, num_pinches=4)
    _one_line_value_error(lambda: model.decode(other, random_raw()), "was built for")
    _one_line_value_error(lambda: predict(tiny("blackbox-resnet"), other, users_of()), "was built for")
    _one_line_value_error(lambda: decode.positions(CFG, jnp.zeros((2, 3)), jnp.zeros((2, 2, 3))), "x_end must")
    _one_line_value_error(lambda: decode.direct_beamformer(CFG, jnp.zeros((2, 3, 3))), "w must")
    _one_line_value_error(lambda: ARCHITECTURES["kdl-resnet"](CFG, num_blocks=51, rngs=nnx.Rngs(0)), "num_blocks")
    _one_line_value_error(lambda: KDLTransformer(CFG, d_model=18, num_heads=4, rngs=nnx.Rngs(0)), "multiple")
    _one_line_value_error(lambda: KDLTransformer(CFG, lam_max=0.0, rngs=nnx.Rngs(0)), "lam_max")
    net = ShortTermNet(CFG, d_model=16, num_heads=2, num_layers=1, ffn=32, rngs=nnx.Rngs(0))
    _one_line_value_error(lambda: net.duals(CFG, jnp.zeros((1, 2, 3), jnp.complex64)), "H must have shape")
    _one_line_value_error(lambda: net.duals(other, jnp.zeros((1, 3, 2), jnp.complex64)), "was built for")
    with pytest.raises(TypeError, match="ShortTermNet"):
        duals_fn(model)

"""The learned aligned model (jaxpass.learn.aligned): decode, teacher labels, losses, training, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxpass as jp
from jaxpass.learn import aligned as al
from jaxpass.optimize import positions as pos

SMALL = dict(num_users=2, num_waveguides=2, num_pinches=4)
SPACINGS = (0.0, 0.05)
TINY = dict(hidden=16, heads=2, layers=1, spacings=SPACINGS)


@pytest.fixture(scope="module")
def setup():
    cfg = jp.PassConfig.joint_beamforming(**SMALL)
    users = jp.sample_users(jax.random.key(11), cfg, (6,))
    model = al.AlignedNet(cfg, **TINY, top_k=2, max_shift=0.05, rngs=nnx.Rngs(0))
    # a non-zero shift head, so the decode exercises the shifted placement
    model.shift_head.kernel[...] = 0.5 * jax.random.normal(jax.random.key(1), model.shift_head.kernel.shape)
    model.eval()
    return cfg, users, model


def _power(W):
    return jnp.sum(jnp.abs(W) ** 2, axis=(-2, -1))


def test_layout_is_coherent_and_matches_search_start(setup, x64):
    cfg, users, _ = setup
    table = pos.assignment_table(cfg.num_waveguides, cfg.num_users)
    same = 0
    layout, reference = jax.jit(al.aligned_layout), jax.jit(pos.aligned_positions)
    for u in users[:3]:
        for a in table:
            for s in SPACINGS:
                mine = np.asarray(layout(cfg, u, a, s))
                ref = np.asarray(reference(cfg, u, a, s))
                for n in range(cfg.num_waveguides):
                    # aligned_positions' pinch 0 may wrap one phase cycle (< 10 mm) ahead; else equal
                    d0 = ref[n, 0] - mine[n, 0]
                    assert -1e-6 <= d0 < 0.01
                    if abs(d0) <= 1e-6:
                        np.testing.assert_allclose(mine[n], ref[n], atol=1e-6)
                        same += 1
                # coherent at the assigned user: every pinch's total phase equal modulo one cycle
                u64 = np.asarray(u, np.float64)
                for n in range(cfg.num_waveguides):
                    k = a[n]
                    dy2 = (float(cfg.lane_y[n]) - u64[k, 1]) ** 2
                    ph, _ = pos._phase_cycles(cfg, jnp.asarray(mine[n], jnp.float64), u64[k, 0], dy2)
                    assert float(jnp.abs(jnp.mean(jnp.exp(2j * jnp.pi * ph)))) > 0.999
    assert same >= 6
    shifted = jax.vmap(lambda u, sh: al.aligned_layout(cfg, u, table[0], 0.05, sh))(
        users, jnp.linspace(-3.0, 3.0, 12).reshape(6, 2))
    assert bool(jnp.all(jp.is_feasible(cfg, shifted)))
    # the shift moves the array's centre (coherence stays at the user)
    base = al.aligned_layout(cfg, users[0], table[0], 0.0)
    moved = al.aligned_layout(cfg, users[0], table[0], 0.0, jnp.array([0.02, 0.0]))
    assert 0.01 < float(jnp.mean(moved[0] - base[0])) < 0.035  # within one phase cycle
    np.testing.assert_allclose(moved[1], base[1])


def test_candidate_table_matches_search_labels(setup):
    cfg, _, _ = setup
    assign, spac = al.candidate_table(cfg, SPACINGS)
    names = pos.candidate_labels(cfg, spacings=SPACINGS)
    table = pos.assignment_table(cfg.num_waveguides, cfg.num_users)
    for c in range(len(spac)):
        a, s = c // len(SPACINGS), SPACINGS[c % len(SPACINGS)]
        assert names[c] == f"aligned[a={a},s={s:g}]"
        np.testing.assert_array_equal(assign[c], table[a])
        assert spac[c] == s


def test_decode_is_feasible_and_meets_budget(setup):
    cfg, users, model = setup
    raw = nnx.jit(lambda m, u: m(u))(model, users)
    assert raw.scores.shape == (6, 2 * len(SPACINGS)) and raw.shift.shape == (6, 2, 2)
    assert float(jnp.max(jnp.abs(raw.shift))) > 1e-3  # the shift head is live
    decode = nnx.jit(lambda m, c, u: m.decode(c, m(u)))
    X, W = decode(model, cfg, users)
    assert X.shape == (6, 2, 4) and W.shape == (6, 2, 2)
    assert bool(jnp.all(jp.is_feasible(cfg, X)))
    np.testing.assert_allclose(_power(W), cfg.power, rtol=1e-5)
    # the driver gives the same and its rate is the true channel's
    out = al.predict_aligned(model, cfg, users)
    np.testing.assert_allclose(out.positions, X, rtol=1e-6)
    H = jax.vmap(lambda X, u: jp.effective_channel(cfg, X, u))(out.positions, users)
    np.testing.assert_allclose(jax.vmap(lambda H, W: jp.sum_rate(H, W, cfg.noise_power))(H, out.W),
                               out.sum_rate, rtol=1e-4)
    # a traced config (power sweep): the budget follows the traced power
    cfg2 = cfg.replace(power_dbm=13.0)
    _, W2 = decode(model, cfg2, users)
    np.testing.assert_allclose(_power(W2), cfg2.power, rtol=1e-5)


def test_top_k_never_worse_and_permutation_invariant(setup):
    cfg, users, model = setup
    r1 = al.predict_aligned(model, cfg, users, top_k=1).sum_rate
    rall = al.predict_aligned(model, cfg, users, top_k=4).sum_rate
    labels = al.make_teacher_labels(cfg, users, spacings=SPACINGS)
    assert np.all(np.asarray(rall) >= np.asarray(r1) - 1e-4)
    # without the shift, top_k = C is the search over the aligned candidates
    plain = al.AlignedNet(cfg, **TINY, top_k=4, max_shift=0.0, rngs=nnx.Rngs(3))
    plain.eval()
    np.testing.assert_allclose(al.predict_aligned(plain, cfg, users).sum_rate, jnp.max(labels.rates, -1), rtol=1e-4)
    perm = users[:, ::-1]
    a, b = al.predict_aligned(model, cfg, users), al.predict_aligned(model, cfg, perm)
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-5)
    np.testing.assert_allclose(a.sum_rate, b.sum_rate, rtol=1e-4)


def test_refine_starts_at_the_decode_and_never_loses(setup):
    cfg, users, model = setup
    decoded = al.predict_aligned(model, cfg, users)
    out = nnx.jit(lambda m, u: al.refine(m, cfg, u, pos.TuneOptions(beamformer="zf", steps=10)))(model, users)
    np.testing.assert_allclose(out.start_rate, decoded.sum_rate, rtol=1e-4)
    np.testing.assert_allclose(out.history[:, 0], decoded.sum_rate, rtol=1e-4)
    assert np.all(np.asarray(out.sum_rate) >= np.asarray(decoded.sum_rate) - 1e-4)
    assert bool(jnp.all(jp.is_feasible(cfg, out.positions)))
    np.testing.assert_allclose(_power(out.W), cfg.power, rtol=1e-5)


def test_teacher_labels_match_the_search(setup):
    cfg, users, _ = setup
    labels = al.make_teacher_labels(cfg, users, spacings=SPACINGS, chunk=4)  # exercises the padded tail
    res = pos.tune_positions(cfg, users, key=jax.random.key(0), beamformer="zf", steps=1, starts=1,
                             spacings=SPACINGS, random_starts=0)
    C = labels.rates.shape[1]
    aligned_won = np.asarray(res.start) < C
    assert aligned_won.sum() >= 4
    # the same assignment; the spacing may differ where aligned_positions' pinch 0 wrapped a cycle
    S = len(SPACINGS)
    np.testing.assert_array_equal(np.asarray(labels.best)[aligned_won] // S, np.asarray(res.start)[aligned_won] // S)
    np.testing.assert_allclose(jnp.max(labels.rates, -1)[aligned_won], res.start_rate[aligned_won], rtol=2e-2)


def test_finetune_gradient_reaches_shift_head_and_matches_fd(setup, x64):
    cfg, users, model = setup
    labels = al.make_teacher_labels(cfg, users, spacings=SPACINGS)
    grads = nnx.jit(nnx.grad(lambda m, lab: al.finetune_loss(m, cfg, users, lab)[0]))(model, labels)
    assert float(jnp.max(jnp.abs(grads.shift_head.kernel[...]))) > 0
    assert float(jnp.max(jnp.abs(grads.shift_head.bias[...]))) > 0
    # teacher loss never touches the shift head; the fine-tuning loss never touches the scorer
    assert float(jnp.max(jnp.abs(grads.joint.kernel[...]))) == 0
    # float64 finite differences of the rate w.r.t. the centre shift (the continuous output)
    u = users[0].astype(jnp.float64)
    a = pos.assignment_table(2, 2)[int(labels.best[0]) // len(SPACINGS)]

    def rate(shift):
        X = al.aligned_layout(cfg, u, a, 0.0, shift)
        return al._zf_rate(cfg, X, u)[1]

    rate = jax.jit(rate)
    s0 = jnp.array([0.01, -0.01], jnp.float64)
    g = jax.jit(jax.grad(rate))(s0)
    eps = 1e-7
    for n in range(2):
        e = jnp.zeros(2, jnp.float64).at[n].set(eps)
        fd = (rate(s0 + e) - rate(s0 - e)) / (2 * eps)
        np.testing.assert_allclose(g[n], fd, rtol=2e-3, atol=1e-3)


def test_losses_shapes_and_sum_rate_loss(setup):
    cfg, users, model = setup
    labels = al.make_teacher_labels(cfg, users, spacings=SPACINGS)
    loss, aux = nnx.jit(lambda m, lab: al.teacher_loss(m, cfg, users, lab))(model, labels)
    assert loss.shape == () and aux["accuracy"].shape == (6,) and bool(jnp.all(aux["regret"] >= 0))
    hard, _ = nnx.jit(lambda m, lab: al.teacher_loss(m, cfg, users, lab, temperature=0.0))(model, labels)
    assert float(hard) > 0
    loss, aux = nnx.jit(lambda m: al.sum_rate_loss(m, cfg, users))(model)
    np.testing.assert_allclose(loss, -jnp.mean(aux["sum_rate"]), rtol=1e-6)
    np.testing.assert_allclose(aux["sum_rate"], al.predict_aligned(model, cfg, users).sum_rate, rtol=1e-4)


def test_a_few_steps_lower_the_teacher_loss():
    cfg = jp.PassConfig.joint_beamforming(**SMALL)
    users = jp.sample_users(jax.random.key(5), cfg, (32,))
    labels = al.make_teacher_labels(cfg, users, spacings=SPACINGS)
    fit = al.fit_aligned(jax.random.key(2), cfg, users=users, labels=labels, **TINY, steps=25, batch_size=32,
                         learning_rate=1e-2, warmup_steps=2, finetune_steps=2)
    assert fit.history.shape == (27, 3)
    after, _ = al.teacher_loss(fit.model, cfg, users, labels)
    assert float(after) < 0.8 * fit.history[0, 1]
    assert np.all(np.isfinite(fit.history))


@pytest.mark.parametrize("make, match", [
    (lambda cfg: al.AlignedOptions(top_k=0), "top_k must be >= 1"),
    (lambda cfg: al.AlignedOptions(spacings=(-0.1,)), "spacings must be"),
    (lambda cfg: al.AlignedOptions(hidden=10, heads=4), "multiple of heads"),
    (lambda cfg: al.AlignedOptions(learning_rate=0.0), "learning_rate must be"),
    (lambda cfg: al.AlignedNet(jp.PassConfig.joint_beamforming(num_users=3, num_waveguides=2), rngs=nnx.Rngs(0)),
     "needs K <= N"),
    (lambda cfg: al.AlignedNet(cfg, **TINY, top_k=9, rngs=nnx.Rngs(0)), "top_k must be"),
    (lambda cfg: al.AlignedNet("cfg", rngs=nnx.Rngs(0)), "cfg must be a PassConfig"),
    (lambda cfg: al.make_teacher_labels(cfg, jnp.zeros((3, 2))), "users must have shape"),
    (lambda cfg: al.make_teacher_labels(cfg, jnp.full((1, 2, 2), jnp.nan)), "non-finite"),
    (lambda cfg: al.fit_aligned(jax.random.key(0), cfg, users=jnp.ones((4, 2, 2)),
                                labels=al.TeacherLabels(jnp.zeros(3), jnp.zeros((3, 4)))), "labels must be"),
    (lambda cfg: al.fit_aligned(None, cfg), "key must be"),
])
def test_bad_inputs_give_one_line_errors(setup, make, match):
    cfg = setup[0]
    with pytest.raises((ValueError, TypeError), match=match) as info:
        make(cfg)
    assert "\n" not in str(info.value)


def test_predict_rejects_a_mismatched_config(setup):
    cfg, users, model = setup
    other = jp.PassConfig.joint_beamforming(num_users=2, num_waveguides=2, num_pinches=5)
    with pytest.raises(ValueError, match="model was built for"):
        al.predict_aligned(model, other, jp.sample_users(jax.random.key(0), other, (2,)))
    with pytest.raises(ValueError, match="users must have shape"):
        al.predict_aligned(model, cfg, users[..., :1])

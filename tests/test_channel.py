import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import PRESETS, random_drop, random_positions, rel_err

import jaxpass as jp

C = 299_792_458.0


def loop_effective_channel(cfg, X, users, amplitudes):
    """docs/model.md §2 written as plain loops in float64 (the reference)."""
    X, users, a = np.asarray(X, np.float64), np.asarray(users, np.float64), np.asarray(amplitudes, np.float64)
    lam = C / cfg.carrier_freq
    kappa = 2 * np.pi / lam
    lanes = np.asarray(cfg.lane_y, np.float64)
    H = np.zeros((cfg.num_users, cfg.num_waveguides), complex)
    for k in range(cfg.num_users):
        for n in range(cfg.num_waveguides):
            for l in range(cfg.num_pinches):
                x = X[n, l]
                r = np.sqrt((x - users[k, 0]) ** 2 + (lanes[n] - users[k, 1]) ** 2 + cfg.height**2)
                h = np.sqrt(cfg.beta) * np.exp(-1j * kappa * r) / r
                g = a[n, l] * np.exp(-1j * kappa * cfg.n_eff * x) * 10 ** (-cfg.loss_db_per_m * x / 20)
                H[k, n] += h * g
    return H


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("radiation", ["equal", "coupled"])
def test_effective_channel_equals_loop_reference_x64(x64, preset, radiation):
    cfg = PRESETS[preset](radiation=radiation, loss_db_per_m=0.08)
    for seed in range(5):
        X, users = random_drop(seed, cfg)
        if radiation == "coupled":
            split = jax.random.uniform(jax.random.key(100 + seed), (cfg.num_waveguides, cfg.num_pinches))
            a = jp.radiation_amplitudes(cfg, split)
        else:
            a = jp.radiation_amplitudes(cfg)
        H = np.asarray(jp.effective_channel(cfg, X, users, amplitudes=a))
        ref = loop_effective_channel(cfg, X, users, a)
        assert H.dtype == np.complex128
        np.testing.assert_allclose(H, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())
        # the default amplitudes of each radiation model are equal-power
        np.testing.assert_allclose(
            np.asarray(jp.effective_channel(cfg, X, users)),
            loop_effective_channel(cfg, X, users, np.full(X.shape, cfg.num_pinches**-0.5)),
            rtol=1e-10, atol=1e-10 * np.abs(ref).max(),
        )


def test_channel_factors_into_links_and_pinch_response(x64, jb_cfg):
    cfg = jb_cfg.replace(loss_db_per_m=0.05)
    X, users = random_drop(1, cfg)
    H = jp.effective_channel(cfg, X, users)
    H2 = jnp.sum(jp.free_space_links(cfg, X, users) * jp.pinch_response(cfg, X)[None], axis=-1)
    np.testing.assert_allclose(H, H2, rtol=1e-10)
    r = jp.distances(cfg, X, users)
    assert r.shape == (4, 4, 8) and float(r.min()) >= cfg.height


def naive_channel(cfg, X, users, dtype):
    """docs/model.md §2 the naive way: ``exp(-1j*kappa*r)`` with kappa and every phase in ``dtype``."""
    X, users = jnp.asarray(X, dtype), jnp.asarray(users, dtype)
    kappa = jnp.asarray(2 * np.pi * cfg.carrier_freq / C, dtype)
    lanes = jnp.asarray(cfg.lane_y, dtype)
    dx = X[None] - users[:, 0, None, None]
    dy = lanes[None, :, None] - users[:, 1, None, None]
    r = jnp.sqrt(dx**2 + dy**2 + jnp.asarray(cfg.height, dtype) ** 2)
    h = jnp.sqrt(jnp.asarray(cfg.beta, dtype)) * jnp.exp(-1j * kappa * r) / r
    g = cfg.num_pinches**-0.5 * jnp.exp(-1j * kappa * cfg.n_eff * X) * 10 ** (-cfg.loss_db_per_m * X / 20)
    return jnp.sum(h * g[None], axis=-1)


# float32 vs float64 channel, relative to max |H|: jaxpass's double-float phases measure
# 0.9e-7 to 2.0e-7 on drops 0..7 of the JB scenario (drop 2: 1.7e-7); the naive
# exp(-1j*kappa*r) float32 version measures 1.4e-4 to 6.4e-4 (drop 2: 6.4e-4), i.e. ~3000x more.
FLOAT32_CHANNEL_RTOL = 2e-6


@pytest.mark.parametrize("seed", [2, 5])
def test_float32_channel_close_to_float64(jb_cfg, seed):
    X, users = random_drop(seed, jb_cfg)
    H32 = np.asarray(jp.effective_channel(jb_cfg, X, users))
    naive = np.asarray(naive_channel(jb_cfg, X, users, jnp.float32))
    with jax.enable_x64(True):
        H64 = np.asarray(jp.effective_channel(jb_cfg, jnp.asarray(X, jnp.float64), jnp.asarray(users, jnp.float64)))
        naive64 = np.asarray(naive_channel(jb_cfg, X, users, jnp.float64))
    assert H32.dtype == np.complex64 and naive.dtype == np.complex64
    assert rel_err(H32, H64) < FLOAT32_CHANNEL_RTOL
    assert rel_err(naive64, H64) < 1e-11  # the naive formula itself is right (measured 1.7e-12)
    # the tolerance has power: the naive float32 phases fail it by two orders of magnitude
    assert rel_err(naive, H64) > 50 * FLOAT32_CHANNEL_RTOL


def test_sanity_all_pinches_at_one_point_is_sqrt_L_times_single(x64):
    """docs/model.md §7: equal amplitudes, all pinches at one point -> sqrt(L) x the single-pinch channel."""
    cfg = jp.PassConfig.joint_beamforming(num_pinches=8)
    cfg1 = cfg.replace(num_pinches=1)
    _, users = random_drop(4, cfg)
    x = jnp.array([3.0, 7.0, 11.0, 15.0])
    H = jp.effective_channel(cfg, jnp.repeat(x[:, None], 8, axis=1), users)  # allowed off the feasible set
    H1 = jp.effective_channel(cfg1, x[:, None], users)
    np.testing.assert_allclose(H, np.sqrt(8) * H1, rtol=1e-12)


def test_sanity_one_user_one_pinch_best_position_is_under_user(x64):
    """docs/model.md §7: one user, one pinch, no loss -> |h|^2 is maximised at x = x_user."""
    cfg = jp.PassConfig.joint_beamforming(num_users=1, num_waveguides=1, num_pinches=1)
    user = jnp.array([[7.3, 2.0]])
    grid = jnp.linspace(0.0, 20.0, 20001)
    gain = jax.vmap(lambda x: jnp.abs(jp.effective_channel(cfg, x.reshape(1, 1), user)[0, 0]) ** 2)(grid)
    assert float(grid[jnp.argmax(gain)]) == pytest.approx(7.3, abs=1e-3)


def test_loss_attenuates_and_amplitude_models():
    cfg = jp.PassConfig.energy_efficiency()
    split = jp.equal_split(8)
    a = jp.coupled_amplitudes(split)
    np.testing.assert_allclose(a**2, np.full(8, 1 / 8), rtol=1e-6)  # equal radiation
    d = jax.random.uniform(jax.random.key(0), (50, 8))
    a = jp.coupled_amplitudes(d)
    residual = jnp.prod(1 - d, axis=-1)
    np.testing.assert_allclose(jnp.sum(a**2, -1) + residual, 1.0, rtol=1e-5)  # power conservation
    X, users = random_drop(0, cfg)
    lossy = cfg.replace(loss_db_per_m=1.0)
    g0, g1 = jp.pinch_response(cfg, X), jp.pinch_response(lossy, X)
    np.testing.assert_allclose(jnp.abs(g1) / jnp.abs(g0), 10 ** (-np.asarray(X) / 20), rtol=1e-5)


def test_coupled_amplitudes_gradient_finite_at_edges(x64):
    g = jax.grad(lambda d: jnp.sum(jp.coupled_amplitudes(d) ** 2))(jnp.array([0.0, 1.0, 0.5, 0.0]))
    assert bool(jnp.all(jnp.isfinite(g)))


def test_blockage_covariance_matches_monte_carlo(x64):
    cfg = jp.PassConfig.power_min_blockage(num_pinches=2, blockage_rate=0.15)
    X, users = random_drop(3, cfg)
    R = jp.blockage_covariance(cfg, X, users)
    assert R.shape == (4, 2, 2)
    np.testing.assert_allclose(R, jnp.conj(jnp.swapaxes(R, -1, -2)), atol=1e-30)  # Hermitian
    p = jp.los_probability(cfg, X, users)
    masks = jax.random.bernoulli(jax.random.key(9), p, (20000,) + p.shape).astype(jnp.float64)
    Hs = jax.vmap(lambda m: jp.effective_channel(cfg, X, users, los=m))(masks)  # (S, K, N)
    emp = jnp.mean(jnp.conj(Hs)[..., :, None] * Hs[..., None, :], axis=0)
    se = jnp.std(jnp.abs(Hs[..., :, None] * Hs[..., None, :]), axis=0) / np.sqrt(20000)
    assert bool(jnp.all(jnp.abs(emp - R) <= 4 * se + 1e-30))
    # always-LoS limit: covariance is the rank-one outer product
    cfg0 = cfg.replace(blockage_rate=0.0)
    H = jp.effective_channel(cfg0, X, users)
    np.testing.assert_allclose(jp.blockage_covariance(cfg0, X, users), jnp.conj(H)[:, :, None] * H[:, None, :], rtol=1e-12)


def test_los_probability_decays_with_distance(jb_cfg):
    cfg = jb_cfg.replace(blockage_rate=0.2)
    X, users = random_drop(5, cfg)
    np.testing.assert_allclose(jp.los_probability(cfg, X, users), jnp.exp(-0.2 * jp.distances(cfg, X, users)), rtol=1e-6)


def test_ula_channel(x64, jb_cfg):
    _, users = random_drop(6, jb_cfg)
    H = jp.ula_channel(jb_cfg, users, 16)
    assert H.shape == (4, 16)
    lam = C / 30e9
    xm = np.arange(16) * lam / 2
    u = np.asarray(users)
    r = np.sqrt((xm[None] - u[:, :1]) ** 2 + u[:, 1:] ** 2 + 2.5**2)
    np.testing.assert_allclose(H, np.sqrt(jb_cfg.beta) * np.exp(-2j * np.pi * r / lam) / r, rtol=1e-10)


def test_channel_jits_once_per_config_shape(jb_cfg):
    import chex

    @jax.jit
    @chex.assert_max_traces(n=1)
    def chan(cfg, X, u):
        return jp.effective_channel(cfg, X, u)

    key = jax.random.key(0)
    X = random_positions(key, jb_cfg)
    for p in (10.0, 20.0):
        for s in range(3):
            chan(jb_cfg.replace(power_dbm=p, loss_db_per_m=0.01 * s), X, jp.sample_users(jax.random.key(s), jb_cfg))


def test_channel_bad_input(jb_cfg):
    X, users = random_drop(0, jb_cfg)
    with pytest.raises(ValueError, match="users must have shape"):
        jp.effective_channel(jb_cfg, X, users[:3])
    with pytest.raises(ValueError, match="X \\(positions\\) must have shape"):
        jp.effective_channel(jb_cfg, X.T, users)
    with pytest.raises(ValueError, match="users contains 1 non-finite"):
        jp.effective_channel(jb_cfg, X, users.at[0, 1].set(jnp.nan))
    with pytest.raises(ValueError, match="X \\(positions\\) contains"):
        jp.effective_channel(jb_cfg, X.at[0, 0].set(jnp.inf), users)
    with pytest.raises(ValueError, match="amplitudes must have shape"):
        jp.effective_channel(jb_cfg, X, users, amplitudes=jnp.ones(3))
    with pytest.raises(ValueError, match="los must broadcast"):
        jp.effective_channel(jb_cfg, X, users, los=jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="radiation='coupled'"):
        jp.radiation_amplitudes(jb_cfg, split=jnp.ones(8))
    with pytest.raises(ValueError, match="num_antennas must be >= 1"):
        jp.ula_channel(jb_cfg, users, 0)


@pytest.mark.parametrize("L", [3, 40])
def test_channel_gradient_float64_finite_differences(x64, jb_cfg, L):
    """Reverse mode (the path sum's custom VJP) against finite differences, every array input.

    L = 40 is summed in three padded blocks of 14 pinches.
    """
    from jax.test_util import check_grads

    cfg = jb_cfg.replace(loss_db_per_m=0.1, num_pinches=L, radiation="coupled")
    X, users = random_drop(12, cfg)
    a = jp.radiation_amplitudes(cfg, jax.random.uniform(jax.random.key(3), (cfg.num_waveguides, L)))
    los = jax.random.uniform(jax.random.key(4), (cfg.num_users, cfg.num_waveguides, L))
    w = jnp.arange(1.0, 5.0) + 0.5j

    def f(X, u, a, los):
        return jnp.sum(jnp.abs(jp.effective_channel(cfg, X, u, amplitudes=a, los=los) @ w) ** 2)

    check_grads(f, (X, users, a, los), order=1, modes=["rev"], eps=1e-7, atol=1e-8, rtol=1e-5)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.grad(f, argnums=(0, 1, 2, 3))(X, users, a, los))


def test_channel_forward_mode_is_refused_clearly(jb_cfg):
    """The path sum has a custom VJP (recomputation instead of stored paths): no ``jax.jvp`` through it."""
    X, users = random_drop(0, jb_cfg)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda X: jp.effective_channel(jb_cfg, X, users), (X,), (jnp.ones_like(X),))


def test_channel_jaxpr_size_does_not_grow_with_k_n_l():
    """Compile time independent of the sizes: the channel and its gradient at (K=N, L) = (4, 8) and (16, 32)."""
    from test_geometry import jaxpr_size

    sizes = []
    for K, L in ((4, 8), (16, 32), (32, 64)):
        cfg = jp.PassConfig.joint_beamforming(num_users=K, num_waveguides=K, num_pinches=L, loss_db_per_m=0.1)
        X, users = jp.uniform_positions(cfg), jp.sample_users(jax.random.key(0), cfg)
        value = jaxpr_size(lambda X, u: jp.effective_channel(cfg, X, u), X, users)
        grad = jaxpr_size(jax.grad(lambda X, u: jnp.sum(jnp.abs(jp.effective_channel(cfg, X, u)) ** 2), (0, 1)), X, users)
        sizes.append((value, grad))
    (v0, g0), (v1, g1), (v2, g2) = sizes
    # (4, 8) is one block of pinches; (16, 32) and (32, 64) are 2 and 4 blocks under one vmap:
    # the block split and its transpose add a fixed 16 / 40 equations (measured: 354 / 694 at (4, 8))
    assert abs(v1 - v0) <= 24 and abs(g1 - g0) <= 48, sizes
    assert (v2, g2) == (v1, g1), sizes


def test_channel_gradient_float32_matches_float64(jb_cfg):
    """float32 gradients come from the plain expression (cheap), values from double-float pairs."""
    X, users = random_drop(13, jb_cfg)
    w = jnp.array([1.0, -0.5, 0.25, 2.0])

    def f(X, u):
        H = jp.effective_channel(jb_cfg, X, u)
        return jnp.sum(jnp.real(H @ w) + 0.3 * jnp.imag(H @ w))

    g32 = np.asarray(jax.grad(f)(X, users), np.float64)
    with jax.enable_x64(True):
        g64 = np.asarray(jax.grad(f)(jnp.asarray(X, jnp.float64), jnp.asarray(users, jnp.float64)))
    # measured 1.9e-7 of the largest entry (drops 13, 1, 2: 1.9e-7, 1.6e-7, 1.6e-7); float32 phases
    # of ~3000 cycles without the double-float value are off by ~1e-3 rad, i.e. ~1e-4 or more here
    assert np.abs(g32 - g64).max() < 2e-6 * np.abs(g64).max()
    assert np.abs(g64).max() > 0


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_float32_link_derivatives_match_float64_for_every_input(jb_cfg, mode):
    """The float32 links' custom derivative rule covers users, height, lanes and carrier too.

    Forward mode checks the per-path links instead of the effective channel, whose path sum
    has a custom VJP.
    """
    cfg = jb_cfg.replace(num_pinches=3, waveguide_y=(1.0, 3.5, 6.0, 9.0))
    X, users = random_drop(14, cfg)
    w = jnp.array([1.0, -0.5, 0.25, 2.0])

    def f(X, u, height, lanes, freq):
        c = cfg.replace(height=height, waveguide_y=lanes, carrier_freq=freq)
        G = jp.ula_channel(c, u, 3)
        ula = jnp.sum(jnp.abs(G @ w[:3]) ** 2)
        if mode == "fwd":  # the per-path links (no path sum) carry forward mode
            F = jp.free_space_links(c, X, u) * w[:, None, None]
            return jnp.sum(jnp.real(F) + 0.3 * jnp.imag(F)) + ula
        H = jp.effective_channel(c, X, u)
        return jnp.sum(jnp.real(H @ w) + 0.3 * jnp.imag(H @ w)) + ula

    def derivatives(dtype):
        args = tuple(jnp.asarray(a, dtype) for a in (X, users, cfg.height, jnp.asarray(cfg.waveguide_y), cfg.carrier_freq))
        if mode == "rev":
            return jax.grad(f, argnums=(0, 1, 2, 3, 4))(*args)
        directions = [jnp.ones_like(a) for a in args]
        return [jax.jvp(lambda a, i=i: f(*args[:i], a, *args[i + 1:]), (args[i],), (directions[i],))[1] for i in range(5)]

    d32 = [np.asarray(g, np.float64) for g in derivatives(jnp.float32)]
    with jax.enable_x64(True):
        d64 = [np.asarray(g) for g in derivatives(jnp.float64)]
    for name, a, b in zip(["X", "users", "height", "lanes", "carrier_freq"], d32, d64):
        assert np.abs(b).max() > 0, name
        # measured 5.1e-4 (users, fwd) to 9.2e-4 (lanes, rev): traced height, lanes and carrier
        # are float32 values, so these phases lose the double-float precision
        err = np.abs(a - b).max() / np.abs(b).max()
        # the summed per-path links (fwd) cancel more than the channel: measured 3.2e-3 (users)
        assert err < (2e-3 if mode == "rev" else 1e-2), name


def test_pb_lmax_depends_on_distances_only(x64):
    """docs/model.md §7: with independent blockage R_k = Phi (|a||a|^T + D) Phi^H, Phi diagonal unitary,
    so lmax(R_k) does not depend on the phases of hbar, only on the distances."""
    cfg = jp.PassConfig.power_min_blockage(num_waveguides=3)
    X, users = random_drop(21, cfg)
    R = np.asarray(jp.blockage_covariance(cfg, X, users))
    p = np.asarray(jp.los_probability(cfg, X, users))[..., 0]  # (K, N), one pinch per waveguide
    mag = np.sqrt(cfg.beta) / np.asarray(jp.distances(cfg, X, users))[..., 0]  # |hbar|
    for k in range(cfg.num_users):
        a = p[k] * mag[k]
        real = np.outer(a, a) + np.diag(p[k] * (1 - p[k]) * mag[k] ** 2)
        np.testing.assert_allclose(np.linalg.eigvalsh(R[k])[-1], np.linalg.eigvalsh(real)[-1], rtol=1e-12)
    # changing the carrier phase (n_eff) leaves lmax unchanged
    R2 = np.asarray(jp.blockage_covariance(cfg.replace(n_eff=1.9), X, users))
    np.testing.assert_allclose(np.linalg.eigvalsh(R2)[:, -1], np.linalg.eigvalsh(R)[:, -1], rtol=1e-12)


@pytest.mark.parametrize("L", [16, 17, 40])
def test_blocked_pinch_sum_matches_loop_reference(x64, L):
    """L > 16 is summed in blocks of 16 pinches; every block boundary must be exact."""
    cfg = jp.PassConfig.joint_beamforming(num_pinches=L, loss_db_per_m=0.05, radiation="coupled")
    X, users = random_drop(30 + L, cfg)
    a = jp.radiation_amplitudes(cfg, jax.random.uniform(jax.random.key(L), (cfg.num_waveguides, L)))
    los = jax.random.bernoulli(jax.random.key(L + 1), 0.7, (cfg.num_users, cfg.num_waveguides, L)).astype(jnp.float64)
    ref = loop_effective_channel(cfg, X, users, np.asarray(a) * 1.0)
    H = np.asarray(jp.effective_channel(cfg, X, users, amplitudes=a))
    np.testing.assert_allclose(H, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())
    H_los = np.asarray(jp.effective_channel(cfg, X, users, amplitudes=a, los=los))
    ref_los = sum(
        loop_effective_channel(cfg, X, users, np.asarray(a) * (np.arange(L) == l)) * np.asarray(los)[:, :, l]
        for l in range(L)
    )
    np.testing.assert_allclose(H_los, ref_los, rtol=1e-9, atol=1e-10 * np.abs(ref).max())

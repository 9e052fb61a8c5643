import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxpass as jp
from jaxpass import units


def test_joint_beamforming_preset_matches_models_3_6():
    cfg = jp.PassConfig.joint_beamforming()
    assert (cfg.num_users, cfg.num_waveguides, cfg.num_pinches) == (4, 4, 8)
    assert cfg.carrier_freq == 30e9 and cfg.n_eff == 1.4 and cfg.height == 2.5
    assert (cfg.length_x, cfg.width_y) == (20.0, 10.0)
    assert cfg.power_dbm == 10.0 and cfg.noise_dbm == -90.0
    assert cfg.beta == pytest.approx(units.beta_seed(30e9))
    assert cfg.min_spacing == pytest.approx(units.wavelength(30e9) / 2)
    assert cfg.radiation == "equal" and cfg.loss_db_per_m == 0.0 and cfg.blockage_rate == 0.0
    np.testing.assert_allclose(cfg.lane_y, [1.25, 3.75, 6.25, 8.75])
    assert float(cfg.power) == pytest.approx(0.01, rel=1e-6)
    assert float(cfg.noise_power) == pytest.approx(1e-12, rel=1e-5)
    assert float(cfg.wavenumber) == pytest.approx(2 * math.pi / units.wavelength(30e9), rel=1e-6)


def test_other_presets():
    tt = jp.PassConfig.two_timescale()
    assert (tt.num_users, tt.num_waveguides, tt.num_pinches, tt.power_dbm) == (4, 4, 8, 20.0)
    ee = jp.PassConfig.energy_efficiency()
    assert (ee.num_waveguides, ee.radiation, ee.height, ee.carrier_freq) == (1, "coupled", 3.0, 28e9)
    assert ee.beta == pytest.approx(units.beta_friis(28e9))
    np.testing.assert_allclose(ee.lane_y, [2.5])
    pb = jp.PassConfig.power_min_blockage()
    assert (pb.num_pinches, pb.length_x, pb.width_y, pb.height) == (1, 10.0, 10.0, 3.0)
    assert pb.blockage_rate == 0.1 and pb.beta == pytest.approx(units.beta_friis(28e9))
    np.testing.assert_allclose(pb.lane_y, [2.5, 7.5])


def test_preset_overrides_and_conventions():
    cfg = jp.PassConfig.joint_beamforming(num_pinches=16, carrier_freq=28e9)
    assert cfg.num_pinches == 16
    assert cfg.beta == pytest.approx(units.beta_seed(28e9))  # refilled from the new frequency
    cfg = jp.PassConfig.joint_beamforming(beta_convention="friis")
    assert cfg.beta == pytest.approx(units.beta_friis(30e9))
    with pytest.raises(TypeError, match="unknown PassConfig field"):
        jp.PassConfig.joint_beamforming(num_antennas=3)
    with pytest.raises(ValueError, match="beta_convention"):
        jp.PassConfig.joint_beamforming(beta_convention="ding")


def test_config_is_a_pytree_without_retrace_on_power():
    cfg = jp.PassConfig.joint_beamforming()
    leaves = jax.tree_util.tree_leaves(cfg)
    assert 10.0 in leaves and -90.0 in leaves  # physical numbers are leaves
    assert 4 not in [l for l in leaves if isinstance(l, int)]  # K, N, L are static

    @jax.jit
    @chex.assert_max_traces(n=1)
    def power_w(c):
        return c.power + 0 * c.height

    for p in (0.0, 10.0, 24.0):
        np.testing.assert_allclose(power_w(cfg.replace(power_dbm=p)), 10 ** ((p - 30) / 10), rtol=1e-5)
    grad = jax.grad(lambda p: cfg.replace(power_dbm=p).power)(10.0)
    assert grad > 0


BAD_FIELDS = [
    (dict(num_users=0), "num_users"),
    (dict(num_waveguides=-1), "num_waveguides"),
    (dict(num_pinches=2.5), "num_pinches"),
    (dict(num_pinches=5000), "num_pinches \\* min_spacing"),
    (dict(height=0.0), "height"),
    (dict(carrier_freq=float("nan")), "carrier_freq"),
    (dict(length_x=-20.0), "length_x"),
    (dict(noise_dbm=float("inf")), "noise_dbm"),
    (dict(power_dbm=float("nan")), "power_dbm"),
    (dict(radiation="isotropic"), "radiation"),
    (dict(waveguide_y=(1.0, 2.0)), "waveguide_y"),
    (dict(waveguide_y=(1.0, 2.0, 3.0, 11.0)), "waveguide_y"),
    (dict(min_spacing=0.0), "min_spacing"),
    (dict(loss_db_per_m=-0.1), "loss_db_per_m"),
    (dict(blockage_rate=-1.0), "blockage_rate"),
    (dict(n_eff=0.5), "n_eff"),
    (dict(beta=0.0), "beta"),
]


@pytest.mark.parametrize("fields,match", BAD_FIELDS)
def test_invalid_configs_raise_naming_the_field(fields, match):
    with pytest.raises((ValueError, TypeError), match=match):
        jp.PassConfig.joint_beamforming(**fields)
    with pytest.raises((ValueError, TypeError), match=match):
        jp.PassConfig.joint_beamforming().replace(**fields)


@settings(max_examples=60, deadline=None)
@given(
    L=st.integers(1, 64),
    spacing=st.floats(1e-4, 2.0, allow_nan=False),
    length=st.floats(0.01, 100.0, allow_nan=False),
)
def test_spacing_feasibility_property(L, spacing, length):
    """A config exists iff L * delta_min <= S_x; then uniform positions are feasible."""
    fields = dict(num_pinches=L, min_spacing=spacing, length_x=length)
    if L * spacing > length:
        with pytest.raises(ValueError, match="no feasible pinch layout"):
            jp.PassConfig.joint_beamforming(**fields)
    else:
        cfg = jp.PassConfig.joint_beamforming(**fields)
        assert bool(jp.is_feasible(cfg, jp.uniform_positions(cfg)))


@settings(max_examples=40, deadline=None)
@given(
    field=st.sampled_from(["height", "length_x", "width_y", "carrier_freq", "beta", "min_spacing", "n_eff"]),
    value=st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf"))),
)
def test_nonpositive_or_nonfinite_physics_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        jp.PassConfig.joint_beamforming().replace(**{field: value})


def test_validation_skips_tracers_inside_jit_and_vmap():
    cfg = jp.PassConfig.joint_beamforming()
    heights = jnp.array([2.0, 3.0])
    out = jax.vmap(lambda h: cfg.replace(height=h).height * 2)(heights)
    np.testing.assert_allclose(out, [4.0, 6.0])


def test_static_and_traced_fields_are_declared_once():
    from jaxpass.config import STATIC_FIELDS, TRACED_FIELDS

    assert set(STATIC_FIELDS) == {"num_users", "num_waveguides", "num_pinches", "radiation", "carrier_freq", "n_eff"}
    assert set(STATIC_FIELDS) | set(TRACED_FIELDS) == set(jp.PassConfig.__dataclass_fields__)
    cfg = jp.PassConfig.joint_beamforming()
    leaves = jax.tree.leaves(cfg)
    assert len(leaves) == len(TRACED_FIELDS) - 1  # waveguide_y=None is no leaf
    # a static number is a hashable host float even when given as an array
    c = cfg.replace(carrier_freq=jnp.asarray(28e9), n_eff=np.float64(1.5))
    assert type(c.carrier_freq) is float and type(c.n_eff) is float and hash(jax.tree.structure(c))


def test_a_traced_field_sweep_compiles_once_and_a_static_one_retraces():
    import chex

    users = jp.sample_users(jax.random.key(0), jp.PassConfig.joint_beamforming())

    @jax.jit
    @chex.assert_max_traces(n=2)
    def rate(cfg):
        H = jp.effective_channel(cfg, jp.uniform_positions(cfg), users)
        return jp.sum_rate(H, jp.beamforming.zf(H, cfg.power), cfg.noise_power)

    try:
        base = jp.PassConfig.joint_beamforming()
        for change in (dict(), dict(power_dbm=20.0), dict(noise_dbm=-80.0), dict(height=3.0), dict(length_x=25.0)):
            rate(base.replace(**change))  # one trace for all of them
        rate(base.replace(carrier_freq=28e9))  # static: a second trace
        with pytest.raises(AssertionError):
            rate(base.replace(n_eff=1.5))  # a third trace exceeds n=2
    finally:
        chex.clear_trace_counter()


def test_stack_vmaps_over_scenarios_and_rejects_static_differences():
    cfg = jp.PassConfig.energy_efficiency()  # lanes given explicitly: they stack too
    stacked = jp.PassConfig.stack([cfg.replace(power_dbm=p, height=h) for p, h in ((10.0, 3.0), (20.0, 4.0))])
    assert stacked.power_dbm.shape == (2,) and stacked.waveguide_y.shape == (2, 1)
    np.testing.assert_allclose(jax.vmap(lambda c: c.power)(stacked), [0.01, 0.1], rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(lambda c: c.lane_y)(stacked), [[2.5], [2.5]])
    with pytest.raises(ValueError, match="static field.*carrier_freq"):
        jp.PassConfig.stack([cfg, cfg.replace(carrier_freq=30e9)])
    with pytest.raises(TypeError, match="PassConfig.stack"):
        jp.PassConfig.stack([])
    # each stacked entry is validated
    with pytest.raises(ValueError, match="height must be > 0, got -1"):
        jp.PassConfig.stack([cfg, cfg.replace(height=2.0)]).replace(height=np.array([3.0, -1.0]))

import math

import numpy as np
import pytest

from jaxpass import units


def test_db_roundtrip_and_known_values():
    np.testing.assert_allclose(units.dbm_to_watt(30.0), 1.0)
    np.testing.assert_allclose(units.dbm_to_watt(10.0), 0.01, rtol=1e-6)
    np.testing.assert_allclose(units.dbm_to_watt(-90.0), 1e-12, rtol=1e-5)
    np.testing.assert_allclose(units.watt_to_dbm(units.dbm_to_watt(17.3)), 17.3, rtol=1e-5)
    np.testing.assert_allclose(units.db_to_linear(20.0), 100.0, rtol=1e-6)
    np.testing.assert_allclose(units.linear_to_db(1000.0), 30.0, rtol=1e-6)


def test_beta_conventions():
    f = 30e9
    seed = units.beta_seed(f)
    assert seed == pytest.approx(299_792_458.0 / (4 * math.pi * f))
    assert units.beta_friis(f) == pytest.approx(seed**2)
    assert units.wavelength(f) == pytest.approx(0.00999308, rel=1e-5)

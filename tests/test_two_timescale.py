"""Two-timescale experiments (``jaxpass ssca``, :mod:`jaxpass.experiments.two_timescale`)."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from conftest import assert_usage_error

from jaxpass.cli import main
from jaxpass.experiments import two_timescale as tt
from jaxpass.geometry import uniform_positions
from jaxpass.optimize import ssca


def test_converged_iteration_is_the_first_small_relative_change():
    a = np.array([[10.0, 20.0, 20.5, 20.5001, 20.6],   # |20.5001 - 20.5| / 20.5001 < 1e-3 at t = 3
                  [10.0, 20.0, 30.0, 40.0, 50.0]])     # never
    assert tt.converged_iteration(a).tolist() == [3, -1]


def test_checks_flag_each_ordering_and_monotonicity():
    row = lambda v: {"mean": v}
    sweep = {4: {12.0: {"tt_wmmse": row(70.0), "ssca_thp": row(71.0), "digital_mimo": row(40.0),
                        "uniform_wmmse": row(60.0), "single_timescale": row(80.0)},
                 28.0: {"tt_wmmse": row(90.0), "ssca_thp": row(85.0), "digital_mimo": row(39.0),
                        "uniform_wmmse": row(80.0), "single_timescale": row(85.0)}}}
    got = {(c.get("P_dbm"), c["check"]): c["holds"] for c in tt.checks(sweep)}
    assert got[(12.0, "tt_wmmse >= ssca_thp")] is False and got[(28.0, "tt_wmmse >= ssca_thp")] is True
    assert got[(28.0, "tt_wmmse <= single_timescale")] is False and got[(12.0, "tt_wmmse <= single_timescale")] is True
    assert got[(None, "digital_mimo rises with P")] is False and got[(None, "tt_wmmse rises with P")] is True


def test_every_row_is_scored_on_the_held_out_slots_of_held_out_rate():
    s = dataclasses.replace(tt.quick_settings(), held_out_slots=5)
    cfg = tt.scenario(4)
    homes = tt.block_homes(cfg, 2, 0)
    eval_opts = s.ssca.replace(wmmse_iterations=s.eval_wmmse_iterations)
    X = uniform_positions(cfg)
    ref = ssca.held_out_rate(cfg, X, homes, eval_opts, key=jax.random.key(s.held_out_seed), num_slots=5)
    slots = tt.held_out_slots(cfg, homes, s, s.ssca)
    assert slots.shape == (2, 5, 4, 2)
    Xs = np.broadcast_to(np.asarray(X), (2, 5) + X.shape)
    mine = tt._per_slot_wmmse_rates(cfg, Xs, slots, iterations=s.eval_wmmse_iterations).mean(-1)
    np.testing.assert_allclose(mine, ref, rtol=1e-5)


@pytest.mark.slow
def test_ssca_command_quick_writes_json_md_png(tmp_path, capsys):
    out = tmp_path / "tt"
    rows = ["tt_wmmse", "tt_start", "digital_mimo", "uniform_wmmse", "single_timescale"]
    assert main(["ssca", "--quick", "--rows", *rows, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "two-timescale (SSCA, WMMSE short-term)" in text and "Checks:" in text
    payload = json.loads((out / "two_timescale.json").read_text())
    assert payload["settings"]["ssca"]["iterations"] == 4 and payload["settings"]["rows"] == rows
    sweep = payload["sweep"]["K=4"]
    assert list(sweep) == ["P=12", "P=28"]
    for point in sweep.values():
        assert sorted(point) == sorted(rows)
        assert all(np.isfinite(r["mean"]) and len(r["per_block"]) == 2 for r in point.values())
        assert point["tt_wmmse"]["feasible"] and point["single_timescale"]["feasible"]
        assert point["single_timescale"]["mean"] > point["uniform_wmmse"]["mean"]  # re-tuned per slot vs even spread
    for row in ("uniform_wmmse", "digital_mimo", "single_timescale"):  # more power, more rate, on the same slots
        assert sweep["P=28"][row]["mean"] > sweep["P=12"][row]["mean"]
    assert list(payload["sigma_study"]) == ["sigma_u=0.5"] and payload["step_time"]["median_s"] > 0
    assert (out / "two_timescale.md").read_text().startswith("Two-timescale design")
    assert (out / "two_timescale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, needle", [(["--num-users", "0"], "--num-users"),
                                          (["--sigma-study", "-1"], "positive"),
                                          (["--tau", "0"], "tau must be"),
                                          (["--init", "random"], "invalid choice"),
                                          (["--powers-dbm", "x"], "--powers-dbm")])
def test_bad_ssca_flags_are_usage_errors(argv, needle, capsys):
    assert_usage_error(["ssca", *argv], needle, capsys)

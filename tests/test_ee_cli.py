"""``jaxpass ee`` (jaxpass.experiments.ee): happy path with tiny sizes, bad arguments exit 2."""

import json
import os

import numpy as np
import pytest
from conftest import assert_usage_error

from jaxpass.cli import main
from jaxpass.experiments import ee

TINY = ["--drops", "2", "--users", "2", "--num-elements", "3", "--outer-iterations", "2", "--coupling-steps", "1",
        "--grid-spacing", "0.05", "--held-out-drops", "2"]


def test_ee_power_and_convergence_write_tables_json_and_png(tmp_path, capsys):
    out = tmp_path / "ee"
    argv = ["ee", "--figures", "convergence", "power", "--powers-dbm", "0", "30",
            "--convergence-elements", "3", *TINY, "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    for needle in ("Fig. 1", "Fig. 2", "dynamic_ee_tunable", "fixed_antenna", "holds", "wrote json"):
        assert needle in text
    payload = json.loads((out / "ee.json").read_text())
    assert payload["drops"] == 2 and payload["N"] == 3 and payload["K"] == 2
    assert payload["power"]["powers_dbm"] == [0.0, 30.0]
    assert set(payload["power"]["schemes"]) == set(ee.SCHEMES)
    for sums in payload["power"]["schemes"].values():
        assert len(sums) == 2 and all(np.isfinite(s["mean_ee"]) and s["mean_ee"] > 0 for s in sums)
    hist = payload["convergence"]["3"]["dynamic_ee_tunable"]["history"]
    assert len(hist) == 3 and np.all(np.diff(hist) >= -1e-5 * hist[-1])
    assert len(payload["orderings"]) == 2 * len(ee.ORDERINGS)
    for sums in payload["power"]["schemes"].values():  # held-out beside in-sample, orderings on held-out
        assert all(s["held_out"]["scored_on"] == "held-out" and s["held_out"]["drops"] == 2 for s in sums)
        assert all(np.isfinite(s["gap"]) for s in sums)
    o = payload["orderings"][0]
    a = payload["power"]["schemes"][o["a"]][0]
    assert o["ee_a"] == a["held_out"]["mean_ee"] != a["mean_ee"]
    # at 30 dBm the EE-oriented design beats the SE-oriented one (which spends the full budget)
    r = {(o["name"], o["p_max_dbm"]): o for o in payload["orderings"]}
    assert r[("EE-oriented >= SE-oriented (dynamic)", 30.0)]["ratio"] > 1.5
    png = (out / "ee.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Fig. 2" in (out / "ee.md").read_text()
    assert not [p for p in os.listdir(out) if ".tmp" in p]


def test_orderings_and_monotone_helpers():
    sweep = {"powers_dbm": [0.0], "schemes": {
        "dynamic_ee_tunable": [{"mean_ee": 10.0}], "static_ee_tunable": [{"mean_ee": 8.0}],
        "fixed_antenna": [{"mean_ee": 9.0}], "dynamic_se_tunable": [{"mean_ee": 10.0 * (1 + 1e-7)}]}}
    rows = {r["name"]: r for r in ee.orderings(sweep)}
    assert rows["dynamic >= static"]["holds"] and not rows["static >= fixed antenna"]["holds"]
    assert rows["EE-oriented >= SE-oriented (dynamic)"]["holds"]  # a tie within rounding
    assert "tunable >= fixed coupling (dynamic)" not in rows  # scheme not run
    mono = ee.monotone_histories({4: {"static_ee_tunable": {"history": [1.0, 2.0, 1.5]}}})
    assert mono[0]["non_decreasing"] is False and mono[0]["worst_drop"] == -0.5


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["ee", "--drops", "0"], "positive integer"),
        (["ee", "--figures", "nope"], "invalid choice"),
        (["ee", "--powers-dbm", "x"], "expected a power in dBm"),
        (["ee", "--powers-dbm", "nan"], "finite power"),
        (["ee", "--lengths", "-3"], "positive"),
        (["ee", "--coupling-steps", "x"], "expected int, got 'x'"),
        (["ee", "--initial", "random"], "invalid choice"),
        # solver flags are checked by DesignOptions at parse time (messages name the field, range and unit)
        (["ee", "--fixed-split", "1.5"], "fixed_split must be a finite number >= 0 and <= 1, got 1.5"),
        (["ee", "--coupling-steps", "-1"], "coupling_steps must be >= 0, got -1"),
        (["ee", "--outer-iterations", "0"], "outer_iterations must be >= 1, got 0"),
        (["ee", "--grid-spacing", "-0.1"], "grid_spacing must be a finite number > 0 [m], got -0.1"),
    ],
)
def test_bad_arguments_exit_2(argv, needle, capsys):
    assert_usage_error(argv, needle, capsys)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["ee", "--grid-spacing", "0.1", "--grid-points", "9"], "set grid_points or grid_spacing, not both"),
        (["ee", "--num-elements", "5000"], "exceeds length_x"),
        (["ee", "--elements", "4000"], "exceeds length_x"),
        (["ee", "--lengths", "0.01"], "exceeds length_x"),
        (["ee", "--held-out-drops", "-1"], "--held-out-drops must be >= 0"),
        (["ee", "--held-out-seed", "0"], "--held-out-seed must differ from --seed"),
    ],
)
def test_invalid_scenarios_are_user_errors(argv, needle, tmp_path, capsys):
    out = tmp_path / "x"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and err[0].startswith("jaxpass ee: error:")
    assert not out.exists()


def test_cli_defaults_are_the_design_options():
    import argparse

    from jaxpass.experiments.cli_args import options_from_args
    from jaxpass.optimize.energy import DesignOptions

    parser = argparse.ArgumentParser()
    ee.add_command(parser.add_subparsers())
    args = parser.parse_args(["ee"])
    assert options_from_args(args, DesignOptions, ee.DESIGN_FLAGS) == DesignOptions()
    args = parser.parse_args(["ee", "--coupling-steps", "0", "--initial", "multistart", "--grid-points", "33"])
    assert options_from_args(args, DesignOptions, ee.DESIGN_FLAGS) == DesignOptions(
        coupling_steps=0, initial="multistart", grid_points=33)


def test_run_scheme_times_the_design_and_reports_progress(capsys):
    from jaxpass.config import PassConfig
    from jaxpass.optimize.energy import DesignOptions

    cfg = PassConfig.energy_efficiency(num_pinches=4, num_users=3)  # shapes no other test here compiles
    users = ee.drops(cfg, 2, 0)
    opts = DesignOptions(outer_iterations=2, coupling_steps=1, grid_points=65)
    r = ee.run_scheme(cfg, users, "static_ee_tunable", opts, progress=True)
    assert r.seconds >= 0 and r.compile_seconds > 0 and r.summary()["ms_per_drop"] >= 0
    err = capsys.readouterr().err
    assert "static_ee_tunable N=4: outer 2/2" in err
    again = ee.run_scheme(cfg, users, "static_ee_tunable", opts, p_max=0.5)  # a new budget: no new compilation
    assert again.compile_seconds < 0.5 * r.compile_seconds

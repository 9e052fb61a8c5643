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
    sweep[4][12.0]["tt_start"], sweep[4][28.0]["tt_start"] = row(71.0), row(80.0)
    got = {(c.get("P_dbm"), c["check"]): c["holds"] for c in tt.checks(sweep)}
    assert got[(12.0, "tt_wmmse >= tt_start")] is False and got[(28.0, "tt_wmmse >= tt_start")] is True
    assert got[(12.0, "tt_wmmse >= ssca_thp")] is False and got[(28.0, "tt_wmmse >= ssca_thp")] is True
    assert got[(28.0, "tt_wmmse <= single_timescale")] is False and got[(12.0, "tt_wmmse <= single_timescale")] is True
    assert got[(None, "digital_mimo rises with P")] is False and got[(None, "tt_wmmse rises with P")] is True


def test_sigma_checks_kept_and_envelope_lines():
    rows = {"tt_wmmse": {"mean": 10.0, "per_block": [10.0, 10.0], "kept": ["final", "start"], "nonfinite_slots": [0, 2]},
            "tt_start": {"mean": 10.5, "per_block": [10.4, 10.6]}}
    (c,) = tt.sigma_checks({0.5: rows}, 4, 20.0)
    assert c["check"] == "tt_wmmse >= tt_start" and c["sigma_u"] == 0.5 and c["holds"] is False
    assert "K=4 P=20 sigma_u=0.5 tt_wmmse >= tt_start" in tt.checks_line([c])
    line = tt.kept_line({20.0: rows}, "K = 4: ")
    assert line.startswith("K = 4: ") and "tt_wmmse 1 of 2" in line and line.endswith("left out: 2.")
    env = {"K": 6, "P_dbm": 20.0, "total": {"mean": 3.0}, "envelope": {"mean": 2.5}, "diff_mean": 0.5, "diff_se": 0.1}
    assert "total - envelope = +0.50 ± 0.10 (paired over 16 blocks)" in tt.envelope_line(env, 16)


def test_scored_reuses_a_scorer_only_for_equal_options():
    """``_scored`` computes each distinct scorer once: a reused entry must hold that scorer's own rates
    (checked against held_out_rate), and different precoders must give different rates."""
    s = tt.quick_settings()
    cfg = tt.scenario(4, 12.0)
    homes = tt.block_homes(cfg, 2, 0)
    X = np.broadcast_to(np.asarray(uniform_positions(cfg)), (2,) + uniform_positions(cfg).shape)
    ev = dict(key=jax.random.key(s.held_out_seed), num_slots=3)
    rzf = s.ssca.replace(short_term="rzf")
    scorers = {"wider": (rzf.replace(sigma_u=2.0), None), "rzf": (rzf, None),  # other slots: recomputed
               "ssca_short_term": (s.ssca.replace(short_term="rzf"), None)}  # equal to "rzf", another object
    row = tt._scored(cfg, X, homes, ev, scorers, "ssca_short_term", 0.0)
    ref = np.asarray(ssca.held_out_rate(cfg, X, homes, rzf, **ev))
    np.testing.assert_allclose(row["same_positions"]["rzf"], ref, rtol=1e-6)
    np.testing.assert_allclose(row["same_positions"]["ssca_short_term"], ref, rtol=1e-6)
    assert row["per_block"] == row["same_positions"]["ssca_short_term"]
    assert np.max(np.abs(np.asarray(row["same_positions"]["wider"]) - ref)) > 1e-3 * np.max(ref)


def test_paired_difference_its_split_and_verdicts():
    rows = {"a": {"mean": 10.1, "per_block": [10.0, 10.2, 10.1], "scored_with": "wmmse",
                  "same_positions": {"rzf": [9.9, 10.0, 10.0]}},
            "b": {"mean": 10.0, "per_block": [9.8, 10.1, 10.1], "scored_with": "rzf"},
            "c": {"mean": 3.0}}
    got = tt.paired(rows, "a", "b")
    np.testing.assert_allclose(got["diff_mean"], 0.1)
    np.testing.assert_allclose(got["diff_se"], np.std([0.2, 0.1, 0.0], ddof=1) / np.sqrt(3))
    np.testing.assert_allclose(got["positions_part"], np.mean([0.1, -0.1, -0.1]))  # RZF at a's vs at b's positions
    np.testing.assert_allclose(got["precoder_part"] + got["positions_part"], got["diff_mean"])
    assert "precoder_part" not in tt.paired(rows, "b", "a") and tt.paired(rows, "a", "c") == {}
    assert tt.verdict(True, {}) == "holds" and tt.verdict(False, {}) == "fails"
    assert tt.verdict(False, {"diff_mean": -0.05, "diff_se": 0.03}) == "tie"     # within 2 standard errors
    assert tt.verdict(False, {"diff_mean": -0.07, "diff_se": 0.03}) == "fails"
    assert tt.verdict(False, {"diff_mean": -5e-4, "diff_se": 0.0}) == "tie"      # below float32 resolution
    line = tt.checks_line([{"K": 4, "P_dbm": 12.0, "check": "x >= y", "verdict": "tie", "diff_mean": -0.05,
                            "diff_se": 0.03},
                           {"K": 4, "check": "x rises with P", "verdict": "fails"},
                           {"K": 6, "P_dbm": 20.0, "check": "x >= z", "verdict": "holds"}])
    assert line.startswith("Checks: 1 of 3 hold; 1 ties") and "K=4 P=12 x >= y (-0.050 ± 0.030)" in line
    assert line.endswith("1 fail: K=4 x rises with P")


def test_convergence_and_precoder_lines():
    by_p = {12.0: {"tt_wmmse": {"converged_iteration": [3, -1], "seconds": 10.0}},
            16.0: {"tt_wmmse": {"converged_iteration": [5, 4], "seconds": 2.0}}}
    line = tt.convergence_line(by_p, blocks=2, iterations=10)  # 2 s / (2 blocks x 10 iterations) = 0.1 s each
    assert "in 3 of 4 block runs, after 4.0 iterations on average (median 4, max 5): 400 ms per block" in line
    assert "10 iterations take 1.00 s per block (batched over 2 blocks, compilation excluded)" in line
    assert tt.convergence_line({12.0: {"ssca_thp": {}}}, 2, 10) == ""
    rows = {"tt_kdl": {"mean": 2.0, "per_block": [2.0, 2.0], "scored_with": "ssca_short_term",
                       "same_positions": {"rzf": [1.5, 1.5], "ssca_short_term": [2.0, 2.0]}},
            "ssca_thp": {"mean": 1.0, "per_block": [1.0, 1.0], "scored_with": "rzf"}}
    (line,) = tt.precoder_lines({4: {12.0: rows}})
    assert line.startswith("K = 4: ") and "12 dBm +1.000 = +0.500 + +0.500 bps/Hz" in line


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
    rows = ["tt_wmmse", "tt_start", "ssca_thp", "digital_mimo", "uniform_wmmse", "single_timescale"]
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
        for row in ("tt_wmmse", "tt_start", "ssca_thp"):  # the same positions, every precoder
            r = point[row]
            assert set(r["same_positions"]) == {"wmmse", "rzf", "ssca_short_term"}
            assert r["per_block"] == r["same_positions"][r["scored_with"]]
        assert point["ssca_thp"]["scored_with"] == "rzf" and point["tt_wmmse"]["scored_with"] == "wmmse"
        for row in ("tt_wmmse", "ssca_thp"):  # SSCA kept the better of its start and final iterate
            r = point[row]
            assert len(r["kept"]) == 2 and set(r["kept"]) <= {"final", "start"} and r["nonfinite_slots"] == [0, 0]
            for k, a, b in zip(r["kept"], r["validation_start"], r["validation_final"]):
                assert (k == "final") == (b >= a)
        assert point["single_timescale"]["mean"] > point["uniform_wmmse"]["mean"]  # re-tuned per slot vs even spread
    for row in ("uniform_wmmse", "digital_mimo", "single_timescale"):  # more power, more rate, on the same slots
        assert sweep["P=28"][row]["mean"] > sweep["P=12"][row]["mean"]
    assert list(payload["sigma_study"]) == ["sigma_u=0.5"] and payload["step_time"]["median_s"] > 0
    assert {c["verdict"] for c in payload["checks"]} <= {"holds", "tie", "fails"}
    names = {c["check"] for c in payload["checks"]}
    assert {"tt_wmmse >= tt_start", "tt_wmmse >= ssca_thp"} <= names
    assert any(c.get("sigma_u") == 0.5 and c["check"] == "tt_wmmse >= tt_start" for c in payload["checks"])
    env = payload["envelope"]
    assert (env["K"], env["P_dbm"]) == (4, 28.0) and env["total"]["per_block"] == sweep["P=28"]["tt_wmmse"]["per_block"]
    assert np.isfinite(env["diff_mean"]) and "Envelope mode (K = 4, P = 28 dBm" in text
    assert "SSCA returned its final iterate" in text
    assert all("diff_se" in c for c in payload["checks"] if "P_dbm" in c)
    assert (out / "two_timescale.md").read_text().startswith("Two-timescale design")
    assert (out / "two_timescale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, needle", [(["--num-users", "0"], "--num-users"),
                                          (["--sigma-study", "-1"], "positive"),
                                          (["--tau", "0"], "tau must be"),
                                          (["--init", "random"], "invalid choice"),
                                          (["--powers-dbm", "x"], "--powers-dbm")])
def test_bad_ssca_flags_are_usage_errors(argv, needle, capsys):
    assert_usage_error(["ssca", *argv], needle, capsys)


@pytest.mark.parametrize("argv, needle", [(["--short-term-net", "missing.npz"], "missing.npz: no such file"),
                                          (["--short-term-net", "{file}"], "not a short-term network"),
                                          (["--short-term-dir", "{file}"], "is not a folder"),
                                          (["--short-term-steps", "3"], "needs --short-term-dir")])
def test_bad_short_term_flags_are_one_line_errors(argv, needle, tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("")
    argv = [a.replace("{file}", str(f)) for a in argv]
    assert main(["ssca", "--quick", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and not (tmp_path / "o").exists()

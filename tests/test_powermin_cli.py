"""``jaxpass powermin``: tiny happy paths (experiments, Monte-Carlo check) and bad arguments (exit 2)."""

import json
import os

import pytest
from conftest import assert_usage_error
from scipy.stats import norm

from jaxpass.cli import main


def test_powermin_blockage_and_layouts_write_json_md_png(tmp_path, capsys):
    out = tmp_path / "pm"
    assert main(["powermin", "--quick", "--only", "blockage", "layouts", "--drops", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Power vs blockage rate" in text and "within 1%" in text and "Layouts" in text
    payload = json.loads((out / "powermin.json").read_text())
    rows = payload["blockage"]["rows"]
    assert [r["blockage_rate"] for r in rows] == [0.05, 0.1, 0.2, 0.3]
    for r in rows:
        assert r["proposed"]["mean_w"] <= r["center"]["mean_w"] * (1 + 1e-6)
        assert r["proposed"]["mean_w"] <= r["exhaustive"]["mean_w"] * 1.01
    assert [c["kind"] for c in payload["layouts"]["cases"]] == ["left", "diagonal"]
    assert all(0 <= x <= 10 for c in payload["layouts"]["cases"] for x in c["proposed_x"])
    assert (out / "powermin.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "powermin.md").read_text().startswith("Power vs blockage rate")
    assert not [p for p in os.listdir(out) if ".tmp" in p]


def test_powermin_check_mc_writes_z_scores(tmp_path, capsys):
    out = tmp_path / "mc"
    assert main(["powermin", "--check-mc", "--drops", "2", "--samples", "4000", "--correlation", "0.3",
                 "--starts", "1", "--iterations", "5", "--out", str(out)]) == 0
    assert "Monte-Carlo check" in capsys.readouterr().out
    mc = json.loads((out / "powermin_mc.json").read_text())
    assert mc["samples"] == 4000 and mc["correlation"] == 0.3
    assert len(mc["z"]) == 2 and len(mc["z"][0]) == 4
    # formula and Monte Carlo agree: Bonferroni over the 2 x 4 (drop, user) z-scores, family-wise
    # false alarm 1e-3, so |z| < 3.84; measured over 2000 keys (4000 samples, 8 z-scores): 0.05 %
    # of keys exceed it (|z| < 3 for all 8 would fail on 2 %)
    assert mc["max_abs_z"] == max(abs(z) for row in mc["z"] for z in row)
    assert mc["max_abs_z"] < norm.isf(1e-3 / (2 * 8))
    for row in mc["formula"]:
        assert all(abs(v - 10.0) < 1e-3 for v in row)  # closed-form beamformer meets Gamma = 10 dB


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["powermin", "--drops", "0"], "positive integer"),
        (["powermin", "--only", "nope"], "invalid choice"),
        (["powermin", "--samples", "-3"], "positive integer"),
        (["powermin", "--starts", "0"], "starts must be >= 1"),  # flags validated by LbfgsOptions
        (["powermin", "--memory", "0"], "memory must be >= 1"),
    ],
)
def test_powermin_bad_arguments_exit_2(argv, needle, capsys):
    assert_usage_error(argv, needle, capsys)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["powermin", "--blockage-rate", "-1"], "blockage_rate must be >= 0"),
        (["powermin", "--check-mc", "--correlation", "1.5"], "--correlation must lie in [-1, 1]"),
        (["powermin", "--correlation", "0.2"], "--check-mc only"),
        (["powermin", "--snr-db", "nan"], "--snr-db must be finite"),
    ],
)
def test_powermin_user_errors_one_line_exit_2(argv, needle, tmp_path, capsys):
    out = tmp_path / "x"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not out.exists()


def test_powermin_solver_flags_come_from_the_options_classes():
    from jaxpass.cli import build_parser
    from jaxpass.experiments import powermin
    from jaxpass.optimize.power_min import LbfgsOptions

    args = build_parser().parse_args(["powermin"])
    assert (args.starts, args.iterations, args.memory) == (LbfgsOptions().starts, LbfgsOptions().iterations,
                                                           LbfgsOptions().memory)
    settings = powermin._settings_from_args(build_parser().parse_args(["powermin", "--quick", "--starts", "2"]))
    assert settings.lbfgs == LbfgsOptions(starts=2) and settings.drops == powermin.QUICK.drops

import json
import os
import subprocess
import sys

import pytest
from conftest import assert_usage_error

from jaxpass.cli import main


def test_demo_writes_table_json_and_png(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--drops", "4", "--wmmse-iterations", "5", "--tune-steps", "20", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("MRT", "ZF", "RZF", "WMMSE", "tuned + ZF", "ms/drop"):
        assert name in text
    payload = json.loads((out / "demo.json").read_text())
    assert payload["drops"] == 4 and set(payload["methods"]) == {"MRT", "ZF", "RZF", "WMMSE", "tuned + ZF"}
    zf, mrt = payload["methods"]["ZF"]["mean"], payload["methods"]["MRT"]["mean"]
    assert zf > mrt > 0  # interference-limited MRT is far below ZF at 10 dBm
    assert payload["methods"]["tuned + ZF"]["mean"] > zf + 10  # phase-aligned pinches
    png = (out / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not [p for p in os.listdir(out) if ".tmp" in p]


def test_demo_on_a_tdma_preset_skips_zf(tmp_path, capsys):
    out = tmp_path / "pb"
    assert main(["demo", "--preset", "power_min_blockage", "--drops", "3", "--wmmse-iterations", "3", "--out", str(out)]) == 0
    payload = json.loads((out / "demo.json").read_text())
    assert "ZF" not in payload["methods"] and "WMMSE" in payload["methods"]
    assert not any("tuned" in m for m in payload["methods"])  # tuning is the K <= N sum-rate problem
    assert "note: no tuned-positions row (--tune-steps 300 ignored)" in capsys.readouterr().out  # said, not silent


def test_output_paths_checked_before_computing(tmp_path, monkeypatch, capsys):
    """An empty --out, or a folder where a result file goes, is refused before anything runs or prints."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "D" / "tune.json").mkdir(parents=True)
    for argv, needle in [(["demo", "--out", ""], "jaxpass demo: error: --out must name a path, got an empty string"),
                         (["tune", "--out", "D", "--steps", "2"],
                          f"jaxpass tune: error: --out {tmp_path / 'D'}: tune.json is a directory where a result "
                          "file goes")]:
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and needle in err and len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["D"] and os.listdir(tmp_path / "D") == ["tune.json"]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["demo", "--drops", "0"], "positive integer"),
        (["demo", "--preset", "nope"], "invalid choice"),
        (["demo", "--seed", "x"], "invalid int"),
        (["demo", "--tune-steps", "1.5"], "invalid int"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, needle, capsys):
    assert_usage_error(argv, needle, capsys)


def test_negative_tune_steps_is_a_user_error(tmp_path, capsys):
    assert main(["demo", "--tune-steps", "-1", "--out", str(tmp_path / "x")]) == 2
    assert "--tune-steps must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_invalid_physics_is_a_user_error(tmp_path, capsys):
    code = main(["demo", "--power-dbm", "nan", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "power_dbm must be finite" in err[0]
    assert not (tmp_path / "x").exists()


def test_help_everywhere_and_python_dash_m():
    for argv in (["--help"], ["demo", "--help"]):
        res = subprocess.run([sys.executable, "-m", "jaxpass", *argv], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and "usage: jaxpass" in res.stdout

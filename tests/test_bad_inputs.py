"""A table of bad inputs across the API and the CLI, with the error each gives (docs/bad_inputs.md).

Every case must fail fast, before any heavy computation, with a clear message:
API cases raise the given exception type with the message substring; CLI cases
(``jaxpass.cli.main(argv)`` in-process) exit with status 2 and one ``error:``
line on stderr holding the substring, no traceback. None may be a silent zero,
a NaN or a false pass. docs/bad_inputs.md lists the same cases by name.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpass as jp
from jaxpass.cli import main
from jaxpass.optimize import energy, mimo, mm_pdd, power_min, tune_positions

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "bad_inputs.md"

JB = jp.PassConfig.joint_beamforming
EE = jp.PassConfig.energy_efficiency
PB = jp.PassConfig.power_min_blockage
#: four users of the JB preset's 20 x 10 m area, the first one far outside (x = 500 m)
FAR = np.array([[500.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
INSIDE = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])


class Case(NamedTuple):
    name: str
    call: object  # API: a no-argument callable; CLI: argv (``{d}`` is the case's folder)
    expected: object  # API: an exception type; CLI: 2 (the exit status)
    needle: str  # a substring of the message
    files: dict | None = None  # CLI: file name -> CSV text or an array to np.save


def _object_array():
    arr = np.empty((2, 2), object)
    arr[:] = 1.0
    return arr


API = [
    # PassConfig: physical ranges (jaxpass.config.RANGES)
    Case("power_dbm 1000 dBm", lambda: JB(power_dbm=1000.0), ValueError,
         "PassConfig.power_dbm must lie in [-100, 60] dBm, got 1000"),
    Case("power_dbm -200 dBm", lambda: JB(power_dbm=-200.0), ValueError, "power_dbm must lie in [-100, 60] dBm"),
    Case("noise_dbm +10 dBm", lambda: JB(noise_dbm=10.0), ValueError, "noise_dbm must lie in [-200, 0] dBm, got 10"),
    Case("circuit_power_dbm 100 dBm", lambda: EE(circuit_power_dbm=100.0), ValueError,
         "circuit_power_dbm must lie in [-100, 60] dBm"),
    Case("carrier_freq 10 THz", lambda: JB(carrier_freq=1e13), ValueError,
         "carrier_freq must lie in [1e+08, 1e+12] Hz"),
    Case("carrier_freq 1 MHz", lambda: JB().replace(carrier_freq=1e6), ValueError, "carrier_freq must lie in"),
    Case("height 20 km", lambda: JB(height=2e4), ValueError, "height must lie in (0, 10000] m, got 20000"),
    Case("length_x 100 km", lambda: JB(length_x=1e5), ValueError, "length_x must lie in (0, 10000] m"),
    Case("width_y inf", lambda: JB(width_y=float("inf")), ValueError, "width_y must be finite"),
    Case("min_spacing negative", lambda: JB(min_spacing=-1.0), ValueError, "min_spacing must be > 0"),
    Case("beta 2 (a gain > 1 at 1 m)", lambda: JB(beta=2.0), ValueError, "beta must lie in (0, 1]"),
    Case("loss 1000 dB/m", lambda: JB(loss_db_per_m=1000.0), ValueError, "loss_db_per_m must lie in [0, 100] dB/m"),
    Case("blockage_rate 1000 /m", lambda: PB(blockage_rate=1000.0), ValueError,
         "blockage_rate must lie in [0, 100] 1/m"),
    Case("n_eff 20", lambda: JB(n_eff=20.0), ValueError, "n_eff must lie in [1, 10]"),
    Case("stacked power with one 300 dBm entry",
         lambda: JB().replace(power_dbm=np.array([10.0, 300.0])), ValueError, "power_dbm must lie in [-100, 60] dBm"),
    # PassConfig: types, named at construction
    Case("power_dbm as text", lambda: JB(power_dbm="10"), TypeError,
         "PassConfig.power_dbm must be a real number, got str '10'"),
    Case("height as text (replace)", lambda: JB().replace(height="tall"), TypeError,
         "PassConfig.height must be a real number"),
    Case("carrier_freq as text", lambda: JB(carrier_freq="30e9"), TypeError, "carrier_freq must be a real number"),
    Case("power_dbm complex", lambda: JB(power_dbm=10 + 1j), TypeError, "power_dbm must be a real number"),
    Case("waveguide_y with text", lambda: EE(waveguide_y=("2.5",)), TypeError, "waveguide_y must be a real number"),
    Case("num_users 2.5", lambda: JB(num_users=2.5), TypeError, "num_users must be an int"),
    Case("unknown field", lambda: JB(power=1.0), TypeError, "unknown PassConfig field(s): ['power']"),
    Case("waveguide_y outside the area", lambda: EE(waveguide_y=(7.0,)), ValueError, "waveguide_y must lie in"),
    # drivers: users outside the area [0, length_x] x [0, width_y] (concrete arrays)
    Case("tune_positions: user at x = 500 m",
         lambda: tune_positions(JB(), FAR, key=jax.random.key(0)), ValueError,
         "users: user 0 at (500, 2) m lies outside the area [0, 20] x [0, 10] m"),
    Case("tune_positions: drop 1 has y < 0",
         lambda: tune_positions(JB(), np.stack([INSIDE, INSIDE * [1, -1]]), key=jax.random.key(0)), ValueError,
         "users: drop 1, user 0 at (1, -2) m lies outside"),
    Case("mm_pdd: user outside", lambda: mm_pdd.mm_pdd(JB(), FAR), ValueError, "lies outside the area"),
    Case("mimo.digital: user outside", lambda: mimo.digital(JB(), FAR), ValueError, "lies outside the area"),
    Case("power_min.pgd: user outside",
         lambda: power_min.pgd(PB(), jnp.asarray([[5.0, 5.0], [5.0, 5.0], [5.0, 5.0], [50.0, 5.0]]), 10.0),
         ValueError, "users: user 3 at (50, 5) m lies outside the area [0, 10] x [0, 10] m"),
    Case("energy.static_design: user outside",
         lambda: energy.static_design(EE(), np.array([[INSIDE[:, 0], [1.0, 1.0, 1.0, 9.0]]]).transpose(0, 2, 1)),
         ValueError, "users: drop 0, user 3 at (7, 9) m lies outside the area [0, 20] x [0, 5] m"),
    # drivers: powers and SNR targets
    Case("energy.static_design: p_max 1 MW",
         lambda: energy.static_design(EE(), INSIDE[None] / [1, 2], p_max=1e6), ValueError,
         "p_max must lie in [0, 1000] W (60 dBm), got 1e+06"),
    Case("power_min.pgd: SNR target 200 dB", lambda: power_min.pgd(PB(), INSIDE, 1e20), ValueError,
         "snr_target (linear Gamma_k) must be a finite number in [0, 1e+10]"),
    # samplers: shapes
    Case("sample_users shape (-1,)", lambda: jp.sample_users(jax.random.key(0), JB(), (-1,)), ValueError,
         "shape must hold sizes >= 0, got (-1,)"),
    Case("sample_users shape 2.5", lambda: jp.sample_users(jax.random.key(0), JB(), 2.5), TypeError,
         "shape must be an int or a tuple of ints, got 2.5"),
]

CLI = [
    # physical ranges on the command line
    Case("demo --power-dbm 1000", ["demo", "--power-dbm", "1000"], 2,
         "PassConfig.power_dbm must lie in [-100, 60] dBm, got 1000"),
    Case("demo --power-dbm 300", ["demo", "--power-dbm", "300", "--preset", "two_timescale"], 2,
         "power_dbm must lie in [-100, 60] dBm, got 300"),
    Case("demo --power-dbm abc", ["demo", "--power-dbm", "abc"], 2, "invalid float value: 'abc'"),
    Case("tune --power-dbm -500", ["tune", "--power-dbm", "-500"], 2, "power_dbm must lie in [-100, 60] dBm"),
    Case("powermin --check-mc --snr-db 200", ["powermin", "--check-mc", "--snr-db", "200"], 2,
         "--snr-db must lie in [-50, 100] dB"),
    Case("powermin --snr-db -80", ["powermin", "--snr-db", "-80"], 2, "--snr-db must lie in [-50, 100] dB (jaxpass.config.RANGES['snr_db']), got -80"),
    Case("powermin --blockage-rate 1000", ["powermin", "--blockage-rate", "1000"], 2,
         "blockage_rate must lie in [0, 100] 1/m"),
    Case("ee --powers-dbm 100", ["ee", "--powers-dbm", "0", "100"], 2,
         "expected a finite number in [-100, 60] dBm (jaxpass.config.RANGES['power_dbm']), got 100"),
    Case("ee --lengths 1e5", ["ee", "--lengths", "10", "1e5"], 2, "length_x must lie in (0, 10000] m"),
    # --users means a FILE only in tune; ee/powermin take --num-users K
    Case("ee --users FILE", ["ee", "--users", "u.csv"], 2,
         "--users takes no user file in `jaxpass ee` (got 'u.csv'): use --num-users K"),
    Case("powermin --users 2.5", ["powermin", "--users", "2.5"], 2,
         "--users takes no user file in `jaxpass powermin`"),
    Case("ee --users 0", ["ee", "--users", "0"], 2, "must be a positive integer, got 0"),
    Case("ee --num-users 0", ["ee", "--num-users", "0"], 2, "expected a positive integer, got 0"),
    Case("powermin --num-users 3 --users 3", ["powermin", "--num-users", "3", "--users", "3"], 2,
         "give --num-users only"),
    # tune --users FILE
    Case("tune CSV typo in line 1 (1,2x)", ["tune", "--users", "{d}/u.csv"], 2,
         "line 1 is neither numbers nor a header naming the columns ('x,y'): '1,2x'",
         {"u.csv": "1,2x\n3,4\n5,6\n7,8\n"}),
    Case("tune CSV header not naming the columns", ["tune", "--users", "{d}/u.csv"], 2,
         "line 1 is neither numbers nor a header", {"u.csv": "a,b\n1,2\n3,4\n"}),
    Case("tune CSV non-numeric line 3", ["tune", "--users", "{d}/u.csv"], 2,
         "line 3 is not numeric: '3,four'", {"u.csv": "x,y\n1,2\n3,four\n"}),
    Case("tune CSV header only", ["tune", "--users", "{d}/u.csv"], 2, "has a header but no rows",
         {"u.csv": "X, Y\n"}),
    Case("tune CSV ragged rows", ["tune", "--users", "{d}/u.csv"], 2, "same number of numeric columns",
         {"u.csv": "1,2\n3,4,5,6\n"}),
    Case("tune CSV user at x = 500 m", ["tune", "--users", "{d}/u.csv"], 2,
         "drop 0, user 0 at (500, 2) m lies outside the area [0, 20] x [0, 10] m",
         {"u.csv": "500,2\n3,4\n"}),
    Case("tune NPY user below y = 0", ["tune", "--users", "{d}/u.npy"], 2,
         "drop 1, user 0 at (1, -2) m lies outside the area [0, 20] x [0, 10] m (length_x x width_y); 4 user(s) outside", {"u.npy": np.stack([INSIDE, INSIDE * [1, -1]])}),
    Case("tune NPY complex", ["tune", "--users", "{d}/u.npy"], 2, "must be real numbers (int or float), got dtype complex",
         {"u.npy": INSIDE + 1j}),
    Case("tune NPY object array", ["tune", "--users", "{d}/u.npy"], 2, "Object arrays cannot be loaded",
         {"u.npy": _object_array()}),
    Case("tune NPY bool array", ["tune", "--users", "{d}/u.npy"], 2, "got dtype bool",
         {"u.npy": np.ones((3, 2), bool)}),
    Case("tune NPY wrong shape", ["tune", "--users", "{d}/u.npy"], 2, "users must have shape (K, 2) or (B, K, 2), got (3, 3)",
         {"u.npy": np.ones((3, 3))}),
    Case("tune NPY NaN", ["tune", "--users", "{d}/u.npy"], 2, "contain non-finite values",
         {"u.npy": np.array([[1.0, np.nan], [2.0, 3.0]])}),
    Case("tune --users with --drops", ["tune", "--users", "{d}/u.csv", "--drops", "3"], 2,
         "--drops samples users from --preset; it cannot be combined with --users FILE", {"u.csv": "1,2\n3,4\n"}),
    Case("tune --users .txt", ["tune", "--users", "{d}/u.txt"], 2, "users file must be .npy or .csv",
         {"u.txt": "1,2\n"}),
    Case("tune --users missing file", ["tune", "--users", "{d}/none.csv"], 2, "users file not found"),
    Case("tune --users a directory", ["tune", "--users", "{d}"], 2, "is a directory; give a .npy or .csv file"),
    Case("tune CSV renamed .npy", ["tune", "--users", "{d}/u.npy"], 2,
         "is not a NumPy .npy file (no .npy header); a text file of 'x,y' rows must be named .csv",
         {"u.npy": "1,2\n3,4\n"}),
    # EE designs
    Case("ee --dinkelbach-iterations 0", ["ee", "--dinkelbach-iterations", "0"], 2,
         "dinkelbach_iterations must be >= 1, got 0"),
]

CASES = API + CLI


def test_the_table_has_at_least_40_distinct_cases():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)
    cli_inputs = {(repr(c.call), repr(c.files)) for c in CLI}  # the same argv with different files is distinct
    assert len(cli_inputs) == len(CLI)


@pytest.mark.parametrize("case", API, ids=[c.name for c in API])
def test_api_bad_input(case):
    with pytest.raises(case.expected) as err:
        case.call()
    assert case.needle in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def _write(folder: pathlib.Path, files):
    for name, content in (files or {}).items():
        path = folder / name
        if isinstance(content, str):
            path.write_text(content)
        else:
            np.save(path, content, allow_pickle=content.dtype == object)


@pytest.mark.parametrize("case", CLI, ids=[c.name for c in CLI])
def test_cli_bad_input(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, case.files)
    argv = [a.replace("{d}", str(tmp_path)) for a in case.call] + ["--out", str(tmp_path / "out")]
    try:
        code = main(argv)
        usage = False
    except SystemExit as exc:  # argparse: usage lines, then one error line
        code, usage = exc.code, True
    err = capsys.readouterr().err
    assert code == case.expected == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1 and case.needle in errors[0], err
    assert usage or len(lines) == 1, err
    assert not (tmp_path / "out").exists()


def test_doc_lists_every_case():
    text = DOC.read_text()
    rows = [ln for ln in text.splitlines() if re.match(r"^\| \d+ \|", ln)]
    assert len(rows) == len(CASES)
    for case in CASES:
        assert f"| {case.name} |" in text, case.name


# --------------------------------------------------------------- beside the table
@pytest.mark.parametrize("command", ["ee", "powermin"])
def test_users_int_is_a_deprecated_alias_of_num_users(command, capsys):
    from jaxpass.cli import build_parser
    from jaxpass.experiments.cli_args import num_users_from_args

    parser = build_parser()
    assert num_users_from_args(parser.parse_args([command, "--num-users", "3"]), command) == 3
    assert capsys.readouterr().err == ""
    assert num_users_from_args(parser.parse_args([command, "--users", "5"]), command) == 5
    assert capsys.readouterr().err == f"jaxpass {command}: warning: --users K is deprecated, use --num-users K\n"
    assert num_users_from_args(parser.parse_args([command]), command) == (4 if command == "ee" else None)


def test_csv_header_names_the_columns(tmp_path):
    from jaxpass.experiments.tune import load_users

    for header in ("x,y", " X , Y ", "x0,y0,x1,y1"):
        path = tmp_path / "u.csv"
        body = "1,2,3,4\n5,6,7,8\n" if "x1" in header else "1,2\n3,4\n"
        path.write_text(f"# users\n{header}\n{body}")
        users = load_users(str(path))
        assert users.shape == ((2, 2, 2) if "x1" in header else (1, 2, 2)), header
        assert users[0, 0].tolist() == [1.0, 2.0]


def test_monte_carlo_check_reports_fail_on_a_nonfinite_standard_error(tmp_path, monkeypatch, capsys):
    from jaxpass.experiments import powermin

    def fake(cfg, settings, *, samples, correlation, runner=None):
        return {"all_finite": False, "nonfinite_pairs": 4, "samples": samples, "correlation": correlation,
                "drops": 1, "snr_db": settings.snr_db, "formula": [[1e30] * 4], "mc_mean": [[float("inf")] * 4],
                "mc_std_err": [[float("inf")] * 4], "z": [[float("nan")] * 4], "fraction_abs_z_below_3": 0.0,
                "max_abs_z": float("nan"), "target_linear": 10.0, "wall_s": 0.0}

    monkeypatch.setattr(powermin, "check_monte_carlo", fake)
    code = main(["powermin", "--check-mc", "--drops", "1", "--out", str(tmp_path / "mc")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "jaxpass powermin: FAIL: Monte-Carlo check not valid: 4 of 1 x 4 (drop, user) pairs" in err
    saved = json.loads((tmp_path / "mc" / "powermin_mc.json").read_text())  # the evidence of the failure is kept
    assert saved["all_finite"] is False and saved["nonfinite_pairs"] == 4


def test_monte_carlo_z_is_nan_not_zero_when_the_standard_error_is_infinite():
    """200 dB target (refused by the CLI): the API marks the check invalid instead of |z| < 3 everywhere."""
    import dataclasses

    from jaxpass.experiments import powermin

    settings = dataclasses.replace(powermin.QUICK, drops=1, snr_db=200.0)
    mc = powermin.check_monte_carlo(powermin.base_config(num_users=2), settings, samples=64)
    assert mc["all_finite"] is False and mc["nonfinite_pairs"] == 2
    assert mc["fraction_abs_z_below_3"] == 0.0 and all(np.isnan(mc["z"][0]))


def test_sample_users_takes_an_int_batch_shape():
    key = jax.random.key(0)
    assert jp.sample_users(key, JB(), 3).shape == (3, 4, 2)
    assert np.array_equal(jp.sample_users(key, JB(), 3), jp.sample_users(key, JB(), (3,)))
    assert jp.sample_users(key, JB(), np.int64(2)).shape == (2, 4, 2)


def test_csv_with_a_byte_order_mark_is_read(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark; it is skipped, header or not."""
    from jaxpass.experiments.tune import load_users

    for text in ("x,y\n1,2\n3,4\n", "1,2\n3,4\n"):
        path = tmp_path / "u.csv"
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert load_users(str(path)).tolist() == [[[1.0, 2.0], [3.0, 4.0]]], text


def test_ee_held_out_drops_checked_before_the_header(tmp_path, capsys):
    assert main(["ee", "--held-out-drops", "-1", "--out", str(tmp_path / "out")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "jaxpass ee: error: --held-out-drops must be >= 0, got -1"

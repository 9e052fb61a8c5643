"""JB Table I experiment, the sweeps and the ``jaxpass reproduce`` / ``jaxpass tune`` commands."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_usage_error

from jaxpass.cli import main
from jaxpass.experiments import table1
from jaxpass.experiments.tune import load_users


def _png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000


def test_reproduce_table1_quick(tmp_path, capsys):
    out = tmp_path / "t1"
    assert main(["reproduce", "table1", "--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tuning (ZF)" in text and "49.76" in text and "Acceptance" in text
    payload = json.loads((out / "table1.json").read_text())
    rows = {r["row"]: r for r in payload["tables"]["L=8"]}
    assert list(rows) == list(table1.OPTIMISATION_ROWS)
    for r in rows.values():
        assert len(r["rates"]) == 4 and np.isfinite(r["mean"]) and r["seconds_per_drop"] > 0 and r["compile_s"] > 0
    uniform = rows["uniform_wmmse"]["mean"]
    for name in ("tune_zf", "tune_rzf", "tune_wmmse", "tune_kkt"):
        assert rows[name]["feasible_fraction"] == 1.0
        assert rows[name]["mean"] > uniform + 10.0  # phase-aligned layouts vs evenly spread pinches
        assert rows[name]["start_rate_mean"] > uniform
    assert rows["mm_pdd"]["feasible_fraction"] == 1.0 and rows["mm_pdd"]["paper"] == 49.76
    assert "converged_fraction" in rows["mm_pdd"] and rows["mm_pdd"]["float64"] is True
    assert rows["hybrid_mimo"]["unit_modulus_error"] < 1e-5 and rows["hybrid_mimo"]["paper"] == 32.14
    assert rows["digital_mimo"]["feasible_fraction"] is None
    assert payload["settings"]["drops"] == 4 and payload["paper_only"]["L=8"]
    assert [a["row"] for a in payload["acceptance"]] == ["tune_zf", "tune_rzf", "tune_wmmse", "tune_kkt"]
    md = (out / "table1.md").read_text()
    assert "| uniform + ZF |" in md and "KDL-Transformer" in md
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_acceptance_marks_each_condition():
    def row(name, rates, feasible, seconds):
        return table1.RowResult(name, table1.ROWS[name], 8, np.asarray(rates), seconds, 1.0, np.asarray(feasible))

    rows = [row("uniform_zf", [60.0, 60.0], [True, True], 0.01),
            row("tune_zf", [83.0, 84.0], [True, True], 0.2),
            row("tune_rzf", [81.0, 82.0], [True, True], 0.2),  # mean below 82
            row("tune_wmmse", [83.0, 84.0], [True, False], 0.2),  # one infeasible
            row("tune_kkt", [83.0, 84.0], [True, True], 4.5)]  # 2.25 s per drop
    status = {a["row"]: a["status"] for a in table1.acceptance({8: rows}, table1.Settings())}
    assert status == {"tune_zf": "PASS", "tune_rzf": "FAIL", "tune_wmmse": "FAIL", "tune_kkt": "FAIL"}


def test_reproduce_sweeps_subset(tmp_path, capsys):
    out = tmp_path / "sw"
    argv = ["reproduce", "sweeps", "--quick", "--figures", "power", "--methods", "uniform_wmmse", "tuning",
            "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "[sweeps 4/4]" in captured.err and "sum rate [bps/Hz] vs P [dBm]" in captured.out
    payload = json.loads((out / "sweeps.json").read_text())
    power = payload["figures"]["power"]
    assert power["x"] == [10.0, 24.0] and set(power["methods"]) == {"uniform_wmmse", "tuning"}
    tuned, uniform = power["methods"]["tuning"]["mean"], power["methods"]["uniform_wmmse"]["mean"]
    assert all(t > u for t, u in zip(tuned, uniform))
    assert tuned[1] > tuned[0] and uniform[1] > uniform[0]  # more power, more rate
    assert _png(out / "sweeps.png")


@pytest.fixture
def users_files(tmp_path):
    csv = tmp_path / "users.csv"
    csv.write_text("x0,y0,x1,y1,x2,y2,x3,y3\n1,2,5,5,10,8,15,3\n2,9,8,1,12,4,18,6\n")
    npy = tmp_path / "users.npy"
    np.save(npy, np.loadtxt(csv, delimiter=",", skiprows=1).reshape(2, 4, 2))
    return csv, npy


def test_load_users_formats(users_files, tmp_path):
    csv, npy = users_files
    a, b = load_users(str(csv)), load_users(str(npy))
    assert a.shape == (2, 4, 2) and np.array_equal(a, b)
    one = tmp_path / "one.csv"
    one.write_text("# a comment\n1.5,2\n3,4\n")
    assert load_users(str(one)).tolist() == [[[1.5, 2.0], [3.0, 4.0]]]


def test_tune_cli_writes_npz_json_png(users_files, tmp_path, capsys):
    csv, npy = users_files
    out = tmp_path / "tune"
    base = ["tune", "--steps", "5", "--starts", "1", "--out", str(out)]
    assert main(base + ["--users", str(csv)]) == 0
    summary = json.loads((out / "tune.json").read_text())
    assert summary["drops"] == 2 and summary["K"] == 4 and summary["all_feasible"] is True
    assert summary["sum_rate"]["mean"] > 70.0  # phase-aligned starts (uniform pinches give ~60)
    data = np.load(out / "tune.npz")
    assert data["positions"].shape == (2, 4, 8) and data["W"].shape == (2, 4, 4) and data["history"].shape == (2, 6)
    assert np.array_equal(data["users"], load_users(str(csv)))
    assert _png(out / "tune.png")
    assert main(base + ["--users", str(npy), "--plot-drop", "1"]) == 0  # same shapes: compiled once
    assert np.allclose(np.load(out / "tune.npz")["sum_rate"], data["sum_rate"], rtol=1e-5)
    assert "wrote figure" in capsys.readouterr().out
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize(
    "content,extra,needle",
    [
        (None, [], "not found"),
        ("1,2,3\n4,5,6\n", [], "columns"),
        ("1,2\nx,y\n", [], "cannot read"),
        ("1,2\n3,4\n", ["--plot-drop", "3"], "--plot-drop"),
        ("1,2\n3,4\n5,6\n7,8\n9,1\n", [], "K <= N"),
        ("1,2\nnan,4\n", [], "non-finite"),
    ],
)
def test_tune_cli_bad_input_exits_2(tmp_path, capsys, content, extra, needle):
    path = tmp_path / "u.csv"
    if content is not None:
        path.write_text(content)
    code = main(["tune", "--users", str(path), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["reproduce"], "required"),
        (["reproduce", "table1", "--drops", "0"], "positive integer"),
        (["reproduce", "table1", "--rows", "nope"], "invalid choice"),
        (["reproduce", "sweeps", "--figures", "nope"], "invalid choice"),
        (["tune", "--beamformer", "mrt"], "invalid choice"),
        (["tune", "--steps", "0"], "steps must be >= 1, got 0"),
        (["tune", "--learning-rate", "-1"], "learning_rate must be a finite number > 0 [m], got -1.0"),
    ],
)
def test_bad_arguments_exit_2(argv, needle, capsys):
    assert_usage_error(argv, needle, capsys)


def test_interference_free_rate_matches_a_permutation_search_in_float64():
    """Independent NumPy reference: every waveguide -> user permutation, rate of the best one."""
    import itertools

    cfg = table1.table_config(8)
    users = np.asarray(table1.table_drops(cfg, 5, 3), np.float64)
    P, beta, s2, h = (float(v) for v in (cfg.power, cfg.beta, cfg.noise_power, cfg.height))
    lanes = np.asarray(cfg.lane_y, np.float64)
    got = np.asarray(jax.vmap(lambda u: table1.interference_free_rate(cfg, u))(jnp.asarray(users, jnp.float32)))
    for d, u in enumerate(users):
        best = max(sum(np.log2(1 + P / 4 * beta * 8 / (s2 * (h ** 2 + (u[k, 1] - lanes[n]) ** 2))) for n, k in enumerate(p))
                   for p in itertools.permutations(range(4)))
        np.testing.assert_allclose(got[d], best, rtol=2e-6)
    with pytest.raises(ValueError, match="K == N"):
        table1.interference_free_rate(cfg.replace(num_users=3), jnp.zeros((3, 2)))

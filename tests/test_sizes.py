"""Beyond the papers' size: the tune CLI at K = N > 7 (Murty's k-best assignments), sizes from the command line."""

import json

import jax
import numpy as np

import jaxpass as jp
from jaxpass.cli import main
from jaxpass.optimize import assignment as asg
from jaxpass.optimize import positions as pos


def test_tune_cli_runs_a_size_beyond_enumeration(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["tune", "--num-users", "9", "--num-waveguides", "9", "--num-pinches", "4", "--drops", "2",
                 "--steps", "3", "--starts", "1", "--assignments", "3", "--out", "big", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "K=9, N=9, L=4" in out
    payload = json.loads((tmp_path / "big" / "tune.json").read_text())
    assert (payload["K"], payload["N"], payload["L"]) == (9, 9, 4)


def test_num_users_must_match_a_users_file(tmp_path, capsys):
    users = np.asarray(jp.sample_users(jax.random.key(0), jp.PassConfig.joint_beamforming(), (1,)))
    np.save(tmp_path / "u.npy", users)
    code = main(["tune", "--users", str(tmp_path / "u.npy"), "--num-users", "5", "--out", str(tmp_path / "o")])
    assert code == 2 and "--num-users 5 does not match the 4 users" in capsys.readouterr().err


def test_exact_assignment_starts_are_the_best_by_the_geometric_score():
    """K = N = 9 (362880 maps): the aligned starts use Murty's 3 best maps, never worse than the random sample's."""
    cfg = jp.PassConfig.joint_beamforming(num_users=9, num_waveguides=9, num_pinches=4)
    users = jp.sample_users(jax.random.key(3), cfg)
    cost = asg.geometric_cost(cfg.lane_y.astype(users.dtype), cfg.height, users)
    score = lambda maps: np.asarray(cost)[np.arange(9)[None], np.asarray(maps)].sum(-1)
    exact = jax.jit(lambda u: pos.best_maps(cfg, u, 3))(users)
    sampled = pos.best_maps(cfg, users, 3, "sampled")
    assert np.all(score(exact) <= score(sampled) + 1e-5)
    _, best = asg.best_assignment(cost)
    np.testing.assert_allclose(score(exact)[0], float(best), rtol=1e-6)
    labels = pos.candidate_labels(cfg, pos.TuneOptions(assignments=3, spacings=(0.0,), random_starts=0))
    assert labels == ["aligned[a=0,s=0]", "aligned[a=1,s=0]", "aligned[a=2,s=0]", "uniform"]

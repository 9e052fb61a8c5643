"""``--devices N`` / ``--distributed`` on the commands that batch drops (jaxpass.experiments.cli_args).

The in-process checks run on this process's devices (one CPU device unless
``XLA_FLAGS`` says otherwise); the 4-device run is a subprocess with
``--xla_force_host_platform_device_count=4``.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxpass.cli import main

TINY_TUNE = ["tune", "--drops", "5", "--steps", "3", "--starts", "1"]


def _assert_devices_refused(argv, name, devices, out, capsys):
    """``jaxpass <argv>`` with a bad ``--devices``: one line naming the local device count, exit 2, no ``out``."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    local, platform = jax.local_device_count(), jax.local_devices()[0].platform
    assert captured.err == (f"jaxpass {name}: error: --devices must be between 1 and {local} "
                            f"(the number of local {platform} devices), got {devices}\n")
    assert captured.out == ""
    assert not out.exists()


@pytest.mark.parametrize("command", [["demo"], ["tune"], ["powermin", "--quick"], ["ee"]])
@pytest.mark.parametrize("devices", ["0", "999"])
def test_bad_device_count_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, command, devices):
    out = tmp_path / "out"
    _assert_devices_refused([*command, "--devices", devices, "--out", str(out)], command[0], devices, out, capsys)


def test_parallel_flags_in_help(capsys):
    for command in ("demo", "tune", "powermin", "ee"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "--devices N" in text and "--distributed" in text, command


SCRIPT = """
import sys
import jax
from jaxpass.cli import main
argv = sys.argv[1:]
code = main([*argv, "--quiet", "--devices", "4", "--out", "d4"]) or main([*argv, "--quiet", "--devices", "1", "--out", "d1"])
jax.process_index = lambda: 1  # as process 1 of a --distributed run: the same command, silenced, nothing written
sys.exit(code or main([*argv, "--devices", "1", "--out", "other"]))
"""


def test_tune_on_4_devices_equals_1_device_and_only_process_0_writes(tmp_path):
    """``--devices 4`` and ``--devices 1`` write the same numbers; a process other than 0 prints and writes nothing."""
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu", "TMPDIR": str(tmp_path / "tmp")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *TINY_TUNE], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # two runs print (header, summary, three "wrote" lines); the third (process 1) prints nothing, no progress
    assert proc.stdout.count("jaxpass tune:") == 2 and proc.stdout.count("wrote ") == 6, proc.stdout
    assert "[tune]" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["d1", "d4", "tmp"]  # no "other" folder
    assert os.listdir(tmp_path / "tmp") == []  # process 1's private output folder is removed
    a, b = np.load(tmp_path / "d4" / "tune.npz"), np.load(tmp_path / "d1" / "tune.npz")
    assert sorted(a.files) == ["W", "history", "positions", "start_rate", "sum_rate", "users"]
    for name in a.files:
        assert a[name].shape == b[name].shape, name
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=0, err_msg=name)
    ja, jb = (json.loads((tmp_path / d / "tune.json").read_text()) for d in ("d4", "d1"))
    assert ja["drops"] == jb["drops"] == 5
    np.testing.assert_allclose(ja["sum_rate"]["per_drop"], jb["sum_rate"]["per_drop"], rtol=1e-6, atol=0)
    for d in ("d4", "d1"):
        assert json.loads((tmp_path / d / "run.json").read_text())["argv"][-5:] == ["--quiet", "--devices", d[1:],
                                                                                     "--out", d]


NEW_COMMANDS = [["reproduce", "table1"], ["reproduce", "sweeps"], ["ssca"], ["train"]]


@pytest.mark.parametrize("command", NEW_COMMANDS)
@pytest.mark.parametrize("devices", ["0", "999"])
def test_bad_device_count_on_reproduce_ssca_train(tmp_path, capsys, command, devices):
    """Checked with --out, before any computation: one line, exit 2, nothing written (no compilation)."""
    out = tmp_path / "out"
    quick = ["--quick"] if command[0] != "train" else []
    _assert_devices_refused([*command, *quick, "--devices", devices, "--out", str(out)], command[0], devices, out,
                            capsys)


def test_parallel_flags_in_help_of_reproduce_ssca_train(capsys):
    for command in NEW_COMMANDS:
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = capsys.readouterr().out
        assert "--devices N" in text and "--distributed" in text, command


@pytest.mark.parametrize("command, flag", [(["reproduce", "table1", "--drops"], "--drops"),
                                           (["reproduce", "sweeps", "--drops"], "--drops"),
                                           (["ssca", "--quick", "--blocks"], "--blocks"),
                                           (["demo", "--drops"], "--drops"), (["tune", "--drops"], "--drops"),
                                           (["powermin", "--drops"], "--drops"),
                                           (["train", "--stream", "--train-drops", "100000000", "--batch-size"], "--batch-size")])
def test_memory_check_counts_the_share_of_one_device(tmp_path, capsys, monkeypatch, command, flag):
    """The refusal's suggested size grows with the memories the batch is sharded over (memory.shards)."""
    from jaxpass.experiments import memory

    monkeypatch.setenv(memory.ENV_AVAILABLE, "600M")
    suggested = {}
    for shards in (1, 8):
        monkeypatch.setattr(memory, "shards", lambda mesh, n=shards: n)
        assert main([*command, "100000000", "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"; use {flag} <= " in err, err
        suggested[shards] = int(err.split(f"; use {flag} <= ")[1].split()[0])
    assert 7 * suggested[1] <= suggested[8] <= 9 * suggested[1], suggested
    assert not (tmp_path / "out").exists()


def test_train_devices_go_to_the_data_mesh(tmp_path, capsys, monkeypatch):
    """``jaxpass train --devices N`` is ``jaxpass.learn.train.train(devices=N)``; without it, all devices (None)."""
    from jaxpass.learn import train as T

    seen = []

    def fake_train(cfg, options, **kwargs):
        seen.append(kwargs["devices"])
        raise ValueError("stopped before training")

    monkeypatch.setattr(T, "train", fake_train)
    for argv in (["--devices", "1"], []):
        assert main(["train", *argv, "--out", str(tmp_path / "out")]) == 2
    assert seen == [1, None]
    assert capsys.readouterr().err == "jaxpass train: error: stopped before training\n" * 2
    assert not (tmp_path / "out").exists()

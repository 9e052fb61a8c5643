"""Result sets (``jaxpass.runtime.io.result_set``), the ``--out`` check and interrupts of the CLI.

The subprocess tests run ``python -m jaxpass demo`` (or a small driver around
``jaxpass.cli.main``) and deliver SIGINT / SIGTERM / SIGKILL at a known phase:
during an XLA compilation (the driver prints ``COMPILING`` as it starts one)
or while the result files are being written (the driver makes a writer
sleep), and check the exit status, the one stderr line and the folder.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxpass.cli import main
from jaxpass.runtime import io

ROOT = Path(__file__).resolve().parents[1]


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _snapshot(folder) -> dict:
    """``{name: bytes}`` of every entry (files only; a folder shows as ``None``)."""
    return {p.name: (p.read_bytes() if p.is_file() else None) for p in sorted(Path(folder).iterdir())}


def _previous_set(out) -> dict:
    """A committed set in ``out`` (demo.json, demo.md, demo.png, run.json), as a snapshot."""
    with io.result_set(out, "demo", argv=["jaxpass", "demo", "--out", str(out)], seed=7):
        io.write_json(out / "demo.json", {"run": "previous"})
        io.write_text(out / "demo.md", "previous\n")
        with io.atomic_path(out / "demo.png") as tmp:
            Path(tmp).write_bytes(b"\x89PNG previous")
    return _snapshot(out)


# --------------------------------------------------------------------- unit tests of result_set
def test_a_set_is_staged_then_committed_with_a_manifest(tmp_path):
    out = tmp_path / "out"
    with io.result_set(out, "demo", argv=["jaxpass", "demo", "--seed", "3"], seed=3) as rs:
        io.write_json(out / "a.json", {"x": 1})
        io.write_text(out / "sub" / "b.md", "hello\n")
        with io.atomic_path(out / "c.bin") as tmp:
            Path(tmp).write_bytes(b"\x00\x01")
        assert sorted(p.name for p in out.iterdir()) == [rs.tmp.name]  # staged: nothing visible yet
        assert rs.tmp.name.startswith(f".jaxpass.tmp-{os.getpid()}-")
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "c.bin", "run.json", "sub"]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["command"] == "demo" and manifest["seed"] == 3
    assert manifest["argv"] == ["jaxpass", "demo", "--seed", "3"]
    assert manifest["jax_version"] and manifest["jaxpass_version"] and manifest["device"] == manifest["env"]["device"]
    assert set(manifest["files"]) == {"a.json", "sub/b.md", "c.bin"}
    for name, info in manifest["files"].items():
        assert info["sha256"] == _sha(out / name) and info["bytes"] == (out / name).stat().st_size
    assert io.read_result_set(out)["files"] == manifest["files"]
    assert (out / "sub" / "b.md").read_text() == "hello\n"


def test_an_error_inside_keeps_the_previous_set_and_leaves_no_temporaries(tmp_path):
    out = tmp_path / "out"
    before = _previous_set(out)
    with pytest.raises(RuntimeError, match="boom"), io.result_set(out, "demo"):
        io.write_json(out / "demo.json", {"run": "new"})
        io.write_text(out / "demo.md", "new\n")
        raise RuntimeError("boom")
    assert _snapshot(out) == before  # same names, same bytes: no temporaries, nothing mixed
    assert json.loads((out / "demo.json").read_text()) == {"run": "previous"}
    io.read_result_set(out)


def test_a_reader_rejects_a_mixed_set(tmp_path):
    out = tmp_path / "out"
    _previous_set(out)
    (out / "demo.md").write_text("from another run\n")
    with pytest.raises(ValueError, match="demo.md: SHA-256 differs"):
        io.read_result_set(out)
    (out / "run.json").unlink()
    with pytest.raises(ValueError, match="run.json: missing"):
        io.read_result_set(out)


def test_a_new_set_replaces_files_and_keeps_others(tmp_path):
    out = tmp_path / "out"
    _previous_set(out)
    (out / "notes.txt").write_text("mine\n")
    with io.result_set(out, "demo"):
        io.write_json(out / "demo.json", {"run": "new"})
    assert json.loads((out / "demo.json").read_text()) == {"run": "new"}
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "demo.md").read_text() == "previous\n"
    manifest = io.read_result_set(out)
    assert set(manifest["files"]) == {"demo.json"}
    # run.json describes every file of the folder: the earlier set's files it kept, with their command line
    assert set(manifest["kept"]) == {"demo.md", "demo.png"} and manifest["others"] == ["notes.txt"]
    assert manifest["kept"]["demo.md"]["argv"] == ["jaxpass", "demo", "--out", str(out)]
    with io.result_set(out, "demo --check"):  # a third set: the first set's files are still described
        io.write_json(out / "check.json", {"run": "check"})
    manifest = io.read_result_set(out)
    assert set(manifest["files"]) == {"check.json"} and set(manifest["kept"]) == {"demo.json", "demo.md", "demo.png"}
    assert manifest["kept"]["demo.md"]["command"] == "demo" and manifest["kept"]["demo.json"]["command"] == "demo"
    (out / "demo.md").write_text("edited\n")  # a kept file that changed: the folder no longer matches
    with pytest.raises(ValueError, match="demo.md: SHA-256 differs"):
        io.read_result_set(out)


def test_an_empty_or_failed_set_into_a_new_folder_creates_nothing(tmp_path):
    out = tmp_path / "a" / "b"
    with io.result_set(out, "demo"):
        pass
    assert not (tmp_path / "a").exists()
    with pytest.raises(KeyError), io.result_set(out, "demo"):
        io.write_text(out / "x.md", "x")
        raise KeyError("x")
    assert not (tmp_path / "a").exists()


def test_stale_temporaries_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    (out / f".jaxpass.tmp-{dead_pid}-abc123").mkdir()
    (out / f".jaxpass.tmp-{dead_pid}-abc123" / "demo.json").write_text("{}")  # a SIGKILLed run's set
    (out / f".demo.json.{dead_pid}-abcdefgh.tmp.json").write_text("")  # a SIGKILLed atomic_path write
    live = out / f".jaxpass.tmp-{os.getpid()}-live00"
    live.mkdir()  # a running process: kept
    old = out / f".jaxpass.tmp-{os.getpid()}-old000"
    old.mkdir()
    os.utime(old, (time.time() - io.STALE_AFTER_S - 60,) * 2)  # a live pid but too old: a reused pid
    (out / "results.json").write_text("{}")
    with io.result_set(out, "demo"):
        io.write_text(out / "demo.md", "new\n")
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, "demo.md", "results.json", "run.json"])


def test_a_writer_is_a_set_on_its_own_and_joins_an_open_one(tmp_path):
    from jaxpass import PassConfig
    from jaxpass.experiments import demo
    from jaxpass.geometry import uniform_positions

    cfg = PassConfig.joint_beamforming()
    users = np.random.default_rng(0).uniform(0, 4, (2, cfg.num_users, 2))
    results = [demo.MethodResult("MRT", np.array([1.0, 2.0]), 0.1, 0.5)]
    out = tmp_path / "w"
    paths = demo.write_demo(cfg, results, users, uniform_positions(cfg), out, preset_name="joint_beamforming", seed=5)
    assert paths == {k: os.path.join(out, f"demo.{e}") for k, e in (("json", "json"), ("markdown", "md"),
                                                                      ("figure", "png"))}
    manifest = io.read_result_set(out)
    assert manifest["command"] == "demo" and manifest["seed"] == 5
    assert set(manifest["files"]) == {"demo.json", "demo.md", "demo.png"}
    with io.result_set(out, "outer", seed=9):
        io.write_text(out / "extra.md", "x\n")
        demo.write_demo(cfg, results, users, uniform_positions(cfg), out, preset_name="joint_beamforming", seed=5)
        assert not (out / "extra.md").exists()  # the writer joined the open set: nothing committed yet
    manifest = io.read_result_set(out)
    assert manifest["command"] == "outer" and set(manifest["files"]) == {"demo.json", "demo.md", "demo.png",
                                                                          "extra.md"}


def test_an_interrupt_during_the_commit_waits_until_the_set_is_in(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _previous_set(out)
    real_replace, seen = os.replace, []

    def replace(src, dst):  # an interrupt handler runs while the first file is being moved in
        if io._COMMIT["active"] and not seen:
            seen.append(io.after_commit(lambda: seen.append((io.abandon_open_sets(), _snapshot(out)))))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert io.after_commit(lambda: None) is False  # no commit in progress: the handler goes on at once
    with io.result_set(out, "demo"):
        io.write_json(out / "demo.json", {"run": "new"})
        io.write_text(out / "demo.md", "new\n")
    assert seen[0] is True  # deferred
    state, snapshot = seen[1]
    assert state == "written" and sorted(snapshot) == ["demo.json", "demo.md", "demo.png", "run.json"]
    assert json.loads(snapshot["demo.json"]) == {"run": "new"}
    assert set(io.read_result_set(out)["files"]) == {"demo.json", "demo.md"}


def test_check_out_dir_messages(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match=r"file: exists and is not a directory$"):
        io.check_out_dir(f)
    with pytest.raises(ValueError, match=r"file/sub: cannot create it, .*file is not a directory$"):
        io.check_out_dir(f / "sub")
    io.check_out_dir(tmp_path / "new" / "deeper")  # creatable: fine, and nothing is created
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------- --out checked before any work
@pytest.mark.parametrize("argv", [
    ["demo"], ["tune"], ["ee"], ["powermin", "--quick"], ["powermin", "--check-mc"], ["ssca", "--quick"],
    ["train"], ["reproduce", "table1", "--quick"], ["reproduce", "sweeps", "--quick"],
])
def test_out_pointing_at_a_file_fails_at_once(argv, tmp_path, capsys):
    f = tmp_path / "x"
    f.write_text("keep me")
    t0 = time.perf_counter()
    assert main([*argv, "--out", str(f)]) == 2
    assert time.perf_counter() - t0 < 3  # no computation, no compilation
    captured = capsys.readouterr()
    assert captured.out == ""  # before the command's first line
    assert captured.err == f"jaxpass {argv[0]}: error: --out {f}: exists and is not a directory\n"
    assert f.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_default_out_of_reproduce_is_checked_too(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "table1_out").write_text("a file")  # the default folder: table1_out[/quick], not benchmarks/results
    assert main(["reproduce", "table1", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err == (f"jaxpass reproduce: error: --out {tmp_path / 'table1_out' / 'quick'}: cannot create "
                   f"it, {tmp_path / 'table1_out'} is not a directory\n")  # paths are made absolute


# --------------------------------------------------------------------- interrupts (subprocesses)
DEMO = ["demo", "--drops", "2", "--wmmse-iterations", "2", "--tune-steps", "0", "--quiet"]

#: prints COMPILING (stdout) when an XLA compilation starts, then runs the CLI
COMPILE_DRIVER = """
import sys, jax.stages
real = jax.stages.Lowered.compile
def compile(self, *a, **k):
    print("COMPILING", flush=True)
    return real(self, *a, **k)
jax.stages.Lowered.compile = compile
from jaxpass.cli import main
sys.exit(main(sys.argv[1:]))
"""

#: no computation (synthetic results); the markdown writer writes, prints WRITING and sleeps
WRITE_DRIVER = """
import sys, time
import numpy as np
from jaxpass.experiments import demo
from jaxpass.geometry import uniform_positions
def run_demo(cfg, drops, seed, wmmse_iterations, tune_steps, **kw):
    users = np.random.default_rng(0).uniform(0, 4, (drops, cfg.num_users, 2))
    return [demo.MethodResult("MRT", np.ones(drops), 0.1, 0.5)], users, uniform_positions(cfg), None
real = demo.write_text
def write_text(path, text):
    real(path, text)
    print("WRITING", flush=True)
    time.sleep(60)
demo.run_demo, demo.write_text = run_demo, write_text
from jaxpass.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _start(argv, driver=None):
    env = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE="false")  # a real compilation, not a cache load
    cmd = [sys.executable, "-c", driver] if driver else [sys.executable, "-m", "jaxpass"]
    return subprocess.Popen([*cmd, *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _interrupt(proc, marker: str, sig):
    """Wait for a stdout line starting with ``marker``, send ``sig``; ``(returncode, stderr)``."""
    while True:
        line = proc.stdout.readline()
        if not line:
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"exited ({proc.returncode}) before {marker!r}: {err[-2000:]}")
        if line.startswith(marker):
            break
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_sigint_during_compilation_exits_130_and_keeps_the_previous_set(tmp_path):
    out = tmp_path / "out"
    before = _previous_set(out)
    code, err = _interrupt(_start([*DEMO, "--out", str(out)], COMPILE_DRIVER), "COMPILING", signal.SIGINT)
    assert (code, err) == (130, "jaxpass demo: interrupted; previous results kept\n")
    assert _snapshot(out) == before  # no temporary folder or file, same bytes
    io.read_result_set(out)


def test_sigterm_into_a_new_folder_exits_143_and_writes_nothing(tmp_path):
    out = tmp_path / "new" / "out"
    code, err = _interrupt(_start([*DEMO, "--out", str(out)]), "jaxpass demo:", signal.SIGTERM)
    assert (code, err) == (143, "jaxpass demo: interrupted; nothing written\n")
    assert not (tmp_path / "new").exists()


def test_sigint_while_writing_keeps_the_previous_set(tmp_path):
    out = tmp_path / "out"
    before = _previous_set(out)
    code, err = _interrupt(_start([*DEMO, "--out", str(out)], WRITE_DRIVER), "WRITING", signal.SIGINT)
    assert (code, err) == (130, "jaxpass demo: interrupted; previous results kept\n")
    assert _snapshot(out) == before
    io.read_result_set(out)


def test_sigkill_while_writing_leaves_the_previous_set_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "out"
    before = _previous_set(out)
    proc = _start([*DEMO, "--out", str(out)], WRITE_DRIVER)
    code, _ = _interrupt(proc, "WRITING", signal.SIGKILL)
    assert code == -signal.SIGKILL
    left = sorted(p.name for p in out.iterdir() if p.name not in before)
    assert len(left) == 1 and left[0].startswith(f".jaxpass.tmp-{proc.pid}-")  # the killed run's staging folder
    assert {k: v for k, v in _snapshot(out).items() if k in before} == before
    io.read_result_set(out)  # a reader still sees the complete previous set
    with io.result_set(out, "demo"):  # the next run into the folder removes it
        io.write_text(out / "demo.md", "next\n")
    assert sorted(p.name for p in out.iterdir()) == sorted(before)

"""Every script in examples/ runs end to end (so examples never rot)."""

import pathlib
import subprocess
import sys

import pytest

#: run by tests/test_parallel.py::test_two_processes_match_one, which also checks its results
ELSEWHERE = {"multihost_local.py"}
EXAMPLES = sorted(p for p in (pathlib.Path(__file__).parent.parent / "examples").glob("*.py") if p.name not in ELSEWHERE)


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip()
    if script.name == "quickstart.py":  # prints the rates, then the feasibility after a gradient step
        lines = res.stdout.splitlines()
        assert lines[0].startswith("zf") and "bps/Hz" in lines[0]
        assert "feasible after a step: True" in lines[-1]

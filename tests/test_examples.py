"""Every script in examples/ runs end to end (so examples never rot)."""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip()
    if script.name == "quickstart.py":  # prints the rates, then the feasibility after a gradient step
        lines = res.stdout.splitlines()
        assert lines[0].startswith("zf") and "bps/Hz" in lines[0]
        assert "feasible after a step: True" in lines[-1]


def _readme_block(section: str) -> str:
    """The first Python block of the README section headed ``section``."""
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    return readme.split(f"## {section}\n", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


def _run(block: str) -> list:
    res = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.strip().splitlines()


def test_readme_api_example_runs():
    assert float(_run(_readme_block("API in ten lines"))[0]) > 10


def test_readme_execution_model_example_runs():
    """Tuned rates (kernel under the user's jit/vmap, then 10 dB more without recompiling), stacked scenarios."""
    tuned, tuned_20dbm, shape, *uniform = _run(_readme_block("One execution model"))
    assert 75 < float(tuned) < float(tuned_20dbm) and shape == "(3, 8)"
    assert [float(r) for r in uniform] == sorted(float(r) for r in uniform)  # more power, more rate


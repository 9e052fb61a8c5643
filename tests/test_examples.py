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


def test_quickstart_prints_rates():
    script = pathlib.Path(__file__).parent.parent / "examples" / "quickstart.py"
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    lines = res.stdout.splitlines()
    assert lines[0].startswith("zf") and "bps/Hz" in lines[0]
    assert "feasible after a step: True" in lines[-1]


def test_readme_api_example_runs():
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    res = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert float(res.stdout.strip().splitlines()[0]) > 10

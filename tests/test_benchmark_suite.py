"""Smoke test of the other benchmarks' quick runs (MM-PDD, power-min).

``python -m benchmarks --quick --only mm_pdd power_min`` exits 0 and
writes, per benchmark, ``<name>-<device>.json`` (the common envelope:
``benchmark``, ``schema_version``, ``quick``, ``env``, ``config``, ``records``
with finite metrics, ``ratios``, ``wall_s``) and its PNG. The throughput
benchmark's contract is checked in ``test_benchmarks.py``; the table1
benchmark wraps ``jaxpass reproduce table1``, checked in ``test_table1.py``, and
the energy benchmark ``jaxpass.experiments.ee.run_all``, checked in ``test_ee_cli.py``.
No timing assertions.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402

NAMES = ("mm_pdd", "power_min")


@pytest.mark.slow
def test_quick_runs_write_json_and_png(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", *NAMES, "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    device = common.device_name()
    for name in NAMES:
        assert f"# benchmark: {name}" in proc.stdout
        payload = json.loads((tmp_path / f"{name}-{device}.json").read_text())
        assert payload["benchmark"] == name and payload["quick"] is True, name
        assert payload["env"]["device"] == device and payload["wall_s"] > 0
        assert payload["records"], name
        for rec in payload["records"]:
            for key, v in rec["metrics"].items():
                assert isinstance(v, (int, float)) and math.isfinite(v), (name, rec["id"], key, v)
        for key, v in payload["ratios"].items():
            assert math.isfinite(v) and v > 0, (name, key, v)
        assert (tmp_path / f"{name}-{device}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]

"""The throughput benchmark: ``python -m benchmarks --quick --only throughput`` runs and honours its JSON contract.

The other benchmarks' quick runs are smoke-tested in ``test_benchmark_suite.py``
(table1's through ``jaxpass reproduce table1 --quick`` in ``test_table1.py``).

No timing assertions: the numbers depend on the machine. What is checked is
the contract documented in ``benchmarks/throughput.py`` (module docstring) and
``benchmarks/README.md``: exit code 0, ``throughput-<device>.json`` and the
PNG written, every ``metrics``/``ratios`` value a positive finite float,
``memory``/``accuracy`` values finite and >= 0 (or the field null).
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is a top-level folder, not part of the installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import common, throughput  # noqa: E402


def _positive_finite(v):
    return isinstance(v, float) and math.isfinite(v) and v > 0


def _finite_nonneg(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "throughput", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    return out, proc


@pytest.mark.slow
def test_quick_benchmark_writes_json_and_png_honouring_the_contract(quick_run):
    out, proc = quick_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    device = common.device_name()
    json_path = out / f"throughput-{device}.json"
    png_path = out / f"throughput-{device}.png"
    assert json_path.is_file(), sorted(p.name for p in out.iterdir())
    assert png_path.is_file()
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if ".tmp" in p.name]

    payload = json.loads(json_path.read_text())
    assert payload["benchmark"] == "throughput" and payload["schema_version"] == 1 and payload["quick"] is True
    assert payload["env"]["device"] == device
    assert payload["records"]

    for rec in payload["records"]:
        rid = rec["id"]
        assert rec["metrics"], rid
        for key, v in rec["metrics"].items():
            assert _positive_finite(v), (rid, key, v)
        for field in ("memory", "accuracy"):
            if rec[field] is not None:
                for key, v in rec[field].items():
                    assert v is None or _finite_nonneg(v), (rid, field, key, v)
    assert payload["ratios"]
    for key, v in payload["ratios"].items():
        assert _positive_finite(v), (key, v)


@pytest.mark.slow
def test_quick_benchmark_rows_and_compilation(quick_run):
    out, proc = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads((out / f"throughput-{common.device_name()}.json").read_text())
    config, records, ratios = payload["config"], payload["records"], payload["ratios"]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))

    # jp_jit rows: the explicit per-compilation CPU option, where the backend/jaxlib has it
    opts = config["jp_jit_compiler_options"]
    assert opts == throughput.jp_jit_options()
    with_jp_jit = opts is not None
    assert isinstance(config["xla_defaults_active"], bool)
    by = {(r["section"], r["impl"], r["params"].get("batch")): r for r in records}
    for B in config["batches"]:
        for impl in ("jaxpass", "naive_jax"):
            assert ("channel", impl, B) in by
        assert (("channel", "jp_jit", B) in by) == with_jp_jit
        assert (f"channel_jax_jit_over_jp_jit@B={B}" in ratios) == with_jp_jit
    for B in config["grad_batches"]:
        assert ("grad", "jaxpass", B) in by
        assert (("grad", "jp_jit", B) in by) == with_jp_jit
        assert (f"grad_jax_jit_over_jp_jit@B={B}" in ratios) == with_jp_jit
    assert any(r["section"] == "channel" and r["impl"] == "numpy_loop" for r in records)
    for key in ("wmmse_jaxpass_over_plain", "channel_jaxpass_over_numpy_loop",
                "channel_path_elements_over_numpy_sin"):
        assert key in ratios, key
    assert not [k for k in ratios if "default_xla" in k or "ynn_off" in k]
    assert config["ceiling_elements"] == max(config["batches"]) * config["K"] * config["N"] * config["L"]
    assert by[("ceiling", "numpy_sin", None)]["params"]["n"] == config["ceiling_elements"]

    # every row compiles with plain jax.jit except jp_jit, which carries the explicit option
    for r in records:
        if r["impl"] == "jp_jit":
            assert r["compiler_options"] == opts, r["id"]
        else:
            assert r["compiler_options"] is None, r["id"]

    statuses = {a["name"]: a["status"] for a in payload["acceptance"]}
    assert list(statuses) == [f"{name}@B={batch}" for name, _, _, batch, *_ in throughput.ACCEPTANCE]
    assert len(statuses) == 6 and set(statuses.values()) == {"not measured"}  # quick sizes
    assert "acceptance" in proc.stdout
    if with_jp_jit:
        assert "jax.jit/jp.jit" in proc.stdout
    assert "np.sin elements/s" in proc.stdout


def test_acceptance_block_marks_pass_and_below():
    """The acceptance block on synthetic records: informational statuses, no exception."""
    def rec(section, impl, batch, **metrics):
        return {"section": section, "impl": impl, "params": {"batch": batch}, "metrics": metrics}

    records = [rec("channel", "jaxpass", 16384, path_elements_per_s=6e8),
               rec("grad", "jaxpass", 4096, drop_steps_per_s=3e5),
               rec("wmmse", "jaxpass", 4096, drops_per_s=1e3),
               rec("channel", "jp_jit", 16384, path_elements_per_s=6.2e8),
               rec("grad", "jp_jit", 4096, drop_steps_per_s=4e5),
               rec("ceiling", "channel_jaxpass", 16384, path_elements_per_s=6e8)]
    ratios = {"wmmse_jaxpass_over_plain": 3.5, "channel_jax_jit_over_jp_jit@B=16384": 0.97,
              "grad_jax_jit_over_jp_jit@B=4096": 0.75, "channel_path_elements_over_numpy_sin": 0.4}
    rows = throughput.acceptance(records, ratios)
    assert [r["status"] for r in rows] == ["PASS", "BELOW", "PASS", "PASS", "BELOW", "PASS"]
    assert [r["value"] for r in rows] == [6e8, 3e5, 3.5, 0.97, 0.75, 0.4]
    text = throughput.acceptance_report(rows, quick=False)
    assert "PASS" in text and "BELOW" in text and "jax.jit/jp.jit" in text and "np.sin" in text
    # a ratio without its record (e.g. no jp_jit rows on this backend, or a quick run) is not measured
    assert [r["status"] for r in throughput.acceptance(records[:1], ratios)] == ["PASS"] + ["not measured"] * 5

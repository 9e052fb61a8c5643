"""A lean core: ``import jaxpass`` and position tuning need only jax, numpy and optax.

flax and orbax-checkpoint (the ``[learn]`` extra) and matplotlib (``[plot]``) are
blocked in a subprocess (``sys.modules[name] = None`` makes ``import name`` fail
as if it were not installed), which stands in for a fresh venv without extras
(too slow to build in CI). ``PassConfig`` is a registered dataclass, not a flax
struct, with the same static/traced split.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import jax
import pytest

import jaxpass as jp
from jaxpass.config import STATIC_FIELDS, TRACED_FIELDS

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("flax", "orbax", "matplotlib", "chex")


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600)


def test_import_jaxpass_loads_no_optional_dependency():
    out = _run("import sys, jaxpass\n"
               f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r})\n"
               "assert not loaded, loaded\n"
               "assert 'jaxpass.learn' not in sys.modules and 'jaxpass.plotting' not in sys.modules\n")
    assert out.returncode == 0, out.stderr


BLOCKED = """
import sys
for name in ("flax", "orbax", "matplotlib", "chex"):
    sys.modules[name] = None  # as if not installed: `import flax` raises ModuleNotFoundError
"""


def test_tuning_runs_without_flax_orbax_or_matplotlib():
    out = _run(BLOCKED + """
import jax, numpy as np
import jaxpass as jp
cfg = jp.PassConfig.joint_beamforming(num_users=2, num_waveguides=2, num_pinches=2)
users = jp.sample_users(jax.random.key(0), cfg)
res = jp.optimize.tune_positions(cfg, users, key=jax.random.key(1), steps=2, starts=1, assignments=0,
                                 spacings=(0.0,), random_starts=0)
assert res.positions.shape == (2, 2) and np.isfinite(float(res.sum_rate)), res
assert bool(jp.is_feasible(cfg, res.positions))
print("ok", float(res.sum_rate))
""")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")


@pytest.mark.parametrize("statement, extra", [("import jaxpass.learn", "learn"), ("jaxpass.learn", "learn"),
                                              ("from jaxpass.learn import train", "learn"),
                                              ("import jaxpass.plotting", "plot")])
def test_a_missing_extra_is_one_clear_line(statement, extra):
    out = _run(BLOCKED + f"""
import jaxpass
try:
    {statement}
except ImportError as err:
    print(str(err))
else:
    raise SystemExit("no error")
""")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'jaxpass[{extra}]'" in lines[0], out.stdout


def test_the_cli_without_the_learn_extra():
    """The other commands work; ``train`` / ``evaluate`` are listed and refused in one line naming the extra."""
    out = _run(BLOCKED + """
import contextlib, io
from jaxpass.cli import main
for argv in (["train", "--steps", "3"], ["evaluate", "--checkpoint", "x"]):
    assert main(argv) == 2, argv
text = io.StringIO()
with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
    main(["tune", "--help"])
assert "--steps" in text.getvalue()
""")
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines == [f"jaxpass {c}: error: jaxpass.learn needs flax, which is not installed: "
                     "pip install 'jaxpass[learn]'" for c in ("train", "evaluate")], out.stderr


def test_root_imports_only_the_core_and_optimize_eagerly():
    """``jaxpass/__init__.py``'s module-level imports stay below learn (``jp.learn`` is loaded on first use)."""
    tree = ast.parse((ROOT / "jaxpass" / "__init__.py").read_text())
    eager = set()
    for node in tree.body:  # module level only: the lazy ``__getattr__`` may import learn
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxpass"):
            eager |= {f"{node.module}.{a.name}" if node.module == "jaxpass" else node.module for a in node.names}
    parts = {name.split(".")[1] for name in eager}
    assert not parts & {"learn", "plotting", "experiments", "cli"}, sorted(parts)
    assert jp.learn.__name__ == "jaxpass.learn"  # still reachable as an attribute (flax is installed here)


def test_dependencies_and_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip() for d in project["dependencies"]}
    assert names == {"jax", "jaxlib", "numpy", "optax"}
    extras = project["optional-dependencies"]
    assert {d.split(">")[0] for d in extras["learn"]} == {"flax", "orbax-checkpoint"}
    assert [d.split(">")[0] for d in extras["plot"]] == ["matplotlib"]
    jax_range = next(d for d in project["dependencies"] if d.startswith("jax>"))[len("jax"):]
    assert extras["cuda"] == [f"jax[cuda12]{jax_range}"]
    assert "jaxpass[learn,plot]" in extras["dev"] and any(d.startswith("chex") for d in extras["dev"])


def test_no_runtime_module_imports_chex():
    hits = [str(p.relative_to(ROOT)) for p in (ROOT / "jaxpass").rglob("*.py")
            if any(isinstance(n, (ast.Import, ast.ImportFrom)) and "chex" in ast.dump(n)
                   for n in ast.walk(ast.parse(p.read_text())))]
    assert not hits, f"chex is a test dependency ([dev]) only: {hits}"


def test_config_is_a_registered_frozen_dataclass_with_the_same_split():
    cfg = jp.PassConfig.joint_beamforming()
    assert dataclasses.is_dataclass(cfg) and not hasattr(type(cfg), "_flax_dataclass")
    assert STATIC_FIELDS == ("num_users", "num_waveguides", "num_pinches", "radiation", "carrier_freq", "n_eff")
    assert set(TRACED_FIELDS) | set(STATIC_FIELDS) == {f.name for f in dataclasses.fields(cfg)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.power_dbm = 0.0
    leaves, treedef = jax.tree.flatten(cfg)
    assert len(leaves) == len(TRACED_FIELDS) - 1  # waveguide_y=None is an empty subtree
    assert jax.tree.unflatten(treedef, leaves) == cfg
    louder = cfg.replace(power_dbm=20.0)
    assert louder.power_dbm == 20.0 and cfg.power_dbm == 10.0 and louder != cfg
    assert jax.tree.structure(louder) == treedef  # a traced change: same jit cache entry
    assert jax.tree.structure(cfg.replace(num_users=2)) != treedef  # a static change: a new one
    assert hash(cfg) == hash(jp.PassConfig.joint_beamforming())
    with pytest.raises(ValueError, match="num_users"):
        cfg.replace(num_users=0)

"""Import layering (core < optimize < learn/plotting < experiments < cli): no module of ``jaxpass`` imports a layer above its own.

core (config ... parallel, runtime) < optimize < learn < experiments < cli, and
``plotting`` (the ``[plot]`` extra) sits beside ``learn``: it may use core, optimize,
learn and runtime, never experiments or the CLI. Every ``import``/``from ... import``
counts, including the ones inside functions (a lazy import still runs upwards).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jaxpass"

CORE = ("config", "units", "geometry", "channel", "phase", "linalg", "beamforming", "metrics", "blockage", "slots",
        "_checks", "_safe", "_options", "_extras", "parallel", "runtime", "compile")
#: layer rank of each top-level part of the package (a package's modules share its rank)
RANK = {**dict.fromkeys(CORE, 0), "optimize": 1, "learn": 2, "plotting": 2, "experiments": 3, "cli": 4,
        "__main__": 4}
#: the pure numerics of the core: no I/O or progress, so no runtime
NUMERICS = ("config", "units", "geometry", "channel", "phase", "linalg", "beamforming", "metrics", "blockage",
            "slots", "_safe")
#: same-rank imports that are still refused: learn ([learn] extra) must not need matplotlib ([plot] extra),
#: and the numerical core must not reach runtime
SIDEWAYS = {("learn", "plotting"), *((name, "runtime") for name in NUMERICS)}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULES = dict(_modules())


def _part(module: str) -> str | None:
    """The top-level part of ``jaxpass.X.Y`` (``X``), or None for the package root / outside modules."""
    bits = module.split(".")
    if bits[0] != "jaxpass" or len(bits) < 2:
        return None
    return bits[1]


def _imports(module: str, path: Path):
    """``(line, imported module)`` for every import of a ``jaxpass`` module in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # ``from jaxpass import learn`` imports the module jaxpass.learn
                candidate = f"{source}.{alias.name}"
                yield node.lineno, candidate if candidate in MODULES else source


def _rank(part: str) -> int:
    if part not in RANK:
        raise AssertionError(f"jaxpass.{part} has no layer: add it to RANK in tests/test_layers.py")
    return RANK[part]


def test_every_part_has_a_layer():
    parts = {_part(m) for m in MODULES} - {None}
    missing = sorted(p for p in parts if p not in RANK)
    assert not missing, f"modules without a layer: {missing}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _part(m) is not None))
def test_no_import_runs_upwards(module):
    own = _part(module)
    bad = []
    for line, target in _imports(module, MODULES[module]):
        other = _part(target)
        if other is None or other == own:
            continue
        if _rank(other) > _rank(own) or (own, other) in SIDEWAYS:
            bad.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {target}"
                       f" ({other} is above or beside {own})")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check itself can fail: a planted upward import (lazy, inside a function) is found."""
    planted = tmp_path / "geometry.py"
    planted.write_text("def f():\n    from jaxpass.experiments import io\n    from . import learn\n")
    found = [(line, t) for line, t in _imports("jaxpass.geometry", planted)]
    assert (2, "jaxpass.experiments.io") in found
    assert (3, "jaxpass.learn") in found
    assert all(_rank(_part(t)) > RANK["geometry"] for _, t in found)


def test_old_runtime_names_are_the_same_modules():
    """``jaxpass.experiments.io`` / ``.progress`` (still imported by scripts) are aliases, not copies: one state."""
    import jaxpass.experiments.io as old_io
    import jaxpass.experiments.progress as old_progress
    from jaxpass.runtime import io, progress

    assert old_io is io and old_progress is progress

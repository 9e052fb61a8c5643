"""Repository habits: PEP 561 marker, changelog, contributing guide and the pre-commit ruff hook stay in step."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def test_py_typed_ships_with_the_package():
    assert (ROOT / "jaxpass" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["jaxpass"]


def test_pre_commit_runs_the_projects_ruff():
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    assert "repo: https://github.com/astral-sh/ruff-pre-commit" in config and "id: ruff-check" in config
    rev = _version(re.search(r"rev:\s*v([\d.]+)", config).group(1))
    spec = next(d for d in PYPROJECT["project"]["optional-dependencies"]["dev"] if d.startswith("ruff"))
    low, high = re.fullmatch(r"ruff>=([\d.]+),<([\d.]+)", spec).groups()
    assert _version(low) <= rev < _version(high), f"pre-commit ruff v{rev} outside pyproject's {spec}"
    assert "args" not in config  # the rule set is pyproject's [tool.ruff], the same as `make lint`


def test_changelog_has_an_unreleased_section():
    assert re.search(r"^## Unreleased$", (ROOT / "CHANGELOG.md").read_text(), re.M)


def test_contributing_names_commands_that_exist():
    guide = (ROOT / "CONTRIBUTING.md").read_text()
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.M))
    for target in re.findall(r"(?:^ {4}|`)make ([a-z]+)", guide, re.M):
        assert target in targets, f"CONTRIBUTING.md: make {target} is not a Makefile target"
    for module in ("benchmarks.readme", "benchmarks --only", "tools/mutate.py"):
        assert module in guide
    assert (ROOT / "benchmarks" / "readme.py").is_file() and (ROOT / "tools" / "mutate.py").is_file()

"""Every Python code block of README.md and docs/*.md runs (each in a fresh ``python -c``).

Collection: a fenced block whose info string is ``python`` (or ``py``), indented
fences included (dedented), is one test, named ``FILE:LINE`` of its opening fence.
It runs in a fresh subprocess (``sys.executable -c BLOCK``) with a temporary
working directory and a timeout, and must exit with status 0. Shell blocks
(``bash``, ``sh``, ``shell``, ``console``) and blocks without a language are not
run. A Python block that must not run is marked by the HTML comment
``<!-- no-run -->`` on the line just before its opening fence; it is reported as
skipped, with its location.

Environment:
  ``JAXPASS_DOCS_QUICK=1``: smaller sizes. Before running, each block's size
  keywords are capped (``steps``, ``starts``, ``iterations``,
  ``wmmse_iterations``, ``max_outer``, ``slots_per_iteration``, ``num_slots``;
  see ``QUICK_CAPS``) and drop batches ``(B,)`` in ``sample_users`` calls are
  capped at ``QUICK_DROPS``; blocks already within the caps run verbatim (the
  two blocks with output checks below are). Default: every block runs
  verbatim, as a reader would paste it.

The README blocks with printed results also have their output checked (the
API example prints a sum rate; the execution-model example prints tuned rates,
the rate after 10 dB more power without recompiling, a shape, and the uniform
+ ZF rate at 0/10/20 dBm in increasing order).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NO_RUN = "<!-- no-run -->"
PYTHON_LANGS = {"python", "py"}
TIMEOUT_S = 600

QUICK = os.environ.get("JAXPASS_DOCS_QUICK", "0") not in ("", "0")
QUICK_CAPS = {"steps": 100, "starts": 4, "iterations": 20, "wmmse_iterations": 5, "max_outer": 5,
              "slots_per_iteration": 16, "num_slots": 100}
QUICK_DROPS = 8

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


def code_blocks(path: pathlib.Path):
    """``(line, lang, code, no_run)`` for each fenced block of ``path`` (line: 1-based, of the fence)."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, start = m["fence"], i
        lang = (m["info"].strip().split() or [""])[0].lower()
        body, i = [], i + 1
        while i < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{path.name}:{start + 1}: unclosed code fence")
        prev = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        blocks.append((start + 1, lang, textwrap.dedent("\n".join(body)) + "\n", prev == NO_RUN))
        i += 1
    return blocks


def shrink(code: str) -> str:
    """The ``JAXPASS_DOCS_QUICK`` rewrite: size keywords and drop batches capped (see module docstring)."""
    def cap(m):
        return f"{m[1]}={min(int(m[2]), QUICK_CAPS[m[1]])}"

    code = re.sub(rf"\b({'|'.join(QUICK_CAPS)})=(\d+)\b", cap, code)
    return re.sub(r"(sample_users\([^()]*(?:\([^()]*\)[^()]*)*?, \()(\d+)(,\))",
                  lambda m: f"{m[1]}{min(int(m[2]), QUICK_DROPS)}{m[3]}", code)


def _block_under(path: pathlib.Path, heading: str) -> str:
    """The first Python block after the line ``heading``."""
    start = path.read_text().splitlines().index(heading) + 1
    return next(code for line, lang, code, _ in code_blocks(path) if line > start and lang in PYTHON_LANGS)


README_API = ("README.md", "## API in ten lines")
README_EXECUTION_MODEL = ("README.md", "## One execution model")
CHECKED = (README_API, README_EXECUTION_MODEL)  # blocks run by the output tests below


def _python_blocks():
    checked = {_block_under(ROOT / name, heading) for name, heading in CHECKED}
    params = []
    for path in DOC_FILES:
        for line, lang, code, no_run in code_blocks(path):
            if lang not in PYTHON_LANGS or (path.name == "README.md" and code in checked):
                continue
            marks = [pytest.mark.skip(reason=f"marked {NO_RUN}")] if no_run else []
            params.append(pytest.param(path.name, line, code, id=f"{path.name}:{line}", marks=marks))
    return params


def run_block(code: str, cwd) -> list[str]:
    """Run ``code`` in a fresh interpreter in ``cwd``; its stdout lines (fails with the stderr tail)."""
    if QUICK:
        code = shrink(code)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    res = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S,
                         env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.strip().splitlines()


@pytest.mark.parametrize("name,line,code", _python_blocks())
def test_doc_python_block_runs(name, line, code, tmp_path):
    run_block(code, tmp_path)


def test_readme_api_example_prints_a_sum_rate(tmp_path):
    out = run_block(_block_under(ROOT / README_API[0], README_API[1]), tmp_path)
    assert float(out[0]) > 10


def test_readme_execution_model_example_output(tmp_path):
    """Tuned rates (kernel under the user's jit/vmap, then 10 dB more without recompiling), stacked scenarios."""
    tuned, tuned_20dbm, shape, *uniform = run_block(_block_under(ROOT / README_EXECUTION_MODEL[0],
                                                                 README_EXECUTION_MODEL[1]), tmp_path)
    assert 75 < float(tuned) < float(tuned_20dbm) and shape == "(3, 8)"
    assert len(uniform) == 3
    assert [float(r) for r in uniform] == sorted(float(r) for r in uniform)  # more power, more rate


# ------------------------------------------------------------- the collector itself
def test_collector_finds_indented_marked_and_shell_blocks(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("text\n```python\nprint(1)\n```\n\n<!-- no-run -->\n\n```python\nraise SystemExit(3)\n```\n"
                   "1. item\n\n   ```py\n   x = 1\n   ```\n```bash\nrm -rf /\n```\n````python\n```\n````\n")
    got = code_blocks(doc)
    assert [(line, lang, no_run) for line, lang, _, no_run in got] == [
        (2, "python", False), (8, "python", True), (13, "py", False), (16, "bash", False), (19, "python", False)]
    assert got[2][2] == "x = 1\n" and got[4][2] == "```\n"
    (tmp_path / "bad.md").write_text("```python\nx = 1\n")
    with pytest.raises(ValueError, match="bad.md:1: unclosed"):
        code_blocks(tmp_path / "bad.md")


def test_every_doc_has_its_python_blocks_collected():
    readme = [line for line, lang, _, _ in code_blocks(ROOT / "README.md") if lang in PYTHON_LANGS]
    assert len(readme) == (ROOT / "README.md").read_text().count("```python\n")
    assert len(readme) >= 7  # API, execution model, tune, mm_pdd, energy, SSCA, power-min
    ids = [p.id for p in _python_blocks()]
    assert len(ids) == len(readme) - len(CHECKED) + sum(  # every other Python block, in README and docs/
        lang in PYTHON_LANGS for path in DOC_FILES[1:] for _, lang, _, _ in code_blocks(path))


def test_quick_shrink_caps_sizes_only():
    code = ("users = jp.sample_users(jax.random.key(0), cfg, (64,))\nres = f(cfg, users, steps=1000, starts=16)\n"
            "opts = Opts(iterations=80, slots_per_iteration=32)\nx = g(num_slots=500, max_outer=50, gamma=10.0)\n")
    assert shrink(code) == ("users = jp.sample_users(jax.random.key(0), cfg, (8,))\nres = f(cfg, users, steps=100, "
                            "starts=4)\nopts = Opts(iterations=20, slots_per_iteration=16)\nx = g(num_slots=100, "
                            "max_outer=5, gamma=10.0)\n")
    assert shrink("tune(steps=40, starts=2)") == "tune(steps=40, starts=2)"

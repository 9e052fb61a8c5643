"""README numbers come from the result files (``python -m benchmarks.readme --check``)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import readme  # noqa: E402


def test_readme_blocks_match_the_result_files():
    text = readme.README.read_text()
    new, changed = readme.update(text)
    assert changed == [], (f"README blocks {changed} differ from benchmarks/results: run `python -m benchmarks.readme` "
                           "after re-measuring (never edit the numbers by hand)")
    assert new == text
    assert readme.main(["--check"]) == 0


def test_a_hand_edited_number_is_caught(tmp_path):
    text = readme.README.read_text()
    start = text.index("<!-- BEGIN generated: table1 -->")
    i = text.index("83.45", start)  # the tuned ZF mean inside the generated table
    edited = text[:i] + "84.45" + text[i + 5:]
    _, changed = readme.update(edited)
    assert changed == ["table1"]
    path = tmp_path / "README.md"
    path.write_text(edited)
    assert readme.main(["--check", "--readme", str(path)]) == 1
    assert readme.main(["--readme", str(path)]) == 0 and path.read_text() == text  # regenerated


def test_every_renderer_has_a_block_and_missing_results_are_named(tmp_path):
    text = readme.README.read_text()
    for name in readme.RENDERERS:
        assert f"<!-- BEGIN generated: {name} -->" in text
    with pytest.raises(FileNotFoundError, match="table1"):
        readme.render_table1(tmp_path)
    with pytest.raises(KeyError, match="no generated block"):
        readme.update("no blocks here")


def test_ties_are_printed_as_ties():
    assert readme.compare(1.0 + 1e-8) == "tie" and readme.compare(1.07) == "1.07x"
    text = readme._ordering_summary([
        {"name": "a >= b", "p_max_dbm": 0.0, "ratio": 1.0, "holds": True},
        {"name": "a >= b", "p_max_dbm": 5.0, "ratio": 1.2, "holds": True},
        {"name": "a >= b", "p_max_dbm": 10.0, "ratio": 0.9, "holds": False}])
    assert "2 of 3 hold (1 of them ties" in text and "tie at 0 dBm" in text and "FAILS at 10 dBm" in text

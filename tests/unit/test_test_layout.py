"""The suite collects every test module under its basename (no packages, rootdir imports): two
modules of one name in different folders stop the whole collection, so each name is unique."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).parents[1]


def test_every_test_module_has_a_name_of_its_own() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert names["test_test_layout.py"] == 1
    assert [name for name, count in names.items() if count > 1] == []

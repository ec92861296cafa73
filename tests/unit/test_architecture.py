"""Imports run one way (docs/architecture.md): a module imports only from its own layer or the
layers below it, and no import cycle exists between modules. Read with ``ast``, nothing is
imported; lazy imports inside functions count like the others."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

import pitr

ROOT = Path(pitr.__file__).parent

#: Top to bottom; the package itself (``__version__``), errors and logs may be used by every layer.
#: A module belongs to the layer of the longest name that is it or a package holding it (the
#: package ``pitr`` counts only for itself: a new top-level module must be placed here).
LAYERS = (
    ("pitr.entry", "pitr.__main__"),
    ("pitr.cli",),
    ("pitr.commands",),
    ("pitr.engines",),
    ("pitr.planner",),
    ("pitr.catalog",),
    ("pitr.storage",),
    ("pitr.config",),
    ("pitr.crypt",),
    ("pitr.domain",),
    ("pitr.errors", "pitr.logs", "pitr"),
)


@cache
def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ("pitr", *path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


#: Import statements of pitr modules, found by a scan (lazy ones in functions too) and each
#: parsed with ``ast``: walking every module's whole tree would take seconds, this milliseconds.
STATEMENT = re.compile(
    r"^[ \t]*(?:from[ \t]+(?:\.|pitr\b)\S*[ \t]+import[ \t]+(?:\([^)]*\)|.*)|import[ \t]+pitr\b.*)",
    re.MULTILINE,
)


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The pitr modules ``name`` imports, parent packages of ``name`` left out."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for statement in STATEMENT.finditer(path.read_text(encoding="utf-8")):
        node = ast.parse(statement.group(0).strip()).body[0]
        if isinstance(node, ast.Import):
            wanted = [alias.name for alias in node.names]
        else:
            assert isinstance(node, ast.ImportFrom)
            base = node.module or ""
            if node.level:
                head = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*head, base] if base else head)
            wanted = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for text in wanted:
            target = text
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)
    return targets


def layer(name: str) -> int:
    """The index in LAYERS of the longest prefix naming ``name``'s layer."""
    found = [
        (len(prefix), i)
        for i, group in enumerate(LAYERS)
        for prefix in group
        if name == prefix or (prefix != "pitr" and name.startswith(prefix + "."))
    ]
    assert found, f"{name} is in no layer: place it in LAYERS and docs/architecture.md"
    return max(found)[1]


@cache
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def upward(edges: dict[str, set[str]]) -> list[str]:
    return [
        f"{name} imports {target}"
        for name, targets in sorted(edges.items())
        for target in sorted(targets)
        if layer(target) < layer(name)
    ]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges.get(name, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    return found


def test_imports_run_one_way() -> None:
    assert upward(graph()) == []


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_rules_catch_an_upward_import_and_a_cycle() -> None:
    edges = {
        "pitr.engines.mysql.recovery": {"pitr.commands.plan", "pitr.engines.base"},
        "pitr.engines.base": {"pitr.engines.mysql"},
        "pitr.engines.mysql": {"pitr.engines.mysql.recovery"},
        "pitr.commands.plan": {"pitr.planner"},
    }
    assert upward(edges) == ["pitr.engines.mysql.recovery imports pitr.commands.plan"]
    assert cycles(edges) == [
        [
            "pitr.engines.base",
            "pitr.engines.mysql",
            "pitr.engines.mysql.recovery",
            "pitr.engines.base",
        ]
    ]


def test_every_module_is_in_a_layer_and_parents_do_not_count() -> None:
    known = modules()
    assert {layer(name) for name in known} == set(range(len(LAYERS)))
    store = imports_of("pitr.catalog.store", known["pitr.catalog.store"], known)
    assert {"pitr.catalog.model", "pitr.storage.base", "pitr.errors"} <= store
    assert "pitr.catalog" not in store  # its own package: loaded first, not a dependency
    with pytest.raises(AssertionError, match="in no layer"):
        layer("pitr.newcomer")

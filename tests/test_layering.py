"""The layers import one way only: targets <- passes <- partitioner."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "targets": {"passes", "partitioner", "examples"},
    "passes": {"partitioner", "examples"},
    "partitioner": {"examples"},
}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package):
    offenders = [
        f"{path.relative_to(ROOT)} imports {sorted(_imported_packages(path) & FORBIDDEN[package])}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if _imported_packages(path) & FORBIDDEN[package]
    ]
    assert offenders == []


def test_planner_never_imports_torch():
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("targets", "passes", "partitioner")
        for path in (ROOT / package).rglob("*.py")
        if "torch" in _imported_packages(path)
    ]
    assert offenders == []

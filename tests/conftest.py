"""Fixtures shared across test packages."""

from __future__ import annotations

import pytest

from tests.hostile import Workspace, build_workspace, copy_workspace


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Workspace:
    """The hostile-input workspace (models, a plan, a target file), built once per module."""
    return build_workspace(tmp_path_factory.mktemp("pristine") / "ws")


@pytest.fixture
def ws(pristine, tmp_path) -> Workspace:
    """A fresh copy of the workspace for one test, so nothing leaks between cases."""
    return copy_workspace(pristine, tmp_path / "ws")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/*.plan.json from today's planner output (review the diff)",
    )

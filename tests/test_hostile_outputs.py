"""Outputs never destroy inputs or special files, and are written all or none.

Each case runs a command in a fresh copy of a small workspace and checks the
exit code, the single stderr line, and that nothing but the declared outputs
changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from targets.errors import PartitionError
from tests.cli import run_cli
from tests.hostile import (
    Workspace,
    assert_clean_error,
    changed_files,
    mkfifo,
    no_hang,
    snapshot,
)

PLAN_ARGS = ("--target", "h100x2", "-q")

# (id, argv from the workspace, needle in the one stderr line)
Case = tuple[str, Callable[[Workspace], list[str]], str]
REFUSED: list[Case] = [
    ("o-is-model", lambda w: [str(w.model), *PLAN_ARGS, "-o", str(w.model)], "overwrite the input"),
    (
        "png-is-model",
        lambda w: [str(w.model), *PLAN_ARGS, "--png", str(w.model)],
        "overwrite the input",
    ),
    (
        "o-is-target-file",
        lambda w: [str(w.model), "--target", str(w.target), "-q", "-o", str(w.target)],
        "overwrite the input",
    ),
    (
        "o-is-external-data",
        lambda w: [str(w.external), *PLAN_ARGS, "-o", str(w.root / "external.bin")],
        "overwrite the input",
    ),
    (
        "o-is-hard-link-to-model",
        lambda w: [str(w.model), *PLAN_ARGS, "-o", _link(w, os.link, "hard.json")],
        "overwrite the input",
    ),
    (
        "o-is-symlink-to-model",
        lambda w: [str(w.model), *PLAN_ARGS, "-o", _link(w, os.symlink, "soft.json")],
        "overwrite the input",
    ),
    (
        "simulate-png-is-plan",
        lambda w: ["simulate", str(w.plan), "--png", str(w.plan)],
        "overwrite the input",
    ),
    ("o-is-folder", lambda w: [str(w.model), *PLAN_ARGS, "-o", str(w.root)], "is a folder"),
    (
        "o-is-fifo",
        lambda w: [str(w.model), *PLAN_ARGS, "-o", str(mkfifo(w.root / "fifo"))],
        "is a FIFO",
    ),
    ("o-is-dev-full", lambda w: [str(w.model), *PLAN_ARGS, "-o", "/dev/full"], "cannot write"),
    ("o-is-dev-stdout", lambda w: [str(w.model), *PLAN_ARGS, "-o", "/dev/stdout"], "cannot write"),
    ("o-under-proc", lambda w: [str(w.model), *PLAN_ARGS, "-o", "/proc/p.json"], "cannot write"),
    (
        "o-folder-missing",
        lambda w: [str(w.model), *PLAN_ARGS, "-o", str(w.root / "no" / "p.json")],
        "does not exist",
    ),
    (
        "o-and-png-same-file",
        lambda w: [str(w.model), *PLAN_ARGS, "-o", str(w.root / "a"), "--png", str(w.root / "a")],
        "give each output its own file",
    ),
]


def _link(w: Workspace, make: Callable[[Path, Path], None], name: str) -> str:
    make(w.model, w.root / name)
    return str(w.root / name)


@pytest.mark.parametrize(("case", "argv", "needle"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_output_changes_nothing(ws, case, argv, needle) -> None:
    args = argv(ws)
    before = snapshot(ws.root)
    with no_hang():
        result = run_cli(*args)
    assert_clean_error(result, 2, needle)
    assert changed_files(before, snapshot(ws.root)) == []


def test_outputs_are_refused_before_the_solve(ws, monkeypatch) -> None:
    """An unwritable destination is found before minutes of work, not after."""
    import partitioner.commands.plan as plan_command

    def no_solve(*args, **kwargs):
        raise AssertionError("the planner ran although the output cannot be written")

    monkeypatch.setattr(plan_command, "load_graph", no_solve)
    assert_clean_error(run_cli(str(ws.model), *PLAN_ARGS, "-o", "/proc/x.json"), 2, "cannot write")


def test_a_failed_picture_leaves_no_plan(ws, monkeypatch) -> None:
    import partitioner.commands.plan as plan_command

    def broken_png(report, title):
        raise PartitionError("the picture cannot be drawn")

    monkeypatch.setattr(plan_command, "render_png", broken_png)
    before = snapshot(ws.root)
    out, png = ws.root / "new.plan.json", ws.root / "new.png"
    result = run_cli(str(ws.model), *PLAN_ARGS, "-o", str(out), "--png", str(png))
    assert_clean_error(result, 2, "cannot be drawn")
    assert changed_files(before, snapshot(ws.root)) == []  # no plan, no temporary file


def test_existing_plan_is_kept_when_the_picture_fails(ws, monkeypatch) -> None:
    import partitioner.commands.plan as plan_command

    monkeypatch.setattr(
        plan_command, "render_png", lambda *a: (_ for _ in ()).throw(PartitionError("no picture"))
    )
    old = ws.plan.read_bytes()
    result = run_cli(str(ws.model), *PLAN_ARGS, "-o", str(ws.plan), "--png", str(ws.root / "p.png"))
    assert result.code == 2 and ws.plan.read_bytes() == old


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_new_files_get_the_users_umask(ws, umask) -> None:
    previous = os.umask(umask)
    try:
        out, png = ws.root / "u.plan.json", ws.root / "u.png"
        result = run_cli(str(ws.model), *PLAN_ARGS, "-o", str(out), "--png", str(png))
    finally:
        os.umask(previous)
    assert result.code == 0, result.err
    for path in (out, png):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_replaced_file_keeps_its_mode(ws) -> None:
    ws.plan.chmod(0o640)
    assert run_cli(str(ws.model), *PLAN_ARGS, "-o", str(ws.plan)).code == 0
    assert ws.plan.stat().st_mode & 0o777 == 0o640


def test_plan_through_a_symlink_replaces_the_file_it_points_to(ws) -> None:
    real = ws.root / "real.plan.json"
    real.write_text("old")
    (ws.root / "alias.json").symlink_to(real)
    assert run_cli(str(ws.model), *PLAN_ARGS, "-o", str(ws.root / "alias.json")).code == 0
    assert (ws.root / "alias.json").is_symlink() and real.read_text().startswith("{")


def test_only_declared_outputs_appear(ws, tmp_path, monkeypatch) -> None:
    """The plan and picture appear; nothing else in the workspace or the working directory."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = snapshot(ws.root)
    out, png = ws.root / "n.plan.json", ws.root / "n.png"
    assert run_cli(str(ws.model), *PLAN_ARGS, "-o", str(out), "--png", str(png)).code == 0
    assert changed_files(before, snapshot(ws.root)) == ["n.plan.json", "n.png"]
    assert list(cwd.iterdir()) == []

"""A workspace of small models, a plan and a target file, and a check of what a command touched.

The adversarial CLI tests run each command in a fresh copy of this workspace
and assert the README's promise: the exit code, exactly one line on stderr
for an error, no traceback, and no file changed or created outside the
declared outputs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.cli import CliResult, run_cli
from tests.modelgen import init, make_model, save, vi

__all__ = [
    "Workspace",
    "build_workspace",
    "snapshot",
    "assert_clean_error",
    "changed_files",
    "copy_workspace",
    "no_hang",
]

WIDTH = 96  # 96 x 96 float32 weights are 36 KB: stripped at load, read back to execute


def mlp(seed: int = 0) -> onnx.ModelProto:
    """x[2, 96] -> MatMul -> Relu -> MatMul -> Add(bias) -> y, with inline weights."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["m"], name="mm2"),
        helper.make_node("Add", ["m", "b"], ["y"], name="add"),
    ]
    weights = [
        init("w1", rng.standard_normal((WIDTH, WIDTH)).astype(np.float32)),
        init("w2", rng.standard_normal((WIDTH, WIDTH)).astype(np.float32)),
        init("b", rng.standard_normal(WIDTH).astype(np.float32)),
    ]
    return make_model(nodes, [vi("x", [2, WIDTH])], [vi("y", [2, WIDTH])], weights)


def embedding_model() -> onnx.ModelProto:
    """ids[batch, seq] -> Gather(table[50, 8]) -> MatMul -> Relu -> y: token ids stay below 50."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
        helper.make_node("MatMul", ["e", "w"], ["h"], name="proj"),
        helper.make_node("Relu", ["h"], ["y"], name="relu"),
    ]
    weights = [
        init("table", rng.standard_normal((50, 8)).astype(np.float32)),
        init("w", rng.standard_normal((8, 8)).astype(np.float32)),
    ]
    inputs = [vi("ids", ["batch", "seq"], TensorProto.INT64)]
    return make_model(nodes, inputs, [vi("y", ["batch", "seq", 8])], weights)


@dataclass(frozen=True)
class Workspace:
    root: Path
    model: Path  # inline weights
    external: Path  # weights in external.bin beside it
    embed: Path  # symbolic dims, a token-id input
    plan: Path  # plan of `model` on h100x2
    target: Path  # a target file extending h100x2


def build_workspace(root: Path) -> Workspace:
    """Models, a plan and a target file in ``root`` (made once; tests copy it)."""
    root.mkdir(parents=True, exist_ok=True)
    model = save(mlp(), root / "model.onnx")
    external = root / "external.onnx"
    onnx.save(
        mlp(1),
        str(external),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="external.bin",
        size_threshold=0,
    )
    embed = save(embedding_model(), root / "embed.onnx")
    target = root / "target.yaml"
    target.write_text("extends: h100x2\nname: mine\n")
    plan = root / "model.plan.json"
    result = run_cli(str(model), "--target", "h100x2", "-o", str(plan), "-q")
    assert result.code == 0, result.err
    return Workspace(root, model, external, embed, plan, target)


def copy_workspace(source: Workspace, root: Path) -> Workspace:
    shutil.copytree(source.root, root)
    moved = {k: root / Path(v).name for k, v in vars(source).items() if k != "root"}
    return Workspace(root=root, **moved)


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every entry under ``root``: mode and sha256 (regular files) or kind."""
    seen: dict[str, tuple[int, str]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest = oct(stat.S_IFMT(info.st_mode))
        seen[str(path.relative_to(root))] = (stat.S_IMODE(info.st_mode), digest)
    return seen


def changed_files(
    before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]
) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def assert_clean_error(result: CliResult, code: int, needle: str) -> None:
    """Exit ``code`` with exactly one stderr line holding ``needle``, and no traceback."""
    assert result.code == code, (result.code, result.err)
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1 and result.err.endswith("\n"), result.err
    assert needle in lines[0], lines[0]


def mkfifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


class Hang(BaseException):
    """Raised by the alarm: a command blocked (a BaseException, so no handler swallows it)."""


@contextmanager
def no_hang(seconds: int = 60) -> Iterator[None]:
    def fire(signum, frame):
        raise Hang(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

"""Golden plans: the planner's output for small fixed models and targets, byte for byte.

A plan is a public contract, and the same model, target, options and seed must
give byte-identical JSON. These files pin it: a change to any plan shows up as a
diff of `tests/golden/*.plan.json` to review. After an intended change,
regenerate them with `python -m pytest tests/test_golden_plans.py --update-golden`.

The models are built in code with a pinned IR version, so their bytes (and the
sha256 the plans record) do not move with the installed onnx; plans are made
from inside the model's folder with relative paths, as the provenance records
the command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from examples import llama
from tests.cli import run_cli
from tests.hostile import mlp

GOLDEN = Path(__file__).parent / "golden"
IR_VERSION = 8  # pinned: onnx.helper.make_model writes the installed onnx's newest


def _mlp(path: Path) -> None:
    model = mlp()
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))


def _llama(kind: str) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        llama.build(path, "tiny", kind=kind)  # weightless: external data never written

    return build


CASES: list[tuple[str, Callable[[Path], None], tuple[str, ...]]] = [
    ("mlp.h100x2", _mlp, ("--target", "h100x2")),
    ("mlp.wse2", _mlp, ("--target", "wse2", "--regions", "3")),
    (
        "llama-tiny-decode.h100x4",
        _llama("decode"),
        ("--target", "h100x4", "--dim", "batch=1", "--dim", "past=15"),
    ),
    (
        "llama-tiny-prefill.wse2",
        _llama("prefill"),
        ("--target", "wse2", "--regions", "6", "--dim", "batch=1", "--dim", "seq=8"),
    ),
]


@pytest.mark.parametrize(("name", "build", "options"), CASES, ids=[c[0] for c in CASES])
def test_plan_matches_its_golden_file(name, build, options, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    build(Path("model.onnx"))
    result = run_cli("model.onnx", *options, "-o", "plan.json", "-q")
    assert result.code == 0, result.err
    produced = Path("plan.json").read_bytes()
    golden = GOLDEN / f"{name}.plan.json"
    if request.config.getoption("--update-golden"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_bytes(produced)
    assert golden.is_file(), f"no golden file {golden.name}; run with --update-golden"
    assert produced == golden.read_bytes(), (
        f"the plan for {name} changed; review `git diff tests/golden` after "
        "`python -m pytest tests/test_golden_plans.py --update-golden`"
    )
    assert run_cli("validate", "plan.json", "model.onnx").code == 0

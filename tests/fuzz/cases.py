"""One fuzz case: run every command on a mutated model or plan file and check the contract."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import onnx

from tests.fuzz.harness import Corpus, files, run_checked

__all__ = ["model_case", "plan_text_case", "plan_commands", "MAX_VERIFY_BYTES"]

MAX_VERIFY_BYTES = 16 << 20
"""verify runs a mutant only when its parameters, activations and inputs stay under this."""


def _parse_model(data: bytes) -> onnx.ModelProto | None:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # noqa: BLE001 - DecodeError, or anything protobuf raises on garbage
        return None
    return model


def _input_elements(model: onnx.ModelProto | None) -> int:
    if model is None:
        return 0
    counts = 0
    for info in model.graph.input:
        if info.type.HasField("tensor_type"):
            dims = info.type.tensor_type.shape.dim
            counts += math.prod(max(d.dim_value, 1) for d in dims)
    return counts


def _plan_mutant(mutant: Path, out: Path) -> bool:
    """Plan the mutant; a failure must leave no plan behind. Whether a plan was written."""
    argv = (str(mutant), "--target", "h100x2", "--pp", "2", "-o", str(out), "-q")
    res = run_checked(*argv)
    if res.code == 0:
        assert out.is_file(), f"`partition {' '.join(argv)}` exited 0 without writing {out}"
    else:
        assert not out.exists(), f"`partition {' '.join(argv)}` exited {res.code} yet wrote {out}"
    return res.code == 0


def _small_enough_to_run(analyzed_json: str, model: onnx.ModelProto | None) -> bool:
    totals = json.loads(analyzed_json)["totals"]
    inputs = _input_elements(model) * 16  # generous: complex128 is 16 bytes
    size = totals.get("param_bytes", 0) + totals.get("peak_activation_bytes", 0)
    return size + inputs <= MAX_VERIFY_BYTES


def model_case(corpus: Corpus, mutant_bytes: bytes) -> None:
    """analyze, plan, validate, simulate and verify a model file; check the files left behind."""
    with tempfile.TemporaryDirectory(prefix="fuzz-model-") as tmp:
        folder = Path(tmp)
        mutant = folder / "mutant.onnx"
        mutant.write_bytes(mutant_bytes)
        out = folder / "out.plan.json"

        run_checked("analyze", str(mutant))
        analyzed = run_checked("analyze", str(mutant), "--json")

        # the fixture's plan is for other bytes: verify must refuse it (exit 2, one line)
        res = run_checked("verify", str(mutant), str(corpus["plan"]))
        if mutant_bytes != corpus["model_bytes"]:
            assert res.code != 0, "verify accepted a plan made for other model bytes"
        assert files(folder) == {"mutant.onnx"}

        planned = _plan_mutant(mutant, out)
        expected = {"mutant.onnx"} | ({"out.plan.json"} if planned else set())
        assert files(folder) == expected, f"files left behind: {files(folder) - expected}"
        if not planned:
            return
        # a plan the planner just wrote for this model keeps the plan contract
        res = run_checked("validate", str(out), str(mutant))
        assert res.code == 0, f"the planner wrote a plan its validator rejects: {res.err}"
        run_checked("simulate", str(out))
        run_checked("simulate", str(out), "--json")
        if analyzed.code == 0 and _small_enough_to_run(analyzed.out, _parse_model(mutant_bytes)):
            run_checked("verify", str(mutant), str(out))
        assert files(folder) == expected


def plan_commands(plan: Path, model: Path) -> list[tuple[str, ...]]:
    return [
        ("validate", str(plan), str(model)),
        ("validate", str(plan)),
        ("simulate", str(plan)),
        ("simulate", str(plan), "--json"),
        ("verify", str(model), str(plan)),
    ]


def plan_text_case(corpus: Corpus, text: str | bytes) -> None:
    """Run validate, simulate and verify on a plan file holding text (a model copy beside it)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-plan-") as tmp:
        folder = Path(tmp)
        model = folder / "m.onnx"  # the plan records "m.onnx", relative to its folder
        shutil.copyfile(corpus["model"], model)
        plan = folder / "p.plan.json"
        if isinstance(text, str):
            plan.write_text(text, encoding="utf-8", errors="surrogatepass")
        else:
            plan.write_bytes(text)
        before = files(folder)
        for argv in plan_commands(plan, model):
            run_checked(*argv)
            assert files(folder) == before, f"`partition {' '.join(argv)}` left files behind"

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

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from examples import llama
from partitioner.plan import Plan, PlanError
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


def _llama_pair(path: Path) -> None:
    """The decode step as the model, its prefill graph beside it as prefill.onnx."""
    llama.build(path, "tiny", kind="decode")
    llama.build(path.with_name("prefill.onnx"), "tiny", kind="prefill")


CASES: list[tuple[str, Callable[[Path], None], tuple[str, ...]]] = [
    ("mlp.h100x2", _mlp, ("--target", "h100x2")),
    ("mlp.wse2", _mlp, ("--target", "wse2", "--regions", "3")),
    (
        "llama-tiny-decode.h100x4",
        _llama("decode"),
        ("--target", "h100x4", "--dim", "batch=1", "--dim", "past=15"),
    ),
    (
        "llama-tiny-pair.h100x4",
        _llama_pair,
        ("--target", "h100x4", "--dim", "batch=1", "--dim", "past=15", "--prefill", "prefill.onnx"),
    ),  # fmt: skip
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


V1_NAMES = sorted(p.name.removesuffix(".plan.json") for p in (GOLDEN / "v1").glob("*.plan.json"))
"""Version 1 plans, as the planner wrote them before schema version 2: stored, never rewritten."""


def _differences(a: object, b: object, path: str = "") -> list[str]:
    """JSON paths where two documents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for k in sorted(set(a) | set(b))
            for d in _differences(a.get(k), b.get(k), f"{path}/{k}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _differences(x, y, f"{path}/{i}")
        ]
    return [] if a == b else [path]


# cases of what v1 plans could not hold (a prefill file's load model)
V2_ONLY = frozenset({"llama-tiny-pair.h100x4"})


def test_every_case_has_a_stored_v1_plan():
    assert sorted(c[0] for c in CASES if c[0] not in V2_ONLY) == V1_NAMES


@pytest.mark.parametrize("name", V1_NAMES)
def test_a_v1_plan_reads_as_the_v2_plan_of_its_time(name):
    """Upgraded, a v1 plan is the v2 plan the same cost model made, pipeline-only, but for
    what v1 never recorded (and the target spec and command, which have grown since).

    ``v1/as-v2/`` holds those v2 plans, made at commit d6767b5 (`--tp 1 --pp N
    --objective throughput`, as v1 planned), before the cost model changed: plans
    made today differ in their seconds and splits, which is not the upgrade's doing."""
    old = Plan.from_json((GOLDEN / "v1" / f"{name}.plan.json").read_text())
    new = Plan.from_json((GOLDEN / "v1" / "as-v2" / f"{name}.plan.json").read_text())
    assert old.schema_version == new.schema_version == 2
    unrecorded = [
        d
        for d in _differences(old.to_dict(), new.to_dict())
        if not (d == "/solver/candidates" or d.endswith("/kv_cache_bytes"))
        and not d.startswith(("/target/", "/provenance/command", "/estimate/time_breakdown"))
    ]
    assert unrecorded == []
    assert old.parallelism == new.parallelism


@pytest.mark.parametrize("name", V1_NAMES)
def test_validate_simulate_and_verify_read_v1_plans(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build = {c[0]: c[1] for c in CASES}[name]
    build(Path("model.onnx"))
    shutil.copy(GOLDEN / "v1" / f"{name}.plan.json", "v1.plan.json")
    shutil.copy(GOLDEN / f"{name}.plan.json", "v2.plan.json")
    assert json.loads(Path("v1.plan.json").read_text())["schema_version"] == 1
    result = run_cli("validate", "v1.plan.json", "model.onnx")
    assert result.code == 0, result.err
    simulated = [run_cli("simulate", f"{v}.plan.json", "--json") for v in ("v1", "v2")]
    assert [r.code for r in simulated] == [0, 0]
    # each simulation reproduces its own plan's estimate
    for r, version in zip(simulated, ("v1", "v2"), strict=True):
        estimate = json.loads(Path(f"{version}.plan.json").read_text())["estimate"]
        report = json.loads(r.out)["report"]
        assert report["latency_s"] == pytest.approx(estimate["latency_s"], rel=1e-12)
        assert report["throughput_per_s"] == pytest.approx(estimate["throughput_per_s"], rel=1e-12)
    if name.startswith("mlp"):  # the Llama graphs are weightless: nothing to run
        result = run_cli("verify", "model.onnx", "v1.plan.json")
        assert result.code == 0, result.err


def test_an_unknown_schema_version_is_one_line():
    doc = json.loads((GOLDEN / "mlp.h100x2.plan.json").read_text())
    doc["schema_version"] = 3
    with pytest.raises(PlanError, match="schema_version 3 is not supported .*versions 1 and 2"):
        Plan.from_json(json.dumps(doc))

"""Hostile edits of a plan file end in a clean exit, never a traceback.

A plan is user input. Each case edits one field of a plan the planner wrote
(with the mutation operations of `tests.fuzz`) and runs `validate`,
`simulate` and `verify` on it: a plan that breaks the plan contract exits 1
naming the violation, a plan that is not a plan exits 2, both in one line.
Each case is one of the fuzzer's findings (tests/fuzz) or
a sibling of one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from targets import TargetError
from targets.fabric import mesh_link_loads
from tests.cli import CliResult, run_cli
from tests.fuzz.plan_mutations import apply_plan, serialize
from tests.hostile import assert_clean_error, mlp, no_hang
from tests.modelgen import save
from tests.targets.builders import tiny_wafer

VALIDATE = ("validate", "{plan}", "{model}")
VALIDATE_ALONE = ("validate", "{plan}")
SIMULATE = ("simulate", "{plan}")
VERIFY = ("verify", "{model}", "{plan}")
EVERY_VERB = (VALIDATE, VALIDATE_ALONE, SIMULATE, VERIFY)
_VERB_IDS = {VALIDATE: "validate", VALIDATE_ALONE: "validate-alone", SIMULATE: "simulate"}

SPEC = ("target", "spec")
WAFER = (*SPEC, "wafer")


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small MLP with its plan on two H100s and its plan in 3 regions of a WSE-2."""
    folder = tmp_path_factory.mktemp("plans")
    model = save(mlp(), folder / "m.onnx")
    docs = {}
    for kind, target in (("gpu", ("h100x2", "--pp", "2")), ("wafer", ("wse2", "--regions", "3"))):
        plan = folder / f"{kind}.plan.json"
        result = run_cli(str(model), "--target", *target, "-o", str(plan), "-q")
        assert result.code == 0, result.err
        docs[kind] = json.loads(plan.read_text())
    assert len(docs["wafer"]["transfers"]) >= 3, "the wafer plan should move tensors on the wafer"
    return {"model": model, "docs": docs}


def _run(plans: dict[str, Any], folder: Path, kind: str, ops: tuple, verb: tuple) -> CliResult:
    """Write the mutated plan beside a copy of its model (the plan records "m.onnx") and run."""
    model = folder / "m.onnx"
    shutil.copyfile(plans["model"], model)
    plan = folder / "p.plan.json"
    plan.write_text(serialize(apply_plan(plans["docs"][kind], ops), allow_nan=False))
    argv = tuple(a.format(plan=plan, model=model) for a in verb)
    with no_hang(60):
        return run_cli(*argv)


def _cases(kind: str, ops: tuple, expected: dict[tuple, tuple[int, str]], name: str) -> list:
    """One case per verb: the plan's kind, its mutation, the exit code and a piece of the line."""
    return [
        pytest.param(kind, ops, verb, *outcome, id=f"{name}-{_VERB_IDS.get(verb, verb[0])}")
        for verb, outcome in expected.items()
    ]


def _each_verb(code: int, needle: str) -> dict[tuple, tuple[int, str]]:
    return dict.fromkeys(EVERY_VERB, (code, needle))


NOT_INTEGER = "is not an integer; write it without a decimal point"

CASES = [
    # 8: an integral float node index passed the schema's "integer" and indexed a tuple.
    *_cases(
        "gpu",
        (("float", ("partitions", 1, "nodes", 0)),),
        {
            VALIDATE: (1, f"[schema] partitions/1/nodes/0: 2.0 {NOT_INTEGER}"),
            VALIDATE_ALONE: (1, "partitions/1/nodes/0"),
            VERIFY: (2, "partitions/1/nodes/0"),
        },
        "float-node-index",
    ),
    # 10: target.spec.wafer that is not a mapping (AttributeError in every command).
    *(
        case
        for value in (True, None, [], "x", 0)
        for case in _cases(
            "wafer",
            (("replace", WAFER, value),),
            _each_verb(1, "[target] plan target spec: field 'wafer' must be a mapping"),
            f"wafer-{json.dumps(value)}",
        )
    ),
    # 11: a SRAM reserve that is no number (TypeError in the region check).
    *(
        case
        for value in ("x", None, [], {})
        for case in _cases(
            "wafer",
            (("replace", (*WAFER, "sram_reserve_bytes_per_core"), value),),
            _each_verb(1, "field 'wafer.sram_reserve_bytes_per_core' must be a non-negative int"),
            f"sram-reserve-{json.dumps(value)}",
        )
    ),
    # 12: a grid 2**31 cores wide (simulate asked for 18 TiB).
    *(
        case
        for side in ("width_cores", "height_cores")
        for case in _cases(
            "wafer",
            (("replace", (*WAFER, side), 2**31),),
            {
                SIMULATE: (1, f"field 'wafer.{side}' must be at most 16,384"),
                VALIDATE_ALONE: (1, f"field 'wafer.{side}' must be at most 16,384"),
            },
            f"huge-{side}",
        )
    ),
    # 13: a subnormal clock, bandwidth or efficiency made a link time infinite.
    *(
        case
        for path, floor in (
            ((*WAFER, "clock_hz"), "must be at least 1,000 Hz"),
            ((*WAFER, "link_bytes_per_cycle"), "must be at least 0.001 bytes"),
            ((*SPEC, "host_link", "bandwidth_bytes_per_s"), "must be at least 1 B/s"),
            ((*SPEC, "host_link", "efficiency"), "must be at least 1e-06"),
            ((*SPEC, "inter_wafer_link", "efficiency"), "must be at least 1e-06"),
        )
        for case in _cases(
            "wafer",
            (("replace", path, 5e-324),),
            {SIMULATE: (1, f"field '{'.'.join(path[2:])}' {floor}")},
            f"subnormal-{'.'.join(path[-2:])}",
        )
    ),
    # 14: an integral float region coordinate reached range().
    *(
        case
        for field in ("h", "y", "x", "w")
        for case in _cases(
            "wafer",
            (("float", ("partitions", 0, "region", field)),),
            {
                SIMULATE: (2, f"partitions/0/region/{field}: "),
                VALIDATE: (1, f"partitions/0/region/{field}: "),
            },
            f"float-region-{field}",
        )
    ),
    # 15: transfer bytes beyond int64 overflowed the fabric simulator.
    *_cases(
        "wafer",
        (("replace", ("transfers", 2, "bytes"), 10**30),),
        {SIMULATE: (2, "transfers/2/bytes: 10000000000000000000000000000")},
        "transfer-bytes-1e30",
    ),
    *_cases(
        "wafer",
        (("replace", ("transfers", 2, "bytes"), 1e300),),
        {SIMULATE: (2, f"transfers/2/bytes: 1e+300 {NOT_INTEGER}")},
        "transfer-bytes-float",
    ),
    # Bytes that each fit in int64 but add up beyond it on one wafer's links.
    *_cases(
        "wafer",
        tuple(("replace", ("transfers", i, "bytes"), 2**63 - 1) for i in range(5)),
        {SIMULATE: (2, "more than link loads hold (2**63 - 1)")},
        "transfer-bytes-sum",
    ),
    # Times that each are finite but add up to infinity on one stage.
    *_cases(
        "gpu",
        (
            ("duplicate", ("transfers",), 1),
            ("replace", ("transfers", 1, "time_s"), 1e308),
            ("replace", ("transfers", 3, "time_s"), 1e308),
        ),
        {SIMULATE: (2, "transfers/1/time_s: 1e+308 is greater than the maximum of 1e+100")},
        "time-sum-overflow",
    ),
    # A decode batch of 400 digits overflowed float in the decode figures.
    *_cases(
        "wafer",
        (
            ("add_key", ("estimate",), "llm_decode_step", True),
            ("add_key", ("estimate",), "batch", 10**400),
        ),
        {SIMULATE: (2, "estimate/batch: ")},
        "huge-decode-batch",
    ),
    # The spec changed after planning (its sha256 no longer matches), or names another kind.
    *_cases(
        "wafer",
        (("replace", (*WAFER, "clock_hz"), 2e9),),
        _each_verb(1, "[target] plan target sha256"),
        "edited-spec",
    ),
    *_cases(
        "wafer",
        (("replace", ("target", "kind"), "gpu"),),
        {VALIDATE_ALONE: (1, "plan target kind is 'gpu' but its spec describes a 'wafer'")},
        "kind-mismatch",
    ),
]


@pytest.mark.parametrize(("kind", "ops", "verb", "code", "needle"), CASES)
def test_mutated_plan_is_a_clean_error(
    plans: dict[str, Any],
    tmp_path: Path,
    kind: str,
    ops: tuple,
    verb: tuple,
    code: int,
    needle: str,
) -> None:
    result = _run(plans, tmp_path, kind, ops, verb)
    assert_clean_error(result, code, needle)
    if code == 2:
        assert result.err.startswith("partition: error:"), result.err


# 9: a recorded model path longer than the system allows made Path.is_file raise.
@pytest.mark.parametrize("path", ["x" * 300, "a/" * 3000, "x" * 5000 + ".onnx"])
def test_unreachable_recorded_model_means_no_model(
    plans: dict[str, Any], tmp_path: Path, path: str
) -> None:
    result = _run(plans, tmp_path, "gpu", (("replace", ("model", "path"), path),), VALIDATE_ALONE)
    assert result.code == 0 and result.err == "", result
    assert "graph checks skipped" in result.out


# The plan's names are the user's text: rich markup and TeX math in them are printed, not parsed.
@pytest.mark.parametrize("kind", ["gpu", "wafer"])
@pytest.mark.parametrize(
    "ops",
    [
        (("replace", ("target", "name"), "[/]"),),
        (("replace", ("target", "name"), "$\\frac{$"),),
        (("replace", ("model", "path"), "$\\undefined$.onnx"),),
    ],
    ids=["markup-name", "math-name", "math-model-path"],
)
def test_names_are_text(plans: dict[str, Any], tmp_path: Path, kind: str, ops: tuple) -> None:
    png = tmp_path / "plan.png"
    result = _run(plans, tmp_path, kind, ops, (*SIMULATE, "--png", str(png)))
    assert result.code == 0 and result.err == "", result
    assert png.read_bytes().startswith(b"\x89PNG")


# Hostile target files gave the planner infinite times (OverflowError, ValueError on NaN).
@pytest.mark.parametrize(
    ("base", "override", "needle"),
    [
        ("h100x2", "host_link: {latency_s: 1.0e+308}", "'host_link.latency_s' must be at most"),
        (
            "h100x2",
            "intra_node_link: {bandwidth_bytes_per_s: 5.0e-324}",
            "'intra_node_link.bandwidth_bytes_per_s' must be at least 1 B/s",
        ),
        (
            "h100x2",
            "all_devices: {peak_flops_per_s: {float32: 5.0e-324}}",
            "'devices[0].peak_flops_per_s.float32' must be at least 1 FLOP/s",
        ),
        ("wse2", "wafer: {hop_latency_cycles: 1.0e+308}", "'wafer.hop_latency_cycles' must be at"),
        ("wse2", "wafer: {clock_hz: 5.0e-324}", "'wafer.clock_hz' must be at least 1,000 Hz"),
        ("wse2", "num_wafers: 100000000", "'num_wafers' must be at most 4,096"),
    ],
    ids=["latency", "bandwidth", "peak-flops", "hop-latency", "clock", "num-wafers"],
)
def test_target_bounds_keep_times_finite(
    plans: dict[str, Any], tmp_path: Path, base: str, override: str, needle: str
) -> None:
    target = tmp_path / "t.yaml"
    target.write_text(f"extends: {base}\n{override}\n")
    with no_hang(60):
        out = tmp_path / "x.plan.json"
        result = run_cli(str(plans["model"]), "--target", str(target), "-o", str(out), "-q")
    assert_clean_error(result, 2, needle)


def test_wafer_core_count_is_capped() -> None:
    with pytest.raises(TargetError, match=r"times height_cores is 33,554,432 cores; .* 16,777,216"):
        tiny_wafer(width_cores=16_384, height_cores=2048)
    assert tiny_wafer(width_cores=16_384, height_cores=1024).num_cores == 2**24


def test_link_loads_refuse_a_total_beyond_int64() -> None:
    with pytest.raises(ValueError, match="2\\*\\*63 bytes or more in all"):
        mesh_link_loads(3, 1, [(0, 0), (0, 0)], [(2, 0), (2, 0)], [2**62, 2**62])
    with pytest.raises(ValueError, match="a flow carries 2\\*\\*63 bytes or more"):
        mesh_link_loads(3, 1, [(0, 0)], [(2, 0)], [2**63])

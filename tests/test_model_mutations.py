"""Mutated models that broke the CLI contract (found by the fuzzers in tests/fuzz).

Each is now refused at load with one line naming what is wrong (exit 2), or,
when it is a valid model whose tensors have unknown sizes, planned into a plan
its own validator accepts. The mutants are the fuzzer's: the fixture model
(fc1 MatMul(x, w1) -> add1 Add(h, b1) -> relu -> fc2 MatMul(a, w2) -> add2
Add(m, x2) -> y, inputs x and x2 [2, 4]) edited by `tests.fuzz.mutations.apply_proto`
or `apply_bytes`. Every CLI call runs under a hang guard.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from partitioner.executor.errors import ExecutorError
from partitioner.executor.verify import make_inputs
from partitioner.executor.weights import WeightStore
from partitioner.solvers.cpsat_pipeline import cpsat_partition
from partitioner.solvers.problem import PipelineProblem
from passes.ir import build_graph
from passes.load import load
from passes.transforms.consistency import first_contradiction
from passes.transforms.shapes import InferShapes
from tests.cli import CliResult, run_cli
from tests.fuzz.harness import corpus_model
from tests.fuzz.mutations import apply_bytes, apply_proto
from tests.hostile import assert_clean_error, no_hang
from tests.modelgen import external_init, init, make_model, save, vi

HANG_S = 30
"""Each call takes a second or two; 30 s means it hangs (the UNDEFINED input did)."""


def fixture_model() -> onnx.ModelProto:
    """The fuzz corpus model (its byte 45 is the 'a' of 'add1')."""
    return corpus_model()


@dataclass(frozen=True)
class Base:
    data: bytes
    proto: onnx.ModelProto
    plan: dict[str, Any]  # the fixture's plan on h100x2


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    folder = tmp_path_factory.mktemp("mutations")
    model = save(fixture_model(), folder / "m.onnx")
    plan = folder / "m.plan.json"
    assert run_cli(str(model), "--target", "h100x2", "--pp", "2", "-o", str(plan), "-q").code == 0
    assert model.read_bytes()[45:49] == b"add1", "the fixture model's bytes moved"
    return Base(model.read_bytes(), onnx.load(str(model)), json.loads(plan.read_text()))


def cli(*argv: str | Path) -> CliResult:
    with no_hang(HANG_S):
        return run_cli(*(str(a) for a in argv))


def mutant(folder: Path, base: Base, ops: tuple) -> Path:
    """The fixture model after ``ops``: ("bytes", mutation) or proto operations."""
    data = apply_bytes(base.data, ops[1]) if ops[0] == "bytes" else apply_proto(base.proto, ops)
    path = folder / "mutant.onnx"
    path.write_bytes(data)
    return path


def plan_for(model: Path, base: Base) -> Path:
    """The fixture's plan relabelled with ``model``'s sha256, so that `verify` gets past
    the plan's model check and loads the mutant itself."""
    doc = copy.deepcopy(base.plan)
    doc["model"]["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    doc["model"]["path"] = model.name
    path = model.with_suffix(".plan.json")
    path.write_text(json.dumps(doc))
    return path


def refused_everywhere(model: Path, base: Base, needle: str) -> None:
    """analyze (table and JSON), plan and verify all exit 2 with one line holding ``needle``."""
    out = model.parent / "out.plan.json"
    for argv in (
        ("analyze", model),
        ("analyze", model, "--json"),
        (model, "--target", "h100x2", "--pp", "2", "-o", out, "-q"),
        ("verify", model, plan_for(model, base)),
    ):
        assert_clean_error(cli(*argv), 2, needle)
    assert not out.exists()


# --- bugs 1-3: element types ------------------------------------------------------------


def test_undefined_input_type_is_refused_not_hung(base: Base, tmp_path: Path) -> None:
    model = mutant(tmp_path, base, (("elem_type", 0, 0),))
    refused_everywhere(model, base, "graph input 'x' has element type 0 (UNDEFINED)")


def test_onnxruntime_inference_stops_on_an_untyped_input(base: Base) -> None:
    """The ORT fallback gives up instead of repeating a pass that changes nothing."""
    model = onnx.ModelProto()
    model.ParseFromString(apply_proto(base.proto, (("elem_type", 0, 0),)))
    with no_hang(HANG_S):
        graph = InferShapes()(build_graph(model)).model
    assert graph.tensors["y"].is_static  # declared; what follows x stays unknown
    assert not graph.tensors["h"].is_static


def test_undefined_second_input_is_refused_by_verify(base: Base, tmp_path: Path) -> None:
    model = mutant(tmp_path, base, (("elem_type", 1, 0),))
    refused_everywhere(model, base, "graph input 'x2' has element type 0 (UNDEFINED)")


@pytest.mark.parametrize(
    ("ops", "needle"),
    [
        ((("elem_type", 2, 99),), "graph output 'y' has element type 99"),
        ((("init_dtype", 0, -1),), "initializer 'w1' has element type -1"),
    ],
)
def test_unknown_element_type_is_refused(base: Base, tmp_path: Path, ops: tuple, needle: str):
    refused_everywhere(mutant(tmp_path, base, ops), base, needle)


# --- bug 4: names that are not UTF-8 ----------------------------------------------------


def test_node_name_not_utf8_is_refused(base: Base, tmp_path: Path) -> None:
    model = mutant(tmp_path, base, ("bytes", ("set", ((45, 0xC0),))))
    refused_everywhere(model, base, "a node name is not valid UTF-8 text (\\xc0dd1)")


@pytest.mark.parametrize(
    ("placeholder", "what"), [(b"QQQQ", "a tensor name"), (b"Qop", "the op type of node 'n'")]
)
def test_other_names_not_utf8_are_refused(tmp_path: Path, placeholder: bytes, what: str):
    """A graph input's name and an op type, patched to invalid UTF-8 in the file's bytes."""
    name = placeholder.decode()
    op = name if what.startswith("the op type") else "Relu"
    tensor = name if what == "a tensor name" else "x"
    nodes = [helper.make_node(op, [tensor], ["y"], name="n")]
    data = make_model(nodes, [vi(tensor, [2])], [vi("y", [2])]).SerializeToString()
    path = tmp_path / "bad.onnx"
    path.write_bytes(data.replace(placeholder, b"\xff" + placeholder[1:]))
    assert_clean_error(cli("analyze", path, "--json"), 2, f"{what} is not valid UTF-8 text")


# --- bug 5: sizes beyond int64 ----------------------------------------------------------


def _relu_chain(folder: Path, dims: list[int]) -> Path:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="r1"),
        helper.make_node("Relu", ["r"], ["y"], name="r2"),
    ]
    return save(make_model(nodes, [vi("x", dims)], [vi("y", dims)]), folder / "big.onnx")


def test_tensor_larger_than_any_device_is_infeasible(tmp_path: Path) -> None:
    """x [2**20, 2**20] float32 is 4 TiB: named, not 'no split fits'."""
    model, out = _relu_chain(tmp_path, [2**20, 2**20]), tmp_path / "big.plan.json"
    res = cli(model, "--target", "h100x2", "--pp", "2", "-o", out, "-q")
    assert_clean_error(res, 2, "tensor 'x' (float32 [1048576×1048576]) alone needs 4.4 TB")
    assert not out.exists()


@pytest.mark.parametrize(("dims", "bits"), [([2**31, 2**62], 95), ([2**62] * 20, 1242)])
def test_tensor_beyond_int64_bytes_is_refused_at_load(tmp_path: Path, dims: list[int], bits: int):
    """2**95 bytes overflowed CP-SAT's domains; 2**1242 overflowed every float downstream."""
    model, out = _relu_chain(tmp_path, dims), tmp_path / "big.plan.json"
    needle = f"tensor 'x' (float32 [{dims[0]}×"
    for argv in (("analyze", model), (model, "--target", "h100x2", "--pp", "2", "-o", out, "-q")):
        res = cli(*argv)
        assert_clean_error(res, 2, needle)
        assert f"about 2**{bits} bytes, more than int64 counts" in res.err
    assert not out.exists()


def test_fuzzed_huge_input_is_refused(base: Base, tmp_path: Path) -> None:
    model = mutant(tmp_path, base, (("rank", 0, (2**31, 2**62)),))
    assert_clean_error(
        cli(model, "--target", "h100x2", "--pp", "2", "-o", tmp_path / "p.json", "-q"), 2, "fc1"
    )


def test_cpsat_domains_stay_inside_int64() -> None:
    """An activation of 2**95 bytes rules its stage out; CP-SAT proves no split fits."""
    problem = PipelineProblem(
        num_stages=2,
        block_time_s=((1e-3, 1e-3), (1e-3, 1e-3)),
        block_resident_bytes=(0, 0),
        block_activation_bytes=(2**95, 10),
        block_host_out_s=((0.0, 0.0), (0.0, 0.0)),
        edges=((0, 1),),
        relay_flows=(),
        host_flows=(),
        capacity_bytes=(80 * 10**9, 80 * 10**9),
        block_nodes=(1, 1),
    )
    result = cpsat_partition(problem, hint=None, time_limit_s=5.0)
    assert result.stage_of is None and result.status == "INFEASIBLE"


# --- bug 6: shapes that contradict the ops ----------------------------------------------


def test_zero_dim_contradicting_broadcast_is_refused(base: Base, tmp_path: Path) -> None:
    model = mutant(tmp_path, base, (("dim", 0, 0, 0),))
    refused_everywhere(model, base, "is inconsistent: node 'add2' (Add): Incompatible dimensions")


def test_only_default_domain_contradictions_count(base: Base) -> None:
    message = (
        "[ShapeInferenceError] Inference error(s): (op_type:Relu, node name: relu): "
        "[TypeInferenceError] Input 0 expected to have type but instead is null\n"
        "(op_type:Add, node name: add2): [ShapeInferenceError] Incompatible dimensions\n"
    )
    assert first_contradiction(base.proto, message) == "node 'add2' (Add): Incompatible dimensions"
    custom = copy.deepcopy(base.proto)
    custom.graph.node[4].domain = "com.example"
    assert first_contradiction(custom, message) is None
    no_prefix = "[TypeInferenceError] No opset import for domain bogus optype Relu"
    assert first_contradiction(base.proto, no_prefix) is None


# --- bug 7: initializer data that does not fit its dims ---------------------------------


@pytest.mark.parametrize(
    ("ops", "needle"),
    [
        ((("init_dtype", 2, 9),), "initializer 'w2' holds 96 bytes of raw data but its dims"),
        ((("init_dims", 1, ()),), "initializer 'b1' holds 24 bytes of raw data but its dims [] "),
    ],
)
def test_raw_data_size_mismatch_is_refused(base: Base, tmp_path: Path, ops: tuple, needle: str):
    refused_everywhere(mutant(tmp_path, base, ops), base, needle)


def test_large_weight_with_short_data_is_refused_by_verify(tmp_path: Path) -> None:
    """Weights over 16 KB are dropped at load and sized when the executor reads them back
    (onnxruntime, which verify runs first, refuses the model too)."""
    weight = init("w", np.ones((96, 96), np.float32))
    weight.raw_data = weight.raw_data[:-4]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Relu", ["h"], ["y"], name="relu"),
    ]
    model = make_model(nodes, [vi("x", [2, 96])], [vi("y", [2, 96])], [weight])
    path = save(model, tmp_path / "s.onnx")
    plan = tmp_path / "s.plan.json"
    assert cli(path, "--target", "h100x2", "--pp", "2", "-o", plan, "-q").code == 0
    assert_clean_error(cli("verify", path, plan), 2, "'w'")
    with pytest.raises(ExecutorError, match=r"'w' holds 36,860 bytes of raw data but its dims"):
        WeightStore(load(path)).get("w")


# --- bug 16: complex inputs -------------------------------------------------------------


def test_complex_input_is_refused_without_a_warning(base: Base, tmp_path: Path) -> None:
    model = mutant(tmp_path, base, (("elem_type", 1, TensorProto.COMPLEX64),))
    plan = tmp_path / "c.plan.json"
    assert cli(model, "--target", "h100x2", "--pp", "2", "-o", plan, "-q").code == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = cli("verify", model, plan)
    assert_clean_error(res, 2, "onnxruntime cannot run this model")
    assert [str(w.message) for w in caught] == []


def test_generated_complex_inputs_have_an_imaginary_part(tmp_path: Path) -> None:
    nodes = [helper.make_node("Identity", ["x"], ["y"], name="id")]
    complex_io = [vi("x", [2, 4], TensorProto.COMPLEX64)], [vi("y", [2, 4], TensorProto.COMPLEX64)]
    graph = load(save(make_model(nodes, *complex_io), tmp_path / "c.onnx"))
    x = make_inputs(graph)["x"]
    assert x.dtype == np.complex64 and np.all(x.imag != 0)


# --- bug 17: tensors of unknown size crossing partitions --------------------------------


def _plans_and_validates(model: Path, target: str, *extra: str) -> dict[str, Any]:
    plan = model.with_suffix(f".{target}.plan.json")
    stages = target.removeprefix("h100x") if target.startswith("h100x") else None
    pins = ("--pp", stages) if stages else ()
    res = cli(model, "--target", target, *pins, "-o", plan, "-q", *extra)
    assert res.code == 0, res.err
    res = cli("validate", plan, model)
    assert res.code == 0, res.err
    return json.loads(plan.read_text())


def test_unsized_tensor_crossing_stages_gets_a_transfer(base: Base, tmp_path: Path) -> None:
    """At opset 1 shape inference types nothing: 'm' crosses stages at an unknown size."""
    doc = _plans_and_validates(mutant(tmp_path, base, (("opset", 1),)), "h100x2")
    crossing = [t for t in doc["transfers"] if t["tensor"] == "m"]
    assert crossing and all(t["bytes"] == 0 for t in crossing)
    assert "m" in doc["estimate"]["unsized_transfers"]
    assert cli("simulate", tmp_path / "mutant.h100x2.plan.json").code == 0


def _custom_op_model(folder: Path) -> Path:
    """x -> MatMul -> com.example::Mystery -> 3 x MatMul -> y: what follows the custom op
    has no size; weights of 2 GB each (declared, never written) spread it out."""
    side = 32768
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["h0"], name="mm0"),
        helper.make_node("Mystery", ["h0"], ["h1"], name="custom", domain="com.example"),
    ]
    nodes += [helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"h{i + 1}"]) for i in range(1, 4)]
    weights = [external_init(f"w{i}", [side, side]) for i in range(4)]
    x, y = vi("x", [8, side], TensorProto.FLOAT16), vi("h4", [8, side], TensorProto.FLOAT16)
    model = make_model(nodes, [x], [y], weights, extra_opsets={"com.example": 1})
    return save(model, folder / "custom.onnx")


@pytest.mark.parametrize("target", ["h100x4", "wse3"])
def test_unsized_tensors_after_a_custom_op_get_transfers(tmp_path: Path, target: str) -> None:
    doc = _plans_and_validates(_custom_op_model(tmp_path), target)
    unsized = doc["estimate"]["unsized_transfers"]
    assert unsized and {"h2", "h3"} & set(unsized)

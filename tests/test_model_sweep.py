"""A sweep over models nobody here wrote: no traceback, no mismatch, no unknown cost.

Every case runs the CLI in-process on one model: ``analyze --json`` (every node has a
known cost; the parameter count matches an independent count and agrees with the
parameter bytes), a plan on a GPU target, ``validate`` and, where it runs fast,
``verify`` against onnxruntime. A few models are also planned onto a wafer. Nothing
may be written to the working directory and no stderr may hold a traceback.

Models: the onnx package's light model zoo (real exporters' graphs, weights made by
ConstantOfShape), small graphs built in tests/sweep_models.py the way torch's
exporters write them (opsets 17-23; float32, float16, bfloat16), and the tiny Llama
of examples/llama.py (prefill and decode).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from examples import llama
from tests.cli import CliResult, run_cli
from tests.sweep_models import BUILDERS, SYMBOLIC_DIMS, build, buildable, unresident_elements

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
GPU_TARGET = "h100x2"
WAFER_TARGET = ("wse2", "--regions", "6", "--time-limit", "0.3")
REFERENCE_ORT = "onnxruntime"

_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}


# ---- what every case checks ---------------------------------------------------------


@dataclass
class Case:
    """One model and what to check on it."""

    model: Path
    dims: dict[str, int] = field(default_factory=dict)
    itemsize: int | None = None  # every weight has this float width
    expected_params: int | None = None  # counted independently of the product
    # Weight elements that folding leaves out of memory (only a slice is resident).
    unresident: int = 0
    # Resident float constants that are not parameters (Constant-node literals and what
    # is folded from them, e.g. RoPE frequencies and causal masks): bytes allowed beyond
    # param_count x itemsize, as a fraction of it. 0: the two must agree exactly.
    literal_slack: float = 0.0
    verify: bool = True
    bfloat16: bool = False


def _cli(*argv: str) -> CliResult:
    result = run_cli(*argv)
    assert "Traceback" not in result.err, f"partition {' '.join(argv)}:\n{result.err}"
    return result


def _expect(result: CliResult, code: int, argv: list[str]) -> None:
    assert result.code == code, (
        f"`partition {' '.join(argv)}` exited {result.code}\nstderr:\n{result.err[-3000:]}\n"
        f"stdout:\n{result.out[-2000:]}"
    )


def _dim_args(dims: dict[str, int]) -> list[str]:
    return [arg for name, value in dims.items() for arg in ("--dim", f"{name}={value}")]


def analyze(case: Case) -> dict:
    argv = ["analyze", str(case.model), *_dim_args(case.dims), "--json"]
    result = _cli(*argv)
    _expect(result, 0, argv)
    doc = json.loads(result.out)
    totals = doc["totals"]
    unknown = [
        (n["name"], n["op_type"], n.get("unknown_reason"))
        for n in doc["nodes"]
        if not n["known_cost"]
    ]
    assert unknown == [], f"nodes with unknown cost: {unknown[:10]}"
    assert totals["unknown_cost_nodes"] == 0
    assert doc["unknown_cost"] == {}
    assert totals["num_nodes"] == len(doc["nodes"]) > 0
    assert totals["flops"] > 0
    if case.expected_params is not None:
        assert totals["param_count"] == case.expected_params, totals
    if case.itemsize is not None:
        # No tied or duplicated weights in these models: every resident float byte is
        # one parameter element (bar literals, see Case); the rest of param_bytes are
        # integer/bool constants.
        float_bytes = totals["param_bytes"] - totals["constant_bytes"]
        weight_bytes = (totals["param_count"] - case.unresident) * case.itemsize
        assert weight_bytes <= float_bytes <= weight_bytes * (1 + case.literal_slack), totals
    return doc


def plan_and_validate(case: Case, out: Path, target: str, *options: str) -> Path:
    out.mkdir(exist_ok=True)
    plan = out / f"{case.model.stem}.{target}.plan.json"
    argv = [str(case.model), "--target", target, "-o", str(plan), "-q", *options]
    argv += _dim_args(case.dims)
    _expect(_cli(*argv), 0, argv)
    assert plan.is_file()
    argv = ["validate", str(plan), str(case.model)]
    _expect(_cli(*argv), 0, argv)
    return plan


def verify(case: Case, plan: Path) -> None:
    argv = ["verify", str(case.model), str(plan), "--json"]
    result = _cli(*argv)
    _expect(result, 0, argv)
    doc = json.loads(result.out)
    assert doc["ok"] is True, doc
    assert doc["outputs"] and all(o["ok"] for o in doc["outputs"]), doc["outputs"]
    if case.bfloat16:
        # onnxruntime's CPU provider has no bfloat16 kernels: it runs a float32 copy.
        assert doc["reference"] != REFERENCE_ORT and "float32" in doc["reference"], doc
    else:
        assert doc["reference"] == REFERENCE_ORT, doc


def sweep_gpu(case: Case, tmp_path: Path) -> None:
    analyze(case)
    plan = plan_and_validate(case, tmp_path / "out", GPU_TARGET)
    if case.verify:
        verify(case, plan)


def sweep_wafer(case: Case, tmp_path: Path) -> None:
    plan = plan_and_validate(case, tmp_path / "out", *WAFER_TARGET)
    if case.verify:
        verify(case, plan)


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty working directory that must still be empty afterwards."""
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    yield here
    assert sorted(p.name for p in here.iterdir()) == [], "files written to the working directory"


def _float_param_count(model: onnx.ModelProto) -> int:
    """Elements of the float weights the graph uses: float initializers and float
    ConstantOfShape outputs of a stored shape (how the light zoo makes its weights)."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    used |= {o.name for o in graph.output}
    inits = {t.name: t for t in graph.initializer}
    total = sum(
        int(np.prod(t.dims, dtype=np.int64))
        for t in graph.initializer
        if t.data_type in _FLOAT_TYPES and t.name in used
    )
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is None or value.data_type in _FLOAT_TYPES:
                total += int(np.prod(numpy_helper.to_array(inits[node.input[0]]), dtype=np.int64))
    return total


# ---- the onnx package's light model zoo ----------------------------------------------

# name -> verify it. Measured verify times (one core): squeezenet 0.2 s, shufflenet
# 0.3 s, inception_v1 0.5 s, inception_v2 0.7 s, densenet121 1.2 s, resnet50 1.5 s;
# alexnet (1.5 s), zfnet512 (1.7 s) and vgg19 (6.5 s) materialise 240-575 MB of
# weights, so they are analysed, planned and validated only.
LIGHT = {
    "bvlc_alexnet": False,
    "densenet121": True,
    "inception_v1": True,
    "inception_v2": True,
    "resnet50": True,
    "shufflenet": True,
    "squeezenet": True,
    "vgg19": False,
    "zfnet512": False,
}
_SLOW_LIGHT = {"densenet121", "inception_v2"}


def _light_case(name: str, tmp_path: Path, verify: bool = True) -> Case:
    """The zoo's model copied into tmp_path: outputs never go next to site-packages."""
    model = tmp_path / "models" / f"light_{name}.onnx"
    model.parent.mkdir(exist_ok=True)
    shutil.copyfile(LIGHT_DIR / model.name, model)
    expected = _float_param_count(onnx.load(str(model)))
    return Case(model, itemsize=4, expected_params=expected, verify=verify)


def test_light_zoo_is_present() -> None:
    found = sorted(p.stem.removeprefix("light_") for p in LIGHT_DIR.glob("light_*.onnx"))
    assert found == sorted(LIGHT)


@pytest.mark.parametrize(
    ("name", "check"),
    [
        pytest.param(
            name,
            check,
            id=f"light-{name}",
            marks=[pytest.mark.slow] if name in _SLOW_LIGHT else [],
        )
        for name, check in LIGHT.items()
    ],
)
def test_light_model(name: str, check: bool, tmp_path: Path, cwd: Path) -> None:
    sweep_gpu(_light_case(name, tmp_path, check), tmp_path)


# ---- exporter-shaped graphs built here -----------------------------------------------

OPSETS = (17, 18, 19, 20, 21, 23)
DTYPES = ("float32", "float16", "bfloat16")


def _built_case(
    name: str, opset: int, dtype: str, tmp_path: Path, identity_output: bool = False
) -> Case:
    model = build(name, opset, dtype, identity_output=identity_output)
    suffix = "-identity" if identity_output else ""
    path = tmp_path / "models" / f"{name}-op{opset}-{dtype}{suffix}.onnx"
    path.parent.mkdir(exist_ok=True)
    onnx.save(model, str(path))
    symbolic = {d.dim_param for v in model.graph.input for d in v.type.tensor_type.shape.dim}
    dims = {k: v for k, v in SYMBOLIC_DIMS.items() if k in symbolic}
    return Case(
        path,
        dims=dims,
        itemsize=_ITEMSIZE[dtype],
        expected_params=_float_param_count(model),
        unresident=unresident_elements(name, dims),
        bfloat16=dtype == "bfloat16",
    )


def _built_params():
    for name in BUILDERS:
        for opset in OPSETS:
            for dtype in DTYPES:
                if not buildable(name, opset, dtype):
                    continue  # bfloat16 Conv/MaxPool/... before opset 22
                # float32 at every opset and every dtype at the oldest and newest run
                # by default; the rest of the grid is marked slow.
                fast = dtype == "float32" or opset in (17, 23)
                yield pytest.param(
                    name,
                    opset,
                    dtype,
                    id=f"{name}-op{opset}-{dtype}",
                    marks=[] if fast else [pytest.mark.slow],
                )


@pytest.mark.parametrize(("name", "opset", "dtype"), list(_built_params()))
def test_built_model(name: str, opset: int, dtype: str, tmp_path: Path, cwd: Path) -> None:
    sweep_gpu(_built_case(name, opset, dtype, tmp_path), tmp_path)


@pytest.mark.parametrize(
    ("name", "opset", "dtype"),
    [
        # An Identity making a graph output once got its producer folded as a constant.
        pytest.param(name, opset, dtype, id=f"{name}-op{opset}-{dtype}-identity-output")
        for name, opset, dtype in (
            ("transformer", 18, "float32"),
            ("transformer", 23, "bfloat16"),
            ("seqcls", 18, "float16"),
            ("convnet", 20, "float32"),
        )
    ],
)
def test_built_model_identity_output(
    name: str, opset: int, dtype: str, tmp_path: Path, cwd: Path
) -> None:
    """torch exports an output that aliases an intermediate as Identity(intermediate)."""
    sweep_gpu(_built_case(name, opset, dtype, tmp_path, identity_output=True), tmp_path)


# ---- examples/llama.py's tiny Llama --------------------------------------------------

LLAMA_DIMS = {"prefill": {"batch": 2, "seq": 8}, "decode": {"batch": 2, "past": 8}}


def _llama_case(kind: str, dtype: str, opset: int, tmp_path: Path) -> Case:
    path = tmp_path / "models" / f"llama-tiny-{kind}-{dtype}-op{opset}.onnx"
    path.parent.mkdir(exist_ok=True)
    llama.build(path, "tiny", kind=kind, weights="random", dtype=dtype, opset=opset)
    return Case(
        path,
        dims=LLAMA_DIMS[kind],
        itemsize=_ITEMSIZE[dtype],
        expected_params=llama.analytic_param_count("tiny"),
        literal_slack=0.01,
        bfloat16=dtype == "bfloat16",
    )


def _llama_params():
    for kind in ("prefill", "decode"):
        for dtype in DTYPES:
            yield pytest.param(kind, dtype, 18, id=f"llama-tiny-{kind}-{dtype}")
        # opset 23: the fused RMSNormalization
        yield pytest.param(kind, "bfloat16", 23, id=f"llama-tiny-{kind}-bfloat16-op23")


@pytest.mark.parametrize(("kind", "dtype", "opset"), list(_llama_params()))
def test_llama_tiny(kind: str, dtype: str, opset: int, tmp_path: Path, cwd: Path) -> None:
    sweep_gpu(_llama_case(kind, dtype, opset, tmp_path), tmp_path)


# ---- a few of them on a wafer --------------------------------------------------------

_WAFER_CASES: dict[str, Callable[[Path], Case]] = {
    "light-squeezenet": lambda tmp: _light_case("squeezenet", tmp),
    "light-inception_v1": lambda tmp: _light_case("inception_v1", tmp),
    "transformer-op23-float32": lambda tmp: _built_case("transformer", 23, "float32", tmp),
    "convnet-op23-bfloat16": lambda tmp: _built_case("convnet", 23, "bfloat16", tmp),
    "llama-tiny-decode-float32": lambda tmp: _llama_case("decode", "float32", 18, tmp),
}


@pytest.mark.slow
@pytest.mark.parametrize("which", [pytest.param(k, id=f"wse2-{k}") for k in _WAFER_CASES])
def test_wafer(which: str, tmp_path: Path, cwd: Path) -> None:
    sweep_wafer(_WAFER_CASES[which](tmp_path), tmp_path)

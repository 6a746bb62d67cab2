"""`partition export --symbolic-dims`: stage files with the model's dims left open, which
chain to the whole model at dims other than the plan's, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from examples import llama
from partitioner.errors import UsageError
from partitioner.export.symbolic import _check_own_work
from passes.load import load
from tests.cli import run_cli
from tests.partitioner.chain import assert_chain_is_the_whole


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny Llama decode/prefill pair planned on two stages, exported with open dims."""
    folder = tmp_path_factory.mktemp("symbolic")
    decode = llama.build(folder / "decode.onnx", "tiny", kind="decode", weights="random")
    prefill = llama.build(folder / "prefill.onnx", "tiny", kind="prefill", weights="random")
    plan, out = folder / "plan.json", folder / "serve"
    made = run_cli(str(decode), "--target", "h100x4", "--tp", "1", "--pp", "2", "--objective",
                   "throughput", "--dim", "batch=1", "--dim", "past=63", "--prefill",
                   str(prefill), "-o", str(plan), "-q")  # fmt: skip
    assert made.code == 0, made.err
    result = run_cli("export", str(decode), str(plan), "--prefill", str(prefill),
                     "--symbolic-dims", "--triton", "--out", str(out))  # fmt: skip
    assert result.code == 0, result.err
    return folder, decode, prefill, plan, out


def _feeds(session: ort.InferenceSession, dims: dict[str, int], seed: int) -> dict:
    """Random inputs for the whole graph at ``dims`` (positions run on from ``past``)."""
    rng, feeds = np.random.default_rng(seed), {}
    for i in session.get_inputs():
        shape = [dims[d] if isinstance(d, str) else d for d in i.shape]
        if i.name == "input_ids":
            feeds[i.name] = rng.integers(0, 256, shape).astype(np.int64)
        elif i.name == "position_ids":
            feeds[i.name] = np.broadcast_to(np.arange(shape[1]) + dims.get("past", 0), shape)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    return {k: np.ascontiguousarray(v) for k, v in feeds.items()}


def _assert_chain_is_the_whole(out, stages, whole_path, dims: dict[str, int]) -> None:
    feeds = _feeds(ort.InferenceSession(str(whole_path)), dims, seed=sum(dims.values()))
    assert_chain_is_the_whole(out, stages, whole_path, feeds)


@pytest.mark.parametrize("batch, past", [(1, 63), (3, 10), (5, 200)])
def test_decode_stages_chain_to_the_whole_model_at_any_batch_and_context(served, batch, past):
    _, decode, _, _, out = served
    manifest = json.loads((out / "manifest.json").read_text())
    _assert_chain_is_the_whole(out, manifest["stages"], decode, {"batch": batch, "past": past})


@pytest.mark.parametrize("batch, seq", [(1, 64), (2, 7)])
def test_prefill_stages_chain_to_the_whole_prefill_graph_at_any_size(served, batch, seq):
    _, _, prefill, _, out = served
    manifest = json.loads((out / "manifest.json").read_text())
    stages = manifest["prefill_stages"]
    _assert_chain_is_the_whole(out, stages, prefill, {"batch": batch, "seq": seq})


def test_the_triton_configs_leave_the_open_dims_to_the_request(served):
    *_, out = served
    config = (out / "triton" / "partition0" / "config.pbtxt").read_text()
    assert 'name: "input_ids"' in config and "dims: [ -1, 1 ]" in config


def test_without_the_flag_the_stage_files_stay_at_the_plans_dims(served, tmp_path):
    _, decode, _, plan, _ = served
    fixed = tmp_path / "fixed"
    assert run_cli("export", str(decode), str(plan), "--out", str(fixed)).code == 0
    first = ort.InferenceSession(str(fixed / "partition0.onnx")).get_inputs()[0]
    assert first.shape == [1, 1]


def test_a_tensor_parallel_plan_is_refused_in_one_line(served, tmp_path):
    folder, decode, *_ = served
    plan, out = tmp_path / "tp.json", tmp_path / "never"
    made = run_cli(str(decode), "--target", "h100x4", "--tp", "2", "--pp", "1", "--dim",
                   "batch=1", "--dim", "past=63", "-o", str(plan), "-q")  # fmt: skip
    assert made.code == 0, made.err
    result = run_cli("export", str(decode), str(plan), "--symbolic-dims", "--out", str(out))
    assert result.code == 2 and "tensor-parallel" in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert not out.exists()


def test_a_cut_that_reaches_into_another_stage_is_refused(served):
    """A stage may add a token input for its shape, never another stage's KV cache or
    weights (it would compute what it should receive)."""
    import onnx

    from partitioner.export.stages import StageModel
    from partitioner.plan import Plan

    _, decode, _, plan_path, out = served
    plan = Plan.from_json(plan_path.read_text())
    graph = load(decode, dict(plan.model.dims))
    first, second = plan.partitions
    stage = StageModel(second.id, 1, 0, second.devices, "partition1", onnx.ModelProto(), (),
                       (), False)  # fmt: skip
    own = onnx.load(out / "partition1.onnx", load_external_data=False)
    _check_own_work(graph, stage, set(second.nodes), own, [])  # its own nodes: fine
    with pytest.raises(UsageError, match="KV cache"):
        _check_own_work(graph, stage, set(second.nodes), own, ["past.0.key"])
    other = onnx.load(out / "partition0.onnx", load_external_data=False)
    with pytest.raises(UsageError, match="would recompute node"):
        _check_own_work(graph, stage, set(second.nodes), other, [])

"""`partition export --prefill` and `verify --prefill`: a decode/prefill pair's prefill
file split as the plan prices it, stage files that chain to the whole prefill graph, the
split run by our executor against onnxruntime, and one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from examples import llama
from tests.cli import run_cli
from tests.partitioner.chain import assert_chain_is_the_whole


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    decode = llama.build(folder / "decode.onnx", "tiny", kind="decode", weights="random")
    prefill = llama.build(folder / "prefill.onnx", "tiny", kind="prefill", weights="random")
    plan = folder / "plan.json"
    made = run_cli(str(decode), "--target", "h100x4", "--tp", "1", "--pp", "2", "--dim",
                   "batch=1", "--dim", "past=63", "--prefill", str(prefill), "-o", str(plan),
                   "-q")  # fmt: skip
    assert made.code == 0, made.err
    return folder, decode, prefill, plan


def _prompt() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256, (1, 64)).astype(np.int64)
    return {"input_ids": ids, "position_ids": np.arange(64, dtype=np.int64)[None]}


def test_prefill_stages_chain_to_the_whole_prefill_graph(pair, tmp_path):
    folder, decode, prefill, plan = pair
    out = tmp_path / "serve"
    result = run_cli("export", str(decode), str(plan), "--prefill", str(prefill), "--out", str(out))
    assert result.code == 0, result.err
    assert "2 prefill stage files" in result.out
    manifest = json.loads((out / "manifest.json").read_text())
    stages = manifest["prefill_stages"]
    assert [s["file"] for s in stages] == ["prefill_partition0.onnx", "prefill_partition1.onnx"]
    _assert_chain_is_the_whole(out, stages, prefill)
    # each stage writes the KV cache of its own layers, which its decode stage reads
    decode_stages = manifest["stages"]
    for prompt_stage, step_stage in zip(stages, decode_stages, strict=True):
        written = {o.replace("present", "past") for o in prompt_stage["outputs"] if "present" in o}
        assert written == {i for i in step_stage["inputs"] if i.startswith("past")}


def _assert_chain_is_the_whole(out, stages, prefill) -> None:
    """The stage files run in manifest order with plain onnxruntime compute what the whole
    prefill graph does."""
    assert_chain_is_the_whole(out, stages, prefill, _prompt())


def test_a_wafer_plan_splits_the_prefill_onto_its_regions(pair, tmp_path):
    folder, decode, prefill, _ = pair
    plan, out = tmp_path / "wafer.json", tmp_path / "serve"
    made = run_cli(str(decode), "--target", "wse3", "--dim", "batch=1", "--dim", "past=63",
                   "--prefill", str(prefill), "-o", str(plan), "-q")  # fmt: skip
    assert made.code == 0, made.err
    result = run_cli("export", str(decode), str(plan), "--prefill", str(prefill), "--out", str(out))
    assert result.code == 0, result.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["prefill_stages"]) == len(manifest["stages"]) > 2  # one per region
    _assert_chain_is_the_whole(out, manifest["prefill_stages"], prefill)


def test_the_decode_stages_are_the_same_with_or_without_prefill(pair, tmp_path):
    folder, decode, prefill, plan = pair
    plain, both = tmp_path / "plain", tmp_path / "both"
    assert run_cli("export", str(decode), str(plan), "--out", str(plain)).code == 0
    assert run_cli("export", str(decode), str(plan), "--prefill", str(prefill),
                   "--out", str(both)).code == 0  # fmt: skip
    for name in ("partition0.onnx", "partition1.onnx"):
        assert (plain / name).read_bytes() == (both / name).read_bytes()
    assert "prefill_stages" not in json.loads((plain / "manifest.json").read_text())


def test_refusals_are_one_line_and_write_nothing(pair, tmp_path):
    folder, decode, prefill, plan = pair
    alone = tmp_path / "alone.json"  # the same decode plan, made without the prefill file
    made = run_cli(str(decode), "--target", "h100x4", "--tp", "1", "--pp", "2", "--dim",
                   "batch=1", "--dim", "past=63", "-o", str(alone), "-q")  # fmt: skip
    assert made.code == 0, made.err
    other = llama.build(tmp_path / "other.onnx", "tiny", kind="prefill", weights="random", seed=1)
    cases = [
        ((str(decode), str(alone), "--prefill", str(prefill)), "made without a prefill file"),
        ((str(decode), str(plan), "--prefill", str(other)), "not the prefill file the plan"),
        ((str(decode), str(plan), "--prefill-dim", "x=1"), "--prefill-dim needs --prefill"),
    ]
    for argv, says in cases:
        out = tmp_path / "never"
        result = run_cli("export", *argv, "--out", str(out))
        assert result.code == 2, result.err
        assert len(result.err.strip().splitlines()) == 1 and says in result.err
        assert "Traceback" not in result.err and not out.exists()


def test_verify_runs_the_prefill_split_with_the_executor(pair):
    folder, decode, prefill, plan = pair
    result = run_cli("verify", str(decode), str(plan), "--prefill", str(prefill), "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["ok"] and doc["prefill"]["ok"]
    names = {o["name"] for o in doc["prefill"]["outputs"]}
    assert names == {"logits", "present.0.key", "present.0.value", "present.1.key",
                     "present.1.value"}  # fmt: skip
    assert "partitions" not in doc["prefill"]  # no memory: the plan holds none for a prompt
    # with no tolerance at all the float32 rounding shows, and the prefill run says so
    exact = run_cli("verify", str(decode), str(plan), "--prefill", str(prefill), "--rtol", "0",
                    "--atol", "0")  # fmt: skip
    assert exact.code == 1 and "prefill: mismatch" in exact.err


def test_verify_refuses_a_prefill_file_for_a_plan_made_without_one(pair, tmp_path):
    folder, decode, prefill, _ = pair
    alone = tmp_path / "alone.json"
    made = run_cli(str(decode), "--target", "h100x4", "--tp", "1", "--pp", "2", "--dim",
                   "batch=1", "--dim", "past=63", "-o", str(alone), "-q")  # fmt: skip
    assert made.code == 0, made.err
    result = run_cli("verify", str(decode), str(alone), "--prefill", str(prefill))
    assert result.code == 2 and "made without a prefill file" in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err

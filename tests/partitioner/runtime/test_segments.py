"""A tensor-parallel rank's segments under onnxruntime: its parameters are the sessions'
initializers, taken from memory once, not inputs fed every run."""

from __future__ import annotations

import numpy as np
from onnx import helper

from partitioner.executor.tensor_parallel import Segment
from partitioner.runtime.engines import EngineConfig, _segment_runner


def test_a_segment_holds_the_ranks_parameters_and_reads_only_its_activations():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 32)).astype(np.float32)  # 8 KiB: taken from memory
    shape = np.array([2, 16, 2], np.int64)  # a shape constant: inline, for shape inference
    nodes = (
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Reshape", ["h", "shape"], ["y"]),
    )
    run = _segment_runner(Segment(nodes, None, frozenset({"y"})), {"": 17}, "ort",
                          EngineConfig(), {"w": weight, "shape": shape})  # fmt: skip
    x = rng.standard_normal((2, 64)).astype(np.float32)
    out = run({"x": x, "w": weight, "shape": shape})
    np.testing.assert_allclose(out["y"], (x @ weight).reshape(2, 16, 2), rtol=1e-5)
    # a second run given only the activation: the weight and the shape are the session's
    # own (fed, they would be looked up in what the run is given, and missing)
    x2 = rng.standard_normal((2, 64)).astype(np.float32)
    np.testing.assert_allclose(run({"x": x2})["y"], (x2 @ weight).reshape(2, 16, 2), rtol=1e-5)


class _SlowGathers:
    """A group of one rank's collectives (each rank's share doubled) whose all-gathers
    take ``gather_s`` each."""

    def __init__(self, gather_s: float) -> None:
        self.gather_s = gather_s

    def all_reduce(self, value):
        return value + value

    def all_gather(self, value, axis):
        import time

        time.sleep(self.gather_s)
        return np.concatenate([value, value], axis=axis)


def test_gathers_that_make_split_outputs_whole_are_timed_apart_from_compute(tmp_path):
    """A tensor-parallel decode step keeps its KV cache split by heads; the run gathers it
    whole for rank 0's check. That is neither the plan's collectives nor compute."""
    from pathlib import Path

    from examples import llama
    from partitioner.planning import GpuOptions, plan_pipeline
    from partitioner.runtime.program import RankProgram, load_run
    from passes.load import load
    from tests.partitioner.gpu_targets import toy_target

    model = llama.build(tmp_path / "t.onnx", "tiny", kind="decode", weights="random")
    graph = load(model, {"batch": 1, "past": 8})
    plan = plan_pipeline(graph, toy_target([10**9] * 2), GpuOptions(pp=1, tp=2)).plan
    plan_path = Path(tmp_path / "t.plan.json")
    plan_path.write_text(plan.to_json())
    program = RankProgram(load_run(model, plan_path), 0, "ort", EngineConfig())
    _, timing = program.compute(program.feeds(0, 0), {}, _SlowGathers(0.02))
    names = [name for name, _, _ in timing.gathered]
    assert names and all(n.startswith("present.") for n in names)  # the KV cache, whole
    assert all(seconds >= 0.02 for _, _, seconds in timing.gathered)
    assert timing.compute_s < 0.02 * len(names)  # none of their time counts as compute
    planned = {c.tensor for c in plan.collectives}
    assert not planned & set(names)

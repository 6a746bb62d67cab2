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

"""One partition run on its own: what it needs, what it hands back, what it held."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

import partitioner.executor as executor
from partitioner.executor.graph_run import (
    MissingInputError,
    PlanExecutionError,
    run_graph,
    run_partition,
)
from partitioner.plan import Partition
from passes.load import load
from tests.modelgen import init, make_model, save, vi

W = np.array([[1, 2], [3, 4]], np.float32)
X = np.array([[1, 1], [0, 2]], np.float32)
H = np.array([[-1, 2], [3, -4]], np.float32)
PAST = np.ones((2, 2), np.float32)


@pytest.fixture
def graph(tmp_path):
    """0: h = MatMul(x, w); 1: r = Relu(h); 2: y = Add(r, past_k), past_k a KV-cache input."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "past_k"], ["y"], name="add"),
    ]
    model = make_model(
        nodes, [vi("x", [2, 2]), vi("past_k", [2, 2])], [vi("y", [2, 2])], [init("w", W)]
    )
    return load(save(model, tmp_path / "m.onnx"))


def _partition(pid: int, nodes: tuple[int, ...]) -> Partition:
    """A plan partition with only its id and nodes set: all `run_partition` reads of it.
    (Sizes are zero; the record's other fields are filled generically so the test does
    not depend on them.)"""
    required = [f.name for f in dataclasses.fields(Partition) if f.default is dataclasses.MISSING]
    return Partition(**{**dict.fromkeys(required, 0), "id": pid, "nodes": nodes})


def test_first_partition_runs_from_its_inbox_and_weights(graph):
    result = run_partition(graph, _partition(0, (0,)), {"x": X}, {"w": W}, {}, keep={"h"})
    # [[1,1],[0,2]] @ [[1,2],[3,4]] = [[1+3, 2+4], [0+6, 0+8]]
    np.testing.assert_array_equal(result.outbox["h"], [[4, 6], [6, 8]])
    assert set(result.outbox) == {"h"}
    # x and h (16 B each) live together after the MatMul; the weight w does not count
    assert result.peak_bytes == 32


def test_second_partition_reads_its_kv_cache_resident(graph):
    result = run_partition(graph, _partition(1, (1, 2)), {"h": H}, {}, {"past_k": PAST}, keep={"y"})
    # relu([[-1,2],[3,-4]]) + 1
    np.testing.assert_array_equal(result.outbox["y"], [[1, 3], [4, 1]])
    # after each node three float32[2,2] values are live (h, past_k, r; then past_k, r, y)
    assert result.peak_bytes == 3 * 16


def test_partitions_chained_by_hand_equal_the_whole_graph(graph):
    first = run_partition(graph, _partition(0, (0,)), {"x": X}, {"w": W}, {}, keep={"h"})
    second = run_partition(
        graph, _partition(1, (1, 2)), first.outbox, {}, {"past_k": PAST}, keep={"y"}
    )
    whole = run_graph(graph, {"x": X, "past_k": PAST})
    np.testing.assert_array_equal(second.outbox["y"], whole["y"])


def test_a_kept_value_it_only_received_is_passed_on(graph):
    """A relay: x arrives, is not read here, and leaves again unchanged."""
    result = run_partition(
        graph, _partition(1, (1, 2)), {"h": H, "x": X}, {}, {"past_k": PAST}, keep={"y", "x"}
    )
    assert result.outbox["x"] is X


def test_missing_received_value_names_partition_and_tensor(graph):
    with pytest.raises(MissingInputError, match=r"partition 1 needs tensor 'h', which it") as info:
        run_partition(graph, _partition(1, (1, 2)), {}, {}, {"past_k": PAST}, keep={"y"})
    assert (info.value.partition_id, info.value.tensor) == (1, "h")


def test_kv_cache_not_given_is_missing(graph):
    with pytest.raises(MissingInputError) as info:
        run_partition(graph, _partition(1, (1, 2)), {"h": H}, {}, {}, keep={"y"})
    assert info.value.tensor == "past_k"


def test_missing_weight_is_a_plan_error_naming_it(graph):
    with pytest.raises(PlanExecutionError, match=r"partition 0 reads parameter 'w'") as info:
        run_partition(graph, _partition(0, (0,)), {"x": X}, {}, {}, keep={"h"})
    assert not isinstance(info.value, MissingInputError)


def test_package_front_door_is_lazy_and_exports_the_runner():
    assert executor.run_partition is run_partition
    assert "run_partition" in dir(executor) and "verify_plan" in executor.__all__
    for name in executor.__all__:  # each exported name resolves to its module's object
        value = getattr(executor, name)
        assert getattr(sys.modules[value.__module__], name) is value
    with pytest.raises(AttributeError):
        _ = executor.no_such_name
    code = (
        "import sys, partitioner.executor; "
        "print(any(m.startswith(('onnxruntime', 'partitioner.executor.kernels')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

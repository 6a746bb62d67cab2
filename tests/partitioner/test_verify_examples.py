"""Every exported example, from both torch exporters, verifies partition by partition.

This is the executor's coverage of real exports: a missing kernel, a wrong
kernel, or a plan that drops a tensor fails here against onnxruntime.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from examples import bert, gpt2, mlp, resnet  # noqa: E402
from partitioner.executor.verify import make_inputs, verify_plan  # noqa: E402
from partitioner.planning import GpuOptions, plan_pipeline  # noqa: E402
from passes.load import load  # noqa: E402
from tests.partitioner.gpu_targets import toy_target  # noqa: E402

pytestmark = pytest.mark.slow

DIMS = {
    "gpt2": {"batch": 2, "seq": 7},
    "bert": {"batch": 2, "seq": 7},
    "mlp": {"batch": 3},
    "resnet": {"batch": 2, "height": 32, "width": 32},
}
MODULES = {"gpt2": gpt2, "bert": bert, "mlp": mlp, "resnet": resnet}


@pytest.mark.parametrize(
    "name,exporter,opset",
    [
        ("gpt2", "dynamo", 18),
        ("gpt2", "legacy", 17),
        ("gpt2", "dynamo", 23),
        ("bert", "dynamo", 18),
        ("bert", "legacy", 17),
        ("resnet", "dynamo", 18),
        ("resnet", "legacy", 17),
        ("mlp", "dynamo", 20),
    ],
)
def test_example_plans_verify(tmp_path, name, exporter, opset):
    module = MODULES[name]
    path = module.build(tmp_path / f"{name}.onnx", "tiny", exporter=exporter, opset=opset)
    graph = load(path, DIMS[name])
    plan = plan_pipeline(graph, toy_target([10**9] * 3), GpuOptions(time_limit_s=5, pp=3)).plan
    report = verify_plan(graph, plan, make_inputs(graph, seed=0))
    assert report.ok, [(c.name, c.max_abs, c.max_rel) for c in report.outputs]
    assert len(plan.partitions) == 3

"""ONNX backend node test cases for every NN op we claim: at least 95 % must pass per op.

Print the per-op table with ``python -m tests.partitioner.nn_nodecase_harness``.
"""

from __future__ import annotations

import pytest

from tests.partitioner.nn_nodecase_harness import import_nn_kernels, node_cases, run_case

CLAIMED_OPS = frozenset(
    {
        "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "HardSigmoid", "HardSwish",
        "Softplus", "Softsign", "ThresholdedRelu", "Mish", "Swish",
        "Softmax", "LogSoftmax", "Hardmax", "Dropout",
        "Conv", "ConvTranspose", "ConvInteger", "QLinearConv",
        "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
        "MaxUnpool",
        "BatchNormalization", "LayerNormalization", "GroupNormalization", "InstanceNormalization",
        "RMSNormalization", "LRN", "LpNormalization", "MeanVarianceNormalization",
        "Attention", "RotaryEmbedding", "Resize", "Upsample", "RNN", "GRU", "LSTM",
        "Col2Im", "AffineGrid", "GridSample", "RoiAlign", "DeformConv",
        "DFT", "STFT", "MelWeightMatrix",
        "SwiGLU",
    }
)  # fmt: skip

PASS_RATE_FLOOR = 0.95


@pytest.fixture(scope="module")
def cases_by_op() -> dict[str, list]:
    import_nn_kernels()
    return node_cases(CLAIMED_OPS)


@pytest.mark.parametrize("op_type", sorted(CLAIMED_OPS))
def test_node_cases_pass_rate(op_type: str, cases_by_op: dict[str, list]) -> None:
    cases = cases_by_op.get(op_type, [])
    if not cases:
        pytest.skip(f"the ONNX test suite has no single-node case for {op_type}")
    results = [run_case(case) for case in cases]
    failures = [f"{r.name}: {r.message}" for r in results if not r.passed]
    rate = 1 - len(failures) / len(results)
    assert rate >= PASS_RATE_FLOOR, f"{op_type} {rate:.0%} passed; failures:\n" + "\n".join(
        failures
    )

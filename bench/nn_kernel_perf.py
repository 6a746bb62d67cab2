"""Time the NumPy NN kernels against onnxruntime on ResNet-18 and GPT-2 layer shapes.

Run: ``python -m bench.nn_kernel_perf [--threads N] [--reps R]``. Prints one row per layer:
the median wall time of our kernel and of a one-node onnxruntime session (weights as
initializers, so onnxruntime may prepack them as it does in a real model) and the ratio.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bench._common import median_s
from partitioner.executor import registry
from tests.partitioner.nn_nodecase_harness import import_nn_kernels

__all__ = ["Case", "cases", "main"]


@dataclass(frozen=True)
class Case:
    """One layer: an ONNX node, its runtime inputs and its constant inputs (weights)."""

    name: str
    op_type: str
    inputs: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    attrs: dict
    opset: int
    n_outputs: int = 1


def _rand(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(shape) * scale).astype(np.float32)


def _conv(
    name: str, n: int, c: int, m: int, hw: int, k: int, s: int, p: int, group: int = 1
) -> Case:
    return Case(
        name, "Conv", {"x": _rand(n, c, hw, hw)}, {"w": _rand(m, c // group, k, k, scale=0.05),
        "b": _rand(m)}, {"strides": [s, s], "pads": [p] * 4, "group": group}, 13,
    )  # fmt: skip


def cases() -> list[Case]:
    """ResNet-18 (batch 1, 224x224) and GPT-2 small (batch 1, 128 tokens) layers."""
    bn_stats = {"s": _rand(64), "b": _rand(64), "m": _rand(64), "v": np.abs(_rand(64)) + 0.5}
    return [
        _conv("resnet conv1 7x7/2 3->64 @224", 1, 3, 64, 224, 7, 2, 3),
        Case(
            "resnet bn 64@112",
            "BatchNormalization",
            {"x": _rand(1, 64, 112, 112)},
            bn_stats,
            {},
            15,
        ),
        Case("resnet relu 64@112", "Relu", {"x": _rand(1, 64, 112, 112)}, {}, {}, 14),
        Case(
            "resnet maxpool 3x3/2 @112 (Y only)",
            "MaxPool",
            {"x": _rand(1, 64, 112, 112)},
            {},
            {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4},
            12,
        ),  # fmt: skip
        _conv("resnet layer1 conv 3x3 64@56", 1, 64, 64, 56, 3, 1, 1),
        _conv("resnet layer2 conv 3x3/2 64->128", 1, 64, 128, 56, 3, 2, 1),
        _conv("resnet layer2 downsample 1x1/2", 1, 64, 128, 56, 1, 2, 0),
        _conv("resnet layer2 conv 3x3 128@28", 1, 128, 128, 28, 3, 1, 1),
        _conv("resnet layer3 conv 3x3 256@14", 1, 256, 256, 14, 3, 1, 1),
        _conv("resnet layer4 conv 3x3 512@7", 1, 512, 512, 7, 3, 1, 1),
        _conv("resnet layer1 conv batch 8", 8, 64, 64, 56, 3, 1, 1),
        _conv("mobilenet depthwise 3x3 144@56", 1, 144, 144, 56, 3, 1, 1, group=144),
        Case(
            "resnet global avgpool 512@7",
            "GlobalAveragePool",
            {"x": _rand(1, 512, 7, 7)},
            {},
            {},
            13,
        ),
        Case(
            "gpt2 layernorm 128x768",
            "LayerNormalization",
            {"x": _rand(1, 128, 768)},
            {"s": _rand(768), "b": _rand(768)},
            {"axis": -1},
            17,
        ),  # fmt: skip
        Case("gpt2 softmax 12x128x128", "Softmax", {"x": _rand(1, 12, 128, 128)}, {}, {}, 13),
        Case(
            "gpt2 gelu tanh 128x3072",
            "Gelu",
            {"x": _rand(1, 128, 3072)},
            {},
            {"approximate": "tanh"},
            20,
        ),
        Case("bert gelu erf 128x3072", "Gelu", {"x": _rand(1, 128, 3072)}, {}, {}, 20),
        Case(
            "gpt2 attention causal 128x768",
            "Attention",
            {"q": _rand(1, 128, 768), "k": _rand(1, 128, 768), "v": _rand(1, 128, 768)},
            {},
            {"q_num_heads": 12, "kv_num_heads": 12, "is_causal": 1},
            23,
        ),  # fmt: skip
        Case(
            "resize linear 2x 64@56",
            "Resize",
            {"x": _rand(1, 64, 56, 56)},
            {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)},
            {"mode": "linear"},
            19,
        ),  # fmt: skip
        Case(
            "resize nearest 2x 256@20",
            "Resize",
            {"x": _rand(1, 256, 20, 20)},
            {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)},
            {"mode": "nearest"},
            19,
        ),  # fmt: skip
    ]


def _session(case: Case, threads: int) -> ort.InferenceSession:
    names = list(case.inputs) + list(case.weights)
    node = helper.make_node(
        case.op_type, names, [f"y{i}" for i in range(case.n_outputs)], **case.attrs
    )
    inputs = [
        helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in case.inputs.items()
    ]
    outputs = [helper.make_empty_tensor_value_info(f"y{i}") for i in range(case.n_outputs)]
    inits = [numpy_helper.from_array(v, k) for k, v in case.weights.items()]
    graph = helper.make_graph([node], "g", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = all)"
    )
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    import_nn_kernels()
    all_cases = cases()
    # every numpy timing first: onnxruntime's idle pool threads spin and would steal the
    # cores that OpenBLAS's threads need
    numpy_s = []
    for case in all_cases:
        reg = registry.lookup(case.op_type, "", case.opset)
        args_in = [*case.inputs.values(), *case.weights.values()]
        extra = {}
        if reg.needs_context:  # as the runner would call it: only the outputs the node declares
            extra["ctx"] = SimpleNamespace(opset=case.opset, num_outputs=case.n_outputs)
        numpy_s.append(
            median_s(lambda r=reg, a=args_in, c=case, e=extra: r.fn(*a, **c.attrs, **e), args.reps)
        )
    print(f"{'layer':40s} {'numpy ms':>9s} {'ort ms':>8s} {'ratio':>6s}")
    total_np = total_ort = 0.0
    for case, np_s in zip(all_cases, numpy_s, strict=True):
        session = _session(case, args.threads)
        ort_s = median_s(lambda s=session, c=case: s.run(None, c.inputs), args.reps)
        del session
        total_np += np_s
        total_ort += ort_s
        print(f"{case.name:40s} {np_s * 1e3:9.2f} {ort_s * 1e3:8.2f} {np_s / ort_s:6.2f}")
    print(f"{'sum':40s} {total_np * 1e3:9.2f} {total_ort * 1e3:8.2f} {total_np / total_ort:6.2f}")


if __name__ == "__main__":
    main()

"""A plain multi-layer perceptron written in torch and exported to ONNX.

``depth`` hidden Linear layers of ``hidden_features`` units, each followed by GELU or ReLU,
then an output Linear. The simplest chain the planner can split.

Graph: input ``features`` float32 [batch, in_features] -> output ``logits``
[batch, out_features]; ``batch`` is symbolic.

Example::

    python -m examples.mlp --size base --out /tmp/mlp.onnx
    python -m examples.mlp --depth 16 --width 2048 --activation relu --out /tmp/mlp16.onnx
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from examples._example_cli import example_parser, run_example_cli
from examples._onnx_utils import ExampleError, reports_errors
from examples._torch_example import ExportSignature, TorchExample
from examples._torch_export import DEFAULT_OPSET, Exporter, SymbolicDim, TensorSpec

__all__ = ["CONFIGS", "MLP", "MLPConfig", "build", "main", "make_model", "torch_param_count"]

logger = logging.getLogger(__name__)

Activation = Literal["gelu", "relu"]


@dataclass(frozen=True)
class MLPConfig:
    """MLP shape.

    Attributes:
        in_features: Input width.
        hidden_features: Width of every hidden layer.
        depth: Number of hidden layers (Linear + activation); at least 1.
        out_features: Output width.
        activation: ``"gelu"`` (exact, erf) or ``"relu"``.
    """

    in_features: int
    hidden_features: int
    depth: int
    out_features: int
    activation: Activation = "gelu"

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ExampleError(f"depth {self.depth} must be at least 1")
        if min(self.in_features, self.hidden_features, self.out_features) < 1:
            raise ExampleError("in/hidden/out features must be positive")
        if self.activation not in ("gelu", "relu"):
            raise ExampleError(f"unknown activation {self.activation!r}; use 'gelu' or 'relu'")


CONFIGS: dict[str, MLPConfig] = {
    "tiny": MLPConfig(in_features=16, hidden_features=32, depth=2, out_features=8),
    "base": MLPConfig(in_features=1024, hidden_features=4096, depth=8, out_features=1024),
}


class MLP(nn.Module):
    """``features`` [batch, in] -> ``logits`` [batch, out]."""

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = config.in_features
        for _ in range(config.depth):
            layers.append(nn.Linear(width, config.hidden_features))
            layers.append(nn.GELU() if config.activation == "gelu" else nn.ReLU())
            width = config.hidden_features
        layers.append(nn.Linear(width, config.out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def _signature(config: MLPConfig) -> ExportSignature:
    batch_dim = SymbolicDim("batch")
    return ExportSignature(
        (torch.randn(2, config.in_features),),
        inputs=[TensorSpec("features", {0: batch_dim})],
        outputs=[TensorSpec("logits", {0: batch_dim})],
    )


_EXAMPLE = TorchExample(MLP, MLPConfig, CONFIGS, "MLP size", _signature)
#: ``make_model(config, seed=0)``: the model :func:`build` exports (seeded random weights,
#: eval mode).
make_model = _EXAMPLE.make_model


def torch_param_count(config: str | MLPConfig) -> int:
    """``sum(p.numel() for p in model.parameters())``; an MLP has no buffers.

    Args:
        config: A size name from :data:`CONFIGS` or a config.

    Returns:
        The parameter count.
    """
    return _EXAMPLE.param_count(config)


def build(
    out_path: str | Path,
    size: str | MLPConfig = "base",
    *,
    exporter: Exporter = "dynamo",
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
) -> Path:
    """Build an MLP with seeded random weights and export it to ONNX.

    Args:
        out_path: Destination ``.onnx`` file.
        size: A name from :data:`CONFIGS` or an :class:`MLPConfig`.
        exporter: ``"dynamo"`` or ``"legacy"``.
        opset: ONNX opset (17..23).
        seed: Seed of the weights.

    Returns:
        The written path.
    """
    return _EXAMPLE.build(out_path, size, exporter=exporter, opset=opset, seed=seed)


def _config_from_args(args: argparse.Namespace) -> MLPConfig:
    overrides = {
        "depth": args.depth,
        "hidden_features": args.width,
        "in_features": args.in_features,
        "out_features": args.out_features,
        "activation": args.activation,
    }
    return replace(CONFIGS[args.size], **{k: v for k, v in overrides.items() if v is not None})


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m examples.mlp --size base --out mlp.onnx``."""
    parser = example_parser(
        "examples.mlp",
        "Export a plain MLP (random weights) to ONNX. Input features float32 "
        "[batch, in]; output logits [batch, out]; batch is symbolic.",
        config_flag="--size",
        config_names=CONFIGS,
        default="base",
        config_help="preset: tiny (16-32x2-8) or base (1024-4096x8-1024, default); the options "
        "below override it",
    )
    parser.add_argument("--depth", type=int, help="number of hidden layers")
    parser.add_argument("--width", type=int, help="units per hidden layer")
    parser.add_argument("--in-features", type=int, help="input width")
    parser.add_argument("--out-features", type=int, help="output width")
    parser.add_argument("--activation", choices=["gelu", "relu"], help="hidden activation")
    return run_example_cli(argv, parser, build, _config_from_args)


if __name__ == "__main__":
    raise SystemExit(main())

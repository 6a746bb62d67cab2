"""ResNet-style CNN written in torch and exported to ONNX.

Stem (7x7/2 conv, BatchNorm, ReLU, 3x3/2 max-pool), stages of BasicBlocks (two 3x3 convs)
or Bottlenecks (1x1, 3x3, 1x1 with 4x expansion) whose shortcut is the identity or, when
the shape changes, a 1x1 strided conv + BatchNorm; then global average pooling and a fully
connected classifier. BatchNorm is exported as ``BatchNormalization`` (not folded into the
convs), so the ONNX float initializers are the parameters plus the BN running statistics:
compare with ``torch_param_count(c) + torch_buffer_count(c)``.

Graph: input ``pixel_values`` float32 [batch, channels, height, width] -> output ``logits``
[batch, num_classes]; ``batch``, ``height`` and ``width`` are symbolic.

Example::

    python -m examples.resnet --preset resnet18 --out /tmp/resnet18.onnx
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from examples._example_cli import example_parser, run_example_cli
from examples._onnx_utils import ExampleError, reports_errors
from examples._torch_example import ExportSignature, TorchExample
from examples._torch_export import DEFAULT_OPSET, Exporter, SymbolicDim, TensorSpec

__all__ = [
    "CONFIGS",
    "ResNet",
    "ResNetConfig",
    "build",
    "main",
    "make_model",
    "torch_buffer_count",
    "torch_param_count",
]

logger = logging.getLogger(__name__)

BlockKind = Literal["basic", "bottleneck"]


@dataclass(frozen=True)
class ResNetConfig:
    """ResNet shape.

    Attributes:
        block: ``"basic"`` (two 3x3 convs) or ``"bottleneck"`` (1x1-3x3-1x1, expansion 4).
        layers: Blocks per stage; stage ``i`` has ``width * 2**i`` channels (times the
            expansion) and halves the resolution from the second stage on.
        width: Channels of the stem and the first stage.
        num_classes: Classifier outputs.
        in_channels: Image channels.
        image_size: Side of the example image used for tracing (the exported height and
            width stay symbolic).
    """

    block: BlockKind
    layers: tuple[int, ...]
    width: int = 64
    num_classes: int = 1000
    in_channels: int = 3
    image_size: int = 224

    def __post_init__(self) -> None:
        if self.block not in ("basic", "bottleneck"):
            raise ExampleError(f"unknown block {self.block!r}; use 'basic' or 'bottleneck'")
        if not self.layers or min(self.layers) < 1:
            raise ExampleError(f"layers {self.layers} must be one or more positive block counts")


CONFIGS: dict[str, ResNetConfig] = {
    "tiny": ResNetConfig("basic", (1, 1), width=8, num_classes=10, image_size=32),
    "tiny-bottleneck": ResNetConfig("bottleneck", (1, 2), width=8, num_classes=10, image_size=32),
    "resnet18": ResNetConfig("basic", (2, 2, 2, 2)),
    "resnet34": ResNetConfig("basic", (3, 4, 6, 3)),
    "resnet50": ResNetConfig("bottleneck", (3, 4, 6, 3)),
    "resnet101": ResNetConfig("bottleneck", (3, 4, 23, 3)),
}


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = _shortcut(in_channels, channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + identity)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        # Stride on the 3x3 conv, as in torchvision's "ResNet v1.5".
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + identity)


class ResNet(nn.Module):
    """ResNet: ``pixel_values`` [batch, C, H, W] -> ``logits`` [batch, num_classes]."""

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = config
        block = _BasicBlock if config.block == "basic" else _Bottleneck
        self.conv1 = nn.Conv2d(config.in_channels, config.width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(config.width)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages: list[nn.Module] = []
        in_channels = config.width
        for index, num_blocks in enumerate(config.layers):
            channels = config.width * 2**index
            blocks: list[nn.Module] = []
            for position in range(num_blocks):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(block(in_channels, channels, stride))
                in_channels = channels * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_channels, config.num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(pixel_values))))
        x = self.stages(x)
        # Global average pooling; [batch, C, H, W] -> [batch, C].
        return self.fc(x.mean(dim=(2, 3)))


def _signature(config: ResNetConfig) -> ExportSignature:
    size = config.image_size
    pixel_values = torch.randn(2, config.in_channels, size, size)
    batch_dim = SymbolicDim("batch")
    # Below 32 pixels the stem and the stride-2 stages would shrink the map to nothing.
    height_dim, width_dim = SymbolicDim("height", min=32), SymbolicDim("width", min=32)
    return ExportSignature(
        (pixel_values,),
        inputs=[TensorSpec("pixel_values", {0: batch_dim, 2: height_dim, 3: width_dim})],
        outputs=[TensorSpec("logits", {0: batch_dim})],
    )


_EXAMPLE = TorchExample(ResNet, ResNetConfig, CONFIGS, "ResNet preset", _signature)
#: ``make_model(config, seed=0)``: the model :func:`build` exports (seeded random weights,
#: eval mode).
make_model = _EXAMPLE.make_model


def torch_param_count(config: str | ResNetConfig) -> int:
    """``sum(p.numel() for p in model.parameters())``: trainable parameters only.

    The exported ONNX also holds the BatchNorm running statistics, so its float
    initializers number ``torch_param_count(c) + torch_buffer_count(c)``.

    Args:
        config: A preset name from :data:`CONFIGS` or a config.

    Returns:
        The parameter count (11,689,512 for ``resnet18``).
    """
    return _EXAMPLE.param_count(config)


def torch_buffer_count(config: str | ResNetConfig) -> int:
    """Elements of the float buffers (BatchNorm ``running_mean`` and ``running_var``).

    The int64 ``num_batches_tracked`` counters are not counted: they are training state
    and are not exported.

    Args:
        config: A preset name from :data:`CONFIGS` or a config.

    Returns:
        The float buffer elements (9,600 for ``resnet18``: 2 x 4,800 BN channels).
    """
    return _EXAMPLE.float_buffer_count(config)


def build(
    out_path: str | Path,
    preset: str | ResNetConfig = "resnet18",
    *,
    exporter: Exporter = "dynamo",
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
) -> Path:
    """Build a ResNet with seeded random weights and BN statistics; export it to ONNX.

    Args:
        out_path: Destination ``.onnx`` file.
        preset: A name from :data:`CONFIGS` or a :class:`ResNetConfig`.
        exporter: ``"dynamo"`` or ``"legacy"``.
        opset: ONNX opset (17..23).
        seed: Seed of the weights.

    Returns:
        The written path.
    """
    return _EXAMPLE.build(out_path, preset, exporter=exporter, opset=opset, seed=seed)


def _config_from_args(args: argparse.Namespace) -> ResNetConfig:
    base = CONFIGS[args.preset]
    return ResNetConfig(
        block=args.block or base.block,
        layers=tuple(args.layers) if args.layers else base.layers,
        width=args.width or base.width,
        num_classes=args.num_classes or base.num_classes,
        in_channels=base.in_channels,
        image_size=base.image_size,
    )


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m examples.resnet --preset resnet18 --out resnet18.onnx``."""
    parser = example_parser(
        "examples.resnet",
        "Export a ResNet-style CNN (random weights, BatchNorm kept) to ONNX. Input "
        "pixel_values float32 [batch, channels, height, width]; output logits "
        "[batch, classes]. batch, height and width are symbolic.",
        config_flag="--preset",
        config_names=CONFIGS,
        default="resnet18",
        config_help="shape preset (default resnet18, 11.69M parameters); --block/--layers/"
        "--width/--num-classes override it",
    )
    parser.add_argument("--block", choices=["basic", "bottleneck"], help="residual block kind")
    parser.add_argument(
        "--layers", type=int, nargs="+", help="blocks per stage, e.g. --layers 2 2 2 2"
    )
    parser.add_argument("--width", type=int, help="channels of the stem and first stage")
    parser.add_argument("--num-classes", type=int, help="classifier outputs")
    return run_example_cli(argv, parser, build, _config_from_args)


if __name__ == "__main__":
    raise SystemExit(main())

"""What the torch examples (``gpt2``, ``bert``, ``mlp``, ``resnet``) have in common.

Each example module defines its ``nn.Module``, its config dataclass and named ``CONFIGS``,
and an :class:`ExportSignature` (example inputs, named inputs and outputs with their
dynamic axes); it declares them once as a :class:`TorchExample`, which resolves config
names, counts parameters on the meta device, makes the seeded model and exports it with
:func:`examples._torch_export.export_module`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import torch

from examples._onnx_utils import resolve_config
from examples._torch_export import DEFAULT_OPSET, Exporter, TensorSpec, export_module

__all__ = ["ExportSignature", "TorchExample", "randomize_parameters_"]

logger = logging.getLogger(__name__)

ConfigT = TypeVar("ConfigT")
ModelT = TypeVar("ModelT", bound=torch.nn.Module)


@dataclass(frozen=True)
class ExportSignature:
    """What a model is traced with and how its graph inputs and outputs are named.

    Attributes:
        example_inputs: Positional inputs to trace with (see
            :func:`examples._torch_export.export_module`).
        inputs: One spec per positional input, in order.
        outputs: One spec per output, in order.
    """

    example_inputs: tuple[torch.Tensor, ...]
    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]


@dataclass(frozen=True)
class TorchExample(Generic[ConfigT, ModelT]):
    """One torch example: what is its own, and the steps every example shares.

    ``gpt2``, ``bert``, ``mlp`` and ``resnet`` each declare one and write their public
    ``torch_param_count``, ``make_model`` and ``build`` with it, so that configs are
    resolved, counted, seeded and exported the same way in every example.

    Attributes:
        model_class: Builds the module from a config.
        config_class: The config dataclass.
        configs: The named configs.
        config_kind: What errors call a name (``"GPT-2 size"``, ``"ResNet preset"``).
        signature: Example inputs and graph input/output specs for a config. It may draw
            from torch's global generator, which :meth:`make_model` has just seeded.
    """

    model_class: Callable[[ConfigT], ModelT]
    config_class: type[ConfigT]
    configs: Mapping[str, ConfigT]
    config_kind: str
    signature: Callable[[ConfigT], ExportSignature]

    def resolve(self, config: str | ConfigT) -> ConfigT:
        """The config itself, or the one of :attr:`configs` it names (see :func:`resolve_config`)."""
        return resolve_config(config, self.configs, self.config_class, self.config_kind)

    def param_count(self, config: str | ConfigT) -> int:
        """``sum(p.numel() for p in model.parameters())`` of a model built on the meta device."""
        return sum(p.numel() for p in self._meta_model(config).parameters())

    def float_buffer_count(self, config: str | ConfigT) -> int:
        """Elements of the model's float buffers, built on the meta device."""
        return sum(b.numel() for b in self._meta_model(config).buffers() if b.is_floating_point())

    def _meta_model(self, config: str | ConfigT) -> ModelT:
        with torch.device("meta"):
            return self.model_class(self.resolve(config))

    def make_model(self, config: str | ConfigT, seed: int = 0) -> ModelT:
        """The model the example's ``build`` exports: seeded random weights, eval mode.

        Torch's global generator is seeded before construction, then
        :func:`randomize_parameters_` adds seeded noise to every float tensor.

        Args:
            config: A name from the example's ``CONFIGS`` or a config.
            seed: Seed of the weights.

        Returns:
            The module.
        """
        torch.manual_seed(seed)
        model = self.model_class(self.resolve(config)).eval()
        randomize_parameters_(model, seed)
        return model

    def build(
        self,
        out_path: str | Path,
        config: str | ConfigT,
        *,
        exporter: Exporter = "dynamo",
        opset: int = DEFAULT_OPSET,
        seed: int = 0,
    ) -> Path:
        """Resolve ``config``, make the seeded model and export it with its :attr:`signature`.

        Args:
            out_path: Where :func:`examples._torch_export.export_module` writes the model.
            config: A name from :attr:`configs` or a config.
            exporter: Passed on to ``export_module``.
            opset: Passed on to ``export_module``.
            seed: Passed on to :meth:`make_model`.

        Returns:
            The path ``export_module`` wrote.
        """
        resolved = self.resolve(config)
        model = self.make_model(resolved, seed)
        signature = self.signature(resolved)
        return export_module(
            model,
            signature.example_inputs,
            out_path,
            inputs=signature.inputs,
            outputs=signature.outputs,
            exporter=exporter,
            opset=opset,
        )


def randomize_parameters_(module: torch.nn.Module, seed: int, std: float = 0.02) -> None:
    """Add seeded Gaussian noise to every float parameter and buffer, in place.

    Freshly constructed modules hold many identical tensors (LayerNorm weights of ones,
    zero biases, BN statistics), and exporters may merge identical initializers, which
    would make the exported parameter count smaller than torch's. Noise makes each tensor
    distinct, like trained weights. ``running_var`` stays positive because it starts at 1.

    Args:
        module: The module to perturb.
        seed: Seed of the noise.
        std: Standard deviation of the noise.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
                tensor.add_(noise * std)

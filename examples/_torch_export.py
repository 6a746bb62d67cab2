"""Export a torch ``nn.Module`` to ONNX with named inputs and named symbolic dims.

Two exporters are supported:

* ``dynamo`` (default): ``torch.onnx.export(..., dynamo=True, optimize=False)`` followed
  by our own clean-up, :func:`examples._onnx_cleanup.optimize_keeping_parameters`. We do not
  use the exporter's built-in optimizer because it (a) fuses BatchNorm into Conv, rewriting
  the conv weights and dropping the BN statistics, (b) folds ``Transpose(weight)`` into new
  initializers named ``val_N`` and (c) deduplicates initializers by value. Ours runs the
  same onnxscript constant folder and a list of its public rewrite rules, but never folds a
  node that reads a parameter, so every parameter stays one initializer under its torch
  name. Targets below 18 are reached from an opset-18 export with onnx's version converter
  (after clean-up, when its adapters see every axes operand as a constant).
* ``legacy``: the TorchScript exporter with ``do_constant_folding=False``. With folding on,
  it pre-transposes the tied GPT-2 LM head into a second copy of ``wte`` (+vocab*n_embd
  elements) and, in eval mode, folds BatchNorm into Conv. It supports opsets up to 20.

Both paths end in :func:`examples._onnx_cleanup.literals_to_constant_nodes`: exporter-made
literals (GELU's 0.5, ``-inf`` for masking, ``1/sqrt(head_dim)``...) that ended up as tiny
non-parameter float initializers become ``Constant`` nodes, so the float initializers are
exactly the module's parameters (and float buffers). Larger non-parameter float
initializers are left alone on purpose, so a duplicated weight would show up in the count
and fail the tests.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch

from examples._onnx_cleanup import (
    convert_down,
    default_domain_opset,
    literals_to_constant_nodes,
    optimize_keeping_parameters,
)
from examples._onnx_utils import ExampleError, save_model

__all__ = [
    "DEFAULT_OPSET",
    "EXPORTERS",
    "SUPPORTED_OPSETS",
    "Exporter",
    "SymbolicDim",
    "TensorSpec",
    "add_export_arguments",
    "export_module",
    "float_state_names",
    "max_abs_diff_vs_torch",
    "randomize_parameters_",
]

logger = logging.getLogger(__name__)

Exporter = Literal["dynamo", "legacy"]
EXPORTERS: tuple[Exporter, ...] = ("dynamo", "legacy")
#: 18 is the dynamo exporter's native opset (its op library targets 18; others are converted).
DEFAULT_OPSET = 18
#: Opsets each exporter can target. torch's TorchScript exporter stops at 20 (it would
#: label a model 21+ but warns that it does not support it); dynamo goes to 23.
SUPPORTED_OPSETS: dict[Exporter, tuple[int, ...]] = {
    "dynamo": tuple(range(17, 24)),
    "legacy": tuple(range(17, 21)),
}


@dataclass(frozen=True)
class SymbolicDim:
    """A dynamic axis, named as the planner's ``--dim NAME=VALUE`` will name it.

    Attributes:
        name: The ONNX ``dim_param`` (``batch``, ``seq``...).
        min: Smallest allowed size (the dynamo exporter's range constraint).
        max: Largest allowed size, or ``None`` for unbounded.
    """

    name: str
    min: int = 1
    max: int | None = None


@dataclass(frozen=True)
class TensorSpec:
    """A named graph input or output and its dynamic axes.

    Attributes:
        name: Graph input/output name.
        dynamic_axes: ``{axis index: SymbolicDim}``; other axes are static.
    """

    name: str
    dynamic_axes: Mapping[int, SymbolicDim] = field(default_factory=dict)


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


def float_state_names(module: torch.nn.Module, *, include_buffers: bool) -> dict[str, int]:
    """Names and element counts of a module's float parameters (and optionally buffers).

    Args:
        module: The module (it may live on the ``meta`` device).
        include_buffers: Also list float buffers (BatchNorm running statistics).

    Returns:
        ``{state_dict name: number of elements}``.
    """
    tensors = dict(module.named_parameters())
    if include_buffers:
        tensors.update(
            (name, buf) for name, buf in module.named_buffers() if buf.is_floating_point()
        )
    return {name: tensor.numel() for name, tensor in tensors.items()}


def export_module(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    out_path: str | Path,
    *,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    exporter: Exporter = "dynamo",
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export ``module`` in eval mode to an ONNX file that passes the full checker.

    Args:
        module: The model; it is switched to eval mode.
        example_inputs: Positional example inputs; dynamic axes must not have size 0 or 1
            (torch.export would specialise them).
        out_path: Destination ``.onnx``; models over the external-data threshold also get
            ``<name>.data`` next to it.
        inputs: One spec per positional input, in order.
        outputs: One spec per output, in order (dynamic axes matter for ``legacy`` only;
            dynamo derives output dims from the input dims).
        exporter: ``"dynamo"`` or ``"legacy"``.
        opset: Target ONNX opset, one of ``SUPPORTED_OPSETS[exporter]``.

    Returns:
        The path of the written model.

    Raises:
        ExampleError: If the exporter or opset is not supported.
    """
    if exporter not in EXPORTERS:
        raise ExampleError(f"unknown exporter {exporter!r}; use one of {', '.join(EXPORTERS)}")
    opsets = SUPPORTED_OPSETS[exporter]
    if opset not in opsets:
        raise ExampleError(
            f"opset {opset} is not supported by the {exporter} exporter; "
            f"use {opsets[0]}..{opsets[-1]}"
        )
    module.eval()
    keep = set(dict(module.state_dict(keep_vars=True)))
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = Path(tmp) / "raw.onnx"
        if exporter == "dynamo":
            # torchlib's ops are written for opset 18; lower targets are converted below,
            # after clean-up, when every axes/shape operand is a constant the converter sees.
            native_opset = max(opset, DEFAULT_OPSET)
            _export_dynamo(module, example_inputs, raw_path, inputs, outputs, native_opset)
        else:
            _export_legacy(module, example_inputs, raw_path, inputs, outputs, opset)
        model = onnx.load(raw_path)
    if exporter == "dynamo":
        model = optimize_keeping_parameters(model, keep)
        if opset < DEFAULT_OPSET:
            model = convert_down(
                model, opset, fallback_hint=f"use --opset {DEFAULT_OPSET} or --exporter legacy"
            )
    exported_opset = default_domain_opset(model)
    if exported_opset != opset:
        raise ExampleError(
            f"the {exporter} exporter produced opset {exported_opset} instead of {opset}; "
            f"pick another --opset or --exporter"
        )
    literals_to_constant_nodes(model, keep)
    path = save_model(model, out_path)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def _export_dynamo(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    opset: int,
) -> None:
    dims: dict[str, torch.export.Dim] = {}
    for spec in inputs:
        for dim in spec.dynamic_axes.values():
            dims.setdefault(dim.name, torch.export.Dim(dim.name, min=dim.min, max=dim.max))
    dynamic_shapes = tuple(
        {axis: dims[dim.name] for axis, dim in spec.dynamic_axes.items()} or None for spec in inputs
    )
    with torch.no_grad():
        torch.onnx.export(
            module,
            example_inputs,
            str(path),
            input_names=[spec.name for spec in inputs],
            output_names=[spec.name for spec in outputs],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            optimize=False,
            external_data=True,
            verbose=False,
        )


def _export_legacy(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    opset: int,
) -> None:
    dynamic_axes = {
        spec.name: {axis: dim.name for axis, dim in spec.dynamic_axes.items()}
        for spec in [*inputs, *outputs]
        if spec.dynamic_axes
    }
    with torch.no_grad():
        torch.onnx.export(
            module,
            example_inputs,
            str(path),
            input_names=[spec.name for spec in inputs],
            output_names=[spec.name for spec in outputs],
            opset_version=opset,
            dynamo=False,
            dynamic_axes=dynamic_axes,
            do_constant_folding=False,
        )


def max_abs_diff_vs_torch(
    module: torch.nn.Module,
    onnx_path: str | Path,
    feeds: Mapping[str, np.ndarray],
) -> dict[str, float]:
    """Run the ONNX file in onnxruntime and torch on the same inputs; compare outputs.

    Args:
        module: The exported module (eval mode).
        onnx_path: The exported file.
        feeds: Inputs by graph input name, in the module's positional order.

    Returns:
        ``{output name: max |onnxruntime - torch|}``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ort_outputs = session.run(None, dict(feeds))
    with torch.no_grad():
        torch_outputs = module.eval()(*(torch.from_numpy(array) for array in feeds.values()))
    if isinstance(torch_outputs, torch.Tensor):
        torch_outputs = (torch_outputs,)
    names = [output.name for output in session.get_outputs()]
    return {
        name: float(np.max(np.abs(ort_out - torch_out.numpy())))
        for name, ort_out, torch_out in zip(names, ort_outputs, torch_outputs, strict=True)
    }


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--out``, ``--exporter``, ``--opset`` and ``--seed`` to a CLI parser."""
    parser.add_argument("--out", required=True, type=Path, help="path of the .onnx file to write")
    parser.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default="dynamo",
        help="torch.onnx exporter: 'dynamo' (torch.export based, default) or 'legacy' "
        "(TorchScript based)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        choices=SUPPORTED_OPSETS["dynamo"],
        default=DEFAULT_OPSET,
        help=f"ONNX opset to target (default {DEFAULT_OPSET}; dynamo: 17..23, legacy: 17..20)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random (untrained) weights (default 0)"
    )

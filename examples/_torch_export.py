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
    "export_module",
    "float_state_names",
    "max_abs_diff_vs_torch",
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
        # torchlib's ops are written for opset 18; lower dynamo targets are converted below,
        # after clean-up, when every axes/shape operand is a constant the converter sees.
        export_opset = max(opset, DEFAULT_OPSET) if exporter == "dynamo" else opset
        _torch_onnx_export(
            module, example_inputs, raw_path, inputs, outputs, exporter, export_opset
        )
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


def _torch_onnx_export(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    exporter: Exporter,
    opset: int,
) -> None:
    options: dict[str, object]
    if exporter == "dynamo":
        options = {
            "dynamo": True,
            "dynamic_shapes": _dynamic_shapes(inputs),
            "optimize": False,
            "external_data": True,
            "verbose": False,
        }
    else:
        options = {
            "dynamo": False,
            "dynamic_axes": _dynamic_axes([*inputs, *outputs]),
            "do_constant_folding": False,
        }
    with torch.no_grad():
        torch.onnx.export(
            module,
            example_inputs,
            str(path),
            input_names=[spec.name for spec in inputs],
            output_names=[spec.name for spec in outputs],
            opset_version=opset,
            **options,
        )


def _dynamic_shapes(inputs: Sequence[TensorSpec]) -> tuple[dict[int, torch.export.Dim] | None, ...]:
    """torch.export's ``dynamic_shapes``: one ``Dim`` per name, shared by every axis using it."""
    dims: dict[str, torch.export.Dim] = {}
    for spec in inputs:
        for dim in spec.dynamic_axes.values():
            dims.setdefault(dim.name, torch.export.Dim(dim.name, min=dim.min, max=dim.max))
    return tuple(
        {axis: dims[dim.name] for axis, dim in spec.dynamic_axes.items()} or None for spec in inputs
    )


def _dynamic_axes(specs: Sequence[TensorSpec]) -> dict[str, dict[int, str]]:
    """The TorchScript exporter's ``dynamic_axes``: ``{name: {axis: dim name}}``."""
    return {
        spec.name: {axis: dim.name for axis, dim in spec.dynamic_axes.items()}
        for spec in specs
        if spec.dynamic_axes
    }


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

"""Llama-style decoder graphs at real sizes, built with ``onnx.helper`` (no torch, no weights).

Each layer: RMSNorm (decomposed into Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul, or the fused
``RMSNormalization`` at ``--opset 23``), Q/K/V MatMuls, rotate-half RoPE with cos/sin
computed at run time from ``position_ids`` and a small ``inv_freq`` Constant (Llama 3.1
frequency scaling included), grouped-query attention (K/V heads repeated by
Unsqueeze/Expand/Reshape), scaled dot-product attention with a run-time causal mask in
prefill, softmax, o_proj, residual adds and a SwiGLU MLP (SiLU as ``x * Sigmoid(x)``); then
a final RMSNorm and the LM head MatMul. See :mod:`examples._llama_graph` for the
mixed-precision and layout choices.

Two graph kinds:

* ``prefill``: ``input_ids``, ``position_ids`` int64 [batch, seq] -> ``logits``
  [batch, seq, vocab] and ``present.{i}.key`` / ``present.{i}.value``
  [batch, kv_heads, seq, head_dim].
* ``decode``: ``input_ids``, ``position_ids`` [batch, 1] and ``past.{i}.key`` /
  ``past.{i}.value`` [batch, kv_heads, past, head_dim] -> ``logits`` [batch, 1, vocab] and
  ``present.{i}.*`` [batch, kv_heads, past+1, head_dim] (past and new K/V concatenated).

``weights="none"`` (the default of the real sizes) declares every initializer as external
data (location ``#<file name>.data``, offsets and lengths of a contiguous layout in
initializer order) and never writes any data: a 405B graph costs a few megabytes and
builds in seconds. Load such a model with ``onnx.load(path, load_external_data=False)``;
``onnx.checker.check_model(proto)`` accepts it in memory (see :func:`build` on the ``#``).
``weights="random"`` writes seeded random values so onnxruntime can run the graph (small
configs only).

Example::

    python -m examples.llama --config llama3.1-70b --kind decode --out /tmp/l70.onnx
    partition analyze /tmp/l70.onnx --dim batch=1 --dim past=4095
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onnx import helper

from examples._llama_graph import DTYPES, GraphKind, WeightMode, build_graph
from examples._llama_quant import FP8_MIN_OPSET, QUANT_MODES
from examples._onnx_utils import ExampleError, reports_errors, resolve_config, save_model

__all__ = [
    "CONFIGS",
    "DEFAULT_OPSET",
    "RANDOM_WEIGHTS_MAX_BYTES",
    "SUPPORTED_OPSETS",
    "LlamaConfig",
    "RopeScaling",
    "analytic_param_count",
    "build",
    "main",
]

logger = logging.getLogger(__name__)

#: 18 is the lowest opset with ReduceMean's ``axes`` as an input, and what ORT runs best.
DEFAULT_OPSET = 18
#: 23 introduces ``RMSNormalization``, used instead of the decomposition.
SUPPORTED_OPSETS: tuple[int, ...] = tuple(range(18, 24))
#: Random weights are for graphs that onnxruntime should actually run on a laptop.
RANDOM_WEIGHTS_MAX_BYTES = 4 * 2**30


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1's "llama3" RoPE frequency scaling (values of its ``config.json``)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192


@dataclass(frozen=True)
class LlamaConfig:
    """Llama decoder shape.

    Attributes:
        hidden_size: Model width.
        num_layers: Decoder layers.
        num_heads: Query heads; must divide ``hidden_size``.
        num_kv_heads: Key/value heads (grouped-query attention); must divide ``num_heads``.
        intermediate_size: SwiGLU inner width.
        vocab_size: Vocabulary size.
        rope_theta: RoPE base.
        rms_norm_eps: RMSNorm epsilon.
        tie_word_embeddings: LM head reuses the embedding (Llama 3.2 1B/3B) instead of its
            own ``lm_head.weight``.
        rope_scaling: Llama 3.1 frequency scaling, or ``None`` for plain RoPE.
        default_dtype: Dtype used when :func:`build` is not given one.
        default_weights: Weight mode used when :func:`build` is not given one.
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    rope_theta: float = 500_000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    rope_scaling: RopeScaling | None = RopeScaling()
    default_dtype: str = "bfloat16"
    default_weights: WeightMode = "none"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ExampleError(
                f"hidden_size {self.hidden_size}, num_heads {self.num_heads} and num_kv_heads "
                f"{self.num_kv_heads} must each divide the one before"
            )
        if self.head_dim % 2:
            raise ExampleError(f"head_dim {self.head_dim} must be even for rotate-half RoPE")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads


CONFIGS: dict[str, LlamaConfig] = {
    "tiny": LlamaConfig(
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=128,
        vocab_size=256,
        rope_theta=10_000.0,
        rope_scaling=None,
        default_dtype="float32",
        default_weights="random",
    ),
    "llama3.2-1b": LlamaConfig(2048, 16, 32, 8, 8192, 128256, tie_word_embeddings=True),
    "llama3.1-8b": LlamaConfig(4096, 32, 32, 8, 14336, 128256),
    "llama3.1-70b": LlamaConfig(8192, 80, 64, 8, 28672, 128256),
    "llama3.1-405b": LlamaConfig(16384, 126, 128, 8, 53248, 128256),
}


def analytic_param_count(config: str | LlamaConfig) -> int:
    """Parameters from the shape: embedding, per-layer projections and norms, final norm, head.

    ``inv_freq`` is not a parameter: the graph keeps it in a ``Constant`` node, so it is not
    among the initializers either.

    Args:
        config: A name from :data:`CONFIGS` or a config.

    Returns:
        The count (8,030,261,248 for ``llama3.1-8b``).
    """
    c = _resolve(config)
    kv_width = c.num_kv_heads * c.head_dim
    attention = 2 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * kv_width  # q,o + k,v
    mlp = 3 * c.hidden_size * c.intermediate_size  # gate, up, down
    per_layer = attention + mlp + 2 * c.hidden_size  # + input/post-attention norms
    embedding = c.vocab_size * c.hidden_size
    lm_head = 0 if c.tie_word_embeddings else embedding
    return embedding + c.num_layers * per_layer + c.hidden_size + lm_head


def _resolve(config: str | LlamaConfig) -> LlamaConfig:
    return resolve_config(config, CONFIGS, LlamaConfig, "Llama config")


def build(
    out_path: str | Path,
    config: str | LlamaConfig = "llama3.1-8b",
    *,
    kind: GraphKind = "prefill",
    dtype: str | None = None,
    weights: WeightMode | None = None,
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
    data_location: str | None = None,
    quant: str = "none",
) -> Path:
    """Build a Llama prefill or decode graph and write it to ``out_path``.

    Args:
        out_path: Destination ``.onnx`` file.
        config: A name from :data:`CONFIGS` or a :class:`LlamaConfig`.
        kind: ``"prefill"`` or ``"decode"``.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` (default: the config's).
        weights: ``"none"`` (declared external data, never written) or ``"random"``
            (default: the config's).
        opset: 18..23; 23 uses the fused ``RMSNormalization``.
        seed: Seed of random weights (ignored for ``"none"``).
        quant: ``"none"`` or ``"fp8"`` (QDQ projections, `examples._llama_quant`; opset 19+).
        data_location: ``location`` recorded in weightless initializers (default
            ``<file name>.data``, where real weights would sit next to the model). onnx
            1.23's checker insists that such a file exists, even in memory; the planner
            checks the graph structure without it (``passes.load.check_model``).

    Returns:
        The written path. With ``weights="none"`` no data file is created.

    Raises:
        ExampleError: For an unknown name, option, or random weights that are too large.
    """
    c = _resolve(config)
    dtype = dtype or c.default_dtype
    weights = weights or c.default_weights
    _check_options(c, kind, dtype, weights, opset, quant)
    path = Path(out_path)
    data_file = path.with_name(f"{path.name}.data")
    if data_location is None:
        data_location = data_file.name
    nodes, (inputs, outputs), initializers = build_graph(
        c, kind, dtype=dtype, weights=weights, data_location=data_location, seed=seed,
        opset=opset, quant=quant)  # fmt: skip
    graph = helper.make_graph(nodes, f"llama_{kind}", inputs, outputs, initializer=initializers)
    opset_imports = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        opset_imports=opset_imports,
        producer_name="partition.examples.llama",
        ir_version=helper.find_min_ir_version_for(opset_imports),
    )
    config_json = json.dumps(dataclasses.asdict(c), sort_keys=True)
    props = {"config": config_json, "kind": kind, "dtype": dtype, "weights": weights}
    helper.set_model_props(model, props | ({"quant": quant} if quant != "none" else {}))
    if weights == "random":
        return save_model(model, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A data file left by an earlier random build would pass for this graph's weights.
    data_file.unlink(missing_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def _check_options(
    config: LlamaConfig, kind: str, dtype: str, weights: str, opset: int, quant: str
) -> None:
    if quant not in QUANT_MODES:
        raise ExampleError(f"unknown quantisation {quant!r}; use one of {', '.join(QUANT_MODES)}")
    if quant != "none" and opset < FP8_MIN_OPSET:
        raise ExampleError(f"--quant {quant} needs --opset {FP8_MIN_OPSET} or later (got {opset})")
    if kind not in ("prefill", "decode"):
        raise ExampleError(f"unknown graph kind {kind!r}; use 'prefill' or 'decode'")
    if dtype not in DTYPES:
        raise ExampleError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    if weights not in ("none", "random"):
        raise ExampleError(f"unknown weights mode {weights!r}; use 'none' or 'random'")
    if opset not in SUPPORTED_OPSETS:
        raise ExampleError(
            f"opset {opset} is not supported; use {SUPPORTED_OPSETS[0]}..{SUPPORTED_OPSETS[-1]}"
        )
    weight_bytes = analytic_param_count(config) * DTYPES[dtype].itemsize_bytes
    if weights == "random" and weight_bytes > RANDOM_WEIGHTS_MAX_BYTES:
        raise ExampleError(
            f"random weights would take {weight_bytes / 2**30:.1f} GiB; use --weights none "
            f"or a config under {RANDOM_WEIGHTS_MAX_BYTES // 2**30} GiB"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m examples.llama",
        description="Build a Llama-style decoder graph with onnx.helper (no torch). Real sizes "
        "are weightless: initializers point at external data that is never written. "
        "Symbolic dims: batch, seq (prefill), past (decode).",
    )
    parser.add_argument("--out", required=True, type=Path, help="path of the .onnx file to write")
    parser.add_argument(
        "--config",
        choices=list(CONFIGS),
        default="llama3.1-8b",
        help="model shape (default llama3.1-8b); tiny is a 2-layer toy for tests",
    )
    parser.add_argument(
        "--kind",
        choices=["prefill", "decode"],
        default="prefill",
        help="prefill: [batch, seq] tokens, returns the KV cache; decode: one token per "
        "sequence plus past.{i}.key/value [batch, kv_heads, past, head_dim]",
    )
    parser.add_argument(
        "--dtype",
        choices=list(DTYPES),
        help="weights/activations dtype (default bfloat16; float32 for tiny). RMSNorm and "
        "softmax always run in float32",
    )
    parser.add_argument(
        "--weights",
        choices=["none", "random"],
        help="none: declare external data but write nothing (default for real sizes); "
        "random: write seeded random weights so onnxruntime can run it (default for tiny)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        choices=SUPPORTED_OPSETS,
        default=DEFAULT_OPSET,
        help=f"ONNX opset (default {DEFAULT_OPSET}); 23 uses the fused RMSNormalization op",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of random weights (default 0)")
    parser.add_argument(
        "--data-location",
        help="external-data location written into weightless initializers (default "
        "'#<out name>.data'; the leading '#' lets onnx.checker accept the missing file)",
    )
    parser.add_argument(
        "--quant",
        choices=QUANT_MODES,
        default="none",
        help="fp8: projection weights stored as float8e4m3fn with per-tensor scales and their "
        "inputs quantised, in QDQ form (MLPerf's and TensorRT-LLM's FP8 recipe; embedding, "
        "norms and LM head stay in --dtype); fp8-kv: the KV cache in float8e4m3fn too; "
        "needs --opset 19 or later",
    )
    return parser


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m examples.llama --config llama3.1-8b --out l8.onnx``."""
    args = _parser().parse_args(argv)
    path = build(
        args.out,
        args.config,
        kind=args.kind,
        dtype=args.dtype,
        weights=args.weights,
        opset=args.opset,
        seed=args.seed,
        data_location=args.data_location,
        quant=args.quant,
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

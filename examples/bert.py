"""BERT-style encoder written from scratch in torch and exported to ONNX.

Word + position + token-type embeddings and a LayerNorm, then post-LN encoder blocks
(self-attention -> add & LayerNorm -> erf-GELU feed-forward -> add & LayerNorm), and an
optional pooler (dense + tanh on the first token). The int64 ``attention_mask`` (1 = keep,
0 = padding) becomes an additive mask ``(1 - mask) * finfo(float32).min`` inside the graph.

Graph: inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64 [batch, seq]) ->
outputs ``last_hidden_state`` [batch, seq, hidden] and, with the pooler,
``pooler_output`` [batch, hidden]. Weights are seeded random values, not trained BERT.

Example::

    python -m examples.bert --size base --out /tmp/bert.onnx
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from examples._example_cli import example_parser, run_example_cli
from examples._onnx_utils import ExampleError, reports_errors
from examples._torch_example import ExportSignature, TorchExample
from examples._torch_export import DEFAULT_OPSET, Exporter, SymbolicDim, TensorSpec

__all__ = ["CONFIGS", "Bert", "BertConfig", "build", "main", "make_model", "torch_param_count"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BertConfig:
    """BERT hyper-parameters (names as in Hugging Face's ``config.json``).

    Attributes:
        vocab_size: WordPiece vocabulary size.
        hidden_size: Hidden size.
        num_hidden_layers: Encoder blocks.
        num_attention_heads: Heads; must divide ``hidden_size``.
        intermediate_size: Feed-forward inner size.
        max_position_embeddings: Longest sequence (rows of the position embedding).
        type_vocab_size: Token-type (segment) vocabulary.
        layer_norm_eps: LayerNorm epsilon.
        add_pooler: Whether to add the pooler (dense + tanh on ``[CLS]``).
    """

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    add_pooler: bool = True

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ExampleError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}; change either"
            )


CONFIGS: dict[str, BertConfig] = {
    "tiny": BertConfig(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    ),
    "base": BertConfig(
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
    ),
    "large": BertConfig(
        vocab_size=30522,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
    ),
}


class _SelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        # A Python float, so tracing does not turn a shape into a constant with a warning.
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        batch, seq, hidden = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = (q @ k.transpose(-2, -1)) * self.scale + additive_mask
        context = scores.softmax(dim=-1) @ v
        return self.output(context.transpose(1, 2).reshape(batch, seq, hidden))


class _Layer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = _SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.attention(x, additive_mask))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class Bert(nn.Module):
    """BERT encoder: (ids, mask, token types) -> (last hidden state[, pooled output])."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.embeddings_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))
        self.pooler = (
            nn.Linear(config.hidden_size, config.hidden_size) if config.add_pooler else None
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )
        x = self.embeddings_norm(x)
        # [batch, seq] -> [batch, 1, 1, seq], broadcast over heads and query positions.
        keep = attention_mask[:, None, None, :].to(x.dtype)
        additive_mask = (1.0 - keep) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, additive_mask)
        if self.pooler is None:
            return (x,)
        return x, torch.tanh(self.pooler(x[:, 0]))


def _signature(config: BertConfig) -> ExportSignature:
    batch, seq = 2, min(8, config.max_position_embeddings)
    input_ids = torch.randint(0, config.vocab_size, (batch, seq))
    attention_mask = torch.ones(batch, seq, dtype=torch.int64)
    attention_mask[1, seq // 2 :] = 0
    token_type_ids = torch.zeros(batch, seq, dtype=torch.int64)
    token_type_ids[:, seq // 2 :] = 1
    batch_dim = SymbolicDim("batch")
    seq_dim = SymbolicDim("seq", min=1, max=config.max_position_embeddings)
    token_axes = {0: batch_dim, 1: seq_dim}
    outputs = [TensorSpec("last_hidden_state", token_axes)]
    if config.add_pooler:
        outputs.append(TensorSpec("pooler_output", {0: batch_dim}))
    return ExportSignature(
        (input_ids, attention_mask, token_type_ids),
        inputs=[
            TensorSpec("input_ids", token_axes),
            TensorSpec("attention_mask", token_axes),
            TensorSpec("token_type_ids", token_axes),
        ],
        outputs=outputs,
    )


_EXAMPLE = TorchExample(Bert, BertConfig, CONFIGS, "BERT size", _signature)
#: ``make_model(config, seed=0)``: the model :func:`build` exports (seeded random weights,
#: eval mode).
make_model = _EXAMPLE.make_model


def torch_param_count(config: str | BertConfig) -> int:
    """``sum(p.numel() for p in model.parameters())``; BERT has no float buffers.

    Args:
        config: A size name from :data:`CONFIGS` or a config.

    Returns:
        The parameter count (109,482,240 for ``base`` with the pooler).
    """
    return _EXAMPLE.param_count(config)


def build(
    out_path: str | Path,
    size: str | BertConfig = "base",
    *,
    pooler: bool | None = None,
    exporter: Exporter = "dynamo",
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
) -> Path:
    """Build a BERT encoder with seeded random weights and export it to ONNX.

    Args:
        out_path: Destination ``.onnx`` file.
        size: A name from :data:`CONFIGS` or a :class:`BertConfig`.
        pooler: Override the config's ``add_pooler`` (``None`` keeps it).
        exporter: ``"dynamo"`` or ``"legacy"``.
        opset: ONNX opset (17..23).
        seed: Seed of the weights.

    Returns:
        The written path.
    """
    config = _EXAMPLE.resolve(size)
    if pooler is not None:
        config = replace(config, add_pooler=pooler)
    return _EXAMPLE.build(out_path, config, exporter=exporter, opset=opset, seed=seed)


def _config_from_args(args: argparse.Namespace) -> BertConfig:
    config = CONFIGS[args.size]
    return replace(config, add_pooler=False) if args.no_pooler else config


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m examples.bert --size base --out bert.onnx``."""
    parser = example_parser(
        "examples.bert",
        "Export a BERT-style encoder (random weights) to ONNX. Inputs input_ids, "
        "attention_mask, token_type_ids: int64 [batch, seq]; outputs last_hidden_state and "
        "pooler_output. batch and seq are symbolic.",
        config_flag="--size",
        config_names=CONFIGS,
        default="base",
        config_help="tiny (2x32, for tests), base (BERT-base 109.5M, default), large (335M)",
    )
    parser.add_argument(
        "--no-pooler", action="store_true", help="leave out the pooler (dense + tanh on [CLS])"
    )
    return run_example_cli(argv, parser, build, _config_from_args)


if __name__ == "__main__":
    raise SystemExit(main())

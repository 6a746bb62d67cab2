"""GPT-2-style decoder written from scratch in torch and exported to ONNX.

Token + learned position embeddings, pre-LN blocks (causal self-attention, tanh-GELU MLP),
a final LayerNorm and an LM head tied to the token embedding (``F.linear(x, wte.weight)``,
so the ONNX graph holds one copy of ``wte``, read by a Gather and by a Transpose+MatMul).
The causal mask is built at run time from the sequence length (``ones(seq, seq).tril()``),
so there is no mask buffer and no float constant besides the parameters.

Graph: input ``input_ids`` int64 [batch, seq] -> output ``logits`` float32
[batch, seq, vocab]. The weights are seeded random values, not trained GPT-2 weights.

Example::

    python -m examples.gpt2 --size small --out /tmp/gpt2.onnx
    partition analyze /tmp/gpt2.onnx --dim batch=1 --dim seq=128
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from examples._example_cli import example_parser, run_example_cli
from examples._onnx_utils import ExampleError, reports_errors
from examples._torch_example import ExportSignature, TorchExample
from examples._torch_export import DEFAULT_OPSET, Exporter, SymbolicDim, TensorSpec

__all__ = ["CONFIGS", "GPT2", "GPT2Config", "build", "main", "make_model", "torch_param_count"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GPT2Config:
    """GPT-2 hyper-parameters (names as in the original ``hparams.json``).

    Attributes:
        vocab_size: Tokens in the vocabulary.
        n_ctx: Maximum sequence length (rows of the position embedding).
        n_embd: Hidden size.
        n_layer: Number of transformer blocks.
        n_head: Attention heads; must divide ``n_embd``.
        layer_norm_eps: LayerNorm epsilon.
    """

    vocab_size: int
    n_ctx: int
    n_embd: int
    n_layer: int
    n_head: int
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ExampleError(
                f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}; change either"
            )


CONFIGS: dict[str, GPT2Config] = {
    "tiny": GPT2Config(vocab_size=256, n_ctx=32, n_embd=64, n_layer=2, n_head=4),
    "small": GPT2Config(vocab_size=50257, n_ctx=1024, n_embd=768, n_layer=12, n_head=12),
    "medium": GPT2Config(vocab_size=50257, n_ctx=1024, n_embd=1024, n_layer=24, n_head=16),
    "large": GPT2Config(vocab_size=50257, n_ctx=1024, n_embd=1280, n_layer=36, n_head=20),
    "xl": GPT2Config(vocab_size=50257, n_ctx=1024, n_embd=1600, n_layer=48, n_head=25),
}


class _CausalSelfAttention(nn.Module):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        # A Python float, so tracing does not turn a shape into a constant with a warning.
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, n_embd = x.shape
        qkv = self.c_attn(x)
        # Slices, not .split(): onnx's version converter has no Split adapter from 18 to
        # 17, so the dynamo exporter could not target opset 17 with a Split node.
        q, k, v = qkv[..., :n_embd], qkv[..., n_embd : 2 * n_embd], qkv[..., 2 * n_embd :]
        q, k, v = (
            t.view(batch, seq, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v)
        )
        scores = (q @ k.transpose(-2, -1)) * self.scale
        # Built from the run-time length: no [n_ctx, n_ctx] buffer ends up in the graph.
        causal = torch.ones(seq, seq, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        y = scores.softmax(dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(batch, seq, n_embd))


class _MLP(nn.Module):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class _Block(nn.Module):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.attn = _CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = _MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """GPT-2 language model: ``input_ids`` [batch, seq] -> ``logits`` [batch, seq, vocab]."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_ctx, config.n_embd)
        self.h = nn.ModuleList(_Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(positions)
        for block in self.h:
            x = block(x)
        # Tied LM head: the same Parameter as the embedding, transposed at run time.
        return F.linear(self.ln_f(x), self.wte.weight)


def _signature(config: GPT2Config) -> ExportSignature:
    batch, seq = 2, min(8, config.n_ctx)
    input_ids = torch.randint(0, config.vocab_size, (batch, seq))
    batch_dim = SymbolicDim("batch")
    seq_dim = SymbolicDim("seq", min=1, max=config.n_ctx)
    return ExportSignature(
        (input_ids,),
        inputs=[TensorSpec("input_ids", {0: batch_dim, 1: seq_dim})],
        outputs=[TensorSpec("logits", {0: batch_dim, 1: seq_dim})],
    )


_EXAMPLE = TorchExample(GPT2, GPT2Config, CONFIGS, "GPT-2 size", _signature)
#: ``make_model(config, seed=0)``: the model :func:`build` exports (seeded random weights,
#: eval mode).
make_model = _EXAMPLE.make_model


def torch_param_count(config: str | GPT2Config) -> int:
    """``sum(p.numel() for p in model.parameters())`` (tied ``wte`` counted once).

    GPT-2 has no float buffers, so this is also the expected ONNX float-initializer count.

    Args:
        config: A size name from :data:`CONFIGS` or a config.

    Returns:
        The parameter count (124,439,808 for ``small``).
    """
    return _EXAMPLE.param_count(config)


def build(
    out_path: str | Path,
    size: str | GPT2Config = "small",
    *,
    exporter: Exporter = "dynamo",
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
) -> Path:
    """Build a GPT-2 with seeded random weights and export it to ONNX.

    Args:
        out_path: Destination ``.onnx`` file.
        size: A name from :data:`CONFIGS` or a :class:`GPT2Config`.
        exporter: ``"dynamo"`` or ``"legacy"``.
        opset: ONNX opset (17..23).
        seed: Seed of the weights.

    Returns:
        The written path.
    """
    return _EXAMPLE.build(out_path, size, exporter=exporter, opset=opset, seed=seed)


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m examples.gpt2 --size small --out gpt2.onnx``."""
    parser = example_parser(
        "examples.gpt2",
        "Export a GPT-2-style decoder (random weights) to ONNX. Input input_ids "
        "int64 [batch, seq], output logits [batch, seq, vocab]; batch and seq are symbolic.",
        config_flag="--size",
        config_names=CONFIGS,
        default="small",
        config_help="tiny (2x64, for tests), small (GPT-2 124M, default), medium, large, xl",
    )
    return run_example_cli(argv, parser, build, lambda args: args.size)


if __name__ == "__main__":
    raise SystemExit(main())

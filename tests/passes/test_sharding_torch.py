"""Sharding torch exports (examples.bert and examples.gpt2, "tiny"), checked by running the ranks.

BERT tiny (hidden 32, 4 heads, 2 layers) has separate query/key/value Linears:
they are column split (weights and biases), attention runs on 2 heads per rank,
and the attention output and FFN output projections are row split: two
all-reduces per layer; the pooler (a Gemm) is column split and its output, a
graph output, all-gathered. GPT-2 tiny fuses Q, K and V in one ``c_attn``
Linear: a column chunk of it mixes Q, K and V, so attention stays whole and
only the MLP (one all-reduce per layer) and the LM head are split.

Both split their word embeddings by vocabulary (an all-reduce after the
lookup). Their position tables are read by constant positions (folded), and
BERT's token-type table (2 rows, read by 8 ids) is smaller than its lookup's
output, so it stays whole.
"""

from __future__ import annotations

import numpy as np
import pytest

from examples import bert, gpt2
from passes.analysis.sharding import Layout
from tests.passes.test_sharding_exec import _simulate

DIMS = {"batch": 1, "seq": 8}


@pytest.fixture(scope="module")
def bert_path(tmp_path_factory):
    return bert.build(tmp_path_factory.mktemp("bert") / "bert.onnx", "tiny")


@pytest.fixture(scope="module")
def gpt2_path(tmp_path_factory):
    return gpt2.build(tmp_path_factory.mktemp("gpt2") / "gpt2.onnx", "tiny")


def test_bert_attention_split_by_heads(bert_path):
    rng = np.random.default_rng(0)
    feeds = {
        "input_ids": rng.integers(0, 128, (1, 8)).astype(np.int64),
        "attention_mask": np.array([[1, 1, 1, 1, 1, 1, 0, 0]], np.int64),
        "token_type_ids": np.zeros((1, 8), np.int64),
    }
    plan = _simulate(bert_path, DIMS, feeds, 2)
    kinds = [op.kind for op in plan.collectives]
    assert kinds == ["all_reduce"] * 5 + ["all_gather"]
    assert plan.collectives[-1].tensor == "pooler_output"
    assert plan.weights["word_embeddings.weight"] == 0  # 128 rows: 64 a rank
    assert "token_type_embeddings.weight" not in plan.weights
    for layer in range(2):
        for proj in ("query", "key", "value"):
            assert plan.weights[f"layers.{layer}.attention.{proj}.bias"] == 0
        assert plan.weights[f"layers.{layer}.intermediate.bias"] == 0
    softmaxes = [n for n in plan.layouts if "softmax" in n]
    assert softmaxes and all(plan.layouts[n] == Layout(1) for n in softmaxes)  # [B, heads, S, S]


def test_gpt2_fused_qkv_keeps_attention_whole(gpt2_path):
    feeds = {"input_ids": np.random.default_rng(1).integers(0, 256, (1, 8)).astype(np.int64)}
    plan = _simulate(gpt2_path, DIMS, feeds, 2)
    assert [op.kind for op in plan.collectives] == ["all_reduce"] * 3 + ["all_gather"]
    assert plan.weights["wte.weight"] == 0
    assert plan.collectives[-1].tensor == "logits" and plan.collectives[-1].axis == 2
    for layer in range(2):
        assert plan.weights[f"h.{layer}.mlp.c_fc.bias"] == 0
        assert f"h.{layer}.attn.c_attn.bias" not in plan.weights
    softmaxes = [n for n in plan.layouts if "softmax" in n]
    assert softmaxes and all(plan.layouts[n].is_whole for n in softmaxes)
    assert plan.passes == 2  # the first pass split c_attn and found it gathered right away

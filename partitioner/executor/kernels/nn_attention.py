"""Attention (opsets 23, 24, 25) and RotaryEmbedding (opset 23).

Q/K/V are 4-D (batch, heads, seq, head_size) or 3-D (batch, seq, heads * head_size). Grouped
query heads are never repeated in memory: Q is viewed as (batch, kv_heads, group, seq, size)
and multiplied against K broadcast over the group axis.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from partitioner.executor.kernels.nn_common import to_compute
from partitioner.executor.registry import kernel

__all__ = ["attention", "attention_v24", "attention_v23", "rotary_embedding"]

# softmax_precision codes (TensorProto dtypes) that change the compute precision
_SOFTMAX_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64, 16: ml_dtypes.bfloat16}


def _to_4d(x: np.ndarray, num_heads: int | None) -> np.ndarray:
    """(B, S, H*D) -> (B, H, S, D); 4-D inputs pass through."""
    if x.ndim == 4:
        return x
    b, s, hidden = x.shape
    return x.reshape(b, s, num_heads, hidden // num_heads).transpose(0, 2, 1, 3)


def _allowed_positions(
    batch: int,
    q_len: int,
    kv_len: int,
    offset: np.ndarray,
    is_causal: int,
    nonpad_kv_seqlen: np.ndarray | None,
    left_window_size: int,
    right_window_size: int,
) -> np.ndarray | None:
    """Structural mask (B, 1, Sq, Skv): causal frontier, padding and sliding window; None if all."""
    if (
        not is_causal
        and nonpad_kv_seqlen is None
        and left_window_size < 0
        and right_window_size < 0
    ):
        return None
    key = np.arange(kv_len).reshape(1, 1, 1, kv_len)
    query_pos = offset.reshape(-1, 1, 1, 1) + np.arange(q_len).reshape(1, 1, q_len, 1)
    allowed = np.ones((batch, 1, q_len, kv_len), dtype=bool)
    if is_causal:
        allowed &= key <= query_pos
    if nonpad_kv_seqlen is not None:
        allowed &= key < np.asarray(nonpad_kv_seqlen).reshape(-1, 1, 1, 1)
    if left_window_size >= 0:
        allowed &= key >= query_pos - left_window_size
    if right_window_size >= 0:
        allowed &= key <= query_pos + right_window_size
    return allowed


def _mask_bias(attn_mask: np.ndarray, kv_len: int, dtype: np.dtype) -> np.ndarray:
    """attn_mask as an additive bias; a mask shorter than the keys masks the rest out."""
    mask = np.asarray(attn_mask)
    is_bool = mask.dtype == bool
    bias = np.where(mask, 0.0, -np.inf).astype(dtype) if is_bool else mask.astype(dtype)
    if bias.shape[-1] < kv_len:
        pad = [(0, 0)] * (bias.ndim - 1) + [(0, kv_len - bias.shape[-1])]
        bias = np.pad(bias, pad, constant_values=-np.inf)
    return bias


def _softmax_rows(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; a row with no finite score (fully masked) becomes zeros.

    float32/float64 take the fast path (fmax.reduce and einsum row sums); float16/bfloat16
    stay in their own precision with plain ufunc reductions, as the spec's graph does.
    """
    fast = scores.dtype in (np.float32, np.float64)
    row_max = (
        np.fmax.reduce(scores, axis=-1, keepdims=True)
        if fast
        else np.max(scores, -1, keepdims=True)
    )
    row_max[~np.isfinite(row_max)] = 0  # small (rows, 1) array
    e = scores - row_max
    np.exp(e, out=e)
    total = np.einsum("...i->...", e)[..., None] if fast else np.sum(e, axis=-1, keepdims=True)
    if fast:  # one reciprocal per row, then multiplies; fully masked rows are all zeros
        e *= np.divide(1, total, out=np.zeros_like(total), where=total > 0)
    else:  # divide like the spec's graph so float16/bfloat16 round the same way
        np.divide(e, total, out=e, where=total > 0)
    return e


def _scaled_scores(q4: np.ndarray, k4: np.ndarray, scale: float | None) -> np.ndarray:
    """Q K^T * scale as (B, Hq, Sq, Skv) in Q's dtype, grouped query heads sharing K heads.

    Like the spec's graph, Q and K are each scaled by sqrt(scale) in their own precision; the
    matmul accumulates in float32 (float64 for double) and rounds back to Q's dtype.
    """
    batch, q_heads, q_len, head_size = q4.shape
    kv_heads, kv_len = k4.shape[1], k4.shape[2]
    dtype = np.dtype(q4.dtype)
    acc = _accumulate_dtype(dtype)
    root = dtype.type(np.sqrt(1.0 / np.sqrt(head_size) if scale is None else scale))
    qg = (q4 * root).astype(acc, copy=False).reshape(batch, kv_heads, -1, q_len, head_size)
    kt = (k4 * root).astype(acc, copy=False)[:, :, None].swapaxes(-1, -2)
    return np.matmul(qg, kt).astype(dtype, copy=False).reshape(batch, q_heads, q_len, kv_len)


def _accumulate_dtype(dtype: np.dtype) -> np.dtype:
    return np.result_type(to_compute(np.empty(0, dtype)).dtype, np.float32)


def _attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    attn_mask: np.ndarray | None,
    past_key: np.ndarray | None,
    past_value: np.ndarray | None,
    nonpad_kv_seqlen: np.ndarray | None,
    *,
    is_causal: int,
    kv_num_heads: int | None,
    q_num_heads: int | None,
    qk_matmul_output_mode: int,
    scale: float | None,
    softcap: float,
    softmax_precision: int | None,
    left_window_size: int = -1,
    right_window_size: int = -1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    q4, k4, v4 = _to_4d(q, q_num_heads), _to_4d(k, kv_num_heads), _to_4d(v, kv_num_heads)
    past_len = 0
    if past_key is not None:
        past_len = past_key.shape[2]
        k4 = np.concatenate([past_key, k4.astype(past_key.dtype, copy=False)], axis=2)
        v4 = np.concatenate([past_value, v4.astype(past_value.dtype, copy=False)], axis=2)
    batch, q_heads, q_len, _ = q4.shape
    kv_heads, kv_len = k4.shape[1], k4.shape[2]
    dtype = np.dtype(q.dtype)
    # scores, bias and softmax stay in Q's precision unless softmax_precision says otherwise
    raw_scores = scores = _scaled_scores(q4, k4, scale)
    if softcap > 0:
        cap = dtype.type(softcap)
        scores = (cap * np.tanh(scores / cap)).astype(dtype, copy=False)
    capped_scores = scores
    if attn_mask is not None:
        scores = (scores + _mask_bias(attn_mask, kv_len, dtype)).astype(dtype, copy=False)
    if nonpad_kv_seqlen is not None and past_key is None:
        offset = np.asarray(nonpad_kv_seqlen, np.int64) - q_len
    else:
        offset = np.full(batch, past_len, dtype=np.int64)
    allowed = _allowed_positions(
        batch,
        q_len,
        kv_len,
        offset,
        is_causal,
        nonpad_kv_seqlen,
        left_window_size,
        right_window_size,
    )
    if allowed is not None:  # an additive 0 / -inf bias: cheaper than np.where on the scores
        scores = scores + np.where(allowed, dtype.type(0), dtype.type(-np.inf))
    softmax_dtype = _SOFTMAX_DTYPES.get(int(softmax_precision or 0), dtype)
    probs = _softmax_rows(scores.astype(softmax_dtype, copy=False)).astype(dtype, copy=False)
    acc = _accumulate_dtype(dtype)
    probs_g = probs.astype(acc).reshape(batch, kv_heads, q_heads // kv_heads, q_len, kv_len)
    y = np.matmul(probs_g, v4.astype(acc, copy=False)[:, :, None]).reshape(
        batch, q_heads, q_len, -1
    )
    if q.ndim == 3:
        y = y.transpose(0, 2, 1, 3).reshape(batch, q_len, -1)
    qk_out = {0: raw_scores, 1: capped_scores, 2: scores, 3: probs}[int(qk_matmul_output_mode)]
    return y.astype(dtype, copy=False), k4, v4, qk_out.astype(dtype, copy=False)


@kernel("Attention", since=25)
def attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    attn_mask: np.ndarray | None = None,
    past_key: np.ndarray | None = None,
    past_value: np.ndarray | None = None,
    nonpad_kv_seqlen: np.ndarray | None = None,
    *,
    is_causal: int = 0,
    kv_num_heads: int | None = None,
    left_window_size: int = -1,
    q_num_heads: int | None = None,
    qk_matmul_output_mode: int = 0,
    right_window_size: int = -1,
    scale: float | None = None,
    softcap: float = 0.0,
    softmax_precision: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Opset 25: opset 24 plus ``left_window_size``/``right_window_size`` sliding windows.

    Returns Y, present_key, present_value and qk_matmul_output (per ``qk_matmul_output_mode``:
    0 raw scaled QK^T, 1 after softcap, 2 after mask/bias, 3 softmax probabilities).
    """
    return _attention(
        q, k, v, attn_mask, past_key, past_value, nonpad_kv_seqlen,
        is_causal=is_causal, kv_num_heads=kv_num_heads, q_num_heads=q_num_heads,
        qk_matmul_output_mode=qk_matmul_output_mode, scale=scale, softcap=softcap,
        softmax_precision=softmax_precision, left_window_size=left_window_size,
        right_window_size=right_window_size,
    )  # fmt: skip


@kernel("Attention", since=24)
def attention_v24(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    attn_mask: np.ndarray | None = None,
    past_key: np.ndarray | None = None,
    past_value: np.ndarray | None = None,
    nonpad_kv_seqlen: np.ndarray | None = None,
    *,
    is_causal: int = 0,
    kv_num_heads: int | None = None,
    q_num_heads: int | None = None,
    qk_matmul_output_mode: int = 0,
    scale: float | None = None,
    softcap: float = 0.0,
    softmax_precision: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Opset 24: opset 23 plus ``nonpad_kv_seqlen`` (external KV cache, bottom-right causal)."""
    return _attention(
        q, k, v, attn_mask, past_key, past_value, nonpad_kv_seqlen,
        is_causal=is_causal, kv_num_heads=kv_num_heads, q_num_heads=q_num_heads,
        qk_matmul_output_mode=qk_matmul_output_mode, scale=scale, softcap=softcap,
        softmax_precision=softmax_precision,
    )  # fmt: skip


@kernel("Attention", since=23)
def attention_v23(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    attn_mask: np.ndarray | None = None,
    past_key: np.ndarray | None = None,
    past_value: np.ndarray | None = None,
    *,
    is_causal: int = 0,
    kv_num_heads: int | None = None,
    q_num_heads: int | None = None,
    qk_matmul_output_mode: int = 0,
    scale: float | None = None,
    softcap: float = 0.0,
    softmax_precision: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Opset 23: causal offset is the past length; a fully masked row yields zeros."""
    return _attention(
        q, k, v, attn_mask, past_key, past_value, None,
        is_causal=is_causal, kv_num_heads=kv_num_heads, q_num_heads=q_num_heads,
        qk_matmul_output_mode=qk_matmul_output_mode, scale=scale, softcap=softcap,
        softmax_precision=softmax_precision,
    )  # fmt: skip


@kernel("RotaryEmbedding", since=23)
def rotary_embedding(
    x: np.ndarray,
    cos_cache: np.ndarray,
    sin_cache: np.ndarray,
    position_ids: np.ndarray | None = None,
    *,
    interleaved: int = 0,
    num_heads: int = 0,
    rotary_embedding_dim: int = 0,
) -> tuple[np.ndarray]:
    """RoPE: rotate the first ``rotary_embedding_dim`` features of each head by position.

    x is (B, H, S, D) or (B, S, H*D); the caches are (max_pos, rot/2) indexed by
    ``position_ids`` (B, S), or already (B, S, rot/2). Pairs are (i, i + rot/2), or
    (2i, 2i + 1) when ``interleaved``.
    """
    four_d = x.ndim == 4
    xc = to_compute(x)
    if not four_d:  # (B, S, H*D) -> (B, H, S, D)
        b, s, hidden = x.shape
        xc = xc.reshape(b, s, num_heads, hidden // num_heads).transpose(0, 2, 1, 3)
    head_size = xc.shape[-1]
    rot = rotary_embedding_dim or head_size
    cos, sin = to_compute(cos_cache), to_compute(sin_cache)
    if position_ids is not None:
        cos, sin = cos[position_ids], sin[position_ids]
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, S, rot/2) broadcasts over heads
    rotate = xc[..., :rot]
    if interleaved:
        x1, x2 = rotate[..., 0::2], rotate[..., 1::2]
    else:
        x1, x2 = rotate[..., : rot // 2], rotate[..., rot // 2 :]
    real = cos * x1 - sin * x2
    imag = sin * x1 + cos * x2
    if interleaved:
        rotated = np.stack([real, imag], axis=-1).reshape(real.shape[:-1] + (rot,))
    else:
        rotated = np.concatenate([real, imag], axis=-1)
    y = np.concatenate([rotated, xc[..., rot:]], axis=-1)
    if not four_d:
        y = y.transpose(0, 2, 1, 3).reshape(x.shape)
    return (y.astype(x.dtype, copy=False),)

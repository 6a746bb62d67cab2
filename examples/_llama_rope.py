"""Rotary position embedding for :mod:`examples.llama`: Llama 3.1's inverse
frequencies and the cos/sin tables every layer shares."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from onnx import TensorProto

if TYPE_CHECKING:
    from examples._llama_graph import _Builder
    from examples.llama import LlamaConfig

__all__ = ["rope_inv_freq", "rope_tables"]


def rope_inv_freq(config: LlamaConfig) -> np.ndarray:
    """RoPE inverse frequencies ``theta ** (-2i / head_dim)``, with Llama 3.1's scaling.

    Args:
        config: The model config; ``rope_scaling`` (factor, low/high frequency factors,
            original context) applies the "llama3" smoothing when set.

    Returns:
        float32 array of ``head_dim // 2`` frequencies.
    """
    head_dim = config.head_dim
    inv_freq = 1.0 / config.rope_theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    scaling = config.rope_scaling
    if scaling is not None:
        low_wavelen = scaling.original_max_position / scaling.low_freq_factor
        high_wavelen = scaling.original_max_position / scaling.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
        smooth = (scaling.original_max_position / wavelen - scaling.low_freq_factor) / (
            scaling.high_freq_factor - scaling.low_freq_factor
        )
        smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv_freq = np.where(medium, smoothed, scaled)
    return inv_freq.astype(np.float32)


def rope_tables(b: _Builder, config: LlamaConfig) -> tuple[str, str]:
    """cos/sin [batch, 1, seq, head_dim] from ``position_ids``, shared by every layer."""
    positions = b.cast("position_ids", TensorProto.FLOAT, "rope.positions_float")
    positions = b.node("Unsqueeze", [positions, b.ints([-1], "axes_last")], "rope.positions_column")
    inv_freq = b.const(rope_inv_freq(config), "inv_freq")
    freqs = b.node("Mul", [positions, inv_freq], "rope.freqs")
    angles = b.node("Concat", [freqs, freqs], "rope.angles", axis=-1)
    tables = []
    for fn in ("Cos", "Sin"):
        table = b.node(fn, [angles], f"rope.{fn.lower()}")
        if b.dtype.onnx_type != TensorProto.FLOAT:
            table = b.cast(table, b.dtype.onnx_type, f"rope.{fn.lower()}_cast")
        tables.append(
            b.node("Unsqueeze", [table, b.ints([1], "axis_1")], f"rope.{fn.lower()}_heads")
        )
    return tables[0], tables[1]

"""``contended_bandwidth_bytes_per_s``: devices sharing one memory system (CPU ranks on
one host), and `GpuTarget.contended`, the target priced as they run at once."""

from __future__ import annotations

from dataclasses import replace

import pytest

from targets.cost import GpuCostModel
from targets.errors import TargetError
from targets.loader import target_from_dict
from targets.presets import get_preset


def _shared(bandwidth: float = 1e11):
    preset = get_preset("h100x2")
    devices = tuple(replace(d, contended_bandwidth_bytes_per_s=bandwidth) for d in preset.devices)
    return replace(preset, devices=devices)


def test_presets_share_no_memory_and_keep_their_hash():
    preset = get_preset("h100x8")
    assert preset.contended() is None
    assert "contended_bandwidth_bytes_per_s" not in preset.to_dict()["devices"][0]


def test_contended_prices_each_device_at_its_bandwidth_beside_the_others():
    shared = _shared(1e11)
    contended = shared.contended()
    assert contended is not None
    for alone, beside in zip(shared.devices, contended.devices, strict=True):
        assert beside.hbm_bandwidth_bytes_per_s == 1e11
        assert beside.contended_bandwidth_bytes_per_s is None  # nothing shares it further
        assert replace(beside, hbm_bandwidth_bytes_per_s=alone.hbm_bandwidth_bytes_per_s,
                       contended_bandwidth_bytes_per_s=1e11) == alone  # fmt: skip
    assert contended.contended() is None
    # the one cost model, on the contended figures: 1 GB at 1e11 B/s x eta_memory
    eta = shared.devices[0].eta_memory
    parts = GpuCostModel(contended).op_time_parts(0.0, 1e9, "bfloat16", 0)
    assert parts.memory_s == pytest.approx(1e9 / (1e11 * eta))


def test_the_field_round_trips_and_is_checked():
    spec = _shared(5e10).to_dict()
    assert spec["devices"][0]["contended_bandwidth_bytes_per_s"] == 5e10
    assert target_from_dict(spec).devices[0].contended_bandwidth_bytes_per_s == 5e10
    spec["devices"][0]["contended_bandwidth_bytes_per_s"] = -1.0
    with pytest.raises(TargetError, match="contended_bandwidth_bytes_per_s"):
        target_from_dict(spec)

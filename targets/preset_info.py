"""The key numbers of every preset, for ``partition targets`` (sources: `targets.presets`).

Kept apart from the presets so the sourced numbers and their notes stay in one
file of their own, and this summary can grow columns without crowding them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from targets.gpu import GpuTarget, Link
from targets.presets import ALIASES, Target, presets

__all__ = ["PresetInfo", "list_presets"]


@dataclass(frozen=True)
class PresetInfo:
    """The key numbers of one preset, for ``partition targets``.

    Attributes:
        name: Preset name.
        kind: ``"gpu"`` or ``"wafer"``.
        aliases: Other names that load this preset.
        num_devices: GPUs, or wafers.
        device: Device model name.
        memory_per_device_bytes: HBM per GPU, or SRAM per wafer (reserve included).
        total_memory_bytes: Summed over devices.
        peak_dtype: Dtype of the peak figure (bf16 on GPUs; fp16, the FMAC rate, on wafers).
        peak_flops_per_s: Dense datasheet peak summed over devices (no η applied).
        memory_bandwidth_bytes_per_s: HBM bandwidth per GPU; None on wafers (core-local SRAM).
        interconnect: What joins the devices.
        interconnect_bytes_per_s: Its datasheet bandwidth per direction (intra-node on GPUs).
        description: The target's description.
        sha256: The target's canonical hash.
        collective_bandwidth_bytes_per_s: Ring busbw of a tensor-parallel group
            inside one node; None where no collective runs (wafers, one GPU).
        collective_latency_s: Per-call cost of a small collective there; None likewise.
    """

    name: str
    kind: str
    aliases: tuple[str, ...]
    num_devices: int
    device: str
    memory_per_device_bytes: int
    total_memory_bytes: int
    peak_dtype: str
    peak_flops_per_s: float
    memory_bandwidth_bytes_per_s: float | None
    interconnect: str
    interconnect_bytes_per_s: float
    description: str
    sha256: str
    collective_bandwidth_bytes_per_s: float | None = None
    collective_latency_s: float | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict, fields in declaration order."""
        out: dict[str, object] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            out[field.name] = list(value) if isinstance(value, tuple) else value
        return out


def _gpu_info(name: str, target: GpuTarget, aliases: tuple[str, ...]) -> PresetInfo:
    first = target.devices[0]
    link = target.intra_node_link if target.num_devices > 1 else target.host_link
    # One GPU runs no collective: its listed link is the host's.
    group: Link | None = target.intra_node_link if target.num_devices > 1 else None
    return PresetInfo(
        name,
        target.kind,
        aliases,
        target.num_devices,
        first.name,
        first.hbm_bytes,
        sum(d.hbm_bytes for d in target.devices),
        "bfloat16",
        sum(d.peak_flops_for("bfloat16") for d in target.devices),
        first.hbm_bandwidth_bytes_per_s,
        link.name,
        link.bandwidth_bytes_per_s,
        target.description,
        target.sha256,
        None if group is None else group.collective_bandwidth_bytes_per_s,
        None if group is None else group.collective_latency_s,
    )


def _info(name: str, target: Target) -> PresetInfo:
    aliases = tuple(alias for alias, preset in ALIASES.items() if preset == name)
    if isinstance(target, GpuTarget):
        return _gpu_info(name, target, aliases)
    wafer, count = target.wafer, target.num_wafers
    link = target.inter_wafer_link if count > 1 else target.host_link
    return PresetInfo(
        name,
        target.kind,
        aliases,
        count,
        wafer.name,
        wafer.sram_bytes,
        wafer.sram_bytes * count,
        "float16",
        wafer.peak_flops_per_s("float16") * count,
        None,
        link.name,
        link.bandwidth_bytes_per_s,
        target.description,
        target.sha256,
    )


def list_presets() -> list[PresetInfo]:
    """Key numbers of every preset, in `targets.presets.preset_names` order."""
    return [_info(name, target) for name, target in presets().items()]

"""The cost model: seconds and bytes from numbers, for every later stage.

The pipeline solver, the wafer floorplanner, the simulator and the reports
all take their figures from here and re-implement none of them. Everything
is pure: numbers in, seconds or bytes out, no graph objects.

``CostModel(target)`` returns a `GpuCostModel` or a `WaferCostModel`; both
share stage memory, pipeline estimates and the LLM figures. Solvers that
need integers scale with `to_int_units` (e.g. seconds to µs, bytes to KiB).

Formulas (every constant is a target field):

- GPU op: ``max(flops / (peak[dtype] · η_c), bytes_moved / (hbm_bw · η_m))
  + kernels · launch_overhead`` (roofline plus launch cost; the two terms' sum on
  a device that does not overlap them, `OpTime`).
- Transfer over a link: ``latency + bytes / (bandwidth · efficiency)``.
- Collective over a tensor-parallel group of n GPUs (ring, as NCCL runs it):
  all-reduce ``2(n−1)/n · bytes / busbw + latency``, all-gather and
  reduce-scatter ``(n−1)/n · bytes / busbw + latency``, with busbw and latency
  the collective fields of the group's link (NVLink inside a node, else the
  network, whose slowest hop bounds the ring).
- Stage memory: ``params + activation_peak × micro-batches in flight +
  transfer buffers + KV cache``.
- Wafer region of w×h cores: ``flops / (w·h · lanes[dtype] · 2 · clock · η)
  + num_matmuls · (w + h) · hop_latency / clock``. The second term is the
  mesh latency of the reductions and broadcasts a distributed MatMul needs,
  about (w + h) hops each, after WaferLLM's PLMR device model (OSDI'25),
  which shows this latency cannot be ignored at wafer scale.
- Fabric transfer: ``hops · hop_latency / clock + bytes /
  (boundary_links · link_bytes_per_cycle · clock)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from targets.errors import TargetError
from targets.fabric import Rect, center_hops, manhattan_hops, transfer_lanes, xy_route
from targets.formulas import (
    COLLECTIVE_KINDS,
    _nonneg,
    all_gather_s,
    all_reduce_s,
    collective_bytes_sent,
    collective_s,
    joules_per_token,
    link_busy_s,
    link_transfer_s,
    pipelined_tokens_per_s,
    reduce_scatter_s,
    stage_memory_bytes,
    to_int_units,
    tokens_per_s,
    usd_per_token,
)
from targets.gpu import GpuDevice, GpuTarget, Link
from targets.optime import OpTime
from targets.pipeline import pipeline_estimate
from targets.wafer import WaferTarget

__all__ = [
    "COLLECTIVE_KINDS",
    "UNTYPED_FLOPS_DTYPE",
    "CostModel",
    "OpTime",
    "GpuCostModel",
    "WaferCostModel",
    "all_gather_s",
    "all_reduce_s",
    "collective_bytes_sent",
    "collective_s",
    "joules_per_token",
    "link_busy_s",
    "link_transfer_s",
    "pipelined_tokens_per_s",
    "reduce_scatter_s",
    "stage_memory_bytes",
    "to_int_units",
    "tokens_per_s",
    "usd_per_token",
]

UNTYPED_FLOPS_DTYPE = "float16"
"""The rate for FLOPs whose dtype shape inference could not tell: models put on a
wafer compute in half precision, and ``float16`` is in every wafer preset's table."""


def _sum_or_none(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(sum(values))  # type: ignore[arg-type]


class CostModel(ABC):
    """Cost model of a target; ``CostModel(target)`` returns the subclass for its kind.

    Attributes:
        target: The target every constant comes from.
    """

    target: GpuTarget | WaferTarget

    def __new__(cls, target: GpuTarget | WaferTarget) -> CostModel:
        if cls is CostModel:
            if isinstance(target, GpuTarget):
                cls = GpuCostModel
            elif isinstance(target, WaferTarget):
                cls = WaferCostModel
            else:
                raise TargetError(f"not a target: {type(target).__name__}")
        return super().__new__(cls)

    def __init__(self, target: GpuTarget | WaferTarget) -> None:
        self.target = target

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target.name!r})"

    stage_memory_bytes = staticmethod(stage_memory_bytes)
    tokens_per_s = staticmethod(tokens_per_s)

    pipeline_estimate = staticmethod(pipeline_estimate)

    def _check_device(self, device: int) -> int:
        count = self.target.num_devices
        if not 0 <= device < count:
            raise ValueError(f"device {device} is not in 0..{count - 1} of {self.target.name}")
        return device

    def _devices(self, devices: Sequence[int] | None) -> list[int]:
        chosen = range(self.target.num_devices) if devices is None else devices
        return [self._check_device(device) for device in chosen]

    @abstractmethod
    def capacity_bytes(self, device: int) -> int:
        """Memory one device offers a plan (GPU HBM, or a wafer's usable SRAM)."""

    @abstractmethod
    def device_usd_per_hour(self, device: int) -> float | None:
        """Price per hour of one device (GPU or wafer system); None when unknown."""

    @abstractmethod
    def device_power_w(self, device: int) -> float | None:
        """Power of one device; None when unknown."""

    def usd_per_hour(self, devices: Sequence[int] | None = None) -> float | None:
        """Price per hour of the given devices (default: all); None if any price is unknown."""
        return _sum_or_none([self.device_usd_per_hour(d) for d in self._devices(devices)])

    def power_w(self, devices: Sequence[int] | None = None) -> float | None:
        """Power of the given devices (default: all); None if any is unknown."""
        return _sum_or_none([self.device_power_w(d) for d in self._devices(devices)])

    def usd_per_token(
        self, tokens_per_second: float, devices: Sequence[int] | None = None
    ) -> float | None:
        """Dollars per token on the given devices; None when a price is unknown."""
        return usd_per_token(tokens_per_second, self.usd_per_hour(devices))

    def joules_per_token(
        self, tokens_per_second: float, devices: Sequence[int] | None = None
    ) -> float | None:
        """Energy per token on the given devices; None when a power is unknown."""
        return joules_per_token(tokens_per_second, self.power_w(devices))


class GpuCostModel(CostModel):
    """Op and transfer times on a `GpuTarget`."""

    target: GpuTarget

    def _spec(self, device: int) -> GpuDevice:
        return self.target.devices[self._check_device(device)]

    def device_usd_per_hour(self, device: int) -> float | None:
        return self._spec(device).usd_per_hour

    def device_power_w(self, device: int) -> float | None:
        return self._spec(device).power_w

    def step_overhead_s(self, device: int) -> float:
        """Fixed seconds a stage on ``device`` pays per step besides its kernels."""
        return self._spec(device).step_overhead_s

    def capacity_bytes(self, device: int) -> int:
        """Device memory of one GPU."""
        return self._spec(device).hbm_bytes

    def op_time_s(
        self, flops: float, bytes_moved: float, dtype: str, device: int = 0, kernels: int = 1
    ) -> float:
        """Roofline time of an op (or ``kernels`` fused kernels) on one GPU.

        ``max(flops / (peak[dtype] · η_c), bytes_moved / (hbm_bw · η_m)) +
        kernels · launch_overhead``. ``bytes_moved`` counts inputs read,
        outputs written and weights read. With ``flops == 0`` no peak is
        looked up, so data-movement ops need no dtype entry; ``kernels=0``
        models ops that launch nothing (a Reshape).
        """
        return self.op_time_parts(flops, bytes_moved, dtype, device, kernels).total_s

    def op_time_parts(
        self, flops: float, bytes_moved: float, dtype: str, device: int = 0, kernels: int = 1
    ) -> OpTime:
        """The terms of `op_time_s`: compute, memory traffic and launch seconds apart."""
        _nonneg("flops", flops)
        _nonneg("bytes_moved", bytes_moved)
        if kernels < 0:
            raise ValueError(f"kernels must be >= 0, got {kernels}")
        spec = self._spec(device)
        compute_s = flops / (spec.peak_flops_for(dtype) * spec.eta_compute) if flops > 0 else 0.0
        memory_s = bytes_moved / (spec.hbm_bandwidth_bytes_per_s * spec.eta_memory)
        launch_s = kernels * spec.launch_overhead_s
        return OpTime(compute_s, memory_s, launch_s, spec.compute_memory_overlap)

    def transfer_time_s(self, nbytes: float, src_device: int, dst_device: int) -> float:
        """Seconds to move ``nbytes`` from one device to another.

        0 on the same device (or for 0 bytes); either end may be -1, the host,
        over ``host_link``; otherwise NVLink (or PCIe) inside a node and the
        network across nodes: ``latency + bytes / effective bandwidth``.
        """
        link = self.target.link_between(src_device, dst_device)
        return 0.0 if link is None else link_transfer_s(nbytes, link)

    def _group(self, devices: Sequence[int]) -> list[int]:
        group = [self._check_device(device) for device in devices]
        if not group:
            raise ValueError("a collective needs at least one device, got none")
        if len(set(group)) != len(group):
            raise ValueError(f"a collective's devices must differ, got {list(devices)}")
        return group

    def group_link(self, devices: Sequence[int]) -> Link:
        """The link a collective over ``devices`` runs at.

        ``intra_node_link`` when every device sits in one node, else
        ``inter_node_link``: a ring passes every byte along every hop, so
        its slowest hop, the network, sets the pace of the whole ring.
        Whether a group may span nodes at all (``tp_across_nodes``) is the
        planner's and the validator's question; this prices any group.
        """
        nodes = {self.target.node_of(device) for device in self._group(devices)}
        return self.target.intra_node_link if len(nodes) == 1 else self.target.inter_node_link

    def collective_time_s(self, kind: str, nbytes: float, devices: Sequence[int]) -> float:
        """Seconds of the collective ``kind`` over the group ``devices`` (see `collective_s`).

        ``kind`` is one of `COLLECTIVE_KINDS`; ``nbytes`` is the whole tensor
        each device holds (the plan's per-device payload). One device costs 0.

        Raises:
            ValueError: An unknown kind (the message lists the kinds), or a
                device missing from the target, repeated, or no device at all.
        """
        group = self._group(devices)
        return collective_s(kind, nbytes, len(group), self.group_link(group))


class WaferCostModel(CostModel):
    """Region compute, SRAM and fabric times on a `WaferTarget`."""

    target: WaferTarget

    def device_usd_per_hour(self, device: int) -> float | None:
        return self.target.wafer.usd_per_hour

    def device_power_w(self, device: int) -> float | None:
        return self.target.wafer.power_w

    def capacity_bytes(self, device: int) -> int:
        """Usable SRAM of one whole wafer (reserve excluded)."""
        self._check_device(device)
        wafer = self.target.wafer
        return self.region_sram_bytes(wafer.width_cores, wafer.height_cores)

    def _check_region(self, w: int, h: int) -> None:
        wafer = self.target.wafer
        if not (1 <= w <= wafer.width_cores and 1 <= h <= wafer.height_cores):
            raise ValueError(
                f"region {w}x{h} does not fit the {wafer.width_cores}x{wafer.height_cores} grid"
            )

    def region_compute_s(
        self, flops: float, w: int, h: int, dtype: str, num_matmuls: int = 0
    ) -> float:
        """Compute time of a w×h-core region: FMAC time plus the mesh term.

        ``flops / (w·h · lanes[dtype] · 2 · clock · η) + num_matmuls · (w + h)
        · hop_latency_cycles / clock`` (mesh term after WaferLLM's PLMR model).
        """
        _nonneg("flops", flops)
        if num_matmuls < 0:
            raise ValueError(f"num_matmuls must be >= 0, got {num_matmuls}")
        self._check_region(w, h)
        wafer = self.target.wafer
        compute_s = 0.0
        if flops > 0:
            lanes = wafer.lanes_for(dtype)
            compute_s = flops / (w * h * lanes * 2 * wafer.clock_hz * wafer.eta_compute)
        mesh_s = num_matmuls * (w + h) * wafer.hop_latency_cycles / wafer.clock_hz
        return compute_s + mesh_s

    def block_compute_s(
        self, flops_by_dtype: Mapping[str | None, float], w: int, h: int, num_matmuls: int = 0
    ) -> float:
        """Compute time of a block of mixed dtypes on a w×h region: FMAC time per dtype,
        plus the mesh term once for the block's ``num_matmuls``.

        FLOPs of unknown dtype (None) run at the ``UNTYPED_FLOPS_DTYPE`` rate.
        """
        total, mesh_done = 0.0, False
        typed: dict[str, float] = {}
        for dtype, flops in flops_by_dtype.items():
            key = dtype or UNTYPED_FLOPS_DTYPE
            typed[key] = typed.get(key, 0) + flops
        for dtype, flops in sorted(typed.items()):
            total += self.region_compute_s(flops, w, h, dtype, 0 if mesh_done else num_matmuls)
            mesh_done = True
        if not mesh_done and num_matmuls:
            total += self.region_compute_s(0, w, h, UNTYPED_FLOPS_DTYPE, num_matmuls)
        return total

    def region_sram_bytes(self, w: int, h: int) -> int:
        """Usable SRAM of a w×h region: ``w·h·(sram − reserve)``."""
        self._check_region(w, h)
        return w * h * self.target.wafer.usable_sram_bytes_per_core

    def cores_needed(self, nbytes: int) -> int:
        """Fewest cores whose usable SRAM holds ``nbytes`` (0 for 0 bytes)."""
        _nonneg("nbytes", nbytes)
        return math.ceil(nbytes / self.target.wafer.usable_sram_bytes_per_core)

    manhattan_hops = staticmethod(manhattan_hops)
    xy_route = staticmethod(xy_route)

    def link_time_s(self, nbytes: float) -> float:
        """Seconds one fabric link is busy carrying ``nbytes``.

        ``bytes / (link_bytes_per_cycle · clock)``; per-link loads add up.
        """
        _nonneg("nbytes", nbytes)
        wafer = self.target.wafer
        return nbytes / (wafer.link_bytes_per_cycle * wafer.clock_hz)

    def hop_latency_s(self, hops: int) -> float:
        """Seconds a message takes to cross ``hops`` fabric hops: ``hops · hop_latency / clock``."""
        wafer = self.target.wafer
        return hops * wafer.hop_latency_cycles / wafer.clock_hz

    def fabric_transfer_s(self, nbytes: float, hops: int, boundary_links: int) -> float:
        """Seconds to move ``nbytes`` ``hops`` apart over ``boundary_links`` links (the
        module doc's fabric transfer; 0 for 0 bytes). Between regions: `region_transfer_s`."""
        if _nonneg("nbytes", nbytes) == 0:
            return 0.0
        if hops < 0 or boundary_links < 1:
            raise ValueError(
                f"need hops >= 0 and boundary_links >= 1, got {hops}, {boundary_links}"
            )
        return self.hop_latency_s(hops) + self.link_time_s(nbytes) / boundary_links

    def region_transfer_s(self, nbytes: float, a: Rect, b: Rect) -> float:
        """`fabric_transfer_s` between regions ``a`` and ``b`` (x, y, w, h) of one wafer:
        their centres' hops (`center_hops`), the links between them (`transfer_lanes`)."""
        return self.fabric_transfer_s(nbytes, center_hops(a, b), transfer_lanes(a, b))

    def inter_wafer_transfer_s(self, nbytes: float) -> float:
        """Seconds to move ``nbytes`` between two wafers (systems)."""
        return link_transfer_s(nbytes, self.target.inter_wafer_link)

    def inter_wafer_busy_s(self, nbytes: float) -> float:
        """Seconds ``nbytes`` occupy a wafer's system link (no latency: see `link_busy_s`)."""
        return link_busy_s(nbytes, self.target.inter_wafer_link)

    def host_busy_s(self, nbytes: float) -> float:
        """Seconds ``nbytes`` occupy a wafer's host link (no latency)."""
        return link_busy_s(nbytes, self.target.host_link)

    def host_transfer_s(self, nbytes: float) -> float:
        """Seconds to move ``nbytes`` between the host and a wafer."""
        return link_transfer_s(nbytes, self.target.host_link)

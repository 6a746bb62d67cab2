"""GPU cluster specs: links, devices and the cluster target.

Every number is a field, so a target file can override any of them; the
presets in `targets.presets` say where each default comes from. Bandwidths
are datasheet figures *per direction*; what a transfer achieves is
``bandwidth × efficiency`` (`Link.effective_bandwidth_bytes_per_s`).
Collectives (tensor parallelism) have their own two link figures, the ring
bus bandwidth and the per-call latency, because neither follows from the
point-to-point ones: NCCL's per-call cost is mostly software.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from targets._fields import (
    FieldError,
    Spec,
    TargetSpec,
    boolean,
    bounded,
    check_fields,
    fraction,
    nonnegative_float,
    optional_positive_float,
    positive_float,
    positive_int,
    require_instance,
    set_field,
    spec_to_dict,
    text,
)
from targets.dtypes import check_fallback_dtype, check_rate_table, rate_for_dtype

__all__ = ["GpuDevice", "GpuTarget", "Link", "HOST", "LINK_DERIVED_FIELDS"]

#: Device id that stands for the host (CPU memory) in transfers.
HOST = -1
_LINK_FIELDS = ("intra_node_link", "inter_node_link", "host_link")

# Physical bounds, far beyond any real hardware (a slow link moves 1e8 B/s, a latency is
# microseconds). They keep every time computed from a spec finite: bytes over a bandwidth
# of 1e-320 B/s, or a sum of latencies of 1e308 s, would be infinite.
MIN_BANDWIDTH_BYTES_PER_S = 1.0
MIN_FLOPS_PER_S = 1.0
MIN_EFFICIENCY = 1e-6
MAX_LATENCY_S = 3600.0

_bandwidth = bounded(positive_float, MIN_BANDWIDTH_BYTES_PER_S, unit="B/s")
_efficiency = bounded(fraction, MIN_EFFICIENCY)
_latency = bounded(nonnegative_float, high=MAX_LATENCY_S, unit="s")
_flops = bounded(positive_float, MIN_FLOPS_PER_S, unit="FLOP/s")


def _optional(check: Callable[[Any, str], float]) -> Callable[[Any, str], float | None]:
    """``check``, letting None through: an omitted field that `Link` derives."""
    return lambda value, path: None if value is None else check(value, path)


_LINK_CHECKS = {
    "name": text,
    "bandwidth_bytes_per_s": _bandwidth,
    "efficiency": _efficiency,
    "latency_s": _latency,
    "collective_bandwidth_bytes_per_s": _optional(_bandwidth),
    "collective_latency_s": _optional(_latency),
}
#: Link fields that default to a value derived from other fields -> those fields. The loader
#: drops an inherited derived value when an override changes what it derives from.
LINK_DERIVED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "collective_bandwidth_bytes_per_s": ("bandwidth_bytes_per_s", "efficiency"),
    "collective_latency_s": ("latency_s",),
}
_DEVICE_CHECKS = {
    "name": text,
    "hbm_bytes": positive_int,
    "hbm_bandwidth_bytes_per_s": _bandwidth,
    "peak_flops_per_s": lambda value, path: check_rate_table(value, path, _flops),
    "eta_compute": _efficiency,
    "eta_memory": _efficiency,
    "launch_overhead_s": _latency,
    "step_overhead_s": _latency,
    "contended_bandwidth_bytes_per_s": _optional(_bandwidth),
    "power_w": optional_positive_float,
    "usd_per_hour": optional_positive_float,
}


@dataclass(frozen=True)
class Link(Spec):
    """A point-to-point link between two devices, or a device and the host.

    The two collective fields are what a ring collective (NCCL) over this link
    achieves; they are separate from the point-to-point figures because a
    collective call costs far more than a copy (NCCL launch and
    synchronisation: ~33 µs measured per small all-reduce on 8×H100, against
    the 5 µs the presets assume for a copy). Left out (None), they are
    derived, and the built Link holds the derived number:

    - ``collective_bandwidth_bytes_per_s = bandwidth × efficiency``: a ring
      moves each byte over one link at a time, so its bus bandwidth is about
      what one large transfer achieves (on 8×H100: 370 GB/s busbw measured
      against 380 GB/s one-way peer-to-peer);
    - ``collective_latency_s = latency_s``: the only latency the link knows.
      It underestimates a real call (see the presets), so sourced targets set it.

    The canonical form (`to_dict`, and so the sha256) leaves out a collective
    field equal to its derived value: a spec written before these fields
    existed rebuilds to the same hash, so the plans made for it stay valid.

    Attributes:
        name: What the link is (``"NVLink4"``, ``"IB NDR 400G"``).
        bandwidth_bytes_per_s: Datasheet bandwidth per direction.
        efficiency: Fraction of it a large transfer achieves, in (0, 1].
        latency_s: Fixed cost of one transfer (software plus wire).
        collective_bandwidth_bytes_per_s: Ring "bus bandwidth" of a large
            all-reduce over this link, as nccl-tests report it (busbw): the
            figure the collective formulas divide their bus bytes by.
        collective_latency_s: Per-call cost of one small collective.
    """

    name: str
    bandwidth_bytes_per_s: float
    efficiency: float
    latency_s: float
    # None only until __post_init__ derives them; a built Link holds floats.
    collective_bandwidth_bytes_per_s: float | None = None
    collective_latency_s: float | None = None

    def __post_init__(self) -> None:
        check_fields(self, _LINK_CHECKS)
        for name, value in self.derived_values().items():
            if getattr(self, name) is None:
                set_field(self, name, value)

    def derived_values(self) -> dict[str, float]:
        """What each field of `LINK_DERIVED_FIELDS` is when a spec leaves it out."""
        return {
            "collective_bandwidth_bytes_per_s": self.effective_bandwidth_bytes_per_s,
            "collective_latency_s": self.latency_s,
        }

    def to_dict(self) -> dict[str, Any]:
        """Every field, less the collective ones that equal their derived value."""
        derived = self.derived_values()
        return {k: v for k, v in spec_to_dict(self).items() if k not in derived or v != derived[k]}

    @property
    def effective_bandwidth_bytes_per_s(self) -> float:
        """Bandwidth a large transfer achieves: datasheet × efficiency."""
        return self.bandwidth_bytes_per_s * self.efficiency


@dataclass(frozen=True)
class GpuDevice(Spec):
    """One GPU model.

    Attributes:
        name: Model name (``"H100-SXM5-80GB"``).
        hbm_bytes: Device memory (datasheet GB = 1e9 bytes).
        hbm_bandwidth_bytes_per_s: Datasheet memory bandwidth.
        peak_flops_per_s: Dense peak FLOP/s per dtype (see `targets.dtypes`).
        eta_compute: Achieved fraction of peak FLOP/s on large matmuls.
        eta_memory: Achieved fraction of memory bandwidth on large copies.
        launch_overhead_s: Fixed cost added per kernel.
        step_overhead_s: Fixed cost a pipeline stage pays once per step on top of its
            kernels: the host's call into the runtime (an onnxruntime ``session.run``,
            a CUDA-graph replay) and the rank's bookkeeping around it. 0 leaves it out.
        power_w: Board power, or None when unknown.
        usd_per_hour: Price per GPU-hour, or None when unknown.
        fallback_peak_dtype: Entry used for dtypes without one, or None to
            make such dtypes an error.
        compute_memory_overlap: Whether a kernel's arithmetic hides its memory traffic,
            as a GPU's thousands of threads do: it takes ``max(compute, memory)``. False
            for one CPU thread, which computes and streams in turn: ``compute + memory``
            (`partition calibrate` chooses by timing a GEMM at 8 rows).
        contended_bandwidth_bytes_per_s: Memory bandwidth the device gets while every
            device of its node streams at once, where the devices share one memory system
            (CPU ranks on one host: `partition calibrate --ranks N` measures it); None where
            each device's memory is its own (GPUs). `GpuTarget.contended` prices with it.
    """

    name: str
    hbm_bytes: int
    hbm_bandwidth_bytes_per_s: float
    peak_flops_per_s: Mapping[str, float]
    eta_compute: float
    eta_memory: float
    launch_overhead_s: float
    power_w: float | None = None
    usd_per_hour: float | None = None
    fallback_peak_dtype: str | None = None
    step_overhead_s: float = 0.0
    compute_memory_overlap: bool = True
    contended_bandwidth_bytes_per_s: float | None = None

    def __post_init__(self) -> None:
        check_fields(self, _DEVICE_CHECKS)
        overlap = boolean(self.compute_memory_overlap, "compute_memory_overlap")
        set_field(self, "compute_memory_overlap", overlap)
        fallback = check_fallback_dtype(
            self.fallback_peak_dtype, self.peak_flops_per_s, "fallback_peak_dtype"
        )
        set_field(self, "fallback_peak_dtype", fallback)

    def to_dict(self) -> dict[str, Any]:
        """Every field; ``step_overhead_s`` and ``contended_bandwidth_bytes_per_s`` only when
        set and ``compute_memory_overlap`` only when false, so older specs keep their hash."""
        canonical = spec_to_dict(self)
        if not self.step_overhead_s:
            del canonical["step_overhead_s"]
        if self.contended_bandwidth_bytes_per_s is None:
            del canonical["contended_bandwidth_bytes_per_s"]
        if self.compute_memory_overlap:
            del canonical["compute_memory_overlap"]
        return canonical

    def peak_flops_for(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype`` under the `targets.dtypes` lookup rule."""
        return rate_for_dtype(
            self.peak_flops_per_s,
            dtype,
            self.fallback_peak_dtype,
            owner=f"GPU '{self.name}'",
            table_field="peak_flops_per_s",
        )


RUNTIMES = ("eager", "fused")


@dataclass(frozen=True)
class GpuTarget(TargetSpec):
    """A cluster of GPUs in nodes of ``gpus_per_node``.

    Device ``d`` sits in node ``d // gpus_per_node``. Two devices in one node
    talk over ``intra_node_link`` (NVLink, or PCIe where there is no NVLink),
    devices in different nodes over ``inter_node_link`` (the network), and a
    device and the host (`HOST`, -1) over ``host_link``. A tensor-parallel
    group stays inside one node unless ``tp_across_nodes``: its two
    collectives per layer would otherwise cross the network, about 9× slower
    than NVLink on the presets, which serving stacks avoid.

    Attributes:
        name: Target name (a preset name or the file's).
        devices: One spec per device; the index is the device id. Devices may differ.
        gpus_per_node: Devices per node (the last node may be partly filled).
        intra_node_link: Link between two devices of one node.
        inter_node_link: Link between devices of different nodes.
        host_link: Link between a device and host memory.
        description: Free text for reports.
        tp_across_nodes: Whether a tensor-parallel group may span nodes.
        runtime: How the serving runtime executes the graph: ``"eager"`` (one kernel
            and one launch per ONNX op, as onnxruntime runs it) or ``"fused"``
            (attention as one FlashAttention-style kernel, elementwise chains as one
            memory pass each, decode steps replayed as CUDA graphs, as vLLM and
            TensorRT-LLM run it; `passes.analysis.fusion`).
    """

    kind: ClassVar[str] = "gpu"
    nested_specs: ClassVar[Mapping[str, Any]] = {
        "devices": (GpuDevice,),
        **dict.fromkeys(_LINK_FIELDS, Link),
    }

    name: str
    devices: tuple[GpuDevice, ...]
    gpus_per_node: int
    intra_node_link: Link
    inter_node_link: Link
    host_link: Link
    description: str = ""
    tp_across_nodes: bool = False
    runtime: str = "eager"

    def __post_init__(self) -> None:
        set_field(self, "name", text(self.name, "name"))
        if self.runtime not in RUNTIMES:
            raise FieldError("runtime", f"must be one of {', '.join(map(repr, RUNTIMES))}")
        if isinstance(self.devices, GpuDevice) or not isinstance(self.devices, tuple | list):
            raise FieldError("devices", "must be a list of devices")
        if not self.devices:
            raise FieldError("devices", "must list at least one device")
        for index, device in enumerate(self.devices):
            if not isinstance(device, GpuDevice):
                raise FieldError(f"devices[{index}]", "must be a GpuDevice")
        set_field(self, "devices", tuple(self.devices))
        set_field(self, "gpus_per_node", positive_int(self.gpus_per_node, "gpus_per_node"))
        require_instance(self, _LINK_FIELDS, Link)
        set_field(self, "description", text(self.description, "description", allow_empty=True))
        set_field(self, "tp_across_nodes", boolean(self.tp_across_nodes, "tp_across_nodes"))

    def to_dict(self) -> dict[str, Any]:
        """Canonical spec; ``tp_across_nodes`` only when true and ``runtime`` only when not
        eager, so older specs keep their hash."""
        canonical = super().to_dict()
        if not self.tp_across_nodes:
            del canonical["tp_across_nodes"]
        if self.runtime == "eager":
            del canonical["runtime"]
        return canonical

    def contended(self) -> GpuTarget | None:
        """This target with each device's memory bandwidth the one it gets while every
        device of its node streams at once (``contended_bandwidth_bytes_per_s``), to price
        stages that run at the same time on devices sharing one memory system; None when
        no device shares its memory."""
        if all(d.contended_bandwidth_bytes_per_s is None for d in self.devices):
            return None
        devices = tuple(
            d
            if d.contended_bandwidth_bytes_per_s is None
            else replace(
                d,
                hbm_bandwidth_bytes_per_s=d.contended_bandwidth_bytes_per_s,
                contended_bandwidth_bytes_per_s=None,
            )
            for d in self.devices
        )
        return replace(self, devices=devices)

    @property
    def num_devices(self) -> int:
        """Number of GPUs."""
        return len(self.devices)

    @property
    def num_nodes(self) -> int:
        """Number of nodes, counting a partly filled last one."""
        return -(-self.num_devices // self.gpus_per_node)

    def _check_device(self, device: int) -> None:
        if not 0 <= device < self.num_devices:
            raise ValueError(f"device {device} is not in 0..{self.num_devices - 1} of {self.name}")

    def node_of(self, device: int) -> int:
        """The node a device sits in."""
        self._check_device(device)
        return device // self.gpus_per_node

    def link_between(self, a: int, b: int) -> Link | None:
        """The link a transfer from ``a`` to ``b`` uses; None when ``a == b``.

        Either end may be `HOST` (-1), which means host I/O over ``host_link``.
        """
        if a == b:
            return None
        if HOST in (a, b):
            self._check_device(b if a == HOST else a)
            return self.host_link
        return self.intra_node_link if self.node_of(a) == self.node_of(b) else self.inter_node_link

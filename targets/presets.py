"""Preset targets, with the source of every number.

Tags, as in the project's HARDWARE.md: **[V]** vendor claim, **[M]**
measurement, **[D]** arithmetic derived from cited numbers. A number marked
*assumption* is not sourced: it is a parameter with a default chosen by us;
override it in a target file (``{"extends": "h100x8", ...}``).

Units: datasheet "GB" and "TB/s" are decimal (1e9, 1e12). Link bandwidths are
per direction, so NVLink figures, which NVIDIA quotes bidirectional, are halved.

GPUs (SXM unless named otherwise). Sources: NVIDIA datasheets as collected at
glennklockwood.com/garden/processors/{A100,h100,B200} (dense = half the
"with sparsity" figure) and HARDWARE.md:

============  ========  ==========  ==========  ===============  =========  =====
GPU           HBM       HBM bw      dense bf16  NVLink (bidir)   host PCIe  power
============  ========  ==========  ==========  ===============  =========  =====
A100 80GB     80 GB     2.039 TB/s  312 TF      600 GB/s         Gen4 32    400 W
H100          80 GB     3.35 TB/s   989 TF      900 GB/s         Gen5 64    700 W
H200          141 GB    4.8 TB/s    989 TF      900 GB/s         Gen5 64    700 W
B200 (HGX)    180 GB    8 TB/s      2,250 TF    1.8 TB/s         Gen5 64    1000 W
H100 PCIe     80 GB     2.0 TB/s    756.5 TF    none (PCIe)      Gen5 64    350 W
============  ========  ==========  ==========  ===============  =========  =====

(all [V]; PCIe in GB/s per direction; H100 PCIe from the NVIDIA H100
datasheet's PCIe column: 1,513 TF bf16 with sparsity, 2,000 GB/s, 300-350 W.)

Efficiencies [M], measured on hardware and applied to every GPU as an
assumption (we have no measurement for the others):

- ``eta_compute = 788/989``: one H200 here ran an 8192³ bf16 matmul at
  769-798 TF/s of 989 (DESIGN.md, HARDWARE.md).
- ``eta_memory = 4.3/4.8``: the same H200 copied device-to-device at ~4.3 TB/s.
- link ``efficiency = 380/450``: H100 NVLink peer-to-peer reached ~380 GB/s
  one-way of 450 (NCCL issue 1264). Also used for PCIe and the network, which
  we did not measure (assumption).

Collectives (link fields ``collective_bandwidth_bytes_per_s``, the ring busbw,
and ``collective_latency_s``, the per-call cost; sources in HARDWARE.md):

- NVLink4 busbw 370 GB/s (h100, h200): 8×H100 ring all-reduce on large
  messages, nccl-tests #212 and nccl #2140 [M]. We take the ring figure, not
  the ~480 GB/s NVLink SHARP (NVLS) reaches, because NCCL picks NVLS only
  above ~256 MB, far above a layer's activations (even 4k tokens × 8192 ×
  2 B = 64 MiB). H200 uses the H100 figure: the same NVLink4 and NVSwitch
  (assumption); its own measurement, 475 GB/s (nccl-tests #272) [M], matches
  the H100's NVLS figure, not the ring one, so it is not used.
- NVLink3 (a100) and NVLink5 (b200) have no figure: busbw is the H100's
  busbw/datasheet ratio 370/450 times their per-direction NVLink, 300 and
  900 GB/s -> 246.7 and 740 GB/s [D] (assumption).
- Per-call latency 33 µs on every GPU collective link: Vidur's profiled
  all-reduce on an 8×H100 DGX through torch.distributed has medians of about
  33–37 µs from 4 KB to 2 MB [M] (microsoft/vidur
  ``data/profiling/network/h100_dgx/all_reduce.csv``). Decode sends small
  messages (16 KiB for hidden 8192 at batch 1), so we take the low end, 33
  µs: the bandwidth term adds the rest for larger ones (2 MiB: 2·7/8 · 2 MiB
  / 370 GB/s = 9.9 µs). In the CSV, the three-sample medians scatter from
  19 to 43 µs below 0.5 MB and settle at 31–33 µs from 0.5 to 1 MB; 33 µs
  is where they are steady, not the luckiest small sample. It includes torch.distributed's own overhead, which
  eager runtimes pay; serving runtimes with CUDA graphs and custom all-reduce
  kernels pay less (AIConfigurator assumes 10 µs, llm-analysis 8 µs: model
  inputs, not measurements), so set ``collective_latency_s: 1.0e-5`` for
  them. It was measured with 8 GPUs; smaller groups get the same figure
  (assumption, on the safe side).
- InfiniBand NDR (between nodes): busbw 50 GB/s × 380/450 = 42.2 GB/s, the
  network's point-to-point figure (HARDWARE.md gives no collective
  measurement across nodes; assumption); latency 33 µs, the NVLink per-call
  figure as a floor (assumption: a call across nodes pays at least the
  software cost measured inside one; the network hops add more, unmeasured).
- PCIe between GPUs (``h100x8-pcie``): busbw 64 GB/s × 380/450 = 54.0 GB/s,
  the point-to-point figure, and the same 33 µs floor (assumptions).
- Host links and wafer links run no collective; they keep `Link`'s derived
  defaults (busbw = bandwidth × efficiency, latency = the link's latency).

Nodes hold at most 8 GPUs (HGX boards); ``h100x16`` is 2 nodes × 8 and
``h100x32`` 4 × 8, with one 400 Gb/s InfiniBand NDR NIC per GPU = 50 GB/s
per direction [V]. Every pair of GPUs in a node is given the full per-GPU
NVLink bandwidth, as an NVSwitch provides; boards of 2-4 GPUs without
NVSwitch split the links among peers, so ``x2``/``x4`` presets are optimistic
there (assumption).

Wafers (Cerebras). Sources: HARDWARE.md; the Cerebras SDK docs (fabric sizes,
SIMD widths, 32-bit wavelets, one hop per cycle); Cerebras/csl-examples.

- ``wse2``: 757 × 996 PEs a program can use [V, SDK]; 48 KiB SRAM per PE
  (8 banks of 6 KiB) [V]; FP16 FMAC lanes 4 [V, SDK]. Clock 0.85 GHz: the
  figure Cerebras' own SDK benchmarks use to turn measured cycles into time
  (csl-examples ``benchmarks/bandwidth-test``: ``time = cycles / 0.85 * 1e-3
  us``) [V]. We prefer it to the 1.1 GHz of a second-hand Hot Chips summary
  because it is the vendor's working number for real runs, and it is the
  conservative one; the 220 Pb/s fabric claim implies ~1.0 GHz [D], so the
  true clock may be higher.
- ``wse3``: 762 × 1176 PEs [V, SDK]; 48 KiB; FP16 FMAC lanes 8 [V, SDK]. The
  clock is not published: 0.85 GHz is assumed, the WSE-2 figure (assumption;
  the 214 Pb/s fabric claim implies ~0.93 GHz [D]). Override ``wafer.clock_hz``.
- Fabric: a 32-bit wavelet crosses one hop per cycle, so
  ``link_bytes_per_cycle = 4`` and ``hop_latency_cycles = 1`` [V, SDK].
- The memcpy halo around a program's rectangle (7 columns, 1-2 rows) is not
  subtracted from the grid; shrink ``width_cores``/``height_cores`` to model it.
- ``sram_reserve_bytes_per_core = 6 KiB`` (one of 8 banks) for code and
  buffers: not published (assumption).
- ``eta_compute = 788/989``, the H200 matmul ratio: not measured on a wafer
  (assumption).
- ``fmac_lanes_per_cycle`` lists only ``float16``, the SIMD width HARDWARE.md
  takes from the SDK (FP16 multiply with FP32 accumulate runs at half those
  lanes; no FP32 or BF16 width is given). Other dtypes use the float16 lanes
  (``fallback_lanes_dtype``): the wafer is planned as if the model ran in 16
  bit, as Cerebras Inference serves 16-bit weights [V]. Set the fallback to
  null to make other dtypes an error instead.
- Multi-system presets join CS systems by their system I/O, 12 × 100 GbE =
  1.2 Tb/s = 150 GB/s per direction [V]; the host link is the same I/O.

Prices (``usd_per_hour``, per GPU or per wafer system), defaults for $ per token;
override them with what you pay (``all_devices: {usd_per_hour: 2.5}``):

- A100 $2.21: Vidur's constant (CoreWeave, Feb 2024) [secondary].
- H100 $2.95: the median of public on-demand prices, May 2026 (aimultiple);
  tiers run $1.99-2.50 (long tail), $2.50-3.50 (specialty clouds), $3.50-5.00
  (hyperscalers) (Mercatus) [secondary].
- H200 $4.00: the middle of the specialty-cloud tier, $3.50-4.50 (Mercatus,
  May 2026); $2.50-3.50 long tail, $4.50-7.00 hyperscalers; Spheron on-demand
  $4.54 (Mar 2026) [secondary].
- B200 $5.25: the middle of on-demand on specialised clouds, $4.50-6.00
  (Lyceum, Mar 2026); spot from $2.25, Spheron on-demand $6.03 (Mar 2026),
  up to $14.24 on-demand elsewhere (Inworld, Apr 2026) [secondary].
- H100 PCIe: None (no public figure collected): $/token is not reported.
- CS-3 system $97.43 an hour, an *assumption*: no hourly price is published.
  It is a reported $2-3M price [secondary], $2.5M, spread over 3 years of
  continuous use ($95.13/h), plus the reported ~23 kW at an assumed
  $0.10/kWh ($2.30/h) [D]. CS-2 (WSE-2): None. Cerebras' public API prices per
  million tokens are a comparison point, not an input (`CEREBRAS_API_PRICES`).
- Wafer system power: CS-3 23 kW [secondary]; CS-2 None.

Assumptions without a source (override in a target file): kernel launch
overhead 5 µs; a GPU stage's fixed cost per step (``step_overhead_s``) one
such launch, since a fused runtime replays a decode step as one CUDA graph,
one launch, and an eager one calls into its runtime once a step on top of its
kernels' launches; link latencies (NVLink 5 µs, PCIe 10 µs, InfiniBand 10 µs,
100 GbE 10 µs).
"""

from __future__ import annotations

from targets.errors import TargetError
from targets.gpu import GpuDevice, GpuTarget, Link
from targets.wafer import WaferSpec, WaferTarget

__all__ = ["ALIASES", "CEREBRAS_API_PRICES", "Target", "get_preset", "preset_names", "presets"]

#: Any target: the union every loader and cost model accepts.
Target = GpuTarget | WaferTarget


def _giga(value: float) -> float:
    """``value`` × 1e9 as the float nearest the decimal (2.039 TB/s -> exactly 2.039e12)."""
    return float(f"{value!r}e9")


def _tera(value: float) -> float:
    """``value`` × 1e12 as the float nearest the decimal."""
    return float(f"{value!r}e12")


KIB = 1024

# [M] H200 here: 788 of 989 TF dense bf16; 4.3 of 4.8 TB/s (DESIGN.md).
ETA_COMPUTE = 788.0 / 989.0
ETA_MEMORY = 4.3 / 4.8
# [M] H100 NVLink one-way ~380 of 450 GB/s (NCCL issue 1264).
LINK_EFFICIENCY = 380.0 / 450.0
# Assumptions, not sourced; override in a target file.
LAUNCH_OVERHEAD_S = 5e-6
NVLINK_LATENCY_S = 5e-6
PCIE_LATENCY_S = 10e-6
NETWORK_LATENCY_S = 10e-6
# [M] 8×H100 NVLink4 ring all-reduce busbw on large messages (nccl-tests #212, nccl #2140).
NVLINK4_RING_BUSBW_BYTES_PER_S = 370e9
# [D] its ratio to the 450 GB/s datasheet, for NVLink generations without a measurement.
NVLINK_RING_BUSBW_RATIO = 370.0 / 450.0
# [M] low end of Vidur's 8×H100 all-reduce medians, 33-37 µs for 4 KB-2 MB (torch.distributed).
COLLECTIVE_LATENCY_S = 33e-6
WAFER_SRAM_RESERVE_BYTES = 6 * KIB

ALIASES: dict[str, str] = {"gpu": "h100x8", "wafer": "wse3"}


def _link(
    name: str, bytes_per_s: float, latency_s: float, busbw_bytes_per_s: float | None = None
) -> Link:
    """A preset link; with ``busbw_bytes_per_s`` it carries collectives (``COLLECTIVE_LATENCY_S``)."""
    if busbw_bytes_per_s is None:
        return Link(name, bytes_per_s, LINK_EFFICIENCY, latency_s)
    return Link(
        name, bytes_per_s, LINK_EFFICIENCY, latency_s, busbw_bytes_per_s, COLLECTIVE_LATENCY_S
    )


def _gpu(
    name: str,
    hbm_gb: float,
    hbm_tb_per_s: float,
    peaks_tf: dict[str, float],
    power_w: float,
    usd_per_hour: float | None,
) -> GpuDevice:
    return GpuDevice(
        name=name,
        hbm_bytes=int(_giga(hbm_gb)),
        hbm_bandwidth_bytes_per_s=_tera(hbm_tb_per_s),
        peak_flops_per_s={dtype: _tera(tf) for dtype, tf in peaks_tf.items()},
        eta_compute=ETA_COMPUTE,
        eta_memory=ETA_MEMORY,
        launch_overhead_s=LAUNCH_OVERHEAD_S,
        step_overhead_s=LAUNCH_OVERHEAD_S,  # the step's one graph launch (see above)
        power_w=power_w,
        usd_per_hour=usd_per_hour,
        fallback_peak_dtype="float32",
    )


# fmt: off
# _gpu(name, HBM GB, HBM TB/s, dense TF/s per dtype, board W [V], $ per GPU-hour (module doc)).
# float64 is the FP64 tensor-core rate, float32 the CUDA-core FP32 rate (not TF32).
# [V] NVIDIA A100 datasheet via glennklockwood.com/garden/processors/A100 (80G SXM4);
# no FP8 on Ampere.
A100 = _gpu(
    "A100-SXM4-80GB", 80, 2.039,
    {"float64": 19.5, "float32": 19.5, "tfloat32": 156, "float16": 312, "bfloat16": 312,
     "int8": 624},
    400, 2.21,
)
# [V] NVIDIA H100 datasheet via glennklockwood.com/garden/processors/h100; bf16 989 TF
# and 3.35 TB/s as in HARDWARE.md. H200 = H100 compute with 141 GB at 4.8 TB/s [V].
_HOPPER_TF = {"float64": 67, "float32": 67, "tfloat32": 494.5, "float16": 989, "bfloat16": 989,
              "float8": 1979, "int8": 1979}
H100 = _gpu("H100-SXM5-80GB", 80, 3.35, _HOPPER_TF, 700, 2.95)
H200 = _gpu("H200-SXM-141GB", 141, 4.8, _HOPPER_TF, 700, 4.00)
# [V] HARDWARE.md (180 GB usable, 8 TB/s, 2,250 TF bf16, 1000 W); other dtypes from the
# HGX B200 (1000 W) column at glennklockwood.com/garden/processors/B200.
B200 = _gpu(
    "B200-HGX-180GB", 180, 8,
    {"float64": 40, "float32": 80, "tfloat32": 1100, "float16": 2250, "bfloat16": 2250,
     "float8": 4500, "float4": 9000, "int8": 4500},
    1000, 5.25,
)
# [V] NVIDIA H100 datasheet, PCIe column (sparse figures halved): not in HARDWARE.md.
H100_PCIE = _gpu(
    "H100-PCIe-80GB", 80, 2.0,
    {"float64": 51, "float32": 51, "tfloat32": 378, "float16": 756.5, "bfloat16": 756.5,
     "float8": 1513, "int8": 1513},
    350, None,
)
# fmt: on

# [V] PCIe Gen4 x16 32 GB/s and Gen5 x16 64 GB/s per direction; IB NDR 400 Gb/s = 50 GB/s.
# Collective busbw between GPUs over PCIe or the network: the point-to-point figure
# (assumption, see the module doc).
_PCIE4 = _link("PCIe Gen4 x16", _giga(32), PCIE_LATENCY_S)
_PCIE5 = _link("PCIe Gen5 x16", _giga(64), PCIE_LATENCY_S)
_PCIE5_PEERS = _link("PCIe Gen5 x16", _giga(64), PCIE_LATENCY_S, _giga(64) * LINK_EFFICIENCY)
_IB_NDR = _link(
    "InfiniBand NDR 400G (one NIC per GPU)",
    _giga(50),
    NETWORK_LATENCY_S,
    _giga(50) * LINK_EFFICIENCY,
)
# (device, NVLink name, NVLink bidirectional bytes/s [V], ring busbw (module doc), host link)
_GPU_FAMILIES = {
    "a100": (A100, "NVLink3", _giga(600), _giga(300) * NVLINK_RING_BUSBW_RATIO, _PCIE4),
    "h100": (H100, "NVLink4", _giga(900), NVLINK4_RING_BUSBW_BYTES_PER_S, _PCIE5),
    "h200": (H200, "NVLink4", _giga(900), NVLINK4_RING_BUSBW_BYTES_PER_S, _PCIE5),
    "b200": (B200, "NVLink5", _giga(1800), _giga(900) * NVLINK_RING_BUSBW_RATIO, _PCIE5),
}
_GPU_COUNTS = (1, 2, 4, 8, 16, 32)
_GPUS_PER_NODE = 8


def _gpu_target(name: str, device: GpuDevice, count: int, intra: Link, host: Link) -> GpuTarget:
    per_node = min(count, _GPUS_PER_NODE)
    nodes = count // per_node
    return GpuTarget(
        name=name,
        devices=(device,) * count,
        gpus_per_node=per_node,
        intra_node_link=intra,
        inter_node_link=_IB_NDR,
        host_link=host,
        description=_gpu_description(device, per_node, nodes, intra),
        runtime="fused",  # as vLLM and TensorRT-LLM serve: fused kernels, CUDA graphs
    )


def _gpu_description(device: GpuDevice, per_node: int, nodes: int, intra: Link) -> str:
    if per_node == 1:
        return f"1 x {device.name}"
    if nodes == 1:
        return f"{per_node} x {device.name}, {intra.name} between GPUs"
    return (
        f"{nodes} nodes x {per_node} {device.name}, {intra.name} in a node, "
        f"{_IB_NDR.name} between nodes"
    )


CS3_POWER_W = 23_000.0  # [secondary] reported system power
# assumption [D]: $2.5M (reported $2-3M) over 3 years of 8,760 h, plus 23 kW at $0.10/kWh
CS3_USD_PER_HOUR = round(2.5e6 / (3 * 8760) + CS3_POWER_W / 1000 * 0.10, 2)
#: Cerebras' public API prices, $ per million tokens (input, output) [V] (HARDWARE.md): a
#: comparison point printed beside estimates, never an input to them.
CEREBRAS_API_PRICES: dict[str, tuple[float, float]] = {
    "llama3.1-8b": (0.10, 0.10),
    "llama3.1-70b": (0.60, 0.60),
    "llama3.3-70b": (0.85, 1.20),
    "gpt-oss-120b": (0.35, 0.75),
}
_WSE_FABRIC = {"link_bytes_per_cycle": 4, "hop_latency_cycles": 1}  # [V, SDK]
_SYSTEM_IO = _link("CS system I/O 12 x 100 GbE", 1.2e12 / 8, NETWORK_LATENCY_S)  # [V]

# fmt: off
WSE2 = WaferSpec(
    name="WSE-2", width_cores=757, height_cores=996, sram_bytes_per_core=48 * KIB,
    sram_reserve_bytes_per_core=WAFER_SRAM_RESERVE_BYTES, fmac_lanes_per_cycle={"float16": 4},
    clock_hz=0.85e9, eta_compute=ETA_COMPUTE, fallback_lanes_dtype="float16", **_WSE_FABRIC,
)
WSE3 = WaferSpec(
    name="WSE-3", width_cores=762, height_cores=1176, sram_bytes_per_core=48 * KIB,
    sram_reserve_bytes_per_core=WAFER_SRAM_RESERVE_BYTES, fmac_lanes_per_cycle={"float16": 8},
    clock_hz=0.85e9, eta_compute=ETA_COMPUTE, fallback_lanes_dtype="float16", **_WSE_FABRIC,
    power_w=CS3_POWER_W, usd_per_hour=CS3_USD_PER_HOUR,
)
# fmt: on


def _wafer_target(name: str, wafer: WaferSpec, count: int) -> WaferTarget:
    return WaferTarget(
        name=name,
        wafer=wafer,
        num_wafers=count,
        inter_wafer_link=_SYSTEM_IO,
        host_link=_SYSTEM_IO,
        description=f"{count} x {wafer.name} ({wafer.width_cores} x {wafer.height_cores} cores), "
        "layer-pipelined, weights resident in SRAM",
    )


def _build_presets() -> dict[str, Target]:
    presets: dict[str, Target] = {}
    for family, (device, nvlink_name, nvlink_bidir, busbw, host) in _GPU_FAMILIES.items():
        nvlink = _link(nvlink_name, nvlink_bidir / 2, NVLINK_LATENCY_S, busbw)
        for count in _GPU_COUNTS:
            name = f"{family}x{count}"
            presets[name] = _gpu_target(name, device, count, nvlink, host)
    presets["h100x8-pcie"] = _gpu_target("h100x8-pcie", H100_PCIE, 8, _PCIE5_PEERS, _PCIE5)
    for family, wafer, counts in (("wse2", WSE2, (1, 2, 4)), ("wse3", WSE3, (1, 2, 4, 8))):
        for count in counts:
            name = family if count == 1 else f"{family}x{count}"
            presets[name] = _wafer_target(name, wafer, count)
    return presets


_PRESETS: dict[str, Target] = _build_presets()


def presets() -> dict[str, Target]:
    """Every preset by name, in `preset_names` order (a copy: the presets stay as built)."""
    return dict(_PRESETS)


def preset_names() -> list[str]:
    """Every preset name, in a stable order (GPUs by family and size, then wafers)."""
    return list(_PRESETS)


def get_preset(name: str) -> Target:
    """The preset called ``name`` or one of its `ALIASES`.

    Raises:
        TargetError: No such preset; the message lists them.
    """
    key = ALIASES.get(name, name)
    if key not in _PRESETS:
        aliases = ", ".join(f"{a} -> {p}" for a, p in ALIASES.items())
        raise TargetError(
            f"unknown target '{name}'; presets: {', '.join(_PRESETS)} (aliases: {aliases}); "
            "or give a .json/.yaml/.yml target file"
        )
    return _PRESETS[key]

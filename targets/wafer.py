"""Wafer-scale engine specs: the core grid and the multi-wafer target.

A wafer is a ``width_cores × height_cores`` mesh of cores (Cerebras PEs).
Each core has its own SRAM, part of which code and buffers take, and FMAC
lanes that do ``lanes`` multiply-adds (2 FLOP each) per cycle. Neighbouring
cores are joined by links that move ``link_bytes_per_cycle`` per cycle in each
direction, one hop per ``hop_latency_cycles``. Sources for every preset number
are in `targets.presets`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from targets._fields import (
    FieldError,
    Spec,
    TargetSpec,
    bounded,
    check_fields,
    fraction,
    nonnegative_float,
    nonnegative_int,
    optional_positive_float,
    positive_float,
    positive_int,
    require_instance,
    set_field,
    text,
)
from targets.dtypes import check_fallback_dtype, check_rate_table, rate_for_dtype
from targets.gpu import MIN_EFFICIENCY, Link

__all__ = ["MAX_SIDE_CORES", "MAX_WAFER_CORES", "MAX_WAFERS", "WaferSpec", "WaferTarget"]

_LINK_FIELDS = ("inter_wafer_link", "host_link")

# Bounds far beyond real wafers (WSE-3: 762 x 1176 cores of 48 KiB at about 1 GHz, 4 B/cycle
# links, a hop per cycle). The fabric simulator holds a few 64-bit numbers per core, so
# the grid caps bound its memory (2**24 cores: about 512 MiB); the floors keep times finite.
MAX_SIDE_CORES = 16_384
MAX_WAFER_CORES = 2**24
MAX_WAFERS = 4096
_MAX_SRAM_BYTES_PER_CORE = 2**32
_MIN_CLOCK_HZ = 1e3
_MIN_LINK_BYTES_PER_CYCLE = 1e-3
_MAX_HOP_LATENCY_CYCLES = 1e6

_WAFER_CHECKS = {
    "name": text,
    "width_cores": bounded(positive_int, high=MAX_SIDE_CORES),
    "height_cores": bounded(positive_int, high=MAX_SIDE_CORES),
    "sram_bytes_per_core": bounded(positive_int, high=_MAX_SRAM_BYTES_PER_CORE, unit="bytes"),
    "sram_reserve_bytes_per_core": nonnegative_int,
    "fmac_lanes_per_cycle": lambda value, path: check_rate_table(value, path, positive_int),
    "clock_hz": bounded(positive_float, _MIN_CLOCK_HZ, unit="Hz"),
    "link_bytes_per_cycle": bounded(positive_float, _MIN_LINK_BYTES_PER_CYCLE, unit="bytes"),
    "hop_latency_cycles": bounded(nonnegative_float, high=_MAX_HOP_LATENCY_CYCLES, unit="cycles"),
    "eta_compute": bounded(fraction, MIN_EFFICIENCY),
    "power_w": optional_positive_float,
    "usd_per_hour": optional_positive_float,
}


@dataclass(frozen=True)
class WaferSpec(Spec):
    """One wafer: a mesh of cores with per-core SRAM.

    Attributes:
        name: Model name (``"WSE-3"``).
        width_cores: Cores along x (columns) a program can use.
        height_cores: Cores along y (rows) a program can use.
        sram_bytes_per_core: SRAM per core, code and data together.
        sram_reserve_bytes_per_core: Part of it taken by code and buffers.
        fmac_lanes_per_cycle: FMAC lanes per core per cycle, per dtype.
        clock_hz: Core and fabric clock.
        link_bytes_per_cycle: Bytes one link moves per cycle, per direction.
        hop_latency_cycles: Cycles for data to cross one link.
        eta_compute: Achieved fraction of the peak FMAC rate.
        power_w: System power, or None when unknown.
        usd_per_hour: Price per system-hour, or None when unknown.
        fallback_lanes_dtype: Lane entry used for dtypes without one, or None
            to make such dtypes an error.
    """

    name: str
    width_cores: int
    height_cores: int
    sram_bytes_per_core: int
    sram_reserve_bytes_per_core: int
    fmac_lanes_per_cycle: Mapping[str, int]
    clock_hz: float
    link_bytes_per_cycle: float
    hop_latency_cycles: float
    eta_compute: float
    power_w: float | None = None
    usd_per_hour: float | None = None
    fallback_lanes_dtype: str | None = None

    def __post_init__(self) -> None:
        check_fields(self, _WAFER_CHECKS)
        cores = self.width_cores * self.height_cores
        if cores > MAX_WAFER_CORES:
            raise FieldError(
                "width_cores",
                f"times height_cores is {cores:,} cores; a wafer has at most {MAX_WAFER_CORES:,} "
                "(2**24; WSE-3 has 896,112)",
            )
        sram, reserve = self.sram_bytes_per_core, self.sram_reserve_bytes_per_core
        if reserve >= sram:
            raise FieldError(
                "sram_reserve_bytes_per_core",
                f"must be less than sram_bytes_per_core ({sram}), got {reserve}",
            )
        fallback = check_fallback_dtype(
            self.fallback_lanes_dtype, self.fmac_lanes_per_cycle, "fallback_lanes_dtype"
        )
        set_field(self, "fallback_lanes_dtype", fallback)

    @property
    def num_cores(self) -> int:
        """Cores a program can use."""
        return self.width_cores * self.height_cores

    @property
    def usable_sram_bytes_per_core(self) -> int:
        """SRAM per core left for weights and activations."""
        return self.sram_bytes_per_core - self.sram_reserve_bytes_per_core

    @property
    def sram_bytes(self) -> int:
        """SRAM of all usable cores, reserve included."""
        return self.num_cores * self.sram_bytes_per_core

    def lanes_for(self, dtype: str) -> int:
        """FMAC lanes per core per cycle for ``dtype`` (lookup rule in `targets.dtypes`)."""
        return rate_for_dtype(
            self.fmac_lanes_per_cycle,
            dtype,
            self.fallback_lanes_dtype,
            owner=f"wafer '{self.name}'",
            table_field="wafer.fmac_lanes_per_cycle",
        )

    def peak_flops_per_s(self, dtype: str) -> float:
        """Dense peak of the whole grid: cores × lanes × 2 FLOP × clock."""
        return self.num_cores * self.lanes_for(dtype) * 2 * self.clock_hz


@dataclass(frozen=True)
class WaferTarget(TargetSpec):
    """``num_wafers`` identical wafers (systems) joined by a network.

    Attributes:
        name: Target name.
        wafer: The wafer every system has.
        num_wafers: Number of systems.
        inter_wafer_link: Link between two systems.
        host_link: Link between a system and the host.
        description: Free text for reports.
    """

    kind: ClassVar[str] = "wafer"
    nested_specs: ClassVar[Mapping[str, Any]] = {
        "wafer": WaferSpec,
        **dict.fromkeys(_LINK_FIELDS, Link),
    }

    name: str
    wafer: WaferSpec
    num_wafers: int
    inter_wafer_link: Link
    host_link: Link
    description: str = ""

    def __post_init__(self) -> None:
        set_field(self, "name", text(self.name, "name"))
        require_instance(self, ("wafer",), WaferSpec)
        num_wafers = bounded(positive_int, high=MAX_WAFERS)(self.num_wafers, "num_wafers")
        set_field(self, "num_wafers", num_wafers)
        require_instance(self, _LINK_FIELDS, Link)
        set_field(self, "description", text(self.description, "description", allow_empty=True))

    @property
    def num_devices(self) -> int:
        """Number of wafers (each is one device of a plan)."""
        return self.num_wafers

"""List the hardware presets with their key numbers (sources are in targets/presets.py).

A target can also be a .json/.yaml file: a full spec, or `extends: h100x8` plus the
fields to change (e.g. a price per hour to get cost per token).

examples:
  partition targets
  partition targets --json
"""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from partitioner.commands._common import console
from partitioner.units import human_bytes
from targets import list_presets

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _short(dtype: str) -> str:
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(dtype, dtype)


def run(args: argparse.Namespace) -> int:
    presets = list_presets()
    if args.json:
        print(json.dumps([p.to_dict() for p in presets], indent=1))
        return 0
    table = Table(title="Presets (aliases: gpu = h100x8, wafer = wse3)", title_justify="left")
    for col in ("name", "devices", "device", "memory each", "total", "peak", "mem BW", "link"):
        table.add_column(
            col, justify="left" if col in ("name", "device", "link") else "right", no_wrap=True
        )
    for p in presets:
        bandwidth = p.memory_bandwidth_bytes_per_s
        table.add_row(
            p.name,
            str(p.num_devices),
            p.device.split("-")[0] if p.kind == "gpu" else p.device,
            human_bytes(p.memory_per_device_bytes),
            human_bytes(p.total_memory_bytes),
            f"{p.peak_flops_per_s / 1e15:.3g} PF {_short(p.peak_dtype)}",
            f"{bandwidth / 1e12:.2f} TB/s" if bandwidth else "SRAM",
            f"{p.interconnect.split(' ')[0]} {p.interconnect_bytes_per_s / 1e9:.0f} GB/s",
        )
    console.print(table)
    return 0

"""A target file from calibrated figures: every number with how it was measured beside it.

The target is of kind ``gpu`` (the kind of device a pipeline stage runs on);
for a CPU each "device" is one rank of `partition run`: one core's worth of
onnxruntime threads, with the machine's memory shared among the ranks. The
rates are achieved ones, so both efficiencies are 1. Between ranks the link
is what torch.distributed measured (the same for "nodes": one machine); to
the host, a memory copy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from partitioner.calibrate.host import Measured

__all__ = ["Calibration", "target_yaml", "target_dict"]


@dataclass(frozen=True)
class Calibration:
    """What calibrate measured on one device kind, and for how many ranks."""

    device_name: str
    memory_bytes: Measured
    gemm: Mapping[str, Measured]
    memory_bandwidth: Measured
    per_op: Measured
    ranks: int
    links: Mapping[str, Measured] = field(default_factory=dict)
    description: str = ""
    step_overhead: Measured | None = None
    #: Whether compute hides memory traffic (`host.compute_memory_overlap`); None: not
    #: measured, the default (true) stands.
    overlap: Measured | None = None
    #: The memory bandwidth each rank gets while all stream at once (None: one rank, or
    #: ranks that do not share a memory system).
    contended_bandwidth: Measured | None = None


def _link(calibration: Calibration, name: str) -> dict[str, Measured | str]:
    if not calibration.links:  # one rank: nothing crosses a link but host copies
        return _host_link(calibration, name)
    link: dict[str, Measured | str] = {"name": name, "efficiency": Measured(1.0, "achieved rates")}
    link.update(calibration.links)
    return link


def _host_link(calibration: Calibration, name: str) -> dict[str, Measured | str]:
    return {
        "name": name,
        "bandwidth_bytes_per_s": calibration.memory_bandwidth,
        "efficiency": Measured(1.0, "achieved rates"),
        "latency_s": calibration.per_op,
    }


def _tree(calibration: Calibration) -> dict[str, object]:
    """The target as nested dicts whose leaves are `Measured` or plain values."""
    device = {
        "name": calibration.device_name,
        "hbm_bytes": calibration.memory_bytes,
        "hbm_bandwidth_bytes_per_s": calibration.memory_bandwidth,
        "peak_flops_per_s": dict(calibration.gemm),
        "eta_compute": Measured(1.0, "the FLOP/s above are achieved ones"),
        "eta_memory": Measured(1.0, "the bandwidth above is an achieved one"),
        "launch_overhead_s": calibration.per_op,
        "fallback_peak_dtype": "float32",
    }
    if calibration.step_overhead is not None:
        device["step_overhead_s"] = calibration.step_overhead
    if calibration.overlap is not None:
        device["compute_memory_overlap"] = calibration.overlap
    if calibration.contended_bandwidth is not None:
        device["contended_bandwidth_bytes_per_s"] = calibration.contended_bandwidth
    between = "torch.distributed between local ranks"
    return {
        "kind": "gpu",
        "name": f"calibrated-{calibration.device_name.split()[0].lower()}x{calibration.ranks}",
        "description": calibration.description,
        "devices": [device] * calibration.ranks,
        "gpus_per_node": calibration.ranks,
        "intra_node_link": _link(calibration, between),
        "inter_node_link": _link(calibration, between),
        "host_link": _host_link(calibration, "host memory copy"),
    }


def _plain(value: object) -> object:
    if isinstance(value, Measured):
        return (
            int(value.value) if float(value.value).is_integer() and value.value > 1 else value.value
        )
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def target_dict(calibration: Calibration) -> dict[str, object]:
    """The target as `targets.loader.target_from_dict` reads it."""
    return _plain(_tree(calibration))  # type: ignore[return-value]


def _scalar(value: object) -> str:
    return json.dumps(value)  # JSON scalars are YAML scalars


def _lines(tree: Mapping[str, object], indent: str) -> list[str]:
    lines = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            lines += [f"{indent}{key}:", *_lines(value, indent + "  ")]
        else:
            comment = f"  # {value.how}" if isinstance(value, Measured) else ""
            lines.append(f"{indent}{key}: {_scalar(_plain(value))}{comment}")
    return lines


def target_yaml(calibration: Calibration) -> str:
    """The target file: YAML, each measured figure followed by how it was measured."""
    tree = _tree(calibration)
    devices = tree.pop("devices")
    body = _lines(tree, "")
    device_lines = _lines(devices[0], "    ")  # type: ignore[index]
    listed = ["devices:"]
    for _ in devices:  # type: ignore[union-attr]
        listed += [f"  - {device_lines[0].strip()}", *device_lines[1:]]
    header = "# written by `partition calibrate`; each figure says how it was measured\n"
    return header + "\n".join([*body[:3], *listed, *body[3:]]) + "\n"

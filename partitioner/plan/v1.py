"""Reading schema_version 1 plans: upgrade the document to version 2.

Version 1 had one ``device`` per partition, the solver's effort as
``wall_s``, and micro-batches and transfer overlap among the estimate's
extras. The upgrade moves each to its version 2 place and fills what version 1
never recorded with what its planner always did: one device per stage (tp 1),
one replica, no shards or collectives. KV-cache bytes were counted inside
``memory_bytes`` but not reported apart, so they read as 0.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

__all__ = ["upgrade_v1"]


def _objective(command: str) -> str:
    """The --objective a v1 plan was made with: its recorded command says, else the default."""
    try:
        words = shlex.split(command)
    except ValueError:
        return "throughput"
    for i, word in enumerate(words):
        if word == "--objective" and i + 1 < len(words):
            return words[i + 1] if words[i + 1] in ("throughput", "latency") else "throughput"
        if word.startswith("--objective="):
            value = word.split("=", 1)[1]
            return value if value in ("throughput", "latency") else "throughput"
    return "throughput"


def _partition(p: Mapping[str, Any], wafer: bool) -> dict[str, Any]:
    # Version 1 wafer plans numbered stages by block; version 2 by wafer.
    stage = p["device"] if wafer else p["stage"]
    out: dict[str, Any] = {"id": p["id"], "stage": stage, "devices": [p["device"]]}
    for key in ("nodes", "param_bytes", "activation_bytes"):
        out[key] = p[key]
    out["kv_cache_bytes"] = 0
    for key in ("memory_bytes", "capacity_bytes", "flops", "compute_s"):
        out[key] = p[key]
    if "region" in p:
        out["region"] = p["region"]
    return out


def upgrade_v1(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The version 2 document of a schema-checked version 1 plan."""
    estimate = dict(doc["estimate"])
    microbatches = estimate.pop("microbatches_in_flight", 1)
    # Wafer regions always stream; version 1 recorded overlap for GPU plans only.
    overlap = estimate.pop("overlap_transfers", doc["target"]["kind"] == "wafer")
    solver = dict(doc["solver"])
    effort_s = solver.pop("wall_s")
    wafer = doc["target"]["kind"] == "wafer"
    pp = len({p["device" if wafer else "stage"] for p in doc["partitions"]})
    comm_s = sum(t["time_s"] for t in doc["transfers"])
    return {
        "schema_version": 2,
        "model": doc["model"],
        "target": doc["target"],
        "solver": {
            **{k: solver[k] for k in ("name", "status", "objective_s", "bound_s", "gap")},
            "effort_s": effort_s,
            **{k: solver[k] for k in ("seed", "time_limit_s")},
            "candidates": [],
        },
        "parallelism": {
            "tp": 1,
            "pp": max(1, pp),
            "dp": 1,
            "microbatches": microbatches
            if isinstance(microbatches, int) and microbatches >= 1
            else 1,
            "overlap_transfers": bool(overlap),
            "objective": _objective(doc["provenance"]["command"]),
        },
        "partitions": [_partition(p, wafer) for p in doc["partitions"]],
        "shards": [],
        "collectives": [],
        "transfers": doc["transfers"],
        "estimate": {
            **{k: estimate.pop(k) for k in ("latency_s", "throughput_per_s", "bottleneck")},
            "comm_s": comm_s,
            **estimate,
        },
        "provenance": doc["provenance"],
    }

"""``manifest.json``: the stage files of an export, in an order that executes.

The bytes are deterministic (fixed key order, no timestamps), so exporting the
same model and plan twice gives the same manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from partitioner.export.stages import StageModel
from passes.transforms.tensor_parallel import COLLECTIVE_DOMAIN

__all__ = ["MANIFEST_SCHEMA_VERSION", "StageEntry", "manifest_json"]

MANIFEST_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class StageEntry:
    stage: StageModel
    file: str
    onnx_bytes: bytes
    data_file: str | None = None
    data_sha256: str | None = None


def manifest_json(
    plan_sha256: str,
    model_sha256: str,
    entries: Sequence[StageEntry],
    prefill_entries: Sequence[StageEntry] = (),
) -> str:
    """The manifest; ``prefill_entries`` (a decode/prefill pair's prefill stage files) are
    listed under ``prefill_stages`` when there are any."""
    doc: dict[str, object] = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "plan_sha256": plan_sha256,
        "model_sha256": model_sha256,
        "stages": _stages(entries),
    }
    if prefill_entries:
        doc["prefill_stages"] = _stages(prefill_entries)
    if any(e.stage.collectives for e in entries):
        # onnxruntime has no kernels for these: the serving runtime provides them
        doc["custom_domains"] = {
            COLLECTIVE_DOMAIN: "AllReduce/AllGather over a tensor-parallel stage's ranks; "
            "the serving runtime must implement them"
        }
    return json.dumps(doc, indent=1) + "\n"


def _stages(entries: Sequence[StageEntry]) -> list[dict[str, object]]:
    return [
        {
            "id": e.stage.partition,
            "stage": e.stage.stage,
            "rank": e.stage.rank,
            "devices": list(e.stage.devices),
            "file": e.file,
            "inputs": list(e.stage.inputs),
            "outputs": list(e.stage.outputs),
            "sha256": hashlib.sha256(e.onnx_bytes).hexdigest(),
            # the weights beside it (null when the model's weights were missing)
            "data": {"file": e.data_file, "sha256": e.data_sha256} if e.data_file else None,
        }
        for e in entries
    ]

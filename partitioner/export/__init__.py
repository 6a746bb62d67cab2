"""Serving artefacts: one ONNX file per plan stage (per rank for tensor-parallel
stages), a manifest, and optionally a Triton model repository.

Never imports torch: export runs wherever the planner runs.
"""

from partitioner.export.manifest import manifest_json
from partitioner.export.stages import StageModel, stage_models
from partitioner.export.triton import triton_repository
from partitioner.export.weights import StageFiles, stage_files

__all__ = [
    "StageModel",
    "stage_models",
    "StageFiles",
    "stage_files",
    "manifest_json",
    "triton_repository",
]

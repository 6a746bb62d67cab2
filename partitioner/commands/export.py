"""Export a plan as serving artefacts: one ONNX file per stage, a manifest, a Triton repository.

Each stage file's inputs are the tensors the plan transfers into the stage
(plus the KV-cache inputs resident there) and its outputs the tensors
transferred out of it (plus the graph outputs that stay on it); chained in
manifest order with plain onnxruntime, the files compute what the model
computes. Weights go to ``<file>.data`` beside each stage file, copied tensor
by tensor. Tensor-parallel stages give one file per rank, with their
collectives as ``partition.collective`` nodes (onnxruntime cannot run those).
A weightless model (external data missing) still gets its stage graphs; stderr
says the weights are missing.

--triton also writes DIR/triton/: per stage config.pbtxt and 1/model.onnx
(its weights beside it), and an "ensemble" model wiring the stages.

--prefill FILE, for a plan made with the same prefill file (`partition DECODE
--prefill FILE`), also writes that file split as the plan prices it:
prefill_partition<id>.onnx per stage, listed under "prefill_stages" in the
manifest. A stage's prefill file writes the KV cache its decode file reads.

The plan's dims are used; --dim may only repeat them. With --symbolic-dims the
stage files keep the model's symbolic dims instead (batch, past, seq): cut at
the same names from the model as written, so a serving stack can batch any
number of sequences of any context, as `partition simulate` prices them. A
later stage that sizes its attention mask from a token input (input_ids) then
lists it among its inputs; a stage that would recompute another stage's work to
learn a shape, or a tensor-parallel stage, is refused. Exit 2 for bad input
(the output folder is an existing file, the plan is for another model), 1 for
a plan that fails its contract.

examples:
  partition export gpt2.onnx gpt2.h100x4.plan.json --out serve/
  partition export llama.onnx plan.json --out serve/ --triton
  partition export decode.onnx plan.json --prefill prefill.onnx --out serve/
  partition export decode.onnx plan.json --prefill prefill.onnx --symbolic-dims --triton --out serve/
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
from pathlib import Path
from typing import Any, BinaryIO

from partitioner.commands._common import err_console, external_data_paths
from partitioner.commands.plan_prefill import add_prefill_arguments, load_prefill
from partitioner.errors import UsageError
from partitioner.executor.weights import WeightStore
from partitioner.export import manifest_json, stage_files, stage_models, triton_repository
from partitioner.export.manifest import StageEntry
from partitioner.export.prefill import prefill_stage_models
from partitioner.export.stages import StageModel
from partitioner.export.symbolic import symbolic_stage_models
from partitioner.export.weights import StageFiles
from partitioner.outputs import OutputError, Outputs
from partitioner.pairing import check_valid, plan_for_model
from partitioner.plan import Plan
from partitioner.plan.validate import validate_plan
from passes.errors import ExternalDataError
from passes.ir import Graph
from passes.load import load, require_external_data
from passes.transforms.dims import parse_dim_overrides

__all__ = ["add_arguments", "run"]


class StreamingOutputs(Outputs):
    """`Outputs` for export: a stage's graph, then its weights streamed piece by piece.

    A stage's weights can be tens of GB: `Outputs.stage_stream` writes them into
    the temporary file beside the destination, which `commit` renames like any other.
    """

    def write_text(self, flag: str, path: Path, text: str | bytes) -> None:
        self.add(flag, path)
        self.stage(path, text)

    def write_stage(self, path: Path, files: StageFiles) -> str | None:
        """Stage the graph and its weights; the weights' sha256 (None when none are written)."""
        self.write_text("--out", path, files.onnx_bytes)
        if files.data_name is None or files.write_data is None:
            return None
        data = path.parent / files.data_name
        self.add("--out", data)
        digest = hashlib.sha256()
        write = files.write_data
        self.stage_stream(data, lambda f: write(_Hashing(f, digest)))
        return digest.hexdigest()


class _Hashing:
    """A binary file that also feeds every byte written to a sha256."""

    def __init__(self, f: BinaryIO, digest: Any) -> None:
        self._f, self._digest = f, digest

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._f.write(data)

    def tell(self) -> int:
        return self._f.tell()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", type=Path, help="the .onnx file")
    parser.add_argument("plan", metavar="PLAN", type=Path, help="the plan JSON made for this model")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--triton", action="store_true", help="also write a Triton repository")
    parser.add_argument(
        "--symbolic-dims", action="store_true",
        help="keep the model's symbolic dims (batch, past, seq) open in the stage files, so a "
        "serving stack runs any batch and context, as `simulate` prices them; the plan's "
        "dims then only choose the split (stages of one device each)",
    )  # fmt: skip
    add_prefill_arguments(
        parser.add_argument_group("the prefill file of a decode/prefill pair"),
        help_text="the prefill file the plan was made with (`partition DECODE --prefill FILE`): "
        "also written split onto the plan's stages, prefill_partition<id>.onnx",
    )
    parser.add_argument(
        "--dim", action="append", default=[], metavar="NAME=VALUE",
        help="a symbolic dimension; must agree with the plan's (repeatable)",
    )  # fmt: skip


def _dims(args: argparse.Namespace, plan: Plan) -> dict[str, int]:
    dims = dict(plan.model.dims)
    for name, value in parse_dim_overrides(args.dim).items():
        if name in dims and dims[name] != value:
            raise UsageError(
                f"--dim {name}={value}: the plan was made with {name}={dims[name]}; "
                "omit --dim or plan again"
            )
        dims[name] = value
    return dims


def _model_and_plan(args: argparse.Namespace) -> tuple[Plan, Graph]:
    plan, sha = plan_for_model(args.model, args.plan)
    graph = load(args.model, parse_dim_overrides(f"{k}={v}" for k, v in _dims(args, plan).items()))
    check_valid(validate_plan(plan, graph, sha), args.plan, args.model)
    return plan, graph


class _Folders:
    """Folders the export creates: on failure the empty ones go again, deepest first,
    so a failed export leaves nothing behind (folders that existed are never touched)."""

    def __init__(self) -> None:
        self.created: list[Path] = []

    def make(self, path: Path) -> Path:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        path.mkdir(parents=True, exist_ok=True)
        self.created += reversed(missing)
        return path

    def remove_empty(self) -> None:
        for folder in reversed(self.created):
            with contextlib.suppress(OSError):  # rmdir removes only an empty folder
                folder.rmdir()


def _out_dir(path: Path, folders: _Folders) -> Path:
    if path.exists() and not path.is_dir():
        raise OutputError(f"--out {path} is an existing file; give a folder to write the stages to")
    return folders.make(path)


def run(args: argparse.Namespace) -> int:
    plan, graph = _model_and_plan(args)
    folders = _Folders()
    try:
        return _export(args, plan, graph, _out_dir(args.out, folders), folders)
    except BaseException:
        folders.remove_empty()
        raise


def _export(
    args: argparse.Namespace, plan: Plan, graph: Graph, out: Path, folders: _Folders
) -> int:
    try:
        require_external_data(graph)
        with_data = True
    except ExternalDataError as err:
        with_data = False
        err_console.print(
            f"note: weights are missing ({err}); writing the graphs only", markup=False
        )
    store = WeightStore(graph)
    stages = stage_models(graph, plan, store)
    if args.symbolic_dims:
        stages = symbolic_stage_models(graph, stages, plan)
    configs = triton_repository(stages) if args.triton else {}
    prefill = load_prefill(args, graph)
    inputs = [args.model, args.plan, *external_data_paths(graph)]
    if prefill is not None:
        inputs += [args.prefill, *external_data_paths(prefill)]
    with StreamingOutputs(inputs) as outputs:
        entries = []
        for stage in stages:
            entry, files = _write_stage(outputs, out, graph, store, stage, with_data)
            entries.append(entry)
            if args.triton:
                folder = out / "triton" / stage.name
                folders.make(folder / "1")
                outputs.write_stage(folder / "1" / "model.onnx", files)
                outputs.write_text("--triton", folder / "config.pbtxt", configs[stage.name])
        if args.triton:
            ensemble = out / "triton" / "ensemble"
            folders.make(ensemble / "1")  # Triton wants a version folder
            outputs.write_text("--triton", ensemble / "config.pbtxt", configs["ensemble"])
        prefill_entries = []
        if prefill is not None:
            prefill_store = WeightStore(prefill)
            for stage in prefill_stage_models(graph, prefill, plan, args.symbolic_dims):
                entry, _ = _write_stage(outputs, out, prefill, prefill_store, stage, with_data)
                prefill_entries.append(entry)
        plan_sha = hashlib.sha256(args.plan.read_bytes()).hexdigest()
        manifest = manifest_json(plan_sha, plan.model.sha256, entries, prefill_entries)
        outputs.write_text("--out", out / "manifest.json", manifest)
        outputs.commit()
    also = f" and {len(prefill_entries)} prefill stage files" if prefill_entries else ""
    print(f"wrote {len(entries)} stage files{also} and manifest.json to {out}")
    return 0


def _write_stage(
    outputs: StreamingOutputs, out: Path, graph: Graph, store: WeightStore, stage: StageModel,
    with_data: bool,
) -> tuple[StageEntry, StageFiles]:  # fmt: skip
    """Stage one stage file and its weights; its manifest entry and its files."""
    file = f"{stage.name}.onnx"
    files = stage_files(graph, store, stage, file, with_data=with_data)
    data_sha256 = outputs.write_stage(out / file, files)
    data_file = files.data_name if data_sha256 is not None else None
    return StageEntry(stage, file, files.onnx_bytes, data_file, data_sha256), files

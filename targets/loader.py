"""Load a target from a preset name, an alias, or a JSON/YAML target file.

A target file holds either a full spec (what ``Target.to_dict()`` writes) or
an override of another target::

    extends: wse3            # a preset, an alias, or another file (relative path)
    name: wse3-fast          # optional; defaults to the file's stem
    wafer:
      clock_hz: 1.1e9        # deep-merged: only the fields given change

Mappings merge key by key; lists and plain values replace. A link's collective
fields, when the file leaves them out, follow what they derive from (see
`targets.gpu.Link`): an override of a link's ``bandwidth_bytes_per_s`` or
``efficiency`` re-derives its ``collective_bandwidth_bytes_per_s``, and one of
its ``latency_s`` its ``collective_latency_s``, instead of keeping the base's
figure, which described another link (370 GB/s of NVLink busbw over a link
made 10 GB/s would be wrong). For GPU targets,
``all_devices`` is a partial device spec merged into every device, e.g.
``all_devices: {usd_per_hour: 2.5}``. Every error is one line that names the
file and the field.

Target files are user input, so reading one is bounded: only regular files of
at most 1 MiB are opened, values nest at most 32 levels, a YAML file holds at
most 50,000 values, an ``extends`` chain is at most 16 files long, keys may not
repeat, and YAML aliases and merge keys are refused. A hostile file ends as a short `TargetError`, not a hang or a
traceback.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from targets._fields import FieldError, require_mapping
from targets._text import clip, preview
from targets._yaml import MAX_DEPTH, MAX_INT_DIGITS, parse_yaml
from targets.errors import TargetError
from targets.gpu import LINK_DERIVED_FIELDS, GpuTarget
from targets.presets import Target, get_preset
from targets.wafer import WaferTarget

__all__ = ["Target", "load_target", "target_from_dict"]

_TARGET_CLASSES: dict[str, type[GpuTarget] | type[WaferTarget]] = {
    GpuTarget.kind: GpuTarget,
    WaferTarget.kind: WaferTarget,
}
_FILE_SUFFIXES = (".json", ".yaml", ".yml")
_LOADER_KEYS = ("extends", "all_devices")

#: A full spec is a few KB (about 700 bytes of JSON per GPU); overrides are a few lines.
_MAX_FILE_BYTES = 1 << 20
#: Files in one ``extends`` chain; also keeps the recursion far from Python's limit.
_MAX_EXTENDS = 16
#: Longest error message; the parts quoting the file are clipped well below this.
_MAX_MESSAGE = 1000
_MAX_NAME_CHARS = 100
_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def target_from_dict(data: Mapping[str, Any]) -> Target:
    """Build a target from its canonical mapping, dispatching on ``kind``.

    Raises:
        FieldError: A field is missing, unknown or invalid (the message names it).
    """
    require_mapping(data, "")
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _TARGET_CLASSES:
        shown = "None" if kind is None else preview(kind)
        raise FieldError(
            "kind", f"must be one of {', '.join(map(repr, _TARGET_CLASSES))}, got {shown}"
        )
    return _TARGET_CLASSES[kind].from_dict(data)


def load_target(spec: str | Path | Target) -> Target:
    """A target from a preset name or alias, a target file path, or a target itself.

    Raises:
        TargetError: Unknown preset, unreadable or invalid file, or a bad field.
    """
    if isinstance(spec, GpuTarget | WaferTarget):
        return spec
    if not (isinstance(spec, Path) or str(spec).lower().endswith(_FILE_SUFFIXES)):
        return get_preset(str(spec))
    try:
        return _load_file(Path(spec), seen=())
    except TargetError as error:
        # Each message is built to be one short line; this is the guard that makes it so
        # should some part of one (a path, a quoted value) still carry what the file holds.
        message = str(error)
        if clip(message, _MAX_MESSAGE) == message:
            raise
        raise TargetError(clip(message, _MAX_MESSAGE)) from None


def _load_file(path: Path, seen: tuple[Path, ...]) -> Target:
    where = f"target file {path}"
    try:
        data = _merged_spec(path, seen)
        return target_from_dict(data)
    except FieldError as error:
        raise TargetError(f"{where}: {error}") from None


def _read(path: Path) -> Any:
    where = f"target file {path}"
    raw = _read_text(path, where)
    if path.suffix.lower() == ".json":
        return _parse_json(raw, where)
    return parse_yaml(raw, where)


def _read_text(path: Path, where: str) -> str:
    """The file's text, refused unless it is a regular file of UTF-8 within the size limit."""
    try:
        # Look before opening: opening a FIFO waits for a writer, forever.
        _check_regular_file(path.stat(), where)
        # O_NONBLOCK: should the path turn into a FIFO after the stat, the open returns at once
        # and the fstat refuses it. Regular files ignore the flag.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            _check_regular_file(os.fstat(file.fileno()), where)
            data = file.read(_MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as error:  # ValueError: a NUL character in the path
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise TargetError(f"cannot read {where}: {reason}") from None
    if len(data) > _MAX_FILE_BYTES:  # it grew after the stat
        raise _too_big(where, f"over {_MAX_FILE_BYTES}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TargetError(
            f"cannot read {where}: it is not UTF-8 text (byte 0x{data[error.start]:02x} "
            f"at offset {error.start}); save it as UTF-8"
        ) from None


def _check_regular_file(info: os.stat_result, where: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise TargetError(f"cannot read {where}: it is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise TargetError(f"cannot read {where}: not a regular file")
    if info.st_size > _MAX_FILE_BYTES:
        raise _too_big(where, str(info.st_size))


def _too_big(where: str, size: str) -> TargetError:
    return TargetError(
        f"cannot read {where}: it is {size} bytes, and target files are limited to 1 MiB; "
        "write overrides with 'extends' instead of a full spec"
    )


def _parse_json(raw: str, where: str) -> Any:
    try:
        data = json.loads(raw, object_pairs_hook=_json_object, parse_int=_json_int)
    except json.JSONDecodeError as error:
        raise TargetError(
            f"{where}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except RecursionError:  # the decoder recurses once per level
        raise TargetError(
            f"{where}: invalid JSON: values nest deeper than {MAX_DEPTH} levels"
        ) from None
    except ValueError as error:  # from _json_int
        raise TargetError(f"{where}: invalid JSON: {error}") from None
    _check_depth(data, where)
    return data


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a key that appears twice (json.loads keeps the last)."""
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise FieldError(key, "appears twice in one object; keep one")
        mapping[key] = value
    return mapping


def _json_int(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS:
        raise ValueError(f"a number of {len(digits)} digits is too long")
    return int(digits)


def _check_depth(data: Any, where: str) -> None:
    """Refuse values nested deeper than the YAML loader allows (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TargetError(f"{where}: invalid JSON: values nest deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


def _merged_spec(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """The file's full canonical mapping, with ``extends`` and ``all_devices`` applied."""
    # Read first: the read refuses what is not a regular file before resolve() can trip on it.
    data = dict(require_mapping(_read(path), ""))
    resolved = path.resolve()
    if resolved in seen:
        chain = " -> ".join(str(p) for p in (*seen, resolved))
        raise TargetError(f"target file {path}: 'extends' loops: {chain}")
    _check_loader_key_typos(data)
    base_spec = data.pop("extends", None)
    all_devices = data.pop("all_devices", None)
    data.setdefault("name", path.stem)
    _check_name(data["name"])
    if base_spec is None:
        merged = data
    else:
        if not isinstance(base_spec, str) or not base_spec:
            raise FieldError(
                "extends", f"must be a preset name or a file path, got {preview(base_spec)}"
            )
        base = _base_target(base_spec, path, (*seen, resolved))
        if "kind" in data and data["kind"] != base.kind:
            raise FieldError(
                "kind",
                f"must be '{base.kind}' (the kind of '{base_spec}'), got {preview(data['kind'])}",
            )
        merged = _deep_merge(base.to_dict(), data)
    if all_devices is not None:
        merged = _apply_all_devices(merged, all_devices)
    return merged


def _check_name(name: Any) -> None:
    """Refuse a name that cannot go into a file name, as the plan command puts it in one."""
    if isinstance(name, str) and (len(name) > _MAX_NAME_CHARS or _UNSAFE_NAME.search(name)):
        raise FieldError(
            "name",
            f"must be at most {_MAX_NAME_CHARS} characters, without '/', '\\' or control "
            f"characters (the plan's file name includes it), got {preview(name)}",
        )


def _check_loader_key_typos(data: Mapping[str, Any]) -> None:
    """Name a misspelt ``extends``/``all_devices`` before it is reported as something else."""
    spec_keys = {"kind"} | {f.name for cls in _TARGET_CLASSES.values() for f in fields(cls)}
    for key in data:
        if isinstance(key, str) and key not in spec_keys and key not in _LOADER_KEYS:
            close = difflib.get_close_matches(key, _LOADER_KEYS, n=1, cutoff=0.75)
            if close:
                raise FieldError(key, "is not a known field", close[0])


def _base_target(base_spec: str, path: Path, seen: tuple[Path, ...]) -> Target:
    if base_spec.lower().endswith(_FILE_SUFFIXES):
        if len(seen) >= _MAX_EXTENDS:
            raise FieldError(
                "extends", f"chains more than {_MAX_EXTENDS} files deep; extend a preset instead"
            )
        base_path = Path(base_spec)
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        if not os.path.lexists(base_path):  # False, not ValueError, for a path with a NUL
            raise FieldError(
                "extends",
                f"names {clip(str(base_path), 200)}, which does not exist; give a preset name, "
                "or a file path relative to this file",
            )
        return _load_file(base_path, seen)
    if len(base_spec) > _MAX_NAME_CHARS:  # no preset's name: quote only the start of it
        raise FieldError("extends", f"is not a preset or target file, got {preview(base_spec)}")
    try:
        return get_preset(base_spec)
    except TargetError as error:
        raise FieldError("extends", f"is not a preset or target file: {error}") from None


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in: mappings recursively, everything else replaced."""
    merged = _without_stale_derived(base, override)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _without_stale_derived(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` less the derived link fields whose inputs ``override`` changes and it does not
    set itself, so the built `Link` derives them again from the merged inputs."""
    stale = {
        derived
        for derived, inputs in LINK_DERIVED_FIELDS.items()
        if derived in base and derived not in override and any(k in override for k in inputs)
    }
    return {key: value for key, value in base.items() if key not in stale}


def _apply_all_devices(spec: dict[str, Any], patch: Any) -> dict[str, Any]:
    if spec.get("kind") != GpuTarget.kind:
        raise FieldError("all_devices", "applies to GPU targets only")
    require_mapping(patch, "all_devices")
    devices = spec.get("devices")
    if not isinstance(devices, list):
        raise FieldError("devices", "must be a list of mappings")
    patched = [_deep_merge(require_mapping(d, "devices[]"), patch) for d in devices]
    return {**spec, "devices": patched}

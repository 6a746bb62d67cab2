"""Load a target from a preset name, an alias, or a JSON/YAML target file.

A target file holds either a full spec (what ``Target.to_dict()`` writes) or
an override of another target::

    extends: wse3            # a preset, an alias, or another file (relative path)
    name: wse3-fast          # optional; defaults to the file's stem
    wafer:
      clock_hz: 1.1e9        # deep-merged: only the fields given change

Mappings merge key by key; lists and plain values replace. For GPU targets,
``all_devices`` is a partial device spec merged into every device, e.g.
``all_devices: {usd_per_hour: 2.5}``. Every error is one line that names the
file and the field.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from targets._fields import FieldError, require_mapping
from targets.errors import TargetError
from targets.gpu import GpuTarget
from targets.presets import Target, get_preset
from targets.wafer import WaferTarget

__all__ = ["Target", "load_target", "target_from_dict"]

_TARGET_CLASSES: dict[str, type[GpuTarget] | type[WaferTarget]] = {
    GpuTarget.kind: GpuTarget,
    WaferTarget.kind: WaferTarget,
}
_FILE_SUFFIXES = (".json", ".yaml", ".yml")
_LOADER_KEYS = ("extends", "all_devices")


class _Yaml12Loader(yaml.SafeLoader):
    """Safe YAML loader that reads ``1e9`` as a number, as YAML 1.2 and JSON do.

    PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent,
    so ``clock_hz: 1e9`` would otherwise arrive as the string "1e9".
    """


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def target_from_dict(data: Mapping[str, Any]) -> Target:
    """Build a target from its canonical mapping, dispatching on ``kind``.

    Raises:
        FieldError: A field is missing, unknown or invalid (the message names it).
    """
    require_mapping(data, "")
    kind = data.get("kind")
    if kind not in _TARGET_CLASSES:
        raise FieldError(
            "kind", f"must be one of {', '.join(map(repr, _TARGET_CLASSES))}, got {kind!r}"
        )
    return _TARGET_CLASSES[kind].from_dict(data)


def load_target(spec: str | Path | Target) -> Target:
    """A target from a preset name or alias, a target file path, or a target itself.

    Raises:
        TargetError: Unknown preset, unreadable or invalid file, or a bad field.
    """
    if isinstance(spec, GpuTarget | WaferTarget):
        return spec
    if isinstance(spec, Path) or str(spec).lower().endswith(_FILE_SUFFIXES):
        return _load_file(Path(spec), seen=())
    return get_preset(str(spec))


def _load_file(path: Path, seen: tuple[Path, ...]) -> Target:
    where = f"target file {path}"
    try:
        data = _merged_spec(path, seen)
        return target_from_dict(data)
    except FieldError as error:
        raise TargetError(f"{where}: {error}") from None


def _read(path: Path) -> Any:
    where = f"target file {path}"
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise TargetError(f"cannot read {where}: {reason}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as error:
            raise TargetError(
                f"{where}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
            ) from None
    try:
        return yaml.load(raw, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise TargetError(f"{where}: invalid YAML{at}: {problem}") from None


def _merged_spec(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """The file's full canonical mapping, with ``extends`` and ``all_devices`` applied."""
    resolved = path.resolve()
    if resolved in seen:
        chain = " -> ".join(str(p) for p in (*seen, resolved))
        raise TargetError(f"target file {path}: 'extends' loops: {chain}")
    data = dict(require_mapping(_read(path), ""))
    _check_loader_key_typos(data)
    base_spec = data.pop("extends", None)
    all_devices = data.pop("all_devices", None)
    data.setdefault("name", path.stem)
    if base_spec is None:
        merged = data
    else:
        if not isinstance(base_spec, str) or not base_spec:
            raise FieldError("extends", f"must be a preset name or a file path, got {base_spec!r}")
        base = _base_target(base_spec, path, (*seen, resolved))
        if "kind" in data and data["kind"] != base.kind:
            raise FieldError(
                "kind", f"must be '{base.kind}' (the kind of '{base_spec}'), got {data['kind']!r}"
            )
        merged = _deep_merge(base.to_dict(), data)
    if all_devices is not None:
        merged = _apply_all_devices(merged, all_devices)
    return merged


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
        base_path = Path(base_spec)
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        return _load_file(base_path, seen)
    try:
        return get_preset(base_spec)
    except TargetError as error:
        raise FieldError("extends", f"is not a preset or target file: {error}") from None


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in: mappings recursively, everything else replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _apply_all_devices(spec: dict[str, Any], patch: Any) -> dict[str, Any]:
    if spec.get("kind") != GpuTarget.kind:
        raise FieldError("all_devices", "applies to GPU targets only")
    require_mapping(patch, "all_devices")
    devices = spec.get("devices")
    if not isinstance(devices, list):
        raise FieldError("devices", "must be a list of mappings")
    patched = [_deep_merge(require_mapping(d, "devices[]"), patch) for d in devices]
    return {**spec, "devices": patched}

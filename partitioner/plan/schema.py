"""Reading plan JSON: finite, bounded JSON first, then the shipped JSON Schema.

A plan file is user input. Python's parser accepts NaN, Infinity and numbers
that overflow a double, which JSON has not; JSON Schema counts 4.0 as an
integer, which the plan contract does not. Both are refused here, and every
message is one short line naming the JSON path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from targets.errors import PartitionError

__all__ = [
    "PlanError",
    "SCHEMA_VERSION",
    "READABLE_VERSIONS",
    "parse_plan_json",
    "plan_schema",
    "check_schema",
]

SCHEMA_VERSION = 2
"""The version this partition writes."""

READABLE_VERSIONS = (1, 2)
"""The versions it reads: version 1 plans are upgraded when read (`plan.v1`)."""

_SCHEMA_FILES = {1: "plan_schema_v1.json", 2: "plan_schema.json"}


class PlanError(PartitionError):
    """A plan file is unreadable, not JSON, or not a plan of a schema version we know."""


def _refuse_constant(name: str) -> Any:
    raise PlanError(f"holds {name}; plans hold finite numbers only")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise PlanError(f"holds the number {text[:40]}, which overflows; plans hold finite numbers")
    return value


def parse_plan_json(text: str, *, source: str = "plan") -> Any:
    """The JSON document of a plan file, not yet schema-checked.

    NaN, Infinity and numbers that overflow a double are refused (JSON has no
    such values; Python's parser accepts them), as are documents nested too
    deeply to walk.

    Raises:
        PlanError: the text is not JSON, or not finite JSON.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except PlanError as err:
        raise PlanError(f"{source} {err}") from None
    except json.JSONDecodeError as err:
        raise PlanError(
            f"{source} is not JSON ({err.msg} at line {err.lineno}); is it a plan file?"
        ) from err
    except RecursionError:
        raise PlanError(f"{source} is nested too deeply to be a plan file") from None
    except ValueError as err:  # e.g. an integer literal longer than Python converts
        raise PlanError(f"{source} is not a plan file: {str(err)[:120]}") from None


def plan_schema(version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """The JSON Schema of a plan version, shipped in the package (partitioner/plan/)."""
    folder = resources.files("partitioner.plan")
    return json.loads(folder.joinpath(_SCHEMA_FILES[version]).read_text(encoding="utf-8"))


@cache
def _validator(version: int) -> Any:
    """The plan schema's validator, where "integer" means a JSON number written without a fraction.

    JSON Schema counts 4.0 as an integer; the plan contract does not (the
    schema's description says so): node indices, sizes and coordinates index
    and size Python and NumPy objects, which take no 4.0.
    """
    import jsonschema

    def is_integer(checker: Any, instance: Any) -> bool:
        return isinstance(instance, int) and not isinstance(instance, bool)

    base = jsonschema.Draft202012Validator
    types = base.TYPE_CHECKER.redefine("integer", is_integer)
    return jsonschema.validators.extend(base, type_checker=types)(plan_schema(version))


_PATTERNS = {
    "^[0-9a-f]{64}$": "a sha256 (64 lowercase hex digits)",
    "^[^=\\s]([^=]*[^=\\s])?$": "a dim name (no '=', no space at either end)",
}
"""What each pattern of the schema stands for, in words: the patterns themselves read badly."""


def _message(error: Any) -> str:
    """jsonschema's message, shortened, or in plainer words where jsonschema's are cryptic."""
    wants_integer = error.validator == "type" and error.validator_value == "integer"
    if wants_integer and isinstance(error.instance, float):
        return f"{error.instance!r} is not an integer; write it without a decimal point or exponent"
    if error.validator == "pattern" and error.validator_value in _PATTERNS:
        return _short(f"{error.instance!r} is not {_PATTERNS[error.validator_value]}")
    return _short(error.message)


def check_schema(doc: Any) -> list[str]:
    """Schema violations of ``doc`` as one-line messages, first the most relevant."""
    version = doc.get("schema_version") if isinstance(doc, Mapping) else None
    if version is not None and version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        return [
            f"schema_version {version!r} is not supported "
            f"(this partition reads versions {readable}); upgrade partition"
        ]
    validator = _validator(version if version in READABLE_VERSIONS else SCHEMA_VERSION)
    try:
        errors = sorted(
            validator.iter_errors(doc),
            key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))),
        )
    except RecursionError:
        return ["(top level): nested too deeply to be a plan"]
    out = []
    for e in errors:
        where = "/".join(str(p)[:60] for p in e.absolute_path) or "(top level)"
        out.append(f"{where}: {_message(e)}")
    return out


def _short(message: str, limit: int = 200) -> str:
    """One line of at most ``limit`` characters: jsonschema quotes whole values in messages."""
    line = " ".join(message.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"

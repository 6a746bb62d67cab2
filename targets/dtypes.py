"""Dtype names and how a compute rate is looked up for a dtype.

Dtypes use NumPy-style names, as the graph layer reports them (``float32``,
``float16``, ``bfloat16``, ``int8``...). Two names are not NumPy dtypes:
``tfloat32`` (NVIDIA's tensor-core TF32 rate) and the family names ``float8``
and ``float4``.

Lookup rule, the same on GPUs (peak FLOP/s) and wafers (FMAC lanes):

1. the name is canonicalised: every ``float8*`` variant (``float8_e4m3fn``,
   ``float8e5m2``...) becomes ``float8``, every ``float4*`` becomes ``float4``,
   and ``uint8`` becomes ``int8`` (tensor cores run them at the same rate);
2. an entry for that name is used;
3. otherwise the spec's *fallback dtype* entry is used, when the spec names
   one (GPU presets: ``float32``, the CUDA-core rate, for integer, bool and
   other dtypes without a tensor-core rate; wafer presets: ``float16``, see
   `targets.presets`);
4. otherwise it is a `TargetError` naming the dtype and the field to add.

``float32`` on a GPU therefore means the non-tensor-core FP32 rate. To plan
with TF32 tensor cores, set ``peak_flops_per_s.float32`` to the ``tfloat32``
figure in a target file (or pass ``dtype="tfloat32"``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from targets._fields import FieldError, FrozenDict, optional_text, require_mapping
from targets.errors import TargetError

__all__ = [
    "KNOWN_DTYPES",
    "canonical_dtype",
    "check_fallback_dtype",
    "check_rate_table",
    "rate_for_dtype",
]

#: Every dtype name a peak or lane table may use as a key.
KNOWN_DTYPES: tuple[str, ...] = (
    "float64",
    "float32",
    "tfloat32",
    "float16",
    "bfloat16",
    "float8",
    "float4",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint64",
    "uint32",
    "uint16",
    "bool",
)

RateT = TypeVar("RateT", int, float)


def canonical_dtype(name: str) -> str:
    """The canonical table key for a dtype name (see the module docstring)."""
    key = name.strip().lower()
    if key.startswith("float8"):
        return "float8"
    if key.startswith("float4"):
        return "float4"
    if key == "uint8":
        return "int8"
    return key


def rate_for_dtype(
    table: Mapping[str, RateT],
    dtype: str,
    fallback_dtype: str | None,
    *,
    owner: str,
    table_field: str,
) -> RateT:
    """Look up ``dtype`` in a rate table with the documented fallback.

    Args:
        table: Canonical dtype -> rate (FLOP/s or lanes per cycle).
        dtype: The dtype asked for, any accepted spelling.
        fallback_dtype: The entry used when ``dtype`` has none, or None for none.
        owner: What the table belongs to, for the message (``device 'H100-SXM5'``).
        table_field: The field path a user would add an entry under.

    Raises:
        TargetError: ``dtype`` has no entry and there is no fallback.
    """
    key = canonical_dtype(dtype)
    if key in table:
        return table[key]
    if fallback_dtype is not None:
        return table[fallback_dtype]
    known = ", ".join(sorted(table))
    raise TargetError(
        f"{owner} has no rate for dtype '{dtype}' (known: {known}); add '{table_field}.{key}' "
        "in a target file, or set a fallback dtype"
    )


def check_rate_table(value: Any, path: str, check_rate: Callable[[Any, str], RateT]) -> FrozenDict:
    """Validate a dtype -> rate mapping; keys canonicalised, sorted, read-only.

    Args:
        value: The mapping as given.
        path: Its field name, for messages.
        check_rate: Validates and normalises one rate (e.g. ``positive_float``).
    """
    mapping = require_mapping(value, path)
    if not mapping:
        raise FieldError(path, "must have at least one dtype entry")
    table: dict[str, RateT] = {}
    for raw_key, raw_rate in mapping.items():
        key = canonical_dtype(raw_key) if isinstance(raw_key, str) else str(raw_key)
        if key not in KNOWN_DTYPES:
            close = difflib.get_close_matches(key, KNOWN_DTYPES, n=1)
            if close:
                raise FieldError(f"{path}.{raw_key}", "is not a known dtype", f"{path}.{close[0]}")
            known = ", ".join(KNOWN_DTYPES)
            raise FieldError(f"{path}.{raw_key}", f"is not a known dtype (known: {known})")
        if key in table:
            raise FieldError(f"{path}.{raw_key}", f"repeats dtype '{key}'")
        table[key] = check_rate(raw_rate, f"{path}.{raw_key}")
    return FrozenDict(sorted(table.items()))


def check_fallback_dtype(value: Any, table: Mapping[str, Any], path: str) -> str | None:
    """None, or a dtype that has an entry in ``table``."""
    name = optional_text(value, path)
    if name is None:
        return None
    key = canonical_dtype(name)
    if key not in table:
        raise FieldError(path, f"must be null or a dtype listed in the table, got '{name}'")
    return key

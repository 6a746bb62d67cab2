"""Validation of spec fields, shared by every spec dataclass.

Each spec class checks its own fields in ``__post_init__`` and raises
`FieldError` naming the field relative to itself (``clock_hz``). A parent that
builds nested specs re-raises the error under its own name
(``wafer.clock_hz``), and the loader adds the file name, so the one line the
user sees names the exact field in their file.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import cached_property
from typing import Any, ClassVar, NoReturn, Self, TypeVar

from targets._text import clip, preview
from targets.errors import TargetError

__all__ = [
    "FieldError",
    "FrozenDict",
    "Spec",
    "boolean",
    "bounded",
    "TargetSpec",
    "canonical_sha256",
    "check_fields",
    "check_keys",
    "field_prefix",
    "fraction",
    "nested_from_dict",
    "nonnegative_float",
    "nonnegative_int",
    "optional_positive_float",
    "optional_text",
    "positive_float",
    "positive_int",
    "require_instance",
    "require_mapping",
    "required_fields",
    "set_field",
    "spec_to_dict",
    "text",
]


class FieldError(TargetError):
    """A spec field is missing, unknown or has a bad value.

    Attributes:
        path: Dotted path of the field (``wafer.clock_hz``, ``devices[2].hbm_bytes``);
            empty for the spec as a whole.
        problem: What is wrong, phrased to follow the field name.
        suggestion: Path of the field the user probably meant, or None.
    """

    def __init__(self, path: str, problem: str, suggestion: str | None = None) -> None:
        self.path = path
        self.problem = problem
        self.suggestion = suggestion
        # Paths are built from the user's keys and problems may quote their values:
        # clip both, so the message stays one line of bounded length whatever the file holds.
        subject = f"field '{clip(path, _PATH_CHARS)}'" if path else "the target spec"
        hint = f" (did you mean '{clip(suggestion, _PATH_CHARS)}'?)" if suggestion else ""
        super().__init__(f"{subject} {clip(problem, _PROBLEM_CHARS)}{hint}")

    def under(self, prefix: str) -> FieldError:
        """The same error with ``prefix`` put in front of the field paths."""
        return FieldError(
            _join(prefix, self.path),
            self.problem,
            None if self.suggestion is None else _join(prefix, self.suggestion),
        )


#: Longest field path and problem a `FieldError` message shows; longer ones end in "...".
#: Real paths are under 40 characters; the longest real problem, an unknown preset in
#: ``extends`` followed by the list of presets, is about 410.
_PATH_CHARS = 60
_PROBLEM_CHARS = 600
#: Integer fields are counts and byte sizes that the solvers hold in 64 bits.
_MAX_INT = 2**63 - 1

NumberT = TypeVar("NumberT", int, float)


def _join(prefix: str, path: str) -> str:
    if not path:
        return prefix
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


@contextmanager
def field_prefix(prefix: str) -> Iterator[None]:
    """Re-raise any `FieldError` from the body with ``prefix`` on its path."""
    try:
        yield
    except FieldError as error:
        raise error.under(prefix) from None


class FrozenDict(dict):  # type: ignore[type-arg]
    """A read-only, hashable dict: the mapping fields of frozen specs.

    A dict subclass (not ``MappingProxyType``) so ``json.dumps``, pickling,
    ``copy.deepcopy`` and ``dataclasses.asdict`` keep working.
    """

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("spec mappings are read-only; build a new spec instead")

    __setitem__ = __delitem__ = __ior__ = _read_only  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[type, tuple[dict[Any, Any]]]:
        return (type(self), (dict(self),))


def canonical_sha256(canonical: Mapping[str, Any]) -> str:
    """SHA-256 of ``json.dumps(canonical, sort_keys=True, separators=(",", ":"))``."""
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()


def nested_from_dict(cls: Any, value: Any, path: str) -> Any:
    """``cls.from_dict(value)`` for a nested spec, with errors named under ``path``."""
    with field_prefix(path):
        return cls.from_dict(require_mapping(value, ""))


def require_instance(spec: object, names: Sequence[str], cls: type) -> None:
    """Check that each named field of ``spec`` holds a ``cls`` (a nested spec object)."""
    for name in names:
        if not isinstance(getattr(spec, name), cls):
            raise FieldError(name, f"must be a {cls.__name__}")


def set_field(obj: object, name: str, value: Any) -> None:
    """Store a normalised value on a frozen dataclass during ``__post_init__``."""
    object.__setattr__(obj, name, value)


def check_fields(spec: object, checks: Mapping[str, Callable[[Any, str], Any]]) -> None:
    """Validate and normalise fields of a frozen dataclass in place, in order.

    Args:
        spec: The dataclass, inside its ``__post_init__``.
        checks: Field name -> check(value, path) returning the normalised value.
    """
    for name, check in checks.items():
        set_field(spec, name, check(getattr(spec, name), name))


def spec_to_dict(spec: Any) -> dict[str, Any]:
    """Every field of a spec dataclass, in declaration order, as plain JSON values."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(spec):
        value = getattr(spec, field.name)
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        elif isinstance(value, tuple):
            value = [item.to_dict() for item in value]
        elif isinstance(value, FrozenDict):
            value = dict(value)
        out[field.name] = value
    return out


def required_fields(cls: type) -> list[str]:
    """Names of a dataclass's fields that have no default."""
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


def require_mapping(value: Any, path: str) -> Mapping[str, Any]:
    """``value`` itself when it is a mapping, else a `FieldError`."""
    if not isinstance(value, Mapping):
        raise FieldError(path, f"must be a mapping of fields, got {preview(value)}")
    return value


def check_keys(data: Any, allowed: Sequence[str], required: Sequence[str], path: str = "") -> None:
    """Reject a non-mapping, unknown keys (suggesting the close match) and missing keys.

    Args:
        data: The parsed mapping to check.
        allowed: Every field name the spec accepts.
        required: The names that must be present.
        path: Where ``data`` sits in the spec, for the message.
    """
    require_mapping(data, path)
    where = f"{path}." if path else ""
    for key in data:
        if not isinstance(key, str):
            raise FieldError(f"{where}{key}", "is not a field name (field names are strings)")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            if close:
                raise FieldError(f"{where}{key}", "is not a known field", f"{where}{close[0]}")
            raise FieldError(f"{where}{key}", f"is not a known field (known: {', '.join(allowed)})")
    for key in required:
        if key not in data:
            raise FieldError(f"{where}{key}", "is required")


def _number(value: Any, path: str, what: str) -> float:
    number = math.nan
    # bool is an int in Python, but `true` is no number of bytes.
    if isinstance(value, int | float) and not isinstance(value, bool):
        with suppress(OverflowError):  # an int beyond the float range, such as 10**400
            number = float(value)
    if not math.isfinite(number):
        hint = " (write numbers without quotes)" if isinstance(value, str) else ""
        raise FieldError(path, f"must be {what}, got {preview(value)}{hint}")
    return number


def positive_float(value: Any, path: str) -> float:
    """A finite number > 0, as float."""
    number = _number(value, path, "a positive number")
    if number <= 0:
        raise FieldError(path, f"must be a positive number, got {preview(value)}")
    return number


def nonnegative_float(value: Any, path: str) -> float:
    """A finite number >= 0, as float."""
    number = _number(value, path, "a non-negative number")
    if number < 0:
        raise FieldError(path, f"must be a non-negative number, got {preview(value)}")
    return number


def optional_positive_float(value: Any, path: str) -> float | None:
    """None (unknown), or a finite number > 0."""
    return None if value is None else positive_float(value, path)


def fraction(value: Any, path: str) -> float:
    """A number in (0, 1]: an achieved fraction of a datasheet figure."""
    number = _number(value, path, "a number in (0, 1]")
    if not 0 < number <= 1:
        raise FieldError(path, f"must be a number in (0, 1], got {preview(value)}")
    return number


def positive_int(value: Any, path: str) -> int:
    """An integer in [1, 2**63) (an integral float such as 1.0e9 from YAML is accepted)."""
    return _integer(value, path, "a positive integer", 1)


def nonnegative_int(value: Any, path: str) -> int:
    """An integer in [0, 2**63)."""
    return _integer(value, path, "a non-negative integer", 0)


def _integer(value: Any, path: str, what: str, minimum: int) -> int:
    number = _number(value, path, what)
    if number < minimum or not number.is_integer():
        raise FieldError(path, f"must be {what}, got {preview(value)}")
    integer = int(value) if isinstance(value, int) else int(number)
    if integer > _MAX_INT:
        raise FieldError(path, f"must be {what} below 2**63, got {preview(value)}")
    return integer


def bounded(
    check: Callable[[Any, str], NumberT],
    low: float | None = None,
    high: float | None = None,
    unit: str = "",
) -> Callable[[Any, str], NumberT]:
    """``check`` (type and sign of the value), then the bounds ``low <= value <= high``.

    Bounds sit orders of magnitude beyond any real hardware. They keep every
    figure computed from a spec finite and within 64 bits: a subnormal clock
    would make a transfer last forever, a 2**31-core-wide grid would ask the
    fabric simulator for terabytes.
    """

    def check_bounds(value: Any, path: str) -> NumberT:
        number = check(value, path)
        if (low is not None and number < low) or (high is not None and number > high):
            raise FieldError(path, f"must be {_range_text(low, high, unit)}, got {preview(value)}")
        return number

    return check_bounds


def _range_text(low: float | None, high: float | None, unit: str) -> str:
    unit = f" {unit}" if unit else ""
    if low is None:
        return f"at most {_bound(high)}{unit}"
    if high is None:
        return f"at least {_bound(low)}{unit}"
    return f"between {_bound(low)} and {_bound(high)}{unit}"


def _bound(value: float | None) -> str:
    """A bound as people write it: 16,384 and 4,294,967,296, but 1e-06 and 1e+06."""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,g}"


def boolean(value: Any, path: str) -> bool:
    """``true`` or ``false``; 0/1 and strings are refused, so a quoted "false" is not true."""
    if not isinstance(value, bool):
        raise FieldError(path, f"must be true or false, got {preview(value)}")
    return value


def text(value: Any, path: str, *, allow_empty: bool = False) -> str:
    """A string (non-empty unless ``allow_empty``)."""
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise FieldError(path, f"must be a non-empty string, got {preview(value)}")
    return value


def optional_text(value: Any, path: str) -> str | None:
    """None, or a non-empty string."""
    return None if value is None else text(value, path)


class Spec:
    """Mixin for spec dataclasses: canonical dict out, validated construction in.

    A subclass names its nested spec fields in ``nested_specs``: field name ->
    spec class, or a one-element tuple ``(spec class,)`` for a list of them.
    """

    nested_specs: ClassVar[Mapping[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        """Every field, in declaration order, as plain JSON values."""
        return spec_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Validate and build; errors name the field relative to this spec."""
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        check_keys(data, names, required_fields(cls))
        values = dict(data)
        for name, spec_cls in cls.nested_specs.items():
            if name not in values:
                continue
            if isinstance(spec_cls, tuple):
                items = values[name]
                if not isinstance(items, list | tuple):
                    raise FieldError(name, "must be a list of mappings")
                values[name] = tuple(
                    nested_from_dict(spec_cls[0], item, f"{name}[{index}]")
                    for index, item in enumerate(items)
                )
            else:
                values[name] = nested_from_dict(spec_cls, values[name], name)
        return cls(**values)


class TargetSpec(Spec):
    """Mixin for whole targets: a ``kind`` tag first in the canonical dict, and a hash."""

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """Canonical spec: ``kind`` then every field, in declaration order."""
        return {"kind": self.kind, **spec_to_dict(self)}

    @cached_property
    def sha256(self) -> str:
        """SHA-256 of the canonical spec (sorted keys, compact separators)."""
        return canonical_sha256(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Validate and build from a canonical (or hand-written) mapping."""
        require_mapping(data, "")
        if data.get("kind", cls.kind) != cls.kind:
            raise FieldError("kind", f"must be '{cls.kind}' here, got {preview(data['kind'])}")
        return super().from_dict({k: v for k, v in data.items() if k != "kind"})

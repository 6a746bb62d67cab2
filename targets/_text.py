"""User text in error messages: one line, bounded, cheap however large the input.

Messages quote values from target files, which are user input: a quoted value
must not carry newlines (one line on stderr is the contract) or megabytes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["clip", "preview"]

#: Longest preview of a user value in a message.
_PREVIEW_CHARS = 60
# Everything str.splitlines() breaks at, plus the other C0/C1 controls and DEL.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clip(text: str, limit: int) -> str:
    """``text`` as one line of at most ``limit`` characters.

    Control characters (newlines included) are escaped as in a Python literal,
    and a longer text is cut to end in "...". Only the first ``limit + 1``
    characters are looked at, so a huge text costs no more than a short one.
    """
    flat = _CONTROL.sub(lambda match: repr(match.group())[1:-1], text[: limit + 1])
    return flat if len(flat) <= limit else flat[: max(limit - 3, 0)] + "..."


def preview(value: Any) -> str:
    """A user value for an error message: one line of at most 60 characters.

    Strings show as Python literals, everything else as JSON. Only as much of
    the value is rendered as fits, so a huge, deep or self-referencing value
    costs no more than a small one.
    """
    if isinstance(value, str):
        shown = repr(value[: _PREVIEW_CHARS + 1])
    else:
        parts: list[str] = []
        _render(value, parts, _PREVIEW_CHARS + 1)
        shown = "".join(parts)
    return clip(shown, _PREVIEW_CHARS)


def _render(value: Any, out: list[str], budget: int) -> int:
    """Append ``value`` as JSON to ``out`` until ``budget`` characters are spent; the rest left."""
    if isinstance(value, Mapping):
        items: Iterator[tuple[str | None, Any]] = ((_atom(k), v) for k, v in value.items())
        brackets = "{}"
    elif isinstance(value, list | tuple | set | frozenset):
        items, brackets = ((None, item) for item in value), "[]"
    else:
        atom = _atom(value)[:budget]
        out.append(atom)
        return budget - len(atom)
    out.append(brackets[0])
    budget -= 1
    for index, (key, item) in enumerate(items):
        if budget <= 0:  # each level spends a character, so recursion stops within the budget
            return budget
        lead = (", " if index else "") + ("" if key is None else f"{key}: ")
        out.append(lead)
        budget = _render(item, out, budget - len(lead))
    out.append(brackets[1])
    return budget - 1


def _atom(value: Any) -> str:
    """A scalar as JSON, cut to the preview length."""
    if isinstance(value, str):
        return json.dumps(value[: _PREVIEW_CHARS + 1])
    if isinstance(value, int) and value.bit_length() > 200:
        # str() of a huge int is slow, and refused past 4300 digits; its length is enough.
        return f"<integer of about {math.floor(math.log10(abs(value))) + 1} digits>"
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, bytes | bytearray):
        return repr(bytes(value[: _PREVIEW_CHARS + 1]))
    return repr(value)[: _PREVIEW_CHARS + 1]

"""Mutations of a plan document: hostile values, same-type tweaks, structural edits.

Leaves are replaced by hostile values or by values of the same type, keys are
deleted or added, partitions and transfers duplicated or removed, node indices
swapped, moved or out of range; documents are nested deeply, and NaN/Infinity
literals and 5000-digit integers are written into the text.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

__all__ = ["apply_plan", "serialize", "plan_mutations"]

Path_ = tuple  # a path into the JSON document: keys and list indices

_HUGE_INT_DIGITS = 5000  # over Python's 4300-digit int conversion limit

_SPECIAL_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    -(2**31) - 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    -(10**30),
    1e308,
    -1e308,
    5e-324,
    0.5,
    -0.0,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "NaN",
    "Infinity",
    "-Infinity",
    "nan",
    "1e999",
    "0",
    "x" * 10_000,
    "\x00",
    "../../../etc/passwd",
    "/dev/zero",
    "m.onnx",
    "GPU",
    "wafer",
    [],
    {},
    [None],
    [0, 0],
    {"": None},
    "__HUGE_INT__",
    "__DEEP__",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.one_of(
    st.sampled_from(_SPECIAL_VALUES),
    json_scalars,
    st.recursive(
        json_scalars,
        lambda kids: st.one_of(
            st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)
        ),
        max_leaves=8,
    ),
)

# sentinels replaced in the serialized text (json.dumps cannot write them itself)
_SENTINELS = {
    '"__HUGE_INT__"': "9" * _HUGE_INT_DIGITS,
    '"__DEEP__"': "[" * 100_000 + "0" + "]" * 100_000,
}


def _paths(doc: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _paths(value, (*prefix, i))


def _get(doc: Any, path: Path_) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _set(doc: Any, path: Path_, value: Any) -> Any:
    """doc with the value at path replaced (the root itself when path is empty)."""
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def apply_plan(doc: Any, ops: tuple) -> Any:
    """Apply the mutation operations to a deep copy of doc; an op whose target vanished is a no-op."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind = op[0]
        try:
            if kind == "replace":  # ("replace", path, value)
                doc = _set(doc, op[1], copy.deepcopy(op[2]))
            elif kind == "delete":  # ("delete", path)
                parent = _get(doc, op[1][:-1])
                del parent[op[1][-1]]
            elif kind == "add_key":  # ("add_key", path, key, value)
                target = _get(doc, op[1])
                if isinstance(target, dict):
                    target[op[2]] = copy.deepcopy(op[3])
            elif kind == "duplicate":  # ("duplicate", list_path, index)
                items = _get(doc, op[1])
                items.append(copy.deepcopy(items[op[2]]))
            elif kind == "remove":  # ("remove", list_path, index)
                del _get(doc, op[1])[op[2]]
            elif kind == "swap_nodes":  # ("swap_nodes", (p, i), (q, j))
                (p, i), (q, j) = op[1], op[2]
                a, b = doc["partitions"][p]["nodes"], doc["partitions"][q]["nodes"]
                a[i], b[j] = b[j], a[i]
            elif kind == "move_node":  # ("move_node", (p, i), q)
                (p, i), q = op[1], op[2]
                node = doc["partitions"][p]["nodes"].pop(i)
                doc["partitions"][q]["nodes"].append(node)
            elif kind == "node_index":  # ("node_index", (p, i), value)
                (p, i), value = op[1], op[2]
                doc["partitions"][p]["nodes"][i] = value
            elif kind == "float":  # ("float", path): 17 -> 17.0
                doc = _set(doc, op[1], float(_get(doc, op[1])))
            elif kind == "nest":  # ("nest", path, depth)
                doc = _set(doc, op[1], _nested(_get(doc, op[1]), op[2]))
            else:
                raise ValueError(kind)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier op removed or replaced what this one targets
    return doc


def _nested(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def serialize(doc: Any, allow_nan: bool) -> str:
    try:
        text = json.dumps(doc, indent=1, allow_nan=allow_nan)
    except ValueError:  # NaN/inf drawn but literals not allowed: write them anyway
        text = json.dumps(doc, indent=1, allow_nan=True)
    for sentinel, raw in _SENTINELS.items():
        text = text.replace(sentinel, raw)
    return text


def _pick_path(draw, doc: Any, where: str) -> Path_:
    """A path into doc: first a top-level section, then a path inside it, so the big
    target spec does not crowd out the partitions, the transfers and the model fields."""
    if isinstance(doc, dict) and doc and draw(st.integers(0, 15), label=f"{where}: root?") > 0:
        key = draw(st.sampled_from(sorted(doc, key=str)), label=f"{where}: section")
        return draw(st.sampled_from(list(_paths(doc[key], (key,)))), label=f"{where}: path")
    return draw(st.sampled_from(list(_paths(doc))), label=f"{where}: path")


_STRINGS = [
    "",
    "x",
    "x" * 300,
    "x" * 10_000,
    "a/" * 3000,
    "\x00",
    "\ud800",
    "é∂ 🚀",
    "[/]",  # rich markup: must print as text
    "[bold]x",
    "$x^2$",  # matplotlib mathtext in --png titles
    "../../../etc/passwd",
    "/",
    ".",
    "..",
    "/dev/zero",
    "/dev/stdin",
    "/proc/self/mem",
    "m.onnx",
    "x",
    "y",
    "hb",
    "gpu",
    "wafer",
    "OPTIMAL",
    "INFEASIBLE",
    "compute",
    "float32",
    "bfloat16",
]
_INTS = [0, 1, 2, 3, -1, 4, 5, 2**31, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 10**30]
_FLOATS = [0.0, -0.0, 1.0, -1.0, 5e-324, 1e-300, 1e300, 1.7976931348623157e308, 0.5, 1e-9]


def _same_type(draw, value: Any) -> Any:
    """A new value of the same JSON type, so the schema's type checks pass and deeper code runs."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        # an integral float (1.0) passes the schema's "integer" check
        return draw(st.sampled_from(_INTS) | st.integers(-(2**64), 2**64) | st.just(float(value)))
    if isinstance(value, float):
        return draw(st.sampled_from(_FLOATS) | st.floats(allow_nan=False, allow_infinity=False))
    if isinstance(value, str):
        return draw(st.sampled_from(_STRINGS) | st.text(max_size=12))
    if isinstance(value, list):
        return draw(st.sampled_from([[], value * 2, value[:1], value[::-1]]))
    if isinstance(value, dict):
        return draw(st.sampled_from([{}, {k: value[k] for k in list(value)[:1]}]))
    return draw(json_values)


@st.composite
def plan_mutations(draw, doc: Any) -> tuple:
    """1-3 operations, each drawn against the document as the earlier ones left it."""
    ops = []
    for _ in range(draw(st.integers(1, 3), label="ops")):
        kinds = ["replace", "tweak", "tweak", "delete", "add_key"]
        if not any(o[0] == "nest" for o in ops):  # one nesting per document: deepcopy recurses
            kinds.append("nest")
        parts = doc.get("partitions") if isinstance(doc, dict) else None
        good_parts = (
            isinstance(parts, list)
            and parts
            and all(isinstance(p, dict) and isinstance(p.get("nodes"), list) for p in parts)
        )
        if good_parts:
            kinds += ["partition", "swap_nodes", "move_node", "node_index"]
        if isinstance(doc, dict) and isinstance(doc.get("transfers"), list) and doc["transfers"]:
            kinds += ["transfer"]
        kind = draw(st.sampled_from(kinds), label="kind")
        if kind == "replace":
            op = ("replace", _pick_path(draw, doc, kind), draw(json_values))
        elif kind == "tweak":
            path = _pick_path(draw, doc, kind)
            op = ("replace", path, _same_type(draw, _get(doc, path)))
        elif kind == "delete":
            path = _pick_path(draw, doc, kind)
            if not path:
                continue
            op = ("delete", path)
        elif kind == "add_key":
            path = _pick_path(draw, doc, kind)
            if not isinstance(_get(doc, path), dict):
                path = path[:-1] if path else path
            if not isinstance(_get(doc, path), dict):
                continue
            key = draw(
                st.sampled_from(["extra", "", "nodes", "id", "__proto__"]) | st.text(max_size=8)
            )
            op = ("add_key", path, key, draw(json_values))
        elif kind == "nest":
            # 150 levels stay within Python's recursion limit for deepcopy and json.dumps;
            # the "__DEEP__" sentinel value covers nesting 100,000 levels deep
            op = ("nest", _pick_path(draw, doc, kind), draw(st.sampled_from([1, 2, 30, 150])))
        elif kind in ("partition", "transfer"):
            name = "partitions" if kind == "partition" else "transfers"
            n = len(doc[name])
            op = (
                draw(st.sampled_from(["duplicate", "remove"])),
                (name,),
                draw(st.integers(0, n - 1)),
            )
        else:
            with_nodes = [(p, len(part["nodes"])) for p, part in enumerate(parts) if part["nodes"]]
            if not with_nodes:
                continue
            p, n = draw(st.sampled_from(with_nodes))
            i = draw(st.integers(0, n - 1))
            if kind == "swap_nodes":
                q, m = draw(st.sampled_from(with_nodes))
                op = ("swap_nodes", (p, i), (q, draw(st.integers(0, m - 1))))
            elif kind == "move_node":
                op = ("move_node", (p, i), draw(st.integers(0, len(parts) - 1)))
            else:
                value = draw(
                    st.sampled_from([-1, 5, 6, 2**31, 2**63, -(2**63) - 1, 10**20, 1.0, 0.5, True])
                    | st.integers(-10, 10)
                )
                op = ("node_index", (p, i), value)
        ops.append(op)
        doc = apply_plan(doc, (op,))
    return tuple(ops)

"""YAML for target files: safe, bounded, strict about repeated keys.

Target files are user input. PyYAML's safe loader still expands aliases
(a few hundred bytes can become billions of values), keeps the last of two
repeated keys silently, and reads ``1e9`` as a string (YAML 1.1). The loader
here refuses aliases and merge keys, repeated keys, deep nesting and huge
numbers, and reads ``1e9`` as a number, as YAML 1.2 and JSON do.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from targets._fields import FieldError
from targets._text import clip, preview
from targets.errors import TargetError

__all__ = ["parse_yaml", "MAX_DEPTH", "MAX_INT_DIGITS"]

#: A full spec nests 5 levels (spec, devices, a device, peak_flops_per_s, a rate).
MAX_DEPTH = 32
#: Values (scalars, lists, mappings) in a YAML file: a full 8-GPU spec has about 300.
_MAX_YAML_VALUES = 50_000
#: Far above any real field, and under Python's 4300-digit limit on parsing ints.
MAX_INT_DIGITS = 1000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _TargetYamlRules(Composer, SafeConstructor, Resolver):
    """Safe YAML loading for target files, on top of a parser (libyaml's, or PyYAML's own).

    * ``1e9`` reads as a number, as in YAML 1.2 and JSON. PyYAML follows YAML
      1.1, where a float needs a dot and a signed exponent, so ``clock_hz: 1e9``
      would otherwise arrive as the string "1e9".
    * Aliases (``*name``) are refused rather than counted: they are the only way
      a few hundred bytes expand into billions of values ("billion laughs"), and
      a target file, a few hand-written fields, has no use for them. Without
      them the loaded value is no bigger than the file. Merge keys (``<<``) go
      too, as they are only useful with aliases.
    * A key repeated in one mapping is an error, not a silent override.
    * Nesting is bounded, as the composer recurses once per level, and so is
      the number of values, as composing one in Python takes tens of µs.
    """

    def __init__(self) -> None:
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            problem = "aliases (*name) are not allowed in target files; write the value out"
            raise ComposerError(None, None, problem, event.start_mark)
        self._nodes += 1
        if self._nodes > _MAX_YAML_VALUES:
            problem = f"more than {_MAX_YAML_VALUES} values (a full 8-GPU spec has about 300)"
            raise ComposerError(None, None, problem, event.start_mark)
        if self._depth >= MAX_DEPTH:
            problem = f"values nest deeper than {MAX_DEPTH} levels"
            raise ComposerError(None, None, problem, event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            problem = f"expected a mapping, but found a {node.id}"
            raise ConstructorError(None, None, problem, node.start_mark)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                problem = "merge keys (<<) are not allowed in target files; write the fields out"
                raise ConstructorError(None, None, problem, key_node.start_mark)
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise ConstructorError(None, None, "found unhashable key", key_node.start_mark)
            if key in mapping:
                name = key if isinstance(key, str) else preview(key)
                line = key_node.start_mark.line + 1
                raise FieldError(
                    name, f"appears twice in one mapping (again at line {line}); keep one"
                )
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as error:
            # A scalar that matches a tag's pattern but is no valid value (2024-13-45).
            problem = f"cannot read this value: {error}"
            raise ConstructorError(None, None, problem, node.start_mark) from None


def _construct_int(loader: SafeConstructor, node: yaml.ScalarNode) -> int:
    if len(node.value) > MAX_INT_DIGITS:
        problem = f"a number of {len(node.value)} digits is too long"
        raise ConstructorError(None, None, problem, node.start_mark)
    return SafeConstructor.construct_yaml_int(loader, node)


_TargetYamlRules.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
_TargetYamlRules.add_constructor("tag:yaml.org,2002:int", _construct_int)


class _PurePythonYamlLoader(_TargetYamlRules, Reader, Scanner, Parser):
    """The rules on PyYAML's own parser, for a PyYAML built without libyaml."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _TargetYamlRules.__init__(self)


if yaml.__with_libyaml__:
    from yaml.cyaml import CParser

    class _LibYamlLoader(_TargetYamlRules, CParser):
        """The rules on libyaml's parser, 10-20x faster than PyYAML's. The rules come first
        in the MRO so that their composer, not libyaml's, builds the nodes."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _TargetYamlRules.__init__(self)

    _YamlLoader: type[_TargetYamlRules] = _LibYamlLoader
else:
    _YamlLoader = _PurePythonYamlLoader


def parse_yaml(raw: str, where: str) -> Any:
    """The document in ``raw``; one-line TargetError naming ``where`` if it breaks a rule."""
    try:
        return yaml.load(raw, Loader=_YamlLoader)  # noqa: S506 - safe: SafeConstructor only
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or (str(error).splitlines() or ["?"])[0]
        # The problem may quote the file (an unknown tag): keep it short.
        raise TargetError(f"{where}: invalid YAML{at}: {clip(problem, 200)}") from None

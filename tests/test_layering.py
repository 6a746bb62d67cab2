"""The layers import one way only: targets <- passes <- partitioner.

Inside ``partitioner`` the sub-packages are layered too (``RULES``). Imports are
read from the source: absolute and relative ones (resolved against the module's
package), at module level or inside functions; ``from a import b`` counts as an
import of ``a.b``, since ``b`` may be a module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "targets": {"passes", "partitioner", "examples"},
    "passes": {"partitioner", "examples"},
    "partitioner": {"examples"},
}
OURS = ("targets", "passes", "partitioner", "examples", "bench", "tests")


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in ``source``, relative ones resolved.

    Args:
        source: the module's source.
        module: its dotted name (``partitioner.plan.io``; a package's is the folder's).
        is_package: whether it is a package's ``__init__.py``.

    A relative import that climbs above the top-level package keeps its dots.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if node.level - 1 < len(package):
                    parent = package[: len(package) - (node.level - 1)]
                    base = ".".join([*parent, *([base] if base else [])])
                else:
                    base = "." * node.level + base
            for alias in node.names:
                if alias.name == "*":
                    name = base
                elif base.endswith("."):  # unresolved: the dots stay
                    name = base + alias.name
                else:
                    name = f"{base}.{alias.name}"
                found.append((node.lineno, name))
    return sorted(found)


def within(name: str, prefix: str) -> bool:
    """Whether dotted ``name`` is ``prefix`` or under it."""
    return name == prefix or name.startswith(prefix + ".")


def _module_of(relative: str) -> tuple[str, bool]:
    parts = relative.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


@cache
def _imports_of(relative: str) -> tuple[tuple[int, str], ...]:
    source = (ROOT / relative).read_text(encoding="utf-8")
    return tuple(imported_modules(source, *_module_of(relative)))


def _python_files(*folders: str) -> list[str]:
    """Repository-relative paths of the ``.py`` files under ``folders`` (missing ones: none)."""
    return sorted(
        path.relative_to(ROOT).as_posix()
        for folder in folders
        if (ROOT / folder).is_dir()
        for path in (ROOT / folder).rglob("*.py")
        if not any(p.startswith(".") or p == "__pycache__" for p in path.relative_to(ROOT).parts)
    )


def _imported_packages(relative: str) -> set[str]:
    return {name.split(".")[0] for _, name in _imports_of(relative)}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package):
    offenders = [
        f"{path} imports {sorted(_imported_packages(path) & FORBIDDEN[package])}"
        for path in _python_files(package)
        if _imported_packages(path) & FORBIDDEN[package]
    ]
    assert offenders == []


# The runtime's processes are the only place torch is imported (the optional extra).
TORCH_MODULES = {
    "partitioner/runtime/worker.py",
    "partitioner/runtime/transport.py",
    "partitioner/calibrate/cuda.py",
    "partitioner/calibrate/links_worker.py",
}


def test_only_the_runtime_processes_import_torch():
    offenders = [
        path
        for path in _python_files("targets", "passes", "partitioner")
        if "torch" in _imported_packages(path) and path not in TORCH_MODULES
    ]
    assert offenders == []


def test_no_command_loads_torch():
    """Planning, validating, simulating, exporting and `partition run` itself (the
    launcher) never load torch; only the rank processes do."""
    code = (
        "import sys, partitioner.cli as c\n"
        "for verb in ('plan', *c.SUBCOMMANDS): c.build_parser(verb)\n"
        "import partitioner.planning, partitioner.export, partitioner.simulate\n"
        "import partitioner.runtime.launcher, partitioner.runtime.finish\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@dataclass(frozen=True)
class Rule:
    """Files in ``applies_to`` may not import a name for which ``forbidden`` holds."""

    name: str
    applies_to: Callable[[str], bool]
    forbidden: Callable[[str], bool]


def _under(*prefixes: str) -> Callable[[str], bool]:
    return lambda path: any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def _solvers_forbid(name: str) -> bool:
    ours = name.split(".")[0] in OURS
    return ours and not within(name, "targets") and not within(name, "partitioner.solvers")


def _is_cli(name: str) -> bool:
    return within(name, "partitioner.commands") or within(name, "partitioner.cli")


RULES = (
    Rule(
        "solvers import only targets and partitioner.solvers",
        _under("partitioner/solvers"),
        _solvers_forbid,
    ),
    Rule(
        "plan imports nothing of partitioner outside partitioner.plan",
        _under("partitioner/plan"),
        lambda name: within(name, "partitioner") and not within(name, "partitioner.plan"),
    ),
    Rule(
        "simulate imports neither planning nor the CLI",
        _under("partitioner/simulate"),
        lambda name: within(name, "partitioner.planning") or _is_cli(name),
    ),
    Rule(
        "only the CLI imports partitioner.commands and partitioner.cli",
        lambda path: (
            not _under("partitioner/commands", "partitioner/cli.py", "partitioner/__main__.py")(
                path
            )
        ),
        _is_cli,
    ),
)
RULES += (
    Rule(
        "nothing outside the runtime imports its torch modules",
        lambda path: not _under("partitioner/runtime")(path),
        lambda name: (
            within(name, "partitioner.runtime.worker")
            or within(name, "partitioner.runtime.transport")
        ),
    ),
)
# the CLI rule covers the library and its users; tests drive the CLI, so they are left out
RULE_FOLDERS = ("targets", "passes", "partitioner", "examples", "bench")


def violations(rule: Rule, sources: Iterable[tuple[str, Iterable[tuple[int, str]]]]) -> list[str]:
    """``path:line imports name`` for each import that breaks ``rule``.

    Args:
        rule: the rule.
        sources: ``(repository-relative path, its imports as (line, name))`` pairs.
    """
    return [
        f"{path}:{line} imports {name}"
        for path, imports in sources
        if rule.applies_to(path)
        for line, name in imports
        if rule.forbidden(name)
    ]


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_partitioner_layers(rule):
    sources = [(path, _imports_of(path)) for path in _python_files(*RULE_FOLDERS)]
    broken = violations(rule, sources)
    assert not broken, f"rule broken: {rule.name}\n" + "\n".join(broken)


def test_imported_modules_resolves_relative_imports():
    source = (
        "import os, a.b as c\n"
        "from . import x\n"
        "from ..y import z, w\n"
        "from .. import cli\n"
        "from ....too_far import q\n"
        "from partitioner.plan import *\n"
        "def late():\n"
        "    from .sibling import thing\n"
    )
    assert imported_modules(source, "partitioner.plan.io", is_package=False) == [
        (1, "a.b"),
        (1, "os"),
        (2, "partitioner.plan.x"),
        (3, "partitioner.y.w"),
        (3, "partitioner.y.z"),
        (4, "partitioner.cli"),
        (5, "....too_far.q"),
        (6, "partitioner.plan"),
        (8, "partitioner.plan.sibling.thing"),
    ]
    # in a package's __init__, "." is the package itself
    assert imported_modules("from . import a\nfrom .. import b\n", "pkg.sub", True) == [
        (1, "pkg.sub.a"),
        (2, "pkg.b"),
    ]


def test_rules_catch_synthetic_offenders():
    solvers, plan, simulate, cli, runtime = RULES
    files = {
        "partitioner/solvers/new.py": "from . import problem\nfrom ..planning import x\n"
        "import passes.ir\nfrom targets.cost import C\nimport numpy\n",
        "partitioner/plan/new.py": "from .document import Plan\nfrom ..units import u\n"
        "from passes.ir import Graph\n",
        "partitioner/simulate/new.py": "def f():\n    from ..planning.gpu import p\n",
        "partitioner/commands/new.py": "from ..cli import main\n",
        "partitioner/new.py": "from partitioner import commands\n",
        "partitioner/commands/other.py": "from partitioner.runtime.worker import main\n",
        "partitioner/runtime/new.py": "from .transport import post_sends\n",
    }
    sources = [(path, imported_modules(s, *_module_of(path))) for path, s in files.items()]
    assert violations(solvers, sources) == [
        "partitioner/solvers/new.py:2 imports partitioner.planning.x",
        "partitioner/solvers/new.py:3 imports passes.ir",
    ]
    assert violations(plan, sources) == ["partitioner/plan/new.py:2 imports partitioner.units.u"]
    assert violations(simulate, sources) == [
        "partitioner/simulate/new.py:2 imports partitioner.planning.gpu.p"
    ]
    assert violations(cli, sources) == ["partitioner/new.py:1 imports partitioner.commands"]
    assert violations(runtime, sources) == [
        "partitioner/commands/other.py:1 imports partitioner.runtime.worker.main"
    ]

"""Check the package's layout: no import cycle, and every import going the way the architecture says.

Run: ``python tools/check_layout.py`` (exit 1 and one line per problem; ``tests/unit_tests/test_layout.py`` runs it).

The stages, each a package (or a module) of ``langchain_energyrouter``, and what each may import::

    contract   errors, files, cost, profile        the profile contract: nothing but itself
    energy/ state/ model_cache packaged_models     leaves: the contract only
    decide/                                        the hot path: the contract only
    learn/                                         + decide, energy, state
    prompt/                                        + state, model_cache (lazily imported by the router)
    models, callbacks                              loading models; energy totals from LangChain callbacks
    router/                                        + decide, learn, prompt, energy, state
    middleware, server/                            + router
    calibration/                                   offline: never router/, server/, middleware or cli/
    cli/                                           everything but testing/
    testing/                                       public fakes: the contract (nothing imports it)

Every import counts: at module level, inside functions and under ``TYPE_CHECKING`` (a type-only cycle still
ties two modules together). Third-party fences: ``decide/`` and ``learn/`` import no LangChain, numpy, pandas,
scipy, statsmodels, torch or transformers anywhere; ``prompt/`` none of pandas, statsmodels, torch or
transformers at import time (a function may, e.g. the one-time distillation).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

PACKAGE = "langchain_energyrouter"

CONTRACT = ("errors", "files", "cost", "profile")
"""Top-level modules that form the profile contract."""

ALLOWED: dict[str, set[str]] = {
    "contract": set(),
    "energy": {"contract"},
    "state": {"contract"},
    "model_cache": {"contract"},
    "packaged_models": {"contract"},
    "decide": {"contract"},
    "learn": {"contract", "decide", "energy", "state"},
    "prompt": {"contract", "state", "model_cache"},
    "models": {"contract", "model_cache", "packaged_models"},
    "callbacks": {"contract", "energy"},
    "router": {"contract", "decide", "learn", "prompt", "energy", "state"},
    "middleware": {"contract", "decide", "energy", "router"},
    "server": {"contract", "decide", "energy", "state", "models", "router"},
    "calibration": {"contract", "decide", "learn", "prompt", "energy", "state", "models", "model_cache"},
    "cli": {
        "contract",
        "decide",
        "learn",
        "prompt",
        "energy",
        "state",
        "models",
        "model_cache",
        "packaged_models",
        "callbacks",
        "router",
        "middleware",
        "server",
        "calibration",
    },
    "testing": {"contract"},
    "face": {"contract", "decide"},  # the package's __init__ (its LangChain-facing names load lazily)
}
"""Stage -> the other stages it may import (a stage may always import itself)."""

ENTRY_POINTS = {f"{PACKAGE}.calibration.__main__"}
"""Modules exempt from the fences: ``python -m langchain_energyrouter.calibration`` runs the command line."""

NEVER_ANYWHERE = {
    "decide": {"langchain_core", "langchain", "numpy", "pandas", "scipy", "statsmodels", "torch", "transformers"},
    "learn": {"langchain_core", "langchain", "numpy", "pandas", "scipy", "statsmodels", "torch", "transformers"},
}
"""Stage -> third-party packages it may not import at all."""

NEVER_AT_IMPORT = {"prompt": {"pandas", "statsmodels", "torch", "transformers"}}
"""Stage -> third-party packages it may not import at module level."""


class Import(NamedTuple):
    source: str
    """The importing module."""
    target: str
    """The imported module (a package module, or a third-party top-level name)."""
    line: int
    at_import: bool
    """At module level (outside functions and ``TYPE_CHECKING``), so it runs when the module is imported."""


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package under ``root``."""
    found: dict[str, Path] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def stage(module: str) -> str:
    """The stage a module belongs to (see the module doc)."""
    rest = module.split(".")[1:]
    if not rest:
        return "face"
    return "contract" if rest[0] in CONTRACT else rest[0]


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """Every import of ``module``: package modules by their dotted name, others by their top-level name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, at_import: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
                continue
            if isinstance(child, ast.If) and _type_checking(child):
                visit(child, False)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, _resolve(alias.name, known), child.lineno, at_import))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = module.split(".")[: len(module.split(".")) - child.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    dotted = f"{base}.{alias.name}"
                    target = dotted if dotted in known else _resolve(base, known)
                    found.append(Import(module, target, child.lineno, at_import))
            else:
                visit(child, at_import)

    visit(tree, True)
    return found


def _resolve(name: str, known: dict[str, Path]) -> str:
    """A package module's dotted name as is; anything else by its top-level name (``numpy.typing`` -> ``numpy``)."""
    return name if name in known else name.split(".")[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            connect(v)
    return out


def problems(root: Path) -> list[str]:
    """Every cycle and every forbidden import in the package under ``root``, one line each."""
    known = modules(root)
    found = [imp for name, path in known.items() for imp in imports(name, path, known)]
    edges: dict[str, set[str]] = {name: set() for name in known}
    lines: list[str] = []
    for imp in found:
        inside = imp.target in known
        if inside and imp.target != imp.source and not imp.source.startswith(imp.target + "."):
            edges[imp.source].add(imp.target)  # a package's module importing its own package is no edge
        if imp.source in ENTRY_POINTS:
            continue
        here = stage(imp.source)
        where = f"{known[imp.source].relative_to(root)}:{imp.line}"
        if here not in ALLOWED:
            lines.append(f"{where}: {imp.source} is in no stage: add {here!r} to ALLOWED in tools/check_layout.py")
            continue
        if inside:
            there = stage(imp.target)
            if there != here and there not in ALLOWED[here]:
                lines.append(f"{where}: {here} may not import {there} ({imp.target})")
        elif imp.target in NEVER_ANYWHERE.get(here, ()):
            lines.append(f"{where}: {here} may not import {imp.target} (not even inside a function)")
        elif imp.at_import and imp.target in NEVER_AT_IMPORT.get(here, ()):
            lines.append(f"{where}: {here} may not import {imp.target} at import time (import it inside the function)")
    lines.extend(f"import cycle: {' <-> '.join(component)}" for component in cycles(edges))
    return lines


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    found = problems(root)
    for line in found:
        print(line)
    print(f"{len(modules(root))} modules: {len(found)} problem(s)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

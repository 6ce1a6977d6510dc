"""The package's rooms import one way: commands -> stages -> storage, with no circle anywhere."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module may import modules of its own layer or below, never above; a module's layer is that of
# the longest prefix listed. Stages may use each other (propose asks the guard; train the judge's protocol) as long
# as no circle forms, which test_no_import_cycles checks.
LAYERS = [
    ("storage", ["autopilot", "autopilot.errors", "autopilot.paths", "autopilot.fsio", "autopilot.clock",
                 "autopilot.enums", "autopilot.schemas", "autopilot.formatting", "autopilot.settings",
                 "autopilot.extras", "autopilot.apikeys", "autopilot.bundled", "autopilot.config_schema",
                 "autopilot.config_errors", "autopilot.config_docs", "autopilot.processes",
                 "autopilot.warm.protocol"]),
    ("study", ["autopilot.study", "autopilot.ledger", "autopilot.notify"]),
    ("holds", ["autopilot.holds", "autopilot.registry.disk"]),
    ("stages", ["autopilot.ingest", "autopilot.guard", "autopilot.propose", "autopilot.train", "autopilot.judge",
                "autopilot.journal", "autopilot.registry", "autopilot.code", "autopilot.continual",
                "autopilot.curriculum", "autopilot.warm.trainers",
                "autopilot.warm.fork"]),
    ("operations", ["autopilot.ops", "autopilot.serve"]),
    ("commands", ["autopilot.cli"]),
    ("entry", ["autopilot.console", "autopilot.__main__", "autopilot.warm", "autopilot.workflow"]),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "autopilot").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict) -> set[str]:
    """The package's modules that `name` imports, at any depth of the file (lazy imports are arrows too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("autopilot"):
            targets = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.startswith("autopilot")]
        else:
            continue
        for t in targets:
            while t not in known:
                t = t.rpartition(".")[0]
            if t != name and not name.startswith(t + "."):  # a package's own __init__ is not an arrow
                out.add(t)
    return out


def layer(name: str) -> int:
    best, found = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            inside = name.startswith(p + ".") and p != "autopilot"  # the package's __init__ holds no room
            if (name == p or inside) and len(p) > best:
                best, found = len(p), i
    assert found is not None, f"{name} is in no layer of tests/test_layout.py: give it one"
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_no_module_imports_one_of_a_layer_above_it():
    upward = [f"{a} ({LAYERS[layer(a)][0]}) -> {b} ({LAYERS[layer(b)][0]})"
              for a, targets in graph().items() for b in targets if layer(b) > layer(a)]
    assert upward == []


def test_no_import_cycles():
    g = graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in g:
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_cycles_between_the_stage_packages():
    def package(name):
        return ".".join(name.split(".")[:2])

    edges = {(package(a), package(b)) for a, targets in graph().items() for b in targets if package(a) != package(b)}
    assert {(a, b) for a, b in edges if (b, a) in edges} == set()

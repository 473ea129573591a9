"""The engine's layering, read from the source: no module reaches into another's private names, the lower
layers (the method table, the precision rule, adapter placement, the model, the recipe) never import the ones
above them, and no two studio modules import each other, even lazily inside a function."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = {
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
    for path in sorted((ROOT / "studio").rglob("*.py"))
}

ALLOWED = {  # module -> the only studio modules it may import (anywhere in it, type hints included)
    "studio.methods": set(),
    "studio.errors": set(),
    "studio.events": set(),
    "studio.results": set(),
    "studio.calibration": {"studio.errors", "studio.results"},
    "studio.precision": {"studio.hardware", "studio.config"},
    "studio.adapters": {"studio.architectures", "studio.config", "studio.errors"},
}
ABOVE_THE_RECIPE = {"studio.training", "studio.jobs", "studio.launch", "studio.sweep", "studio.cli"}
FORBIDDEN = {  # module -> studio modules above it that it must not import
    "studio.models": {"studio.recipe", "studio.hf_trainer", "studio.memory", "studio.speed_plan", "studio.export"}
    | ABOVE_THE_RECIPE,
    "studio.memory": {"studio.recipe", "studio.hf_trainer", "studio.speed_plan", "studio.export"} | ABOVE_THE_RECIPE,
    "studio.config": {"studio.models", "studio.memory", "studio.recipe", "studio.training"},
    "studio.recipe": ABOVE_THE_RECIPE,
    "studio.hf_trainer": ABOVE_THE_RECIPE,
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _studio_imports(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) of every studio import in the tree, at any depth."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "studio":
            out.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "studio"]
    return out


def _private_uses(module: str, tree: ast.AST) -> list[str]:
    """`from studio.x import _y`, and `x._y` on a studio module bound by an import, outside module x itself."""
    problems, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "studio":
            for alias in node.names:
                if _private(alias.name) and node.module != module:
                    problems.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                if node.module == "studio" or f"{node.module}.{alias.name}" in MODULES:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "studio":
                    continue
                if alias.asname:  # import studio.x as y: y is studio.x
                    aliases[alias.asname] = alias.name
                else:  # import studio.x: the name bound is studio
                    aliases["studio"] = "studio"
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        owner = _dotted(node.value)
        if owner is None or owner.split(".")[0] not in aliases:
            continue
        head, _, rest = owner.partition(".")
        target = ".".join(filter(None, [aliases[head], rest]))
        if target in MODULES and target != module:
            problems.append(f"line {node.lineno}: {owner}.{node.attr}")
    return sorted(problems, key=lambda p: int(p.split(":")[0].removeprefix("line ")))


def test_the_scan_sees_private_imports():
    code = (
        "from studio.models import _check_vocab, build_model\n"
        "from studio import memory\n"
        "import studio.hf_trainer as ph\n"
        "def f():\n"
        "    memory._facts_for.cache_clear()\n"
        "    ph._pad_multiple(1, 2, 3)\n"
        "    memory.estimate(None)\n"
    )
    assert _private_uses("studio.probe", ast.parse(code)) == [
        "line 1: from studio.models import _check_vocab",
        "line 5: memory._facts_for",
        "line 6: ph._pad_multiple",
    ]
    assert _private_uses("studio.models", ast.parse("from studio.models import _check_vocab")) == []


@pytest.mark.parametrize("module", list(MODULES))
def test_no_module_uses_another_module_s_private_names(module):
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    assert _private_uses(module, tree) == [], f"{module} reaches into private names; make them public"


@pytest.mark.parametrize("module", sorted(set(ALLOWED) | set(FORBIDDEN)))
def test_lower_layers_do_not_import_higher_ones(module):
    imported = set()
    for _line, name, names in _studio_imports(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        imported |= {f"{name}.{n}" for n in names if f"{name}.{n}" in MODULES} if name == "studio" else {name}
    imported.discard(module)
    if module in ALLOWED:
        assert imported <= ALLOWED[module], f"{module} imports {sorted(imported - ALLOWED[module])}"
    if module in FORBIDDEN:
        assert not imported & FORBIDDEN[module], f"{module} imports {sorted(imported & FORBIDDEN[module])}"


def test_the_lower_layers_import_no_heavy_library():
    code = (
        "import sys, studio.methods, studio.precision, studio.adapters, studio.config; "
        "heavy = {'torch', 'transformers', 'peft', 'bitsandbytes'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


STUDIO = ROOT / "studio"


def _module_name(path: Path) -> str:
    parts = path.relative_to(STUDIO.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """Every module a file imports, anywhere in its code, `if TYPE_CHECKING:` blocks aside."""

    def __init__(self, modules: set[str]):
        self.modules, self.found = modules, set[str]()

    def visit_If(self, node: ast.If) -> None:
        for child in node.orelse if _is_type_checking(node.test) else [node.test, *node.body, *node.orelse]:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(a.name for a in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for a in node.names if node.module else []:  # `from studio import x` imports the module studio.x
            sub = f"{node.module}.{a.name}"
            self.found.add(sub if sub in self.modules else str(node.module))


def import_graph() -> dict[str, set[str]]:
    """studio module -> the studio modules it imports."""
    modules = {_module_name(p): p for p in STUDIO.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        visitor = _Imports(set(modules))
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[name] = {m for m in visitor.found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_among_studio_modules():
    graph = import_graph()
    assert "studio.recipe" in graph["studio.training"]  # lazy imports are seen
    found = cycles(graph)
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

"""Every function in studio/ reads on one screen: a body over MAX_LINES lines fails the suite.

A table (one declaration per line, nothing to follow from line to line) may be longer: it is listed in TABLES.
A function being split may be listed in TO_SPLIT until it is; the second test makes
sure a list entry goes when its function becomes short (or goes away).
"""

from __future__ import annotations

import ast
from pathlib import Path

STUDIO = Path(__file__).resolve().parents[1] / "studio"
MAX_LINES = 60

TABLES = {
    "cli.py:build_parser": "the subcommands and their options, one add_argument per line",
}
TO_SPLIT: set[str] = set()  # functions over the limit that are being split (none now)


def body_lines() -> dict[str, int]:
    """'module.py:Class.function' (path relative to studio/) -> lines of its body, docstring included."""
    out = {}

    def visit(node: ast.AST, where: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out[f"{where}:{name}"] = child.end_lineno - child.body[0].lineno + 1
                visit(child, where, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, where, f"{prefix}{child.name}.")

    for path in sorted(STUDIO.rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), path.relative_to(STUDIO).as_posix(), "")
    return out


def test_every_function_fits_on_a_screen():
    long = {name: n for name, n in body_lines().items() if n > MAX_LINES}
    unlisted = {name: n for name, n in long.items() if name not in TABLES and name not in TO_SPLIT}
    assert not unlisted, (
        f"functions over {MAX_LINES} lines (name: lines): {unlisted}; split them into steps with names of their "
        "own, or, for a table, list it in TABLES with why"
    )


def test_the_lists_name_only_long_functions():
    lines = body_lines()
    listed = set(TABLES) | TO_SPLIT
    assert not any(name.startswith("ui/") for name in listed), "the UI's functions have no exceptions"
    short = sorted(name for name in listed if lines.get(name, 0) <= MAX_LINES)
    assert not short, f"{short} are short now (or gone): take them off the list"

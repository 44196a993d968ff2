"""The core stays readable: no function over 60 lines (ruff's C90 caps complexity at 12)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).parents[1] / "advisor"
MAX_FUNCTION_LINES = 60


@pytest.mark.parametrize("module", sorted(p.name for p in CORE.glob("*.py")), ids=str)
def test_no_long_functions(module: str) -> None:
    """Every function and method of a core module is at most 60 lines long."""
    tree = ast.parse((CORE / module).read_text(encoding="utf-8"))
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []

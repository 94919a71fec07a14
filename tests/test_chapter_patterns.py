"""Patterns chapter 2 teaches against must not appear in any chapter's own code.

A ``tf.function`` defined inside another function is a new object, with an empty cache of traces, on every call
of the outer function, so it traces on every call (chapter 2, section 4, shows it with a trace count). The
chapters define their compiled functions once, at the top level of a cell (or build them once and keep them).
"""
import ast
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _is_tf_function(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return ast.unparse(target) in ("tf.function", "function")


def nested_tf_functions(source: str) -> list:
    """Names of functions decorated with ``@tf.function`` that are defined inside another function."""
    try:
        tree = ast.parse(source)
    except SyntaxError:      # a cell magic (%%writefile): not Python to parse
        return []
    found = []
    for outer in ast.walk(tree):
        if isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for node in ast.walk(outer):
                if node is not outer and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                        and any(_is_tf_function(d) for d in node.decorator_list):
                    found.append(node.name)
    return found


def test_the_check_finds_a_nested_tf_function():
    bad = "def solve(f, y0):\n    @tf.function\n    def run(y0):\n        return f(y0)\n    return run(y0)\n"
    good = "@tf.function\ndef run(f, y0):\n    return f(y0)\n\ndef solve(f, y0):\n    return run(f, y0)\n"
    assert nested_tf_functions(bad) == ["run"]
    assert nested_tf_functions(good) == []
    assert nested_tf_functions("def g():\n    @tf.function(jit_compile=True)\n    def h():\n        pass\n") == ["h"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_tf_function_defined_inside_a_function(path):
    nb = nbformat.read(path, as_version=4)
    found = [(i, name) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             for name in nested_tf_functions(cell.source)]
    assert not found, f"@tf.function defined inside a function (traces on every call): cells and names {found}"

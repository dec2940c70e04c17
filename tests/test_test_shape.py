"""The tests prove what they claim (issue 21): every test function asserts, expects a raise or a failure, or
calls a helper of the suite that does; an audit once found tests that passed whenever nothing raised."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
EXPECTING = ("raises", "fail", "warns")  # pytest.raises / pytest.fail / pytest.warns


def _called(node: ast.AST) -> set[str]:
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            names.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


def _checks_itself(node: ast.AST) -> bool:
    """An assert, a pytest.raises/fail/warns, an ``x.assert_...()`` call (pytester's assert_outcomes, mock's
    assert_called_with), or a raise of AssertionError anywhere in the function."""
    for n in ast.walk(node):
        if isinstance(n, ast.Assert):
            return True
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and (
                n.func.attr in EXPECTING or n.func.attr.startswith("assert_")):  # pytester, mock
            return True
        if isinstance(n, ast.Raise) and n.exc is not None and "AssertionError" in ast.unparse(n.exc):
            return True
    return False


def functions(sources: dict[str, str]) -> dict[str, list[tuple[str, ast.FunctionDef]]]:
    """Every function defined in the given files, by name (helpers are called by name across files)."""
    found: dict[str, list] = {}
    for fname, text in sources.items():
        for n in ast.walk(ast.parse(text)):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.setdefault(n.name, []).append((fname, n))
    return found


def unchecked_tests(sources: dict[str, str]) -> list[str]:
    """``file:line name`` of each test function that neither checks anything itself nor calls (by name,
    transitively) a function of the suite that does."""
    defs = functions(sources)
    checking = {name for name, ds in defs.items() if any(_checks_itself(n) for _, n in ds)}
    grew = True
    while grew:
        more = {name for name, ds in defs.items() if name not in checking and
                any(_called(n) & checking for _, n in ds)}
        checking |= more
        grew = bool(more)
    return sorted(f"{f}:{n.lineno} {name}" for name, ds in defs.items() for f, n in ds
                  if name.startswith("test_") and name not in checking)


def test_every_test_function_checks_something():
    sources = {f.name: f.read_text() for f in sorted(TESTS.glob("*.py"))}
    assert unchecked_tests(sources) == []


@pytest.mark.parametrize("body, empty", [
    ("def test_a():\n    compile_it(1)\n", True),
    ("def test_a():\n    assert compile_it(1) == 2\n", False),
    ("def test_a():\n    with pytest.raises(ValueError):\n        compile_it(1)\n", False),
    ("def helper(x):\n    assert x\n\ndef test_a():\n    helper(1)\n", False),
    ("def helper(x):\n    assert x\n\ndef middle(x):\n    helper(x)\n\ndef test_a():\n    middle(1)\n", False),
    ("def test_a():\n    raise Interrupted(130)\n", True),
], ids=["no-check", "assert", "raises", "helper", "helper-of-helper", "raise-not-assertion"])
def test_the_check_tells_an_empty_test_from_a_checking_one(body, empty):
    assert bool(unchecked_tests({"t.py": body})) is empty

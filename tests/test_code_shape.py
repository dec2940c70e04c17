"""The code stays readable (issue 12): ``shmrss run``'s handler is under 40 lines, and no function in shmrss/
is over 80 lines except the compiled hot loops, each of which says why it is one function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 80
RUN_HANDLER_MAX = 39  # "under 40 lines"
ONE_FUNCTION = "# one function:"  # the comment that says why a compiled hot loop is one function


def _functions(source: str):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node, node.end_lineno - node.lineno + 1


def _is_njit(node: ast.FunctionDef) -> bool:
    """Decorated with numba's njit (``@njit``, ``@njit(...)``, ``@numba.njit(...)``, ``@nb.njit``) or with
    ``shmrss.specialise.entry`` (a compiled entry point of a template)."""
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("njit", "entry"):  # shmrss.specialise.entry: a lazy njit entry point
            return True
    return False


def _says_why(node: ast.FunctionDef, lines: list[str]) -> bool:
    return any(ln.strip().startswith(ONE_FUNCTION) for ln in lines[node.lineno - 1: node.end_lineno])


def long_functions(source: str) -> tuple[list[str], list[str]]:
    """(functions over MAX_LINES that are not compiled hot loops, compiled ones over it that do not say why)."""
    lines = source.splitlines()
    plain, unexplained = [], []
    for node, n in _functions(source):
        if n <= MAX_LINES:
            continue
        if not _is_njit(node):
            plain.append(f"{node.name} ({n} lines)")
        elif not _says_why(node, lines):
            unexplained.append(f"{node.name} ({n} lines)")
    return plain, unexplained


def _tree() -> dict[str, str]:
    return {str(f.relative_to(ROOT)): f.read_text() for f in sorted((ROOT / "shmrss").rglob("*.py"))}


def test_no_function_in_shmrss_is_over_80_lines_but_a_compiled_hot_loop():
    over = {path: plain for path, src in _tree().items() if (plain := long_functions(src)[0])}
    assert over == {}, f"split these into named steps: {over}"


def test_each_long_compiled_hot_loop_says_why_it_is_one_function():
    """A compiled loop over 80 lines carries a comment starting '# one function:' (why it is not split)."""
    unexplained = {path: bad for path, src in _tree().items() if (bad := long_functions(src)[1])}
    assert unexplained == {}, f"add a '{ONE_FUNCTION} ...' comment to: {unexplained}"


def test_the_run_handler_is_under_40_lines():
    (n,) = [n for node, n in _functions((ROOT / "shmrss" / "cli.py").read_text()) if node.name == "cmd_run"]
    assert n <= RUN_HANDLER_MAX, f"cmd_run has {n} lines: it should only parse, build the spec, run and output"


def _body(n: int) -> str:
    return "".join(f"    x{i} = {i}\n" for i in range(n))


@pytest.mark.parametrize("source, plain, unexplained", [
    ("def short():\n" + _body(10), [], []),
    ("def long():\n" + _body(90), ["long (91 lines)"], []),
    ("@njit(cache=True)\ndef loop():\n" + _body(90), [], ["loop (91 lines)"]),
    ("@numba.njit\ndef loop():\n    # one function: the per-event path; a call would cost an event\n" + _body(90),
     [], []),
    # the comment elsewhere in the file does not count
    ("# one function: not here\n@njit\ndef loop():\n" + _body(90), [], ["loop (91 lines)"]),
    # the comment does not excuse a function that numba does not compile
    ("def plain():\n    # one function: no\n" + _body(90), ["plain (92 lines)"], []),
])
def test_the_length_check_tells_the_cases_apart(source, plain, unexplained):
    assert long_functions(source) == (plain, unexplained)

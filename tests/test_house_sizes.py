"""The house stays walkable: no module over 450 lines, no class over 250, no function over 80
in the packages people read (issue 21), and at most 12 modules in the root of lth_core/.

Counted from the source as a reader meets it (a def's or class's first line to its last,
docstrings and comments included), so a long piece is split where it is, not hidden."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lth_core", "service", "worker", "store", "cli")
MAX_MODULE, MAX_CLASS, MAX_FUNCTION, MAX_ROOT_MODULES = 450, 250, 80, 12


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _too_long(path: Path) -> list[str]:
    text = path.read_text()
    where = path.relative_to(ROOT)
    found = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE:
        found.append(f"{where}: module of {lines} lines (at most {MAX_MODULE})")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - start + 1
            limit = MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION
            if length > limit:
                what = "class" if isinstance(node, ast.ClassDef) else "function"
                found.append(
                    f"{where}:{node.lineno}: {what} {node.name} of {length} lines (at most {limit})"
                )
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_class_or_function_is_too_long(package: str) -> None:
    found = [msg for p in _modules() if p.parts[len(ROOT.parts)] == package for msg in _too_long(p)]
    assert not found, "\n".join(found)


def test_the_engine_root_holds_at_most_twelve_modules() -> None:
    root = sorted(p.name for p in (ROOT / "lth_core").glob("*.py") if p.name != "__init__.py")
    assert len(root) <= MAX_ROOT_MODULES, root


if __name__ == "__main__":  # a report of every piece over its limit, for planning
    for p in _modules():
        for msg in _too_long(p):
            print(msg)

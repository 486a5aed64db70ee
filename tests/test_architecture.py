"""The package's architecture rules (docs/architecture.md).

The layer order itself is checked by import-linter (`lint-imports`, run by `make test` and
CI from the contract in pyproject.toml); this test runs it too and adds the rule it cannot
express: no module imports a private name (or a private module) of another package.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "leansnn"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(mod: str) -> str:
    """The floor a module belongs to: ``leansnn.convert`` for ``leansnn.convert.x``."""
    parts = mod.split(".")
    return ".".join(parts[:2])


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private_imports() -> list[str]:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        mod = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(mod, path.name == "__init__.py", node)
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                target, names = "", [a.name for a in node.names]
            else:
                continue
            for name in names:
                full = f"{target}.{name}" if target else name
                if not full.startswith("leansnn.") or _package(full) == _package(mod):
                    continue
                inner = full.split(".")[1:]
                if any(p.startswith("_") and p != "__version__" for p in inner):
                    bad.append(f"{mod} (line {node.lineno}) imports {full}")
    return bad


def test_no_module_imports_a_private_name_of_another_package():
    assert _private_imports() == []


@pytest.mark.skipif(shutil.which("lint-imports") is None and not (
    Path(sys.executable).parent / "lint-imports").exists(), reason="import-linter missing")
def test_import_contract_holds():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    root = SRC.parents[1]
    r = subprocess.run([exe, "--no-cache"], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def _long_functions(limit: int = 80) -> list[str]:
    """Functions with more than ``limit`` lines of code (docstring excluded) that do not say
    why in a ``# long:`` comment within their first lines."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body
            first = body[0]
            start = node.lineno
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                n = node.end_lineno - first.end_lineno + (first.lineno - start)
            else:
                n = node.end_lineno - start + 1
            head = "\n".join(lines[start - 1:start + 12])
            if n > limit and "# long:" not in head:
                out.append(f"{path.relative_to(SRC)}:{start} {node.name} ({n} lines)")
    return out


def test_no_long_function_without_a_reason():
    assert _long_functions() == []

"""The floors of the house: imports point only downwards, and the search path stays light.

Read from the source with ast (every import, also those inside functions), so a lazy import that
breaks a rule is caught as surely as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# For each floor (a folder of the package), the floors it may import. cli/ is the top: it may import all.
ALLOWED = {
    "runtime": {"runtime"},
    "evaluation": {"evaluation", "runtime"},
    "api": {"api", "runtime", "distributed"},  # Searcher.index(cluster=...) hands the run to distributed, lazily
    "models": {"models", "runtime", "evaluation"},
    "export": {"export", "models", "runtime"},
    "distributed": {"distributed", "runtime"},
    "web": {"web", "api", "runtime"},
}
# Packages a floor must never import, even lazily: who only searches installs none of them.
FORBIDDEN = {
    "runtime": {"torch", "torchvision", "rich", "typer", "click", "uvicorn", "starlette", "fastapi", "ray"},
    "evaluation": {"torch", "torchvision", "typer", "rich", "ray"},
    "api": {"torch", "torchvision", "rich", "typer", "click", "uvicorn", "starlette", "fastapi", "ray"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted module) of every import in a module of the assoc package."""
    package = list(path.relative_to(ROOT).parts[:-1])  # the package a relative import starts from
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.append((node.lineno, ".".join(["assoc", *base, *(node.module or "").split(".")]).rstrip(".")))
            else:
                found.append((node.lineno, node.module or ""))
    return found


def _modules(floor: str) -> list[Path]:
    return sorted((ROOT / floor).rglob("*.py"))


@pytest.mark.parametrize("floor", sorted(ALLOWED))
def test_imports_point_down(floor: str) -> None:
    wrong = []
    for path in _modules(floor):
        for line, module in _imports(path):
            parts = module.split(".")
            floor_of_import = parts[1] if parts[0] == "assoc" and len(parts) > 1 else None
            if floor_of_import in {*ALLOWED, "cli"} and floor_of_import not in ALLOWED[floor]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
            if parts[0] in FORBIDDEN.get(floor, set()):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_every_floor_is_checked() -> None:
    floors = {p.parent.relative_to(ROOT).parts[0] for p in ROOT.glob("*/__init__.py")}
    assert floors - {"cli", "tests", "bench"} <= set(ALLOWED), floors

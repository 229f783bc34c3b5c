"""The Python floor pyproject claims, proven: a search-only install on that Python indexes and searches.

Slow (a fresh virtual environment, its packages from PyPI, about a minute); CI runs it. The oldest
Python that requires-python admits is found through pyenv or on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_package_folder_is_installed() -> None:
    """A folder of modules left out of pyproject's package list works in an editable install only."""
    declared = set(PYPROJECT["tool"]["setuptools"]["packages"])
    folders = {
        ".".join(["assoc", *p.parent.relative_to(ROOT).parts]).rstrip(".")
        for p in ROOT.rglob("__init__.py")
        if not any(part.startswith(".") or part in ("tests", "bench", "build", "runs", "demo-out")
                   for part in p.relative_to(ROOT).parts[:-1])  # not virtual environments and the like
    }
    assert folders == declared, sorted(folders ^ declared)


def _floor_python() -> Path | None:
    floor = re.fullmatch(r">=\s*(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"].strip())
    assert floor, "requires-python is expected as '>=X.Y'"
    name = f"python{floor[1]}.{floor[2]}"
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for candidate in sorted(pyenv.glob(f"{floor[1]}.{floor[2]}.*/bin/{name}"), reverse=True):
        return candidate
    found = shutil.which(name)
    if found and subprocess.run([found, "-c", "pass"], capture_output=True).returncode == 0:
        return Path(found)
    return None


@pytest.mark.slow
def test_search_only_install_works_on_the_oldest_python_allowed(tmp_path: Path) -> None:
    python = _floor_python()
    if python is None:
        pytest.skip(f"no {PYPROJECT['project']['requires-python']} floor interpreter here (pyenv or PATH)")
    venv = tmp_path / "venv"
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # The declared dependencies, with the small CPU build of ONNX Runtime for the GPU one (same API).
    requirements = [re.sub(r"^onnxruntime-gpu", "onnxruntime", d) for d in PYPROJECT["project"]["dependencies"]]
    subprocess.run([*pip, *requirements], check=True, capture_output=True)
    subprocess.run([*pip, "--no-deps", str(ROOT)], check=True, capture_output=True)
    env = {**os.environ, "ASSOC_GALLERY": str(tmp_path / "gallery"), "PYTHONPATH": ""}
    assoc = str(venv / "bin" / "assoc")
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print('>=%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert version == PYPROJECT["project"]["requires-python"].replace(" ", "")
    photos = str(ROOT / "examples" / "photos")
    indexed = subprocess.run([assoc, "index", photos], env=env, capture_output=True, text=True)
    assert indexed.returncode == 0, indexed.stderr
    found = subprocess.run([assoc, "query", "a dog", "-k", "3", "--json"], env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.count('"path"') == 3

"""The installed `assoc` console script as a real process, and the promise that search never loads torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_support import assert_one_line_error, copy_photos, ok, run_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path, coco_boxes: Path) -> Path:
    folder = tmp_path_factory.mktemp("process") / "library"
    copy_photos(sorted((flickr8k / "images").glob("*.jpg"))[:4], folder)
    copy_photos(sorted((coco_boxes / "images").glob("*.jpg"))[:2], folder)
    return folder


def test_console_script_index_query_localize_info(library: Path, tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    common = ("--gallery", gallery, "--device", "cpu")
    index = run_process("index", library, *common, "--json")
    assert index.returncode == 0 and index.stderr == "", index.stderr
    assert json.loads(index.stdout)["added"] == 6

    query = run_process("query", "people on a street", "-k", "4", *common, "--json")
    hits = json.loads(query.stdout)
    assert query.returncode == 0 and len(hits) == 4 and all(set(h) == {"path", "score"} for h in hits)
    paths = run_process("query", "people on a street", "-k", "4", *common, "--paths-only", "-0")
    assert paths.stdout.split("\0")[:-1] == [h["path"] for h in hits]

    photo = sorted(library.glob("0*.jpg"))[0]  # a COCO photo, at its original size
    out = tmp_path / "overlay.png"
    localized = run_process("localize", photo, "a person", *common, "--json", "--out", out)
    result = json.loads(localized.stdout)
    assert result["image"] == str(photo) and [w["word"] for w in result["words"]] == ["a", "person"]
    assert out.is_file()

    info = json.loads(run_process("info", "--gallery", gallery, "--json").stdout)
    assert info["store"]["photos"] == 6


def test_errors_in_a_real_process(tmp_path: Path, library: Path) -> None:
    missing = run_process("index", tmp_path / "nowhere", "--gallery", tmp_path / "g", "--device", "cpu")
    assert_one_line_error(missing, "no such file or folder")
    no_model = run_process("query", "dog", "--model", tmp_path, "--gallery", tmp_path / "g")
    assert_one_line_error(no_model, "has no config.json")


def test_search_never_imports_torch(library: Path, tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    ok("index", library, "--gallery", gallery, "--device", "cpu")
    photo = sorted(library.iterdir())[0]
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        import assoc.api, assoc.cli, assoc.runtime
        from assoc.cli.app import app
        heavy = ("torch", "ray", "uvicorn", "starlette")
        for package in (assoc.runtime, assoc.api, assoc.cli):
            for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                importlib.import_module(module.name)
        assert not [m for m in heavy if m in sys.modules], "importing the search path loaded " + str(heavy)
        from typer.testing import CliRunner
        runner = CliRunner()
        for args in (
            ["query", "a dog", "--gallery", {str(gallery)!r}, "--device", "cpu", "--explain"],
            ["query", {str(photo)!r}, "--gallery", {str(gallery)!r}, "--device", "cpu"],
            ["localize", {str(photo)!r}, "a dog", "--gallery", {str(gallery)!r}, "--device", "cpu"],
        ):
            result = runner.invoke(app, args, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            assert not [m for m in heavy if m in sys.modules], args
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr

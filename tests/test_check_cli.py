"""`assoc check`, `assoc query --exact` and `assoc index` on a damaged gallery, as subprocesses on the
example photos with the shipped bundle."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "photos"
QUERY = "a dog in the woods"

pytestmark = pytest.mark.slow


def assoc(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from assoc.cli.app import main; sys.argv[0] = 'assoc'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("check")
    photos = root / "photos"
    shutil.copytree(EXAMPLES, photos)
    gallery = root / "g"
    done = assoc("index", str(photos), "--gallery", str(gallery))
    assert done.returncode == 0, done.stderr
    return photos, gallery


def query(gallery: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return assoc("query", QUERY, "--gallery", str(gallery), "--json", "-k", "8", *extra)


def test_exact_and_two_stage_agree_and_check_is_clean(indexed: tuple[Path, Path]) -> None:
    _, gallery = indexed
    default, exact = query(gallery), query(gallery, "--exact")
    assert default.returncode == exact.returncode == 0, default.stderr + exact.stderr
    assert json.loads(default.stdout) == json.loads(exact.stdout) and len(json.loads(exact.stdout)) == 8
    checked = assoc("check", "--gallery", str(gallery), "--json")
    assert checked.returncode == 0, checked.stderr
    clean = {"photos": 8, "damaged": [], "dropped": 0, "cells": None, "cells_rebuilt": False}
    assert json.loads(checked.stdout) == clean


def test_flipped_bits_are_an_error_until_repaired_and_indexed_again(indexed: tuple[Path, Path], tmp_path: Path) -> None:
    photos, original = indexed
    gallery = tmp_path / "g"
    shutil.copytree(original, gallery)
    before = json.loads(query(gallery).stdout)
    victim = before[3]["path"]
    conn = sqlite3.connect(gallery / "gallery.sqlite")
    row, gh, gw = conn.execute("SELECT row, grid_h, grid_w FROM photos WHERE path = ?", (victim,)).fetchone()
    conn.close()
    (shard,) = (gallery / "shards").glob("*.i8")
    data = bytearray(shard.read_bytes())
    size = gh * gw * 256  # int8 codes
    for bit in (17, 9_001, 40_003):
        data[row * size + bit // 8] ^= 1 << (bit % 8)
    shard.write_bytes(bytes(data))

    failed = query(gallery)
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr.count("\n") == 1 and victim in failed.stderr and "Traceback" not in failed.stderr
    found = assoc("check", "--gallery", str(gallery), "--json")
    assert found.returncode == 4, found.stderr
    assert [d["path"] for d in json.loads(found.stdout)["damaged"]] == [victim]
    repaired = assoc("check", "--gallery", str(gallery), "--repair")
    assert repaired.returncode == 0 and "1 dropped" in repaired.stdout, repaired.stderr
    without = json.loads(query(gallery).stdout)
    assert [h["path"] for h in without] == [h["path"] for h in before if h["path"] != victim]
    again = assoc("index", str(photos), "--gallery", str(gallery), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["added"] == 1, again.stderr
    after = json.loads(query(gallery).stdout)
    assert [h["path"] for h in after] == [h["path"] for h in before]
    # The photo encoded again lands in a new shard and is scored in another chunk: the same score up to
    # float32 summation order.
    assert [h["score"] for h in after] == pytest.approx([h["score"] for h in before], abs=1e-6)


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_index_encodes_again_what_a_short_or_missing_shard_lost(
    indexed: tuple[Path, Path], tmp_path: Path, damage: str
) -> None:
    photos, original = indexed
    gallery = tmp_path / "g"
    shutil.copytree(original, gallery)
    before = json.loads(query(gallery).stdout)
    (shard,) = (gallery / "shards").glob("*.i8")
    if damage == "truncate":
        os.truncate(shard, shard.stat().st_size - 1000)
    else:
        shard.unlink()
    failed = query(gallery)
    assert failed.returncode == 2 and "damaged" in failed.stderr and "Traceback" not in failed.stderr
    again = assoc("index", str(photos), "--gallery", str(gallery), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["added"] == (1 if damage == "truncate" else 8)
    after = json.loads(query(gallery).stdout)
    assert [h["path"] for h in after] == [h["path"] for h in before]
    # The photo encoded again lands in a new shard and is scored in another chunk: the same score up to
    # float32 summation order.
    assert [h["score"] for h in after] == pytest.approx([h["score"] for h in before], abs=1e-6)
    assert json.loads(assoc("check", "--gallery", str(gallery), "--json").stdout)["damaged"] == []

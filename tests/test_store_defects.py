"""Defects a review found in the stores, each pinned by a test that failed before its fix."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from assoc.runtime.errors import DatabaseDamagedError
from assoc.runtime.stores.base import PhotoRecord
from assoc.runtime.stores.gallery import Gallery

BUNDLE = "defects-0123456789ab"
D = 32


def _items(n: int, grid: tuple[int, int] = (5, 5)) -> list[tuple[PhotoRecord, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        x = rng.normal(size=(*grid, D)).astype(np.float32)
        x /= np.linalg.norm(x, axis=-1, keepdims=True)
        out.append((PhotoRecord(f"/p/{i:05d}.jpg", 1, 1, f"h{i}", grid, 10, 10), x))
    return out


def test_check_lists_damage_across_many_checksum_chunks(tmp_path: Path) -> None:
    """A shard cut to a third: the rows past its end span several of check's chunks (an empty chunk
    used to stop check, and --repair, on an internal ValueError)."""
    folder = tmp_path / "g"
    with Gallery.open(folder, BUNDLE, D) as gallery:
        gallery.add(_items(8000))
    shard = folder / "shards" / "00001.i8"
    os.truncate(shard, shard.stat().st_size // 3)
    whole = shard.stat().st_size // (5 * 5 * D)  # int8 codes
    with Gallery.open(folder, BUNDLE, D) as gallery:
        report = gallery.check()
        assert report.photos == 8000 and len(report.damaged) == 8000 - whole
        assert all("missing" in d.reason for d in report.damaged)
        assert gallery.check(repair=True).dropped == len(report.damaged)
        assert len(gallery) == whole and gallery.check().damaged == []


def test_check_runs_sqlites_integrity_check(tmp_path: Path) -> None:
    """Two of the photos table's indexes swapped under it: rows still read, the database is damaged."""
    folder = tmp_path / "g"
    with Gallery.open(folder, BUNDLE, D) as gallery:
        gallery.add(_items(50))
    conn = sqlite3.connect(folder / "gallery.sqlite")
    roots = dict(conn.execute("SELECT name, rootpage FROM sqlite_master WHERE name IN ('photos_hash', 'photos_place')"))
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("UPDATE sqlite_master SET rootpage = ? WHERE name = 'photos_hash'", (roots["photos_place"],))
    conn.execute("UPDATE sqlite_master SET rootpage = ? WHERE name = 'photos_place'", (roots["photos_hash"],))
    conn.commit()
    conn.close()
    with Gallery.open(folder, BUNDLE, D) as gallery, pytest.raises(DatabaseDamagedError, match="integrity check"):
        gallery.check()


def _vm_steps(gallery: Gallery, call) -> int:  # noqa: ANN001
    """SQLite virtual-machine steps (in units of 100) that one call costs on the gallery's connection."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    gallery.db.set_progress_handler(count, 100)
    try:
        call()
    finally:
        gallery.db.set_progress_handler(None, 100)
    return steps[0]


def test_find_by_hash_costs_the_same_in_a_small_and_a_large_gallery(tmp_path: Path) -> None:
    """A web app looks up a content hash for every thumbnail: that must not scan every photo."""
    costs = []
    for n in (50, 5000):
        with Gallery.open(tmp_path / f"g{n}", BUNDLE, D) as gallery:
            gallery.add(_items(n, grid=(2, 2)))
            assert gallery.find_by_hash("h7") == "/p/00007.jpg" and gallery.find_by_hash("none") is None
            costs.append(_vm_steps(gallery, lambda g=gallery: g.find_by_hash("h7")))
    assert costs[1] <= costs[0] + 2, costs

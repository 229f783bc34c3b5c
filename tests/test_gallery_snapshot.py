"""What a search reads of the gallery's database (gallery_snapshot.py), on grids of real Flickr8k dev
photos encoded by the shipped bundle and real dev captions: a partitioned gallery's search reads its
probed cells' rows through their index and no other row; a gallery without cells reads every row's
place but only its hits' paths; a photo another process replaces in the middle of a search is left
out, never named wrongly; and a gallery partitioned before the index existed gets it."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
from test_cells import CELLS, Real, assert_exact, opened, real  # noqa: F401 - real: the photos' fixture
from test_two_stage import PHOTOS, bundle, dev, exact_scores, fill, grids, queries, ranked  # noqa: F401

from assoc.runtime.encoding.bundle import FirstStageConfig
from assoc.runtime.search.filters import PhotoFilter
from assoc.runtime.search.pipeline import search, search_plan
from assoc.runtime.search.query import Query
from assoc.runtime.stores.base import PhotoRecord
from assoc.runtime.stores.shard_files import row_runs

NO_CELLS = FirstStageConfig(shortlist=0.25, shortlist_min=0, candidates=30, cells_from=10**9)


def statements(gallery, run) -> list[str]:  # noqa: ANN001 - a Gallery and what to run against it
    """The SQL statements the gallery's connection runs while `run()` runs (SQLite's own trace)."""
    said: list[str] = []
    gallery.db.set_trace_callback(said.append)
    try:
        run()
    finally:
        gallery.db.set_trace_callback(None)
    return said


def test_a_partitioned_gallery_reads_the_probed_cells_rows_through_their_index_and_no_more(
    tmp_path: Path,
    real: Real,  # noqa: F811
) -> None:
    folder = tmp_path / "g"
    fill(folder, real.bundle, real.grids, CELLS).close()
    with opened(folder, real, CELLS) as gallery:
        q = real.queries[0]
        ran = statements(gallery, lambda: assert_exact(search(gallery, q, k=10), real.grids, q))
        assert gallery.snapshot.parts is None  # no statement read every photo's row
        assert not [s for s in ran if "ORDER BY p.shard" in s]
        probes = [s for s in ran if "WHERE cell IN" in s]
        assert len(probes) == 1
        plan = " ".join(str(row) for row in gallery.db.execute("EXPLAIN QUERY PLAN " + probes[0]))
        assert "COVERING INDEX photos_cell" in plan
        # The paths are looked up for the photos scored exactly, not for the photos probed.
        lookups = [s for s in ran if s.startswith("WITH wanted(shard, row)")]
        assert sum(len(re.findall(r"\(\d+, \d+\)", s)) for s in lookups) == CELLS.candidates  # (shard, row) pairs
        plan = " ".join(str(row) for row in gallery.db.execute("EXPLAIN QUERY PLAN " + lookups[0]))
        assert "INDEX photos_place" in plan and "SCAN p" not in plan
        # The cells read are kept until a commit: the same query again reads no cell's rows, ...
        again = statements(gallery, lambda: search(gallery, q, k=10))
        assert not [s for s in again if "WHERE cell IN" in s]
        # An exact search reads every row, with its path.
        truth = ranked(exact_scores(real.grids, q), 10)
        assert [h.path for h in search(gallery, q, k=10, exact=True)] == truth
        assert gallery.snapshot.parts is not None and gallery.snapshot.labelled
        # Another process's commit makes the next search read its cells again, and see the photo it added (a
        # copy of the best photo's grid: the same cell, found beside it).
        with opened(folder, real, CELLS) as other:
            h, w = real.grids.shape[1:3]
            other.add([(PhotoRecord("/dev/new.jpg", 1, 0, "f" * 32, (h, w), 320, 320), real.grids[0])])
        assert truth[0] == "/dev/0000.jpg"
        hits: list = []
        after = statements(gallery, lambda: hits.extend(search(gallery, q, k=10)))
        assert [s for s in after if "WHERE cell IN" in s]
        assert {"/dev/0000.jpg", "/dev/new.jpg"} <= {h.path for h in hits}


def test_a_gallery_without_cells_reads_every_place_and_only_its_hits_paths(tmp_path: Path, real: Real) -> None:  # noqa: F811
    folder = tmp_path / "g"
    fill(folder, real.bundle, real.grids, NO_CELLS).close()
    with opened(folder, real, NO_CELLS) as gallery:
        found = []
        for q in real.queries[:5]:
            found.append([(h.path, h.score) for h in search(gallery, q, k=10)])
            assert_exact(search(gallery, q, k=10), real.grids, q)
            assert gallery.snapshot.parts is not None and not gallery.snapshot.labelled
        # The same photos as a view whose every path was read: a filter that lets all of them through.
        for q, hits in zip(real.queries[:5], found, strict=True):
            assert [(h.path, h.score) for h in search(gallery, q, k=10, where=PhotoFilter.of(folders=["/dev"]))] == hits
            assert gallery.snapshot.labelled


def test_a_photo_another_process_replaces_mid_search_is_left_out_never_misnamed(tmp_path: Path, real: Real) -> None:  # noqa: F811
    folder = tmp_path / "g"
    fill(folder, real.bundle, real.grids, NO_CELLS).close()
    q = Query.of(real.queries[2], real.bundle.config.embed_dim)
    with opened(folder, real, NO_CELLS) as gallery, opened(folder, real, NO_CELLS) as other:
        view = gallery.open_view()
        selection = view.first_stage().candidates(view, q, search_plan(view.photos, gallery.first_stage, 10))
        first = next(iter(view.read_grids(selection))).paths[0]
        # Another process replaces one candidate (a new row) and removes another, between the first
        # stage and the exact stage.
        chosen = [p for chunk in view.read_grids(selection) for p in chunk.paths]
        replaced, removed = chosen[1], chosen[2]
        i = int(replaced[5:9])
        h, w = real.grids.shape[1:3]
        other.add([(PhotoRecord(replaced, 2, 1, f"{i:032x}", (h, w), 320, 320), real.grids[(i + 1) % PHOTOS])])
        other.remove([removed])
        read = {p: g for chunk in view.read_grids(selection) for p, g in zip(chunk.paths, chunk.grids(), strict=True)}
        assert first in read and replaced not in read and removed not in read
        assert len(read) == len(chosen) - 2
        # What was read is what those photos hold: the exact stage scores each under its own name.
        for path, grid in read.items():
            np.testing.assert_array_equal(grid, gallery.get_grid(path).reshape(grid.shape))
        # The next search sees the new snapshot: the replaced photo under its new grid, the removed one gone.
        hits = {h.path for h in search(gallery, real.queries[2], k=PHOTOS, exact=True)}
        assert replaced in hits and removed not in hits


def test_a_gallery_partitioned_before_the_cells_index_gets_it_on_a_writable_open(tmp_path: Path, real: Real) -> None:  # noqa: F811
    folder = tmp_path / "g"
    fill(folder, real.bundle, real.grids, CELLS).close()
    with sqlite3.connect(folder / "gallery.sqlite") as conn:
        conn.execute("DROP INDEX photos_cell")
    conn.close()
    with opened(folder, real, CELLS) as gallery:
        names = {name for (name,) in gallery.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "photos_cell" in names
        assert_exact(search(gallery, real.queries[0], k=10), real.grids, real.queries[0])


def test_the_rows_asked_of_the_disk_ahead_are_asked_as_runs() -> None:
    """What a search asks the operating system to read ahead (shard_files.prefetch_rows): each run of
    consecutive rows once, every row in some run."""
    rows = np.array([0, 1, 2, 7, 9, 10, 40], np.int64)
    assert row_runs(rows) == [(0, 3), (7, 1), (9, 2), (40, 1)]
    assert row_runs(np.arange(5, 900)) == [(5, 895)]
    assert row_runs(np.array([], np.int64)) == []
    scattered = np.unique(np.random.default_rng(0).integers(0, 10_000, 500))
    covered = np.concatenate([np.arange(a, a + n) for a, n in row_runs(scattered)])
    assert np.array_equal(covered, scattered)

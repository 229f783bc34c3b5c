"""The built-in gallery on real SQLite and real shard files, with synthetic unit-normalised grids."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from exact_reference import as_scored, as_stored

from assoc.runtime.errors import GalleryDamagedError, GalleryError, NoGalleryError
from assoc.runtime.scoring.matchmap import score_grids
from assoc.runtime.search.pipeline import search
from assoc.runtime.stores import gallery as gallery_module
from assoc.runtime.stores import gallery_compaction, gallery_files
from assoc.runtime.stores.base import PhotoRecord
from assoc.runtime.stores.gallery import Gallery

DIM = 16
BUNDLE = "test-bundle-0123456789ab"


def grid_for(content_hash: str, grid: tuple[int, int] = (4, 4), dim: int = DIM) -> np.ndarray:
    """A unit-normalised (h, w, D) grid that depends only on the content hash."""
    seed = int.from_bytes(hashlib.sha256(content_hash.encode()).digest()[:8], "little")
    x = np.random.default_rng(seed).normal(size=(*grid, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def stored(content_hash: str, grid: tuple[int, int] = (4, 4)) -> np.ndarray:
    """grid_for's grid as the gallery gives it back (get_grid): its int8 codes dequantized."""
    return as_stored(grid_for(content_hash, grid)[None])[0]


def item(path: str, content_hash: str, grid: tuple[int, int] = (4, 4)) -> tuple[PhotoRecord, np.ndarray]:
    return PhotoRecord(path, 1000, 1, content_hash, grid, 640, 480), grid_for(content_hash, grid)


def brute_force(grids: dict[str, np.ndarray], query: np.ndarray, kind: str) -> list[tuple[str, float]]:
    """MaxSim (and SISA, MIMA) written out plainly over stored grids (as get_grid gives them back) and the
    query's words as the scan multiplies them, ranked best first, ties by path."""
    scored = []
    query = as_scored(query)
    for path, grid in grids.items():
        mm = grid.reshape(-1, grid.shape[-1]).astype(np.float64) @ query.astype(np.float64).T
        score = {"misa": mm.max(axis=0).mean(), "sisa": mm.mean(), "mima": mm.max()}[kind]
        scored.append((path, float(score)))
    return sorted(scored, key=lambda ps: (-ps[1], ps[0]))


def stored_grids(gallery: Gallery) -> dict[str, np.ndarray]:
    return {path: gallery.get_grid(path) for path in gallery.records()}


def assert_search_matches(gallery: Gallery, query: np.ndarray, kind: str = "misa") -> None:
    expected = brute_force(stored_grids(gallery), query, kind)
    hits = search(gallery, query, k=len(expected) + 5, kind=kind)
    # Every photo, each with its own score, in descending order; photos whose scores differ by less than
    # float32 rounding may swap places against the float64 reference.
    truth = dict(expected)
    assert sorted(h.path for h in hits) == sorted(truth)
    np.testing.assert_allclose([h.score for h in hits], [truth[h.path] for h in hits], atol=1e-5)
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-5)


def unit(rows: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def gallery(tmp_path: Path):
    with Gallery.open(tmp_path / "gallery", BUNDLE, DIM) as g:
        yield g


def test_gallery_is_a_store(gallery: Gallery) -> None:
    assert (gallery.bundle_id, gallery.embed_dim, len(gallery)) == (BUNDLE, DIM, 0)
    assert search(gallery, unit(2, 0), k=5) == []


def test_search_equals_brute_force_over_shards_shapes_and_chunks(
    gallery: Gallery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gallery_module, "MAX_SHARD_BYTES", 4 * 4 * DIM * 50)  # 50 rows a shard (a byte a value)
    monkeypatch.setattr(gallery_files, "SEARCH_CHUNK_BYTES", 4 * 4 * DIM * 7)  # 7 photos a chunk
    shapes = [(4, 4), (3, 5), (1, 1)]
    gallery.add([item(f"/photos/{i:04d}.jpg", f"h{i}", shapes[i % 3]) for i in range(240)])
    gallery.remove([f"/photos/{i:04d}.jpg" for i in range(0, 240, 5)])  # holes: rows no longer contiguous
    assert len(gallery) == 192
    assert len(list((gallery.folder / "shards").iterdir())) > 3
    for kind in ("misa", "sisa", "mima"):
        assert_search_matches(gallery, unit(3, 1), kind)

    query = unit(4, 2)
    full = brute_force(stored_grids(gallery), query, "misa")
    top = search(gallery, query, k=7)
    assert [h.path for h in top] == [p for p, _ in full[:7]]
    np.testing.assert_allclose([h.score for h in top], [s for _, s in full[:7]], atol=1e-5)
    floor = (full[20][1] + full[21][1]) / 2
    assert [h.path for h in search(gallery, query, k=1000, min_score=floor)] == [p for p, _ in full[:21]]
    assert search(gallery, query, k=0) == []


def test_grids_round_trip_as_their_int8_codes(gallery: Gallery) -> None:
    rec, grid = item("/a.jpg", "ha", (3, 5))
    gallery.add([(rec, grid)])
    got = gallery.get_grid("/a.jpg")
    assert got.dtype == np.float32 and got.shape == (3, 5, DIM)
    np.testing.assert_array_equal(got, as_stored(grid[None])[0])
    scale = np.abs(grid.astype(np.float16)).max() / 127  # within half a code of the float16 values
    assert np.abs(got - grid.astype(np.float16)).max() <= 0.5 * scale * 1.01
    again = gallery.get_vectors("/a.jpg")
    gallery.add([(PhotoRecord("/b.jpg", 1, 1, "hb", (3, 5), 640, 480), again)])  # a rename reuses the vectors
    np.testing.assert_array_equal(gallery.get_grid("/b.jpg"), got)  # the very codes again
    assert gallery.get_grid("/missing.jpg") is None
    assert gallery.records()["/a.jpg"] == rec


def test_record_is_one_photo_or_none(gallery: Gallery) -> None:
    gallery.add([item(f"/p/{i}.jpg", f"h{i}") for i in range(5)])
    assert gallery.record("/p/3.jpg") == gallery.records()["/p/3.jpg"]
    assert gallery.record("/p/missing.jpg") is None
    gallery.add([item("/p/3.jpg", "new", (2, 3))])
    assert gallery.record("/p/3.jpg") == PhotoRecord("/p/3.jpg", 1000, 1, "new", (2, 3), 640, 480)
    gallery.remove(["/p/3.jpg"])
    assert gallery.record("/p/3.jpg") is None


def test_search_scores_equal_float32_scoring_of_the_stored_values(
    gallery: Gallery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunking and the scan kernel change a score by float32 rounding at most, even for float16's odd
    values (the reference: float32 numpy over the dequantized grids and the quantized query)."""
    monkeypatch.setattr(gallery_files, "SEARCH_CHUNK_BYTES", 4 * 4 * DIM * 5)  # 5 photos a chunk
    items = [item(f"/p/{i:03d}.jpg", f"h{i}", ((4, 4), (2, 3))[i % 2]) for i in range(60)]
    record, grid = items[0]
    grid = grid.copy()
    grid[0, 0, :6] = [3e-7, -3e-7, 6e-5, -0.0, 0.0, 65504.0]  # float16 subnormals, signed zeros, its max
    items[0] = (record, grid)
    gallery.add(items)
    gallery.remove([f"/p/{i:03d}.jpg" for i in range(0, 60, 7)])  # holes
    grids = stored_grids(gallery)
    for kind in ("misa", "sisa", "mima"):
        query = unit(3, 11)
        expected = {}
        for shape in ((4, 4), (2, 3)):
            paths = sorted(p for p, g in grids.items() if g.shape[:2] == shape)
            stacked = np.stack([grids[p].reshape(-1, DIM) for p in paths])
            expected.update(zip(paths, score_grids(stacked, as_scored(query), kind).tolist(), strict=True))
        hits = {h.path: h.score for h in search(gallery, query, k=100, kind=kind)}
        assert sorted(hits) == sorted(expected)
        np.testing.assert_allclose([hits[p] for p in expected], list(expected.values()), rtol=1e-6, atol=1e-6)


def test_equal_scores_are_ordered_by_path(gallery: Gallery) -> None:
    same = grid_for("same")
    paths = ["/z.jpg", "/b.jpg", "/m.jpg", "/a.jpg"]
    gallery.add([(PhotoRecord(p, 1, 1, "same", (4, 4), 1, 1), same) for p in paths])
    gallery.add([item("/best.jpg", "other")])
    query = same.reshape(-1, DIM)[:2]  # the "same" grid holds these exactly: a perfect score
    assert [h.path for h in search(gallery, query, k=3)] == ["/a.jpg", "/b.jpg", "/m.jpg"]
    assert gallery.find_by_hash("same") == "/a.jpg"
    assert gallery.find_by_hash("nothing") is None


def test_upsert_replaces_and_remove_forgets(gallery: Gallery) -> None:
    gallery.add([item("/a.jpg", "v1"), item("/b.jpg", "b")])
    gallery.add([item("/a.jpg", "v2", (2, 2))])
    assert len(gallery) == 2
    assert gallery.records()["/a.jpg"].content_hash == "v2"
    np.testing.assert_array_equal(gallery.get_grid("/a.jpg"), stored("v2", (2, 2)))
    query = grid_for("v2", (2, 2)).reshape(-1, DIM)
    assert search(gallery, query, k=1)[0].path == "/a.jpg"
    assert gallery.find_by_hash("v1") is None

    gallery.remove(["/a.jpg", "/never-indexed.jpg"])
    assert set(gallery.records()) == {"/b.jpg"}
    assert gallery.get_grid("/a.jpg") is None
    assert [h.path for h in search(gallery, query, k=5)] == ["/b.jpg"]


def test_reopen_keeps_records_and_grids(tmp_path: Path) -> None:
    folder = tmp_path / "g"
    with Gallery.open(folder, BUNDLE, DIM) as g:
        g.add([item(f"/p/{i}.jpg", f"h{i}") for i in range(20)])
        records, grids = g.records(), stored_grids(g)
    with Gallery.open(folder, BUNDLE, DIM, create=False) as g:
        assert g.records() == records
        for path, grid in stored_grids(g).items():
            np.testing.assert_array_equal(grid, grids[path])
        assert_search_matches(g, unit(2, 3))
    with Gallery.open(folder) as g:  # no model given: whatever made the gallery
        assert (g.bundle_id, g.embed_dim, len(g)) == (BUNDLE, DIM, 20)
        assert g.size_on_disk() >= 20 * 4 * 4 * DIM * 2


def test_other_bundle_is_refused_with_both_ids(tmp_path: Path) -> None:
    Gallery.open(tmp_path / "g", BUNDLE, DIM).close()
    with pytest.raises(GalleryError) as err:
        Gallery.open(tmp_path / "g", "other-model-abc", DIM)
    message = str(err.value)
    assert BUNDLE in message and "other-model-abc" in message and "--" not in message  # the CLI names flags
    assert (err.value.stored, err.value.wanted) == (BUNDLE, "other-model-abc")
    assert "\n" not in message
    with pytest.raises(GalleryError, match="16-d"):
        Gallery.open(tmp_path / "g", BUNDLE, 32)


def test_folders_that_are_not_galleries_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NoGalleryError, match="no gallery"):
        Gallery.open(tmp_path / "nothing", BUNDLE, DIM, create=False)
    assert not (tmp_path / "nothing").exists()

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"not touched")
    with pytest.raises(GalleryError, match="not empty"):
        Gallery.open(photos, BUNDLE, DIM)
    assert sorted(os.listdir(photos)) == ["holiday.jpg"]

    with pytest.raises(GalleryError, match="is a file"):
        Gallery.open(photos / "holiday.jpg", BUNDLE, DIM)

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "gallery.sqlite").write_bytes(b"SQLite format 2\x00" + os.urandom(4000))
    with pytest.raises(GalleryDamagedError, match="is damaged: its database cannot be read") as err:
        Gallery.open(corrupt, BUNDLE, DIM)
    assert "\n" not in str(err.value)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with sqlite3.connect(foreign / "gallery.sqlite") as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    conn.close()
    with pytest.raises(GalleryError, match="not a readable assoc gallery"):
        Gallery.open(foreign, BUNDLE, DIM)


def test_add_rejects_grids_that_do_not_fit(gallery: Gallery) -> None:
    rec = PhotoRecord("/x.jpg", 1, 1, "x", (4, 4), 1, 1)
    with pytest.raises(ValueError, match="dimension"):
        gallery.add([(rec, np.zeros((4, 4, DIM + 1), np.float32))])
    with pytest.raises(ValueError, match="record says"):
        gallery.add([(rec, np.zeros((2, 2, DIM), np.float32))])
    assert len(gallery) == 0


def shard_bytes(gallery: Gallery) -> int:
    """Bytes of the grid code files (the scale and first-stage files beside them are a few percent more)."""
    return sum(f.stat().st_size for f in (gallery.folder / "shards").glob("*.i8"))


def test_dead_rows_are_compacted_when_they_dominate(gallery: Gallery, monkeypatch: pytest.MonkeyPatch) -> None:
    row = 4 * 4 * DIM  # int8 codes
    monkeypatch.setattr(gallery_module, "MAX_SHARD_BYTES", row * 30)
    monkeypatch.setattr(gallery_compaction, "COMPACT_MIN_BYTES", row * 10)
    gallery.add([item(f"/p/{i:03d}.jpg", f"h{i}") for i in range(90)])
    before = shard_bytes(gallery)
    assert before == 90 * row

    gallery.remove([f"/p/{i:03d}.jpg" for i in range(0, 40)])  # 40 dead of 90: kept
    assert shard_bytes(gallery) == before
    gallery.remove([f"/p/{i:03d}.jpg" for i in range(40, 60)])  # 60 dead of 90: rewritten
    assert shard_bytes(gallery) == 30 * row
    assert_search_matches(gallery, unit(3, 4))
    for path, grid in stored_grids(gallery).items():
        np.testing.assert_array_equal(grid, stored("h" + str(int(path[3:6]))))

    gallery.add([item("/p/010.jpg", "again")])
    gallery.add([item("/p/010.jpg", "again2")])  # one dead row: below the threshold
    assert gallery.compact() == row
    assert shard_bytes(gallery) == 31 * row
    gallery.close()
    with Gallery.open(gallery.folder, BUNDLE, DIM) as g:
        assert len(g) == 31
        assert_search_matches(g, unit(3, 5))


def test_orphans_left_by_a_killed_writer_are_dropped(tmp_path: Path) -> None:
    folder = tmp_path / "g"
    with Gallery.open(folder, BUNDLE, DIM) as g:
        g.add([item(f"/p/{i}.jpg", f"h{i}") for i in range(10)])
        (shard,) = (folder / "shards").glob("*.i8")
    committed = shard.stat().st_size
    with open(shard, "ab") as fh:  # what a writer killed between fsync and commit leaves
        fh.write(os.urandom(3 * 4 * 4 * DIM + 7))
    (folder / "shards" / "00099.i8").write_bytes(os.urandom(5000))
    (folder / "shards" / f"{shard.stem}.f16").write_bytes(os.urandom(500))  # a layout this shard has not
    with Gallery.open(folder, BUNDLE, DIM) as g:
        assert len(g) == 10
        assert_search_matches(g, unit(2, 6))  # readers never look past committed rows
        g.add([item("/p/new.jpg", "new")])
        names = sorted(p.name for p in (folder / "shards").iterdir())
        assert names == [shard.stem + suffix for suffix in (".ci8", ".cscale", ".i8", ".pool", ".scale")]
        assert shard.stat().st_size == committed + 4 * 4 * DIM
        np.testing.assert_array_equal(g.get_grid("/p/new.jpg"), stored("new"))


def test_a_short_shard_is_reported_as_damage(tmp_path: Path) -> None:
    folder = tmp_path / "g"
    with Gallery.open(folder, BUNDLE, DIM) as g:
        g.add([item(f"/p/{i}.jpg", f"h{i}") for i in range(4)])
    (shard,) = (folder / "shards").glob("*.i8")
    os.truncate(shard, 100)
    with Gallery.open(folder, BUNDLE, DIM) as g, pytest.raises(GalleryError, match="damaged"):
        search(g, unit(1, 0))


def test_a_reader_sees_only_committed_rows_and_survives_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gallery_compaction, "COMPACT_MIN_BYTES", 0)
    folder = tmp_path / "g"
    with Gallery.open(folder, BUNDLE, DIM) as writer, Gallery.open(folder, create=False) as reader:
        writer.add([item(f"/p/{i}.jpg", f"h{i}") for i in range(10)])
        query = unit(2, 7)
        assert len(search(reader, query, k=100)) == 10
        writer.add([item(f"/p/{i}.jpg", f"h{i}") for i in range(10, 15)])
        assert len(search(reader, query, k=100)) == 15
        old = sorted(os.listdir(folder / "shards"))
        writer.remove([f"/p/{i}.jpg" for i in range(12)])  # compacts: a new shard file, the old deleted
        assert sorted(os.listdir(folder / "shards")) != old
        assert_search_matches(reader, query)
        assert len(reader) == 3


CHILD = """
import sys
sys.path.insert(0, {tests!r})
from assoc.runtime.stores import gallery as gallery_module
from assoc.runtime.stores import gallery_compaction
from assoc.runtime.stores.gallery import Gallery
from test_gallery import BATCH, BUNDLE, DIM, crash_item

gallery_module.MAX_SHARD_BYTES = 4 * 4 * DIM * 2 * 40
gallery_compaction.COMPACT_MIN_BYTES = 0
g = Gallery.open(sys.argv[1], BUNDLE, DIM)
step = max((int(p[3:9]) for p in g.records()), default=-1) // BATCH + 1
while True:
    ids = range(step * BATCH, (step + 1) * BATCH)
    g.add([crash_item(i, 0) for i in ids])
    print(step, flush=True)
    if step % 3 == 2:
        g.add([crash_item(i, step) for i in ids if i % 3 == 0])
    if step >= 2:
        g.remove([f"/p/{{i:06d}}.jpg" for i in range((step - 2) * BATCH, (step - 1) * BATCH, 2)])
    step += 1
"""
BATCH = 12


def crash_item(i: int, version: int) -> tuple[PhotoRecord, np.ndarray]:
    """Photo i at some version; a few photos have another grid shape."""
    return item(f"/p/{i:06d}.jpg", f"{i}:{version}", (2, 3) if i % 5 == 0 else (4, 4))


def check_consistent(gallery: Gallery) -> None:
    """Every committed row holds exactly the bytes written for it (grid and first-stage vectors, which
    its checksum covers), and search agrees, two-stage and exact."""
    assert gallery.check().damaged == []
    for path, record in gallery.records().items():
        expected = stored(record.content_hash, record.grid)
        np.testing.assert_array_equal(gallery.get_grid(path), expected)
    assert_search_matches(gallery, unit(3, 8))
    query = unit(3, 8)
    assert search(gallery, query, k=5) == search(gallery, query, k=5, exact=True)


def check_hits_while_writing(reader: Gallery) -> None:
    """Searching during writes: every hit scores as one of the versions written for its photo."""
    query = unit(3, 8)
    hits = search(reader, query, k=10**6)
    assert hits and all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    for hit in hits:
        i = int(hit.path[3:9])
        step = i // BATCH
        versions = {0, step} if step % 3 == 2 and i % 3 == 0 else {0}
        grids = {f"v{v}": as_stored(crash_item(i, v)[1][None])[0] for v in versions}
        assert any(abs(hit.score - s) < 1e-5 for _, s in brute_force(grids, query, "misa"))


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_mid_index_leaves_a_gallery_that_opens_answers_and_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "g"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)))
    last_step = -1
    for kill_after in (6, 9, 14):
        child = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True)
        try:
            seen = [int(child.stdout.readline())]
            with Gallery.open(folder, create=False) as reader:  # searches while the child writes
                while len(seen) < kill_after:
                    check_hits_while_writing(reader)
                    seen.append(int(child.stdout.readline()))
            time.sleep(np.random.default_rng(kill_after).uniform(0, 0.05))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        assert seen[0] == last_step + 1  # resumed where the last run stopped
        last_step = seen[-1]
        with Gallery.open(folder, BUNDLE, DIM) as g:
            check_consistent(g)
            present = set(g.records())
            for step in range(last_step + 1):  # odd ids are never removed: every committed add is there
                assert all(f"/p/{i:06d}.jpg" in present for i in range(step * BATCH + 1, (step + 1) * BATCH, 2))
            last_step = max(int(p[3:9]) for p in present) // BATCH

    with Gallery.open(folder, BUNDLE, DIM) as g:
        g.add([crash_item(999_999, 0)])  # the first write of a session drops what the kills left
        check_consistent(g)
        conn = sqlite3.connect(folder / "gallery.sqlite")
        shards = dict(conn.execute("SELECT id, rows * grid_h * grid_w FROM shards").fetchall())
        conn.close()
        on_disk = {int(f.stem): f.stat().st_size for f in (folder / "shards").glob("*.i8")}
        assert on_disk == {i: cells * DIM for i, cells in shards.items()}

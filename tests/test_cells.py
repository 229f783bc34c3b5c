"""The built-in gallery's cells (gallery_cells.py): an inverted file over the pooled vectors, on grids
of real Flickr8k dev photos encoded by the shipped bundle and real dev captions: when a gallery is
partitioned, what a search reads through them, damage to them, a kill in the middle of making them,
and the format 4 -> 5 upgrade that adds them."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from test_two_stage import (  # noqa: F401 - bundle, dev, grids and queries: the real photos' fixtures
    PHOTOS,
    bundle,
    dev,
    exact_scores,
    fill,
    grids,
    queries,
    ranked,
)

from assoc.runtime.encoding.bundle import Bundle, FirstStageConfig
from assoc.runtime.errors import GalleryDamagedError
from assoc.runtime.scoring.first_stage import photo_vectors
from assoc.runtime.search.filters import PhotoFilter
from assoc.runtime.search.pipeline import search
from assoc.runtime.stores import gallery_cells
from assoc.runtime.stores.base import PhotoRecord
from assoc.runtime.stores.gallery import Gallery
from assoc.runtime.stores.gallery_cells import REGROWTH, cell_count, nearest_cells

# Partitioned from 200 photos; a search reads the cells nearest the query up to 80 photos (a third).
CELLS = FirstStageConfig(shortlist=0.25, shortlist_min=0, candidates=30, cells_from=200, probe=80)


class Real(NamedTuple):
    bundle: Bundle
    grids: np.ndarray
    queries: list[np.ndarray]


@pytest.fixture(scope="module")
def real(bundle: Bundle, grids: np.ndarray, queries: list[np.ndarray]) -> Real:  # noqa: F811
    """The shipped bundle, the real photos' grids and the captions' word vectors (test_two_stage's)."""
    return Real(bundle, grids, queries)


def assert_exact(hits: list, photos: np.ndarray, query: np.ndarray) -> None:
    """Every hit's score is its exact score."""
    truth = exact_scores(photos, query)
    np.testing.assert_allclose([h.score for h in hits], [truth[h.path] for h in hits], atol=1e-5)


def opened(folder: Path, real: Real, config: FirstStageConfig) -> Gallery:
    return Gallery.open(folder, real.bundle.bundle_id, real.bundle.config.embed_dim, first_stage=config)


def record(i: int, of: np.ndarray) -> PhotoRecord:
    """Photo i's record, of grids shaped like `of`'s."""
    return PhotoRecord(f"/dev/{i:04d}.jpg", 1, 0, f"{i:032x}", of.shape[1:3], 320, 320)


def stored_cells(folder: Path) -> dict[str, int | None]:
    with sqlite3.connect(folder / "gallery.sqlite") as conn:
        return dict(conn.execute("SELECT path, cell FROM photos"))


def pooled_of(photos: np.ndarray) -> np.ndarray:
    return np.stack([v.pooled for v in photo_vectors(photos, CELLS)])


def test_a_gallery_is_partitioned_once_large_enough_and_again_as_it_grows(tmp_path: Path, real: Real) -> None:
    folder = tmp_path / "g"
    with opened(folder, real, CELLS) as gallery:
        gallery.add([(record(i, real.grids), real.grids[i]) for i in range(199)])
        assert gallery.cells() is None and set(stored_cells(folder).values()) == {None}  # not yet
        gallery.add([(record(199, real.grids), real.grids[199])])
        cells = gallery.cells()
        assert cells is not None and len(cells) == cell_count(200) == 14 and cells.photos == 200
        # Every photo in the cell its pooled vector is nearest, those added later too.
        gallery.add([(record(i, real.grids), real.grids[i]) for i in range(200, PHOTOS)])
        assert np.array_equal(gallery.cells().centroids, cells.centroids)
        placed = stored_cells(folder)
        expected = nearest_cells(pooled_of(real.grids), cells)
        assert [placed[f"/dev/{i:04d}.jpg"] for i in range(PHOTOS)] == expected.tolist()
        assert gallery.check().cells is None
    assert REGROWTH * 200 > PHOTOS  # grown by less than REGROWTH: the same cells
    early = FirstStageConfig(**{**CELLS.__dict__, "cells_from": 50})
    with opened(tmp_path / "early", real, early) as gallery:
        gallery.add([(record(i, real.grids), real.grids[i]) for i in range(50)])
        assert (gallery.cells().photos, len(gallery.cells())) == (50, cell_count(50))
        gallery.add([(record(i, real.grids), real.grids[i]) for i in range(50, REGROWTH * 50 - 1)])
        assert gallery.cells().photos == 50  # not yet grown REGROWTH-fold
        gallery.add([(record(i, real.grids), real.grids[i]) for i in range(REGROWTH * 50 - 1, PHOTOS)])
        assert (gallery.cells().photos, len(gallery.cells())) == (PHOTOS, cell_count(PHOTOS))
        assert gallery.check().cells is None


def test_the_cells_narrow_the_first_stage_and_scores_stay_exact(tmp_path: Path, real: Real) -> None:
    """Reading a third of the photos through the cells keeps most of the exact top 10 and every score
    exact; a probe as large as the gallery answers exactly as a gallery without cells."""
    kept = []
    with fill(tmp_path / "g", real.bundle, real.grids, CELLS) as gallery:
        assert gallery.cells() is not None
        for q in real.queries[:30]:
            truth = exact_scores(real.grids, q)
            hits = search(gallery, q, k=10)
            assert_exact(hits, real.grids, q)
            kept.append(len({h.path for h in hits} & set(ranked(truth, 10))) / 10)
            assert [h.path for h in search(gallery, q, k=10, exact=True)] == ranked(truth, 10)
    assert np.mean(kept) >= 0.8
    everything = FirstStageConfig(shortlist=1.0, shortlist_min=0, candidates=PHOTOS, cells_from=200, probe=PHOTOS)
    with opened(tmp_path / "g", real, everything) as gallery:
        for q in real.queries[:5]:
            assert [h.path for h in search(gallery, q, k=10)] == ranked(exact_scores(real.grids, q), 10)


def test_a_filtered_search_ranks_its_own_photos_without_the_cells(tmp_path: Path, real: Real) -> None:
    """A filter that keeps few photos still gets k of them: the cells, made for every photo, are not
    asked (they could hold none of the filter's)."""
    with opened(tmp_path / "g", real, CELLS) as gallery:
        picked = [i for i in range(PHOTOS) if i % 20 == 0]
        gallery.add(
            [
                (
                    PhotoRecord(
                        f"/{'sel' if i in picked else 'dev'}/{i:04d}.jpg",
                        1,
                        0,
                        f"{i:032x}",
                        real.grids.shape[1:3],
                        9,
                        9,
                    ),
                    g,
                )
                for i, g in enumerate(real.grids)
            ]
        )
        assert gallery.cells() is not None
        hits = search(gallery, real.queries[0], k=10, where=PhotoFilter.of(folders=["/sel"]))
        assert len(hits) == 10 and all(h.path.startswith("/sel/") for h in hits)


def test_damaged_cells_are_said_once_searched_around_and_made_again_by_repair(tmp_path: Path, real: Real) -> None:
    folder = tmp_path / "g"
    with fill(folder, real.bundle, real.grids, CELLS) as gallery:
        before = [[h.path for h in search(gallery, q, k=10)] for q in real.queries[:5]]
    with sqlite3.connect(folder / "gallery.sqlite") as conn:  # one flipped byte in the centroids
        blob = bytearray(conn.execute("SELECT centroids FROM cells").fetchone()[0])
        blob[100] ^= 0x10
        conn.execute("UPDATE cells SET centroids = ?", (bytes(blob),))
    conn.close()
    with opened(folder, real, CELLS) as gallery:
        with pytest.raises(GalleryDamagedError, match="cells"):
            gallery.cells()
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            hits = search(gallery, real.queries[0], k=10)
        assert [str(w.message) for w in said if "cells" in str(w.message)], "damage searched around in silence"
        assert_exact(hits, real.grids, real.queries[0])
        report = gallery.check()
        assert report.cells is not None and "checksum" in report.cells and not report.mended
        repaired = gallery.check(repair=True)
        assert repaired.cells_rebuilt and repaired.mended and repaired.dropped == 0
        assert gallery.check().cells is None
        assert [[h.path for h in search(gallery, q, k=10)] for q in real.queries[:5]] == before  # the same cells again


def test_a_photo_in_an_impossible_or_wrong_cell_is_still_found_and_check_names_it(tmp_path: Path, real: Real) -> None:
    folder = tmp_path / "g"
    q = real.queries[3]
    best = ranked(exact_scores(real.grids, q), 1)[0]
    with fill(folder, real.bundle, real.grids, CELLS) as gallery:
        assert search(gallery, q, k=1)[0].path == best
    with sqlite3.connect(folder / "gallery.sqlite") as conn:
        conn.execute("UPDATE photos SET cell = 99999 WHERE path = ?", (best,))  # no such cell: always read
    conn.close()
    with opened(folder, real, CELLS) as gallery:
        assert search(gallery, q, k=1)[0].path == best
        report = gallery.check()
        assert report.cells == "1 photos are not in the cell their pooled vector falls in"
        assert gallery.check(repair=True).cells_rebuilt and gallery.check().cells is None
        assert stored_cells(folder)[best] == int(
            nearest_cells(pooled_of(real.grids[int(best[5:9])][None]), gallery.cells())[0]
        )


class Killed(BaseException):
    """A kill in the middle of making the cells (BaseException: nothing catches it as an error)."""


def test_a_kill_while_cells_are_made_leaves_the_gallery_as_it_was(
    tmp_path: Path, real: Real, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after half the photos were put in their cells (before the commit): no cells and no
    photo's cell survive, the gallery answers as before, and the next write makes them whole."""
    folder = tmp_path / "g"
    with opened(folder, real, CELLS) as gallery:
        gallery.add([(record(i, real.grids), real.grids[i]) for i in range(199)])
        found_cells = gallery_cells.nearest_cells

        class HalfThenKilled:
            """The cells found, handed to the UPDATEs one by one: killed halfway through them."""

            def __init__(self, values: np.ndarray) -> None:
                self.values = values

            def __iter__(self):  # noqa: ANN204
                yield from self.values[: len(self.values) // 2]
                raise Killed

        monkeypatch.setattr(gallery_cells, "nearest_cells", lambda *a: HalfThenKilled(found_cells(*a)))
        with pytest.raises(Killed):
            gallery.add([(record(199, real.grids), real.grids[199])])
        monkeypatch.setattr(gallery_cells, "nearest_cells", found_cells)
    with opened(folder, real, CELLS) as gallery:
        assert gallery.cells() is None and set(stored_cells(folder).values()) == {None}
        assert len(gallery) == 200  # the photo's own commit came first; only the cells were cut short
        for q in real.queries[:5]:
            truth = exact_scores(real.grids[:200], q)
            hits = search(gallery, q, k=10)
            assert_exact(hits, real.grids[:200], q)
            assert [h.path for h in search(gallery, q, k=10, exact=True)] == ranked(truth, 10)
        gallery.add([(record(200, real.grids), real.grids[200])])  # the next write partitions
        assert gallery.cells() is not None and None not in stored_cells(folder).values()
        assert gallery.check().cells is None


def test_a_format_4_gallery_gets_its_cells_column_on_a_writable_open(tmp_path: Path, real: Real) -> None:
    folder = tmp_path / "g"
    small = FirstStageConfig(**{**CELLS.__dict__, "cells_from": 10**9})  # never partitioned while filled
    with fill(folder, real.bundle, real.grids, small) as gallery:
        before = [[(h.path, h.score) for h in search(gallery, q, k=10)] for q in real.queries[:5]]
    with sqlite3.connect(folder / "gallery.sqlite") as conn:  # as format 4 left it
        conn.execute("ALTER TABLE photos DROP COLUMN cell")
        conn.execute("DROP TABLE cells")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'format_version'")
    conn.close()
    with opened(folder, real, CELLS) as gallery:
        assert [[(h.path, h.score) for h in search(gallery, q, k=10)] for q in real.queries[:5]] == before
        assert gallery.cells() is None  # made by the next write (or `partition`), not by opening
        assert gallery.partition() == cell_count(PHOTOS)
        assert gallery.check().cells is None
    with sqlite3.connect(folder / "gallery.sqlite") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone() == ("5",)
    conn.close()

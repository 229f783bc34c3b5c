"""The built-in gallery's cells: an inverted file over the pooled vectors, so that a large gallery's
first stage reads a fixed number of photos instead of every one.

    cells table    one row: the gallery size when the cells were made, their centroids (float16,
                   (cells, D)) and the sha256 of those bytes
    photos.cell    the cell a photo's pooled vector falls in (the centroid it is nearest), or NULL
    photos_cell    an index on (cell, shard, row, checksum): a probe reads its cells' rows from it alone

A gallery is partitioned (`partition`) once it holds `first_stage.cells_from` photos, and again each
time it has grown REGROWTH-fold since: a spherical k-means of a sample of its pooled vectors into
about sqrt(photos) cells, then every photo's cell, all in one transaction (a kill leaves the gallery
as it was). Photos added later are put in their cell in the transaction that commits their rows.

A search ranks the cells against the query's sentence vector and reads the photos of the nearest
cells until it holds `first_stage.probe` of them (`nearest_first`; gallery_snapshot.probed_parts reads
their rows through the index, not the whole photos table), plus every photo whose cell is
missing or makes no sense: what the cells cannot place is always scored, so damage there costs time,
never a photo. bench/ann_candidates.py measured faiss, usearch and hnswlib for this stage; all of
them load an altered index file without a word, and the inverted file is the structure that kept the
most of the exact pooled ranking at a fixed shortlist. Kept here, it needs no second copy of the
vectors, no file outside the gallery's write order, and its centroids are checked against their
sha256 on every load: altered ones are a GalleryDamagedError, which a search reports in one line
before it scans every pooled vector instead, and which `check --repair` mends by partitioning again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..errors import GalleryDamagedError
from .catalogue import CELL_INDEX
from .gallery_files import GalleryFiles
from .shard_files import DTYPE, POOL_SUFFIX

REGROWTH = 4  # a gallery is partitioned again once it holds this many times the photos its cells were made for
SAMPLE_PER_CELL = 64  # pooled vectors the k-means sees per cell (all of them in a smaller gallery)
KMEANS_ROUNDS = 8
ASSIGN_ROWS = 65_536  # pooled vectors assigned to cells at once (bounds the (rows, cells) scores)


@dataclass(frozen=True)
class Cells:
    photos: int  # the gallery's size when they were made
    centroids: np.ndarray  # (cells, D) float32 unit vectors

    def __len__(self) -> int:
        return len(self.centroids)


def cell_count(photos: int) -> int:
    """Cells for a gallery of this size: about sqrt(photos) of them, so a cell holds about as many."""
    return max(1, round(photos**0.5))


def load_cells(files: GalleryFiles) -> Cells | None:
    """The gallery's cells, or None before it was partitioned (or before format 5 added them)."""
    if files.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cells'").fetchone() is None:
        return None
    row = files.db.execute("SELECT photos, centroids, sha256 FROM cells").fetchone()
    if row is None:
        return None
    photos, blob, digest = row
    if not isinstance(blob, bytes) or hashlib.sha256(blob).hexdigest() != digest or len(blob) % (2 * files.embed_dim):
        detail = "its cells (the first stage's inverted file) do not match their checksum"
        raise GalleryDamagedError(files.folder, detail)
    centroids = np.frombuffer(blob, DTYPE).reshape(-1, files.embed_dim).astype(np.float32)
    return Cells(int(photos), centroids)


def lacks_cell_index(files: GalleryFiles) -> bool:
    """Whether the gallery is partitioned but has no photos_cell index (partitioned before it existed)."""
    found = files.db.execute("SELECT name FROM sqlite_master WHERE name IN ('cells', 'photos_cell')")
    names = {name for (name,) in found}
    return names == {"cells"} and files.db.execute("SELECT 1 FROM cells").fetchone() is not None


def nearest_cells(pooled: np.ndarray, cells: Cells) -> np.ndarray:
    """(n, D) pooled vectors -> the cell each falls in (int64); -1 for a vector that is not all numbers."""
    x = np.asarray(pooled, np.float32)
    out = np.empty(len(x), np.int64)
    for start in range(0, len(x), ASSIGN_ROWS):
        chunk = x[start : start + ASSIGN_ROWS]
        with np.errstate(invalid="ignore", over="ignore"):
            out[start : start + len(chunk)] = (chunk @ cells.centroids.T).argmax(axis=1)
        out[start : start + len(chunk)][~np.isfinite(chunk).all(axis=1)] = -1
    return out


def make_centroids(pooled: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """A spherical k-means of unit vectors (n, D) into `count` cells, started from `count` of them drawn
    at random (seeded: the same vectors give the same cells) -> (count, D) float32 unit vectors. A cell
    that loses every member keeps its centroid."""
    x = np.asarray(pooled, np.float32)
    x = x[np.isfinite(x).all(axis=1)]
    rng = np.random.default_rng(seed)
    centroids = x[rng.choice(len(x), size=min(count, len(x)), replace=False)].copy()
    for _ in range(KMEANS_ROUNDS):
        nearest = (x @ centroids.T).argmax(axis=1)
        order = np.argsort(nearest, kind="stable")
        members, starts = np.unique(nearest[order], return_index=True)
        sums = np.add.reduceat(x[order], starts, axis=0)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids[members] = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centroids[members])
    return centroids


def partition(files: GalleryFiles) -> Cells:
    """Inside writing: make the gallery's cells from its live photos and put every photo in its cell."""
    live = files.db.execute("SELECT shard, row FROM photos ORDER BY shard, row").fetchall()
    places = np.array(live, np.int64).reshape(-1, 2)
    files.db.execute("DELETE FROM cells")
    files.db.execute(CELL_INDEX)
    if not len(places):
        return Cells(0, np.zeros((0, files.embed_dim), np.float32))
    pooled = _pooled_rows(files, places)
    count = cell_count(len(places))
    sample = np.random.default_rng(0).permutation(len(places))[: SAMPLE_PER_CELL * count]
    centroids = make_centroids(pooled[np.sort(sample)], count)
    blob = centroids.astype(DTYPE).tobytes()
    cells = Cells(len(places), np.frombuffer(blob, DTYPE).reshape(centroids.shape).astype(np.float32))
    assigned = nearest_cells(pooled, cells)
    files.db.executemany(
        "UPDATE photos SET cell = ? WHERE shard = ? AND row = ?",
        ((None if c < 0 else int(c), int(s), int(r)) for c, (s, r) in zip(assigned, places, strict=True)),
    )
    files.db.execute(
        "INSERT INTO cells (photos, centroids, sha256) VALUES (?, ?, ?)",
        (len(places), blob, hashlib.sha256(blob).hexdigest()),
    )
    return cells


def needs_partition(photos: int, cells: Cells | None, cells_from: int) -> bool:
    """Whether a gallery of this many photos should be partitioned (again)."""
    if photos < max(1, cells_from):
        return False
    return cells is None or photos >= REGROWTH * cells.photos


def _pooled_rows(files: GalleryFiles, places: np.ndarray) -> np.ndarray:
    """The pooled vectors (n, D) float16 of these (shard, row) places, in their order (sorted by shard)."""
    out = np.empty((len(places), files.embed_dim), DTYPE)
    shards = {s.id: s for s in files.shards()}
    bounds = np.flatnonzero(np.diff(places[:, 0])) + 1
    for chunk in np.split(np.arange(len(places)), bounds):
        if not len(chunk):
            continue
        shard = shards[int(places[chunk[0], 0])]
        path = files.layer_path(shard.id, POOL_SUFFIX)
        mm = np.memmap(path, dtype=DTYPE, mode="r", shape=(shard.rows, 1, files.embed_dim))
        out[chunk] = mm[places[chunk, 1], 0]
        del mm
    return out


def cell_sizes(files: GalleryFiles, cells: Cells) -> np.ndarray:
    """Photos in each cell, through the cells' index, and last those without a valid cell: (cells + 1,)."""
    sizes = np.zeros(len(cells) + 1, np.int64)
    for cell, count in files.db.execute("SELECT cell, COUNT(*) FROM photos GROUP BY cell"):
        sizes[cell if cell is not None and 0 <= cell < len(cells) else len(cells)] += count
    return sizes


def nearest_first(cells: Cells, sizes: np.ndarray, query_pooled: np.ndarray, probe: int) -> np.ndarray:
    """The cells nearest the query's sentence vector, nearest first, until they hold at least `probe`
    photos (sizes: cell_sizes). A search reads these and every photo without a valid cell."""
    order = np.argsort(-(cells.centroids @ np.asarray(query_pooled, np.float32)), kind="stable")
    reached = np.searchsorted(np.cumsum(sizes[order]), probe)  # the first cell at which `probe` is reached
    return order[: reached + 1]

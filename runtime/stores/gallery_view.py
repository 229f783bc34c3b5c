"""What one search reads of the built-in gallery: a snapshot of its shards and its own first stage.

GalleryView implements assoc.runtime.search.pipeline.StoreView over the memory-mapped shard files of
one committed snapshot (gallery_snapshot.py: read as late and as little as the search allows); it
reads the folder through the gallery's GalleryFiles (gallery_files.py). A selection is, per part of
a shard, the sorted rows of the photos picked. The grids of a selection are asked of the disk ahead
of their scoring (PREFETCH_BYTES), so that scattered candidates are read at once. Its first stage
(PooledCentroids) takes, in a gallery partitioned into cells (gallery_cells.py), the photos of the
cells nearest the query (the plan's probe; else every photo), ranks them by their pooled vectors,
keeps the plan's shortlist, ranks those by MaxSim against their int8 centroids (each centroid's
scale applied before the max over centroids) and keeps the plan's candidates.

Every row whose grid is read is verified against its checksum first: a mismatch is a
GalleryDamagedError naming the photo. A shard not yet upgraded to format 4 holds float16 grids and
centroids, which are quantized as they are read (scoring/quantize.py, as the upgrade would store
them): its photos score and rank as they will once it is upgraded.
A view opened with a filter (assoc.runtime.search.filters) holds only the rows that meet it: its
`everything` is those rows, and its first stage ranks among them alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import DatabaseDamagedError, GalleryDamagedError
from ..scoring.quantize import quantize_vectors
from ..search.filters import PhotoFilter
from ..search.pipeline import SearchPlan
from ..search.query import Query
from ..search.rerank import GridChunk, SearchHit, scan_kernel
from .catalogue import sql_path, translated_errors
from .gallery_files import GalleryFiles
from .gallery_snapshot import Part, Snapshot, layer_maps, parts, paths_at, probed_parts
from .shard_files import (
    CENTROID_CODES_SUFFIX,
    CENTROID_SCALES_SUFFIX,
    CENTROIDS_SUFFIX,
    CODES_SUFFIX,
    GRID_SUFFIX,
    LAYOUT_FLOAT16,
    POOL_SUFFIX,
    SCALES_SUFFIX,
    SEARCH_CHUNK_BYTES,
    gather_rows,
    prefetch_rows,
)

PREFETCH_BYTES = 32 << 20  # grid bytes a search asks the disk for ahead of the chunk it scores
Selection = list[tuple[Part, np.ndarray]]  # per part, the rows picked (sorted, a subset of part.rows)


class GalleryView:
    def __init__(self, files: GalleryFiles, snapshot: Snapshot, where: PhotoFilter | None = None) -> None:
        """A view of the snapshot (gallery_snapshot.current), of the photos that meet `where`; its
        cells are left out where they are damaged (Gallery.open_view says so)."""
        self.files = files
        self.snapshot = snapshot
        if not snapshot.mapped:  # once a snapshot: a file deleted later stays readable through its map
            for shard in snapshot.shards.values():
                layer_maps(files, shard)
            snapshot.mapped = True
        self._filtered: Selection | None = None
        self._read: dict[str, tuple[int, int]] = {}  # where read_grids read each path it looked up late
        if where:
            self._filtered = [
                (part, part.rows[where.mask(labels.paths, labels.types, labels.taken)])
                for part in parts(files, labels=True)
                if (labels := part.labels) is not None
            ]
            self.photos = sum(len(rows) for _, rows in self._filtered)
        else:
            self.photos = snapshot.photos
        # A filtered view ranks its own rows by their pooled vectors: the cells were made for all of them.
        self.cells = snapshot.usable_cells if not where else None

    def everything(self) -> Selection:
        return self._filtered if self._filtered is not None else self._all(labels=True)

    def first_stage(self) -> PooledCentroids:
        return PooledCentroids()

    def read_grids(self, selection: Selection) -> Iterator[GridChunk]:
        with translated_errors(self.files.folder):
            pieces = []  # (part, indices into part.rows): one chunk each
            for part, rows in selection:
                where = np.searchsorted(part.rows, rows)  # rows are sorted, as part.rows are
                step = self.files.step(part.shard.grid, part.shard.layout)
                pieces += [(part, where[start : start + step]) for start in range(0, len(rows), step)]
            # Paths not read with the parts are looked up now, all at once: such a selection is a first
            # stage's candidates. None where another process has committed since (gallery_snapshot).
            unlabelled = [(part, chunk) for part, chunk in pieces if part.labels is None]
            looked_up = iter(paths_at(self.files, unlabelled)) if unlabelled else iter(())
            for part, chunk in _asked_ahead(self.files, pieces):
                if part.labels is not None:
                    paths = [part.labels.paths[i] for i in chunk]
                else:
                    found = next(looked_up)
                    if None in found and not self._committed_since():
                        row = int(part.rows[chunk[found.index(None)]])
                        detail = f"its database disagrees with itself about shard {part.shard.id} row {row}"
                        raise DatabaseDamagedError(self.files.folder, detail)
                    chunk = chunk[[path is not None for path in found]]
                    paths = [path for path in found if path is not None]
                    places = part.rows[chunk].tolist()
                    self._read.update((path, (part.shard.id, row)) for path, row in zip(paths, places, strict=True))
                layers = _mapped(self.files, part)
                blocks = {suffix: gather_rows(mm, part.rows[chunk]) for suffix, mm in layers.items()}
                self.files.verify(list(blocks.values()), part.sums[chunk], paths)
                pooled = blocks[POOL_SUFFIX][:, 0]
                if part.shard.layout == LAYOUT_FLOAT16:
                    yield GridChunk.of_grids(paths, blocks[GRID_SUFFIX], pooled)
                else:
                    yield GridChunk(paths, blocks[CODES_SUFFIX], blocks[SCALES_SUFFIX][:, 0], pooled)

    def confirm(self, hits: list[SearchHit]) -> None:
        """Find each hit's row again through the path index, at the place the scan read it from.

        The scan reads paths from the table (or, looked up late, through the place index) and places
        through another index; SQLite checks neither against the other, so a flipped bit in a path,
        or in an index entry, would otherwise pair a photo with another's name or place in silence.
        """
        db = self.files.db
        labelled = {part.shard.id: part for part in self.snapshot.parts or () if part.labels is not None}
        with translated_errors(self.files.folder):
            for hit in hits:
                place = db.execute("SELECT shard, row FROM photos WHERE path = ?", (sql_path(hit.path),)).fetchone()
                if hit.path in self._read:
                    agrees = place is not None and tuple(place) == self._read[hit.path]
                else:
                    part = labelled.get(place[0]) if place is not None else None
                    i = int(np.searchsorted(part.rows, place[1])) if part is not None else 0
                    agrees = part is not None and i < len(part.rows) and part.rows[i] == place[1]
                    agrees = agrees and part.labels is not None and part.labels.paths[i] == hit.path
                if not agrees:
                    if self._committed_since():
                        return  # another process committed since the snapshot: that explains it
                    detail = f"its database disagrees with itself about {hit.path}"
                    raise DatabaseDamagedError(self.files.folder, detail)

    def probed(self, query_pooled: np.ndarray, probe: int) -> Selection:
        """The rows of the cells nearest the query (gallery_snapshot.probed_parts), each whole."""
        return [(part, part.rows) for part in probed_parts(self.files, self.snapshot, query_pooled, probe)]

    def unlabelled(self) -> Selection:
        """Every photo of the view, without reading paths where no filter needed them."""
        return self._filtered if self._filtered is not None else self._all(labels=False)

    def _committed_since(self) -> bool:
        return self.files.db.execute("PRAGMA data_version").fetchone()[0] != self.snapshot.version

    def _all(self, labels: bool) -> Selection:
        return [(part, part.rows) for part in parts(self.files, labels=labels)]


class PooledCentroids:
    """The gallery's first stage: pooled vectors to the shortlist, centroids to the candidates (or, for a
    score that is the global cosine alone, pooled vectors straight to the candidates)."""

    def candidates(self, view: GalleryView, query: Query, plan: SearchPlan) -> Selection:
        if view.cells is not None and view.photos > plan.probe:
            picks = view.probed(query.pooled, plan.probe)
        else:
            picks = view.unlabelled()
        if query.global_only:
            return _narrow(view, picks, plan.candidates, query, pooled=True)
        picks = _narrow(view, picks, plan.shortlist, query, pooled=True)
        return _narrow(view, picks, plan.candidates, query, pooled=False)


def _narrow(view: GalleryView, picks: Selection, keep: int, query: Query, pooled: bool) -> Selection:
    """The `keep` picked rows whose first-stage vectors score best against the query, per part: their
    pooled vectors (float16) against its sentence vector, or their centroids (int8 codes with a scale
    per centroid) against its words' codes."""
    if sum(len(rows) for _, rows in picks) <= keep:
        return picks
    estimates = []
    with translated_errors(view.files.folder):
        for part, rows in picks:
            layers = _mapped(view.files, part)
            if pooled:
                estimates += _pooled_estimates(layers[POOL_SUFFIX], rows, query)
            elif part.shard.layout == LAYOUT_FLOAT16:
                estimates += _centroid_estimates(layers[CENTROIDS_SUFFIX], None, rows, query)
            else:
                estimates += _centroid_estimates(
                    layers[CENTROID_CODES_SUFFIX], layers[CENTROID_SCALES_SUFFIX], rows, query
                )
    flat = np.concatenate(estimates)
    flat[~np.isfinite(flat)] = np.inf  # damaged first-stage values: score the photo, which verifies it
    best = np.zeros(len(flat), bool)
    best[np.argpartition(-flat, keep - 1)[:keep]] = True
    bounds = np.cumsum([0] + [len(rows) for _, rows in picks])
    return [(part, rows[best[a:b]]) for (part, rows), a, b in zip(picks, bounds[:-1], bounds[1:], strict=True)]


def _mapped(files: GalleryFiles, part: Part) -> dict[str, np.ndarray]:
    """The maps of a part's shard files. The view mapped every shard of its snapshot as it opened; a
    shard it meets later was made by a commit since, and could be gone already."""
    try:
        return layer_maps(files, part.shard)
    except FileNotFoundError as exc:
        detail = f"{Path(exc.filename).name} is missing (if another process was compacting it, search again)"
        raise GalleryDamagedError(files.folder, detail) from None


def _asked_ahead(files: GalleryFiles, pieces: list[tuple[Part, np.ndarray]]) -> Iterator[tuple[Part, np.ndarray]]:
    """The pieces in turn, each once the grid rows of the pieces up to PREFETCH_BYTES past it have been
    asked of the operating system (shard_files.prefetch_rows): the disk then reads many photos at once.
    Only the grid's file is asked for: a photo's other rows are small, and the first stage read most."""
    asked, ahead = 0, 0
    for i, (part, chunk) in enumerate(pieces):
        while asked < len(pieces) and (asked <= i or ahead < PREFETCH_BYTES):
            later, rows = pieces[asked]
            grid = files.layers(later.shard.grid, later.shard.layout)[0]
            prefetch_rows(files.layer_path(later.shard.id, grid.suffix), later.rows[rows], grid.row_bytes)
            ahead += len(rows) * grid.row_bytes
            asked += 1
        yield part, chunk
        ahead -= len(chunk) * files.row_bytes(part.shard.grid, part.shard.layout)


def _pooled_estimates(mm: np.ndarray, rows: np.ndarray, query: Query) -> list[np.ndarray]:
    """Cosines of the rows' pooled vectors (n, 1, D) float16 with the query's sentence vector."""
    kernel, sentence = scan_kernel(query.kind, layout="float16"), query.pooled[:, None]  # a one-vector query
    step = max(1, SEARCH_CHUNK_BYTES // mm[0].nbytes)
    return [kernel.scores(gather_rows(mm, rows[i : i + step]), sentence) for i in range(0, len(rows), step)]


def _centroid_estimates(mm: np.ndarray, scales: np.ndarray | None, rows: np.ndarray, query: Query) -> list[np.ndarray]:
    """MaxSim of the query's words against the rows' centroids: codes (n, C, D) and scales (n, C), or
    float16 centroids (scales None) quantized here as an upgraded shard stores them."""
    kernel = scan_kernel(query.kind, layout="int8-vectors")
    step = max(1, SEARCH_CHUNK_BYTES // mm[0].nbytes)
    out = []
    for i in range(0, len(rows), step):
        picked = rows[i : i + step]
        codes, picked_scales = (
            quantize_vectors(gather_rows(mm, picked))
            if scales is None
            else (gather_rows(mm, picked), gather_rows(scales, picked))
        )
        out.append(kernel.scores(codes, query.codes, scales=picked_scales, query_scales=query.word_scales))
    return out

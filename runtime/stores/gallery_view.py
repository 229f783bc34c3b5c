"""What one search reads of the built-in gallery: a snapshot of its shards and its own first stage.

GalleryView implements assoc.runtime.search.pipeline.StoreView over the memory-mapped shard files of
one committed snapshot, which Gallery loads; it reads the folder through the gallery's GalleryFiles
(gallery_files.py). A selection is, per shard, the sorted rows of the photos picked. Its first stage
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

import numpy as np

from ..errors import DatabaseDamagedError
from ..scoring.quantize import quantize_vectors
from ..search.filters import PhotoFilter
from ..search.pipeline import SearchPlan
from ..search.query import Query
from ..search.rerank import GridChunk, SearchHit, scan_kernel
from .catalogue import sql_path, translated_errors
from .gallery_cells import Cells, probed_rows
from .gallery_files import GalleryFiles, Part
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
)

Selection = list[np.ndarray]  # per part of the view, the rows picked (sorted, a subset of part.rows)


class GalleryView:
    def __init__(
        self,
        files: GalleryFiles,
        parts: list[Part],
        maps: list[dict[str, np.memmap]],
        where: PhotoFilter | None = None,
        cells: Cells | None = None,
    ) -> None:
        self.files = files
        self.parts = parts
        self.maps = maps
        if where:
            self.rows = [part.rows[where.mask(part.paths, part.types, part.taken)] for part in parts]
        else:
            self.rows = [part.rows for part in parts]
        self.photos = sum(len(rows) for rows in self.rows)
        # A filtered view ranks its own rows by their pooled vectors: the cells were made for all of them.
        self.cells = cells if cells is not None and len(cells) and not where else None

    def everything(self) -> Selection:
        return self.rows

    def first_stage(self) -> PooledCentroids:
        return PooledCentroids()

    def read_grids(self, selection: Selection) -> Iterator[GridChunk]:
        with translated_errors(self.files.folder):
            for part, layers, rows in zip(self.parts, self.maps, selection, strict=True):
                where = np.searchsorted(part.rows, rows)  # rows are sorted, as part.rows are
                step = self.files.step(part.grid, part.layout)
                for start in range(0, len(rows), step):
                    chunk = where[start : start + step]
                    paths = [part.paths[i] for i in chunk]
                    blocks = {suffix: gather_rows(mm, part.rows[chunk]) for suffix, mm in layers.items()}
                    self.files.verify(list(blocks.values()), part.sums[chunk], paths)
                    pooled = blocks[POOL_SUFFIX][:, 0]
                    if part.layout == LAYOUT_FLOAT16:
                        yield GridChunk.of_grids(paths, blocks[GRID_SUFFIX], pooled)
                    else:
                        yield GridChunk(paths, blocks[CODES_SUFFIX], blocks[SCALES_SUFFIX][:, 0], pooled)

    def confirm(self, hits: list[SearchHit]) -> None:
        """Find each hit's row again through the path index, at the place the scan read it from.

        The scan reads paths from the table and places through another index; SQLite checks neither
        against the other, so a flipped bit in a path, or in an index entry, would otherwise pair a
        photo with another's name or place in silence.
        """
        db = self.files.db
        by_shard = {part.shard: part for part in self.parts}
        with translated_errors(self.files.folder):
            for hit in hits:
                place = db.execute("SELECT shard, row FROM photos WHERE path = ?", (sql_path(hit.path),)).fetchone()
                part = by_shard.get(place[0]) if place is not None else None
                i = int(np.searchsorted(part.rows, place[1])) if part is not None else 0
                if part is None or i >= len(part.rows) or part.rows[i] != place[1] or part.paths[i] != hit.path:
                    if db.execute("PRAGMA data_version").fetchone()[0] != self.files.data_version:
                        return  # another process committed since the snapshot: that explains it
                    detail = f"its database disagrees with itself about {hit.path}"
                    raise DatabaseDamagedError(self.files.folder, detail)


class PooledCentroids:
    """The gallery's first stage: pooled vectors to the shortlist, centroids to the candidates (or, for a
    score that is the global cosine alone, pooled vectors straight to the candidates)."""

    def candidates(self, view: GalleryView, query: Query, plan: SearchPlan) -> Selection:
        picks = view.everything()
        if view.cells is not None and view.photos > plan.probe:
            picks = probed_rows(view.parts, view.cells, query.pooled, plan.probe)
        if query.global_only:
            return _narrow(view, picks, plan.candidates, query, pooled=True)
        picks = _narrow(view, picks, plan.shortlist, query, pooled=True)
        return _narrow(view, picks, plan.candidates, query, pooled=False)


def _narrow(view: GalleryView, picks: Selection, keep: int, query: Query, pooled: bool) -> Selection:
    """The `keep` picked rows whose first-stage vectors score best against the query, per part: their
    pooled vectors (float16) against its sentence vector, or their centroids (int8 codes with a scale
    per centroid) against its words' codes."""
    if sum(len(rows) for rows in picks) <= keep:
        return picks
    estimates = []
    with translated_errors(view.files.folder):
        for part, layers, rows in zip(view.parts, view.maps, picks, strict=True):
            if pooled:
                estimates += _pooled_estimates(layers[POOL_SUFFIX], rows, query)
            elif part.layout == LAYOUT_FLOAT16:
                estimates += _centroid_estimates(layers[CENTROIDS_SUFFIX], None, rows, query)
            else:
                estimates += _centroid_estimates(
                    layers[CENTROID_CODES_SUFFIX], layers[CENTROID_SCALES_SUFFIX], rows, query
                )
    flat = np.concatenate(estimates)
    flat[~np.isfinite(flat)] = np.inf  # damaged first-stage values: score the photo, which verifies it
    best = np.zeros(len(flat), bool)
    best[np.argpartition(-flat, keep - 1)[:keep]] = True
    bounds = np.cumsum([0] + [len(rows) for rows in picks])
    return [rows[best[a:b]] for rows, a, b in zip(picks, bounds[:-1], bounds[1:], strict=True)]


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

"""The store interface: what the CLI and the indexer know of a gallery, whatever holds it.

Two implementations: the built-in on-disk gallery (assoc.runtime.stores.gallery) and Qdrant
(assoc.runtime.stores.qdrant). Neither ranks: assoc.runtime.search.pipeline searches either through
its open_view(), with one shared rerank, so both give the same scores and the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..encoding.bundle import FirstStageConfig
from ..scoring.first_stage import PhotoVectors, photo_vectors
from ..search.filters import PhotoFilter
from ..search.pipeline import StoreView


@dataclass(frozen=True)
class PhotoRecord:
    """What a store remembers of one indexed photo, besides its patch grid."""

    path: str  # absolute path as indexed
    size: int  # bytes
    mtime_ns: int
    content_hash: str  # assoc.runtime.indexing.fileinfo.hash_content
    grid: tuple[int, int]  # (h, w)
    width: int  # the photo's displayed width (after EXIF orientation)
    height: int
    taken: int | None = None  # when it was taken, Unix seconds (assoc.runtime.imaging.dates); None: unknown


@dataclass(frozen=True)
class DamagedPhoto:
    path: str
    reason: str


@dataclass(frozen=True)
class CheckReport:
    """What Gallery.check found: every photo's bytes against its checksum and its shard files' sizes."""

    photos: int  # photos checked
    damaged: list[DamagedPhoto]  # photos whose stored data is missing, altered or not numbers
    dropped: int  # of those, rows removed by repair (the next index run encodes them again)
    cells: str | None = None  # what is wrong with the first stage's cells (gallery_cells.py); None: nothing
    cells_rebuilt: bool = False  # repair made them again

    def to_dict(self) -> dict[str, object]:
        """The JSON `assoc check --json` prints."""
        damaged = [{"path": d.path, "reason": d.reason} for d in self.damaged]
        out: dict[str, object] = {"photos": self.photos, "damaged": damaged, "dropped": self.dropped}
        return out | {"cells": self.cells, "cells_rebuilt": self.cells_rebuilt}

    @property
    def mended(self) -> bool:
        """Whether nothing is left damaged: nothing was, or repair dropped and rebuilt what was."""
        photos_ok = not self.damaged or self.dropped == len(self.damaged)
        return photos_ok and (self.cells is None or self.cells_rebuilt)


def checked_vectors(
    record: PhotoRecord, vectors: PhotoVectors | np.ndarray, embed_dim: int, first_stage: FirstStageConfig
) -> PhotoVectors:
    """What Store.add stores of one photo: its vectors (made from a bare grid by photo_vectors, as where
    photos are encoded), checked against the store's dimension, the record's grid and the reduction."""
    if not isinstance(vectors, PhotoVectors):
        grid = np.asarray(vectors)
        if grid.ndim != 3 or grid.shape[2] != embed_dim:
            raise ValueError(f"{record.path}: grid of shape {grid.shape} does not fit dimension {embed_dim}")
        vectors = photo_vectors(grid[None], first_stage)[0]
    grid = vectors.grid
    if grid.ndim != 3 or grid.shape[2] != embed_dim:
        raise ValueError(f"{record.path}: grid of shape {grid.shape} does not fit dimension {embed_dim}")
    if tuple(record.grid) != grid.shape[:2]:
        raise ValueError(f"{record.path}: record says grid {record.grid}, the array is {grid.shape[:2]}")
    if vectors.pooled.shape != (embed_dim,) or vectors.centroids.shape != (first_stage.vectors, embed_dim):
        raise ValueError(f"{record.path}: its first-stage vectors do not fit the store's reduction")
    return vectors


@runtime_checkable
class Store(Protocol):
    """A gallery of patch grids for one model bundle: records, grids, and views to search."""

    bundle_id: str
    embed_dim: int
    first_stage: FirstStageConfig  # the bundle's: what a view's first stage keeps

    def records(self) -> dict[str, PhotoRecord]:
        """Every indexed photo, by path."""
        ...

    def record(self, path: str) -> PhotoRecord | None:
        """What is stored of one photo, or None; a single lookup, whatever the store's size."""
        ...

    def add(self, items: list[tuple[PhotoRecord, PhotoVectors | np.ndarray]]) -> None:
        """Insert or replace photos; durable on return. Each comes with the PhotoVectors made where it was
        encoded (runtime.scoring.first_stage.photo_vectors), or a bare (h, w, D) grid of a bundle without
        a global output, whose vectors the store makes by the same function. The pooled vector is kept as
        float16; the grid as its int8 codes (scoring/quantize.py), or float16 quantized the same way when
        read, so every store scores a photo alike."""
        ...

    def remove(self, paths: list[str]) -> None:
        """Forget these photos (paths not present are ignored)."""
        ...

    def set_dates(self, dates: dict[str, int]) -> None:
        """Record when photos stored before dates were kept were taken (path -> Unix seconds), with
        whatever else their filters need; durable on return. Paths not present are ignored."""
        ...

    def get_grid(self, path: str) -> np.ndarray | None:
        """The stored (h, w, D) grid of a photo as float32 (dequantized where codes are kept), or None."""
        ...

    def get_vectors(self, path: str) -> PhotoVectors | None:
        """Everything stored of a photo's encoding (grid, global vector, centroids), or None."""
        ...

    def find_by_hash(self, content_hash: str) -> str | None:
        """A path already indexed with this content hash (renames and duplicates reuse its grid)."""
        ...

    def open_view(self, where: PhotoFilter | None = None) -> StoreView:
        """A consistent snapshot to search (assoc.runtime.search.pipeline reads it; a store never ranks),
        holding only the photos that meet `where` (assoc.runtime.search.filters) when it is given."""
        ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...

"""The store interface: what the CLI and the indexer know of a gallery, whatever holds it.

Two implementations: the built-in on-disk gallery (assoc.runtime.stores.gallery) and Qdrant
(assoc.runtime.stores.qdrant). Scores are on one scale everywhere: for MISA, the mean over query
vectors of each one's best patch (so 1.0 is a perfect match with L2-normalised vectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


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


@dataclass(frozen=True)
class SearchHit:
    path: str
    score: float


@runtime_checkable
class Store(Protocol):
    """A gallery of patch grids for one model bundle."""

    bundle_id: str
    embed_dim: int

    def records(self) -> dict[str, PhotoRecord]:
        """Every indexed photo, by path."""
        ...

    def record(self, path: str) -> PhotoRecord | None:
        """What is stored of one photo, or None; a single lookup, whatever the store's size."""
        ...

    def add(self, items: list[tuple[PhotoRecord, np.ndarray]]) -> None:
        """Insert or replace photos; each grid is (h, w, D), stored as float16. Durable on return."""
        ...

    def remove(self, paths: list[str]) -> None:
        """Forget these photos (paths not present are ignored)."""
        ...

    def get_grid(self, path: str) -> np.ndarray | None:
        """The stored (h, w, D) grid of a photo as float32, or None."""
        ...

    def find_by_hash(self, content_hash: str) -> str | None:
        """A path already indexed with this content hash (renames and duplicates reuse its grid)."""
        ...

    def search(
        self,
        query: np.ndarray,
        k: int = 10,
        min_score: float | None = None,
        kind: str = "misa",
        exact: bool = False,
    ) -> list[SearchHit]:
        """Rank photos against query vectors (T, D): word vectors of a text, or patches of a photo.

        By default a store may pick candidates with a first stage and score only those; exact=True
        scores every photo. Either way each hit's score is its exact score, and never NaN or infinite.
        """
        ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...

"""The one exact stage every store shares: scan kernel, fused score, finite check, min score, ties, top k.

A store hands over the grids of the photos a candidate source picked, a chunk at a time
(GridChunk: float16 grids and global vectors read in place, and their paths); every chunk is scored
exactly (scoring/scan.py) and merged into the best k so far, so memory stays bounded by a chunk and
k whatever the number of candidates. A score that is not a finite number (stored values that are not)
is never a hit; equal scores are ordered by path, so every store gives the same order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..scoring.scan import ScanKernel
from .query import Query


@dataclass(frozen=True)
class SearchHit:
    path: str
    score: float


@dataclass(frozen=True)
class GridChunk:
    """Some candidates' stored grids, as a store reads them."""

    paths: list[str]
    grids: np.ndarray  # (n, P, D) float16 (a memory map or a copy)
    pooled: np.ndarray  # (n, D) float16: each photo's global vector (first_stage.PhotoVectors.pooled)


@functools.cache
def scan_kernel(kind: str, fused: bool = False) -> ScanKernel:
    """One kernel per score kind for the process (its ONNX Runtime session is made once)."""
    return ScanKernel(kind, fused=fused)


def chunk_scores(query: Query, chunk: GridChunk) -> np.ndarray:
    """(n,) exact scores of one chunk (search/query.py), from the float16 values every store keeps alike."""
    if not query.global_weight:
        return scan_kernel(query.kind).scores(chunk.grids, query.transposed)
    weighted = (np.float32(query.global_weight) * query.pooled)[:, None]
    local = np.float32(1.0 - query.global_weight)
    return scan_kernel(query.kind, fused=True).scores(chunk.grids, query.transposed, (chunk.pooled, weighted, local))


def rerank(query: Query, chunks: Iterable[GridChunk], k: int, min_score: float | None = None) -> list[SearchHit]:
    """The k best hits of all chunks, best first, ties by path."""
    if k <= 0:
        return []
    best_scores = np.empty(0, np.float32)
    best_paths: list[str] = []
    for chunk in chunks:
        if not chunk.paths:
            continue
        scores = np.concatenate([best_scores, chunk_scores(query, chunk)])
        paths = best_paths + list(chunk.paths)
        keep = _best(scores, paths, k, min_score)
        best_scores, best_paths = scores[keep], [paths[i] for i in keep]
    return [SearchHit(p, float(s)) for s, p in zip(best_scores, best_paths, strict=True)]


def _best(scores: np.ndarray, paths: list[str], k: int, min_score: float | None) -> list[int]:
    """Indices of the k best finite scores at or above min_score, best first, ties by path."""
    finite = np.isfinite(scores)
    keep = np.flatnonzero(finite if min_score is None else finite & (scores >= min_score))
    if len(keep) > k:
        cut = len(keep) - k
        kth = np.partition(scores[keep], cut)[cut]
        keep = keep[scores[keep] >= kth]  # every candidate tied with the k-th stays until sorted
    return sorted(keep.tolist(), key=lambda i: (-scores[i], paths[i]))[:k]

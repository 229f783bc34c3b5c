"""The one exact stage every store shares: scan kernel, fused score, finite check, min score, ties, top k.

A store hands over the grids of the photos a candidate source picked, a chunk at a time
(GridChunk: int8 grid codes with one scale per photo, float16 global vectors, read in place, and their
paths; a store that keeps float16 grids quantizes them with GridChunk.of_grids, the gallery's own
function, scoring/quantize.py); every chunk is scored exactly (scoring/scan.py: MatMulInteger against
the query's int8 codes) and merged into the best k so far, so memory stays bounded by a chunk and
k whatever the number of candidates. The exact score is this one, the fused score over the dequantized
grid and the quantized query, in every store alike. A score that is not a finite number (stored values
that are not) is never a hit; equal scores are ordered by path, so every store gives the same order. A
combined query (combined.py) is scored term by term on each chunk, and its hits carry each term's score.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..scoring.quantize import dequantize_grids, quantize_grids
from ..scoring.scan import ScanKernel, reduce_words
from .combined import CombinedQuery
from .query import Query


@dataclass(frozen=True)
class SearchHit:
    path: str
    score: float
    terms: tuple[float, ...] = ()  # a combined query's: each term's own score, in the terms' order


@dataclass(frozen=True)
class GridChunk:
    """Some candidates' stored grids, as a store reads them."""

    paths: list[str]
    codes: np.ndarray  # (n, P, D) uint8: int8 grid codes + 128 (a memory map or a copy; scoring/quantize.py)
    scales: np.ndarray  # (n,) float16: each grid's scale
    pooled: np.ndarray  # (n, D) float16: each photo's global vector (first_stage.PhotoVectors.pooled)

    @classmethod
    def of_grids(cls, paths: list[str], grids: np.ndarray, pooled: np.ndarray) -> GridChunk:
        """A chunk of float16 grids (n, P, D), quantized as the gallery stores them."""
        return cls(paths, *quantize_grids(grids), pooled)

    def grids(self) -> np.ndarray:
        """(n, P, D) float32: the values the codes stand for (what the exact score scores)."""
        return dequantize_grids(self.codes, self.scales)


@functools.cache
def scan_kernel(kind: str, fused: bool = False, per_vector: bool = False, layout: str = "int8") -> ScanKernel:
    """One kernel per score kind and layout for the process (its ONNX Runtime session is made once)."""
    return ScanKernel(kind, fused=fused, per_vector=per_vector, layout=layout)


def chunk_scores(query: Query, chunk: GridChunk) -> np.ndarray:
    """(n,) exact scores of one chunk (search/query.py), from the int8 codes every store scores alike."""
    quantized = {"scales": chunk.scales, "query_scales": query.word_scales}
    if not query.global_weight:
        return scan_kernel(query.kind).scores(chunk.codes, query.codes, **quantized)
    weighted = (np.float32(query.global_weight) * query.pooled)[:, None]
    local = np.float32(1.0 - query.global_weight)
    fused = (chunk.pooled, weighted, local)
    return scan_kernel(query.kind, fused=True).scores(chunk.codes, query.codes, fused, **quantized)


def term_scores(query: CombinedQuery, chunk: GridChunk) -> np.ndarray:
    """(n, terms) exact scores of each term of a combined query, as chunk_scores gives each term's Query
    alone (up to float32 rounding): one pass of the per-vector kernel over the chunk's codes for every
    term's vectors (the matmul over the grids is most of a scan), then per term its reduction over
    its vectors and its fused global term."""
    best = scan_kernel(query.kind, per_vector=True).scores(
        chunk.codes, query.codes, scales=chunk.scales, query_scales=query.word_scales
    )
    pooled = chunk.pooled.astype(np.float32) if any(t.query.global_weight for t in query.terms) else None
    out = np.empty((len(chunk.paths), len(query.terms)), np.float32)
    for i, (term, columns) in enumerate(zip(query.terms, query.columns, strict=True)):
        local = reduce_words(query.kind, best[:, columns])
        weight = np.float32(term.query.global_weight)
        if weight:  # row by row, the same sums whatever else is in the chunk: every store alike
            glob = (pooled * term.query.pooled).sum(axis=1, dtype=np.float32)
            local = np.float32(1 - weight) * local + weight * glob
        out[:, i] = local
    return out


def rerank(
    query: Query | CombinedQuery, chunks: Iterable[GridChunk], k: int, min_score: float | None = None
) -> list[SearchHit]:
    """The k best hits of all chunks, best first, ties by path."""
    if k <= 0:
        return []
    combined = isinstance(query, CombinedQuery)
    best_scores = np.empty(0, np.float32)
    best_terms = np.empty((0, len(query.terms) if combined else 0), np.float32)
    best_paths: list[str] = []
    for chunk in chunks:
        if not chunk.paths:
            continue
        if combined:
            terms = term_scores(query, chunk)
            found = query.combine(terms)
        else:
            terms, found = np.empty((len(chunk.paths), 0), np.float32), chunk_scores(query, chunk)
        scores, per_term = np.concatenate([best_scores, found]), np.concatenate([best_terms, terms])
        paths = best_paths + list(chunk.paths)
        keep = _best(scores, paths, k, min_score)
        best_scores, best_terms, best_paths = scores[keep], per_term[keep], [paths[i] for i in keep]
    return [
        SearchHit(p, float(s), tuple(float(t) for t in terms))
        for s, terms, p in zip(best_scores, best_terms, best_paths, strict=True)
    ]


def _best(scores: np.ndarray, paths: list[str], k: int, min_score: float | None) -> list[int]:
    """Indices of the k best finite scores at or above min_score, best first, ties by path."""
    finite = np.isfinite(scores)
    keep = np.flatnonzero(finite if min_score is None else finite & (scores >= min_score))
    if len(keep) > k:
        cut = len(keep) - k
        kth = np.partition(scores[keep], cut)[cut]
        keep = keep[scores[keep] >= kth]  # every candidate tied with the k-th stays until sorted
    return sorted(keep.tolist(), key=lambda i: (-scores[i], paths[i]))[:k]

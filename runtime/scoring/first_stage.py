"""The first stage of a search: a few vectors per photo that stand for its whole patch grid.

A photo's grid (h, w, D) becomes C unit vectors (C, D): the centroids of a spherical k-means of its
patches (cosine assignment, L2-normalised means), started from the means of C regions of the grid so
that the result is deterministic. With C = 1 it is the photo's normalised mean patch. A query (T, D)
estimates a photo's score by MaxSim against these C vectors instead of its h*w patches; the best
`candidates` photos by that estimate are then scored exactly. bench/first_stage.py measures how many
of the exact top 10 survive.

Each photo also has a global (pooled) vector: the visual model's own when the bundle declares one
(visual.global_output, a CLIP image embedding), else its normalised mean patch. Every store ranks
its whole gallery by it first (against the query's sentence vector), and the fused score's global
term is that cosine. photo_vectors makes all of a photo's stored vectors at once, where the photo is
encoded (the indexer's encoding stage, a Ray worker), so every store keeps the same values.

What a bundle's photos are reduced to is part of the bundle (config.json "first_stage",
assoc.runtime.encoding.bundle.FirstStageConfig), so every store and every gallery made with one
bundle agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..encoding.bundle import FirstStageConfig

BATCH_PHOTOS = 256  # photos reduced at once: bounds the (B, P, C) assignment arrays
MEAN_VECTOR = FirstStageConfig(vectors=1)  # the reduction to a photo's pooled (normalised mean) vector


STORED = np.float16  # what a photo's vectors are rounded to where it is encoded (stores quantize the grid further)


@dataclass(frozen=True)
class PhotoVectors:
    """What a store keeps of one encoded photo: float16 as encoded (photo_vectors). The built-in gallery
    stores the grid and centroids as int8 codes (scoring/quantize.py) and gives them back dequantized,
    float32, which quantize to the same codes again; Qdrant keeps and gives back the float16 values."""

    grid: np.ndarray  # (h, w, D) patch grid
    pooled: np.ndarray  # (D,) its global vector, unit length before rounding to float16
    centroids: np.ndarray  # (C, D) the first stage's reduction of the grid


def photo_vectors(
    grids: np.ndarray, config: FirstStageConfig, globals_: np.ndarray | None = None
) -> list[PhotoVectors]:
    """grids (N, h, w, D) and, from a bundle with a global output, their global vectors (N, D) ->
    each photo's stored vectors. Both reductions read the float16 grid that is stored."""
    grids = np.asarray(grids).astype(STORED)
    pooled = pooled_vectors(grids, globals_)
    centroids = reduce_grids(grids, config).astype(STORED)
    return [PhotoVectors(g, p, c) for g, p, c in zip(grids, pooled, centroids, strict=True)]


def pooled_vectors(grids: np.ndarray, globals_: np.ndarray | None = None) -> np.ndarray:
    """(N, D) float16 global vectors of float16 grids (N, h, w, D): the visual model's own global
    outputs normalised, or without them each grid's normalised mean patch."""
    if globals_ is None:
        return reduce_grids(grids, MEAN_VECTOR)[:, 0].astype(STORED)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _normalise(np.asarray(globals_, np.float32)).astype(STORED)


def _regions(grid: tuple[int, int], count: int) -> list[np.ndarray]:
    """Flat patch indices of `count` regions tiling the grid: rows split into a, columns into b, a*b = count."""
    h, w = grid
    a = max(d for d in range(1, int(count**0.5) + 1) if count % d == 0)
    b = count // a
    if a > h or b > w:
        a, b = min(a, h), min(b, w)
    cells = np.arange(h * w).reshape(h, w)
    rows, cols = np.array_split(np.arange(h), a), np.array_split(np.arange(w), b)
    out = [cells[np.ix_(r, c)].ravel() for r in rows for c in cols]
    while len(out) < count:  # a grid with fewer cells than centroids: repeat regions (duplicate centroids)
        out.append(out[len(out) % max(1, a * b)])
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    """Unit vectors; a zero vector stays zero."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm != 0)


def reduce_grids(grids: np.ndarray, config: FirstStageConfig) -> np.ndarray:
    """grids (N, h, w, D) -> first-stage vectors (N, C, D) float32. A grid holding NaN or infinity
    gives vectors that do too, silently: the stores report such a photo, numpy need not warn."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _reduce(np.asarray(grids), config)


def _reduce(grids: np.ndarray, config: FirstStageConfig) -> np.ndarray:
    n, h, w, d = grids.shape
    regions = _regions((h, w), config.vectors)
    out = np.empty((n, config.vectors, d), np.float32)
    for start in range(0, n, BATCH_PHOTOS):
        x = grids[start : start + BATCH_PHOTOS].reshape(-1, h * w, d).astype(np.float32)
        centroids = _normalise(np.stack([x[:, r].mean(axis=1) for r in regions], axis=1))
        for _ in range(config.iterations if config.vectors > 1 else 0):
            nearest = np.matmul(x, centroids.transpose(0, 2, 1)).argmax(axis=-1)
            members = (nearest[..., None] == np.arange(config.vectors)).astype(np.float32)  # (B, P, C)
            sums = np.matmul(members.transpose(0, 2, 1), x)
            kept = members.sum(axis=1)[..., None] == 0  # an empty cluster keeps its centroid
            centroids = np.where(kept, centroids, _normalise(sums))
        out[start : start + len(x)] = centroids
    return out

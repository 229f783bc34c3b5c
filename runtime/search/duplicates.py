"""Near-duplicate photos: groups of files that show the same picture (copies resized, re-encoded, lightly
cropped, stripped of their metadata, or with their colours changed a little), read from any store's view.

    find_duplicates(view, records, threshold)
      1. one pass over the view's grids: each photo's pooled vector (its normalised mean patch, the
         first stage's reduction with one vector). Files of one content (one content hash: the indexer
         gave them one grid) enter once and are members of one group together.
      2. candidate pairs: each photo's CANDIDATES nearest by pooled cosine, if at least the threshold
         less CANDIDATE_MARGIN, scored BLOCK_SCORES at a time: 100k photos hold their pooled vectors
         (100 MB at 256 dimensions) and one block of scores, never the whole n x n matrix.
      3. each candidate pair verified on its patch grids, in passes over the view that hold at most
         GRID_BYTES of grids at once:
             similarity(A, B) = (mean over A's cells of each one's best match among B's cells within
                                 NEIGHBOURHOOD cells of the same place + the same from B to A) / 2
         Symmetric, 1 for the same grid. Every photo's grid covers its whole frame (the model's input is
         the photo squashed to a fixed size), so a copy's patches lie where the original's do, give or
         take what a light crop shifts; two photos that merely look alike (a dog in water, another dog
         in water) have the like patches elsewhere. Measured against the location-free mean best patch
         (MaxSim both ways), this separates copies from look-alikes better (bench/README.md).
      4. groups: union-find over the pairs at or above the threshold, strongest first; a group's
         similarity is its weakest link (the group holds together at any threshold up to it).

It ranks nothing and writes nothing; a store only hands out its view (runtime/stores/base.py).
DEFAULT_THRESHOLD and the candidate constants are chosen by bench/duplicates.py, which measures
precision and recall on a labelled set of real photos and their edited copies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import QueryError
from ..scoring.first_stage import MEAN_VECTOR, reduce_grids
from .pipeline import StoreView

# bench/duplicates.py with the shipped bundle (…-33e10f92cbb4): the best F1 (pair precision 0.997, recall
# 0.995). Similarities depend on the model: run the bench again when the shipped bundle changes.
DEFAULT_THRESHOLD = 0.72
# A pair whose pooled cosine is under the threshold less this is not verified. On the bench's set (200 of its
# originals), no candidate pair's pooled cosine was more than 0.005 under its similarity, so the margin
# loses no pair that verification would keep; bench/duplicates.py reports the candidates' recall.
CANDIDATE_MARGIN = 0.05
CANDIDATES = 16  # nearest photos per photo verified at most (a burst of more still joins, link by link)
NEIGHBOURHOOD = 1  # cells around a patch's own place where its match is looked for (light crops shift it)
BLOCK_SCORES = 1 << 24  # pooled scores held at once (64 MB of float32)
GRID_BYTES = 512 << 20  # grids held at once while pairs are verified


@dataclass(frozen=True)
class Member:
    path: str
    similarity: float  # its best similarity to another member; 1.0 for a file whose content another has


@dataclass(frozen=True)
class Group:
    members: list[Member]  # the largest photo first (most pixels, then most bytes), then by path
    similarity: float  # the weakest link holding the group together


class PhotoFacts(Protocol):
    """What grouping reads of a photo's record (a store's PhotoRecord): its content, its grid's shape
    and how large it is."""

    content_hash: str
    grid: tuple[int, int]
    width: int
    height: int
    size: int  # bytes


def check_threshold(threshold: float) -> float:
    """The threshold as a float, or a QueryError saying what it must be."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise QueryError(f"the duplicate threshold must be a number above 0 and at most 1, not {threshold}")
    return value


@dataclass(frozen=True)
class Contents:
    """Every content a view holds, once: its first file's path, its pooled vector, its other files."""

    paths: list[str]
    shapes: list[tuple[int, int]]  # each one's grid shape (h, w)
    pooled: np.ndarray  # (n, D) unit vectors (zero for a grid that is not all numbers)
    copies: dict[int, list[str]]  # index -> the other files of that content (one content hash)


def find_duplicates(
    view: StoreView, facts: Mapping[str, PhotoFacts], threshold: float = DEFAULT_THRESHOLD
) -> list[Group]:
    """Groups of two or more files that show the same picture, ordered by their first member's path.
    `facts` are the store's records by path (a photo the view holds but the records no longer do is
    left out). The four steps of the module docstring; bench/duplicates.py runs them one by one."""
    threshold = check_threshold(threshold)
    contents = read_contents(view, facts)
    pairs = candidate_pairs(contents.pooled, threshold - CANDIDATE_MARGIN)
    return group_pairs(contents, pairs, verify_pairs(view, contents, pairs), facts, threshold)


def read_contents(view: StoreView, facts: Mapping[str, PhotoFacts]) -> Contents:
    """Step 1: every content the view holds once, in the view's order, from one pass over its grids."""
    paths: list[str] = []
    shapes: list[tuple[int, int]] = []
    vectors: list[np.ndarray] = []
    first: dict[str, int] = {}
    copies: dict[int, list[str]] = {}
    for chunk_paths, grids in _chunks(view):
        fresh = []
        for row, path in enumerate(chunk_paths):
            record = facts.get(path)
            if record is None:  # removed since the records were read
                continue
            if record.content_hash in first:
                copies.setdefault(first[record.content_hash], []).append(path)
                continue
            first[record.content_hash] = len(paths)
            paths.append(path)
            shapes.append((int(record.grid[0]), int(record.grid[1])))
            fresh.append(row)
        if fresh:
            pooled = reduce_grids(grids[fresh][:, None], MEAN_VECTOR)[:, 0]
            vectors.append(np.where(np.isfinite(pooled).all(axis=1, keepdims=True), pooled, 0.0))
    dim = vectors[0].shape[1] if vectors else 0
    pooled = np.concatenate(vectors) if vectors else np.empty((0, dim), np.float32)
    return Contents(paths, shapes, pooled, copies)


def candidate_pairs(pooled: np.ndarray, floor: float) -> np.ndarray:
    """Step 2: (M, 2) index pairs i < j, each a photo among the other's CANDIDATES nearest by pooled
    cosine at or above `floor`, sorted; computed a block of rows at a time."""
    n = len(pooled)
    if n < 2:
        return np.empty((0, 2), np.int64)
    keys: list[np.ndarray] = []
    rows = max(1, BLOCK_SCORES // n)
    take = min(CANDIDATES, n - 1)
    for start in range(0, n, rows):
        block = pooled[start : start + rows] @ pooled.T
        own = np.arange(start, start + len(block))
        block[own - start, own] = -np.inf
        i, j = np.nonzero(block >= floor)  # most scores are under the floor: only crowded rows are sorted
        crowded = np.flatnonzero(np.bincount(i, minlength=len(block)) > take)
        if len(crowded):
            keep = ~np.isin(i, crowded)
            nearest = np.argpartition(-block[crowded], take - 1, axis=1)[:, :take]
            i = np.concatenate([i[keep], np.repeat(crowded, take)])
            j = np.concatenate([j[keep], nearest.ravel()])
        a, b = own[i], j
        keys.append(np.minimum(a, b) * n + np.maximum(a, b))
    found = np.unique(np.concatenate(keys))
    return np.stack([found // n, found % n], axis=1)


def verify_pairs(view: StoreView, contents: Contents, pairs: np.ndarray) -> np.ndarray:
    """Step 3: each pair's similarity on the patch grids (pairs index contents.paths); NaN for a pair
    whose grids were not both read (the store changed meanwhile) or differ in shape. Each pass over the
    view holds the grids of the lower photos of the pairs from where the last pass stopped, up to
    GRID_BYTES, and scores them as their partners stream past."""
    index = {path: i for i, path in enumerate(contents.paths)}
    similarity = np.full(len(pairs), np.nan, np.float32)
    if not len(pairs):
        return similarity
    by_right: dict[int, list[int]] = {}
    for p, j in enumerate(pairs[:, 1].tolist()):
        by_right.setdefault(j, []).append(p)
    lefts = set(pairs[:, 0].tolist())
    start = 0  # the lowest left photo not yet verified
    while start <= int(pairs[:, 0].max()):
        held: dict[int, np.ndarray] = {}
        held_bytes, end = 0, None  # end: the last left photo this pass holds, once the budget is spent
        last_right = None
        for chunk_paths, grids in _chunks(view):
            for row, path in enumerate(chunk_paths):
                k = index.get(path)
                if k is None:
                    continue
                grid = grids[row].reshape(*contents.shapes[k], -1)
                waiting = [p for p in by_right.get(k, ()) if pairs[p, 0] in held]
                waiting = [p for p in waiting if held[int(pairs[p, 0])].shape == grid.shape]
                if waiting:
                    partners = np.stack([held[int(pairs[p, 0])] for p in waiting])
                    similarity[waiting] = _similarities(partners, grid)
                if k in lefts and k >= start and end is None:
                    held[k] = np.array(grid)
                    held_bytes += held[k].nbytes
                    if held_bytes >= GRID_BYTES:
                        end = k
                        last_right = int(pairs[(pairs[:, 0] >= start) & (pairs[:, 0] <= end), 1].max())
            if last_right is not None and any(index.get(p, -1) >= last_right for p in chunk_paths):
                break
        if end is None:
            break
        start = end + 1
    return similarity


def _similarities(partners: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """similarity of one grid (h, w, D) with each of several grids of its shape (m, h, w, D) -> (m,):
    each cell's best dot product with the other's cells within NEIGHBOURHOOD of its place, averaged,
    both ways."""
    h, w, _ = grid.shape
    b = grid.astype(np.float32)
    a = partners.astype(np.float32)
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    a_best = np.full(a.shape[:3], -np.inf, np.float32)  # each of A's cells against B's neighbourhood
    b_best = np.full(a.shape[:3], -np.inf, np.float32)  # each of B's cells against A's neighbourhood
    reach = range(-NEIGHBOURHOOD, NEIGHBOURHOOD + 1)
    with np.errstate(invalid="ignore", over="ignore"):
        for dy in reach:
            for dx in reach:
                near_rows, near_cols = np.clip(rows + dy, 0, h - 1), np.clip(cols + dx, 0, w - 1)
                np.maximum(a_best, np.einsum("mhwd,hwd->mhw", a, b[near_rows, near_cols]), out=a_best)
                np.maximum(b_best, np.einsum("mhwd,hwd->mhw", a[:, near_rows, near_cols], b), out=b_best)
        return (a_best.mean(axis=(1, 2)) + b_best.mean(axis=(1, 2))) / 2


def _chunks(view: StoreView) -> Iterator[tuple[list[str], np.ndarray]]:
    for chunk in view.read_grids(view.everything()):
        if chunk.paths:
            yield list(chunk.paths), chunk.grids()


def group_pairs(
    contents: Contents,
    pairs: np.ndarray,
    similarity: np.ndarray,
    facts: Mapping[str, PhotoFacts],
    threshold: float,
) -> list[Group]:
    """Step 4: union-find over the pairs at or above the threshold, strongest first, with every
    content's other files; groups of one file are left out."""
    keep = similarity >= threshold
    pairs, similarity = pairs[keep], similarity[keep]
    paths, copies = contents.paths, contents.copies
    parent = list(range(len(paths)))
    weakest = [1.0] * len(paths)  # per root: the weakest link of its group

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    best: dict[int, float] = {}
    for p in np.argsort(-similarity, kind="stable"):
        i, j, s = int(pairs[p, 0]), int(pairs[p, 1]), float(similarity[p])
        best[i], best[j] = max(best.get(i, s), s), max(best.get(j, s), s)
        a, b = root(i), root(j)
        if a != b:
            parent[b] = a
            weakest[a] = min(weakest[a], weakest[b], s)
    members: dict[int, list[Member]] = {}
    for i, path in enumerate(paths):
        extra = copies.get(i, [])
        if i not in best and not extra:
            continue
        mine = 1.0 if extra else best[i]
        group = members.setdefault(root(i), [])
        group.append(Member(path, mine))
        group.extend(Member(copy, 1.0) for copy in extra)
    groups = [
        Group(sorted(found, key=lambda m: _largest_first(m.path, facts)), weakest[r]) for r, found in members.items()
    ]
    return sorted(groups, key=lambda g: g.members[0].path)


def _largest_first(path: str, facts: Mapping[str, PhotoFacts]) -> tuple[int, int, str]:
    """Members in order: the most pixels first (the original, before it was made smaller), then the most
    bytes (the least compressed), then by path."""
    found = facts.get(path)
    return (-found.width * found.height, -found.size, path) if found is not None else (0, 0, path)

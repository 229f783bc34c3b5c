"""One search over any store (the pylate shape): a candidate source proposes, one rerank decides.

    search(store, query, k, where=filter)
      view = store.open_view(where)            a consistent snapshot of what the store holds (that
                                               meets the filter: filters.py)
      plan = search_plan(view.photos, ...)     how many photos each stage keeps
      picked = everything, or source.candidates(view, query, plan)
               (a combined query: by its estimate, combined.py)
      hits = rerank(query, view.read_grids(picked), k, min_score)     exact scores, shared
      view.confirm(hits)                       the store's last word on its own consistency

A store (runtime/stores/base.py GridStore) keeps grids and records and can read a selection of them;
it never ranks. A candidate source (the built-in gallery's pooled -> centroid shortlist, Qdrant's
HNSW prefetch, or one a test injects) only narrows. Every score returned is the exact score of
search/query.py, never a first-stage estimate, so `k` and `min_score` mean the same in every store;
what a first stage can do is miss a photo, and exact=True (or a gallery no larger than the number of
candidates) scores every photo. A filter narrows the view itself, before any first stage, so a
filtered search returns k photos whenever k meet it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..encoding.bundle import FirstStageConfig
from .combined import CombinedQuery
from .filters import PhotoFilter
from .query import Query
from .rerank import GridChunk, SearchHit, rerank

Selection = Any  # what a view's read_grids understands: each store's own (rows per shard, point ids, ...)


@dataclass(frozen=True)
class SearchPlan:
    shortlist: int  # photos the pooled stage keeps
    candidates: int  # photos the next stage passes to exact scoring
    probe: int  # photos a store with cells (an inverted file) reads from the cells nearest the query


def search_plan(photos: int, config: FirstStageConfig, k: int) -> SearchPlan:
    """How many photos each first stage keeps.

    The shortlist grows with the gallery (a share of it) because the pooled vector's ranking does not
    get better with size; where the store's cells narrow the gallery first, the pooled stage keeps no
    more than they read (a fixed number: what makes the first stage's cost stop growing with the
    gallery). The exact stage never scores fewer than k.
    """
    candidates = max(config.candidates, k)
    shortlist = max(int(photos * config.shortlist), config.shortlist_min, candidates)
    return SearchPlan(shortlist, candidates, max(config.probe, candidates))


class CandidateSource(Protocol):
    def candidates(self, view: StoreView, query: Query, plan: SearchPlan) -> Selection:
        """At most plan.candidates photos of the view worth scoring exactly."""
        ...


class StoreView(Protocol):
    """One consistent snapshot of a store, for one search."""

    photos: int

    def everything(self) -> Selection:
        """Every photo of the view (those that meet its filter)."""
        ...

    def first_stage(self) -> CandidateSource:
        """The store's own candidate source over this view."""
        ...

    def read_grids(self, selection: Selection) -> Iterator[GridChunk]:
        """The selected photos' verified grids, a bounded chunk at a time."""
        ...

    def confirm(self, hits: list[SearchHit]) -> None:
        """Raise if the store's records disagree with what was read for these hits."""
        ...


class Searchable(Protocol):
    embed_dim: int
    first_stage: FirstStageConfig

    def open_view(self, where: PhotoFilter | None = None) -> StoreView: ...


def search(
    store: Searchable,
    query: Query | CombinedQuery | np.ndarray,
    k: int = 10,
    min_score: float | None = None,
    kind: str = "misa",
    exact: bool = False,
    *,
    source: CandidateSource | None = None,
    where: PhotoFilter | None = None,
) -> list[SearchHit]:
    """The k photos that score best against the query, best first (ties by path).

    query: a Query, a CombinedQuery, or bare (T, D) vectors ranked by plain `kind` (no fused term).
    source replaces the store's own first stage (a test, or an ANN index); exact=True scores every
    photo; where: only photos that meet this filter are searched (an empty one lets all through).
    """
    if isinstance(query, np.ndarray):
        query = Query.of(query, store.embed_dim, kind=kind)
    for term in [t.query for t in query.terms] if isinstance(query, CombinedQuery) else [query]:
        if term.vectors.shape[1] != store.embed_dim:
            Query.of(term.vectors, store.embed_dim)  # raises the one QueryError for a wrong dimension
    if k <= 0:
        return []
    view = store.open_view(where) if where else store.open_view()
    plan = search_plan(view.photos, store.first_stage, k)
    if exact or view.photos <= plan.candidates:
        picked = view.everything()
    else:
        estimate = query.estimate if isinstance(query, CombinedQuery) else query
        picked = (source or view.first_stage()).candidates(view, estimate, plan)
    hits = rerank(query, view.read_grids(picked), k, min_score)
    view.confirm(hits)
    return hits

"""The shared pipeline on a store written here: ranking needs nothing of a store but a view it can read."""

from __future__ import annotations

import numpy as np
from exact_reference import exact_scores

from assoc.runtime.encoding.bundle import FirstStageConfig
from assoc.runtime.scoring.first_stage import pooled_vectors
from assoc.runtime.search.pipeline import SearchPlan, search
from assoc.runtime.search.query import Query
from assoc.runtime.search.rerank import GridChunk

D, P = 16, 9


class ListView:
    """Every photo in chunks of three; a selection is a list of indices."""

    def __init__(self, store: ListStore) -> None:
        self.store = store
        self.photos = len(store.paths)

    def everything(self) -> list[int]:
        return list(range(self.photos))

    def first_stage(self) -> FirstPhotos:
        return FirstPhotos()

    def read_grids(self, selection: list[int]):
        for start in range(0, len(selection), 3):
            picked = selection[start : start + 3]
            paths = [self.store.paths[i] for i in picked]
            yield GridChunk.of_grids(paths, self.store.grids[picked], self.store.pooled[picked])

    def confirm(self, hits) -> None:
        self.store.confirmed.append([h.path for h in hits])


class FirstPhotos:
    """A first stage that keeps the first `candidates` photos, whatever the query."""

    def candidates(self, view: ListView, query: Query, plan: SearchPlan) -> list[int]:
        return list(range(min(plan.candidates, view.photos)))


class ListStore:
    embed_dim = D

    def __init__(self, grids: np.ndarray, first_stage: FirstStageConfig) -> None:
        self.grids = grids.astype(np.float16)
        self.pooled = pooled_vectors(self.grids[:, None])  # (n, 1, P, D): a one-row grid
        self.paths = [f"/p/{i:02d}.jpg" for i in range(len(grids))]
        self.first_stage = first_stage
        self.confirmed: list[list[str]] = []

    def open_view(self) -> ListView:
        return ListView(self)


def _store(n: int = 20, candidates: int = 5) -> ListStore:
    x = np.random.default_rng(0).normal(size=(n, P, D))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    x[7] = x[3]  # a copy: ties
    x[11, 0, 0] = np.nan  # damaged values: never a hit
    return ListStore(x, FirstStageConfig(shortlist=0, shortlist_min=0, candidates=candidates))


def test_rerank_over_chunks_is_exact_with_ties_by_path_and_no_nan() -> None:
    store = _store()
    query = store.grids[3, :4].astype(np.float32)
    hits = search(store, query, k=20, exact=True)
    scores = exact_scores(store.grids, query)
    expected = sorted((i for i in range(20) if np.isfinite(scores[i])), key=lambda i: (-scores[i], store.paths[i]))
    assert [h.path for h in hits] == [store.paths[i] for i in expected]
    assert [h.path for h in hits[:2]] == ["/p/03.jpg", "/p/07.jpg"]  # the copy ties: by path
    assert "/p/11.jpg" not in {h.path for h in hits}
    np.testing.assert_allclose([h.score for h in hits], scores[expected], atol=1e-5)
    assert store.confirmed[-1] == [h.path for h in hits]


def test_the_first_stage_is_the_views_or_the_one_given() -> None:
    store = _store()
    query = store.grids[15, :3].astype(np.float32)
    hits = search(store, query, k=3)
    assert {h.path for h in hits} <= {store.paths[i] for i in range(5)}  # only the first stage's picks

    class LastPhotos:
        def candidates(self, view, query, plan):  # noqa: ANN001
            return [15, 16, 17]

    assert search(store, query, k=1, source=LastPhotos())[0].path == "/p/15.jpg"


def test_min_score_and_k_cut_after_exact_scores() -> None:
    store = _store()
    query = store.grids[5, :2].astype(np.float32)
    everything = search(store, query, k=20, exact=True)
    floor = (everything[2].score + everything[3].score) / 2
    assert search(store, query, k=20, min_score=floor, exact=True) == everything[:3]
    assert search(store, query, k=2, exact=True) == everything[:2]

"""One contract, every store: the built-in gallery and Qdrant (embedded) behave the same to their callers.

Each test runs against both, on synthetic unit-normalised grids, and compares with MaxSim written out.
The stores are opened with a small first stage (a shortlist of 30%, 10 candidates) and hold more photos
than that, so every search here goes through a first stage before the shared rerank.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from exact_reference import as_scored, as_stored

from assoc.runtime.encoding.bundle import FirstStageConfig
from assoc.runtime.errors import ModelMismatchError, QueryError
from assoc.runtime.search.combined import CombinedQuery
from assoc.runtime.search.filters import PhotoFilter
from assoc.runtime.search.pipeline import search, search_plan
from assoc.runtime.search.query import Query
from assoc.runtime.stores.base import PhotoRecord, Store
from assoc.runtime.stores.gallery import Gallery

D = 32
GRID = (5, 5)
BUNDLE = "contract-0123456789ab"
FIRST_STAGE = FirstStageConfig(vectors=4, shortlist=0.3, shortlist_min=0, candidates=10)
PHOTOS = 60  # more than the candidates: the first stage always runs

Opener = Callable[..., Store]


def _open_builtin(folder: Path, bundle: str = BUNDLE, create: bool = True) -> Store:
    return Gallery.open(folder / "gallery", bundle, D, create=create, first_stage=FIRST_STAGE)


def _open_qdrant(folder: Path, bundle: str = BUNDLE, create: bool = True) -> Store:
    pytest.importorskip("qdrant_client", reason="qdrant-client is not installed (assoc[qdrant])")
    from assoc.runtime.stores.qdrant import QdrantStore

    return QdrantStore(bundle, D, path=folder / "qdrant", collection="contract", create=create, first_stage=FIRST_STAGE)


@pytest.fixture(params=[_open_builtin, _open_qdrant], ids=["builtin", "qdrant-local"])
def opener(request: pytest.FixtureRequest) -> Opener:
    return request.param


@pytest.fixture
def store(opener: Opener, tmp_path: Path) -> Iterator[Store]:
    opened = opener(tmp_path)
    yield opened
    opened.close()


def _grid(seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(*GRID, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _item(i: int, seed: int | None = None) -> tuple[PhotoRecord, np.ndarray]:
    seed = i if seed is None else seed
    return PhotoRecord(f"/photos/p{i:02d}.jpg", 100 + i, 10 + i, f"hash{seed}", GRID, 64, 48), _grid(seed)


def _exact(grids: dict[str, np.ndarray], query: np.ndarray) -> list[tuple[str, float]]:
    """MaxSim written out over the grids as added, as every store scores them (exact_reference: int8
    codes dequantized, the query's words quantized as the scan multiplies them)."""
    query = as_scored(query).astype(np.float64)
    scored = [
        (path, float((as_stored(g[None])[0].reshape(-1, D).astype(np.float64) @ query.T).max(axis=0).mean()))
        for path, g in grids.items()
    ]
    return sorted(scored, key=lambda ps: (-ps[1], ps[0]))


def _query(grid: np.ndarray, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = grid.reshape(-1, D)[rng.choice(GRID[0] * GRID[1], 3, replace=False)]
    noisy = picks + 0.3 * rng.normal(size=picks.shape)
    return (noisy / np.linalg.norm(noisy, axis=-1, keepdims=True)).astype(np.float32)


class CountingSource:
    """The store's own first stage, counted: proves a search went through it, and how many it kept."""

    def __init__(self) -> None:
        self.kept: list[int] = []

    def candidates(self, view, query, plan):  # noqa: ANN001 - the pipeline's protocol
        picked = view.first_stage().candidates(view, query, plan)
        self.kept.append(  # the gallery's selection: (part, rows) per shard; Qdrant's: point ids
            sum(len(rows) for _, rows in picked) if picked and isinstance(picked[0], tuple) else len(picked)
        )
        return picked


def test_add_search_order_and_exact_scores(store: Store) -> None:
    items = [_item(i) for i in range(PHOTOS)]
    store.add(items)
    assert len(store) == PHOTOS
    stored = {r.path: store.get_grid(r.path) for r, _ in items}
    for r, g in items:  # read back as float32, within half an int8 code (or float16 rounding) of what went in
        np.testing.assert_allclose(stored[r.path], g, atol=np.abs(g).max() / 254 + 1e-3)
    query = _query(items[4][1])
    expected = _exact({r.path: g for r, g in items}, query)
    counted = CountingSource()
    hits = search(store, query, k=5, source=counted)
    assert counted.kept == [FIRST_STAGE.candidates]  # the first stage ran and narrowed to its candidates
    truth = dict(expected)
    assert hits[0].path == items[4][0].path  # random grids: only the photo the query came from stands out
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    np.testing.assert_allclose([h.score for h in hits], [truth[h.path] for h in hits], atol=1e-4)  # exact scores
    exact = search(store, query, k=5, exact=True)
    assert [h.path for h in exact] == [p for p, _ in expected[:5]]
    np.testing.assert_allclose([h.score for h in exact], [s for _, s in expected[:5]], atol=1e-4)
    # A real threshold: between the fourth and fifth exact scores it keeps exactly the first four.
    floor = (expected[3][1] + expected[4][1]) / 2
    assert [h.path for h in search(store, query, k=PHOTOS, min_score=floor, exact=True)] == [p for p, _ in expected[:4]]
    assert all(h.score >= floor for h in search(store, query, k=10, min_score=floor))
    assert len(search(store, query, k=3)) == 3


def test_both_stores_answer_alike_exactly(tmp_path: Path) -> None:
    """The same photos, the same scores to the last bit, the same order: one rerank for both."""
    items = [_item(i) for i in range(PHOTOS)]
    builtin, qdrant = _open_builtin(tmp_path), _open_qdrant(tmp_path)
    try:
        builtin.add(items)
        qdrant.add(items)
        rng = np.random.default_rng(11)
        for target in (3, 17, 42):
            vectors = _query(items[target][1], seed=target)
            weights = rng.uniform(1.0, 3.0, len(vectors)).astype(np.float32)
            for global_weight in (0.0, 0.3):
                query = Query.of(vectors * weights[:, None], D, global_weight=global_weight)
                for exact in (False, True):
                    ours, theirs = search(builtin, query, 8, exact=exact), search(qdrant, query, 8, exact=exact)
                    assert ours == theirs
        # Copies of one photo score alike: ordered by path in both. (A first stage may split such ties at
        # its own cut, each store its own way, so this part is exact.)
        copies = [_item(PHOTOS + i, seed=3) for i in range(3)]
        builtin.add(copies)
        qdrant.add(copies)
        tied = search(builtin, _query(_grid(3)), k=4, exact=True)
        assert [h.path for h in tied] == sorted(h.path for h in tied)  # equal scores: by path
        assert search(qdrant, _query(_grid(3)), k=4, exact=True) == tied
    finally:
        builtin.close()
        qdrant.close()


@pytest.mark.parametrize("weight", [0.3, 1.0])
def test_fused_score_is_exactly_what_the_docs_say(store: Store, weight: float) -> None:
    """(1 - λ) MISA + λ cos(stored global vector, mean query vector), against numpy written out, first
    stage and exact; λ = 1 is the global cosine alone (how a CLIP bundle ranks)."""
    items = [_item(i) for i in range(PHOTOS)]
    store.add(items)
    vectors = _query(items[9][1])
    query = Query.of(vectors, D, global_weight=weight)
    stored = {r.path: store.get_vectors(r.path) for r, _ in items}
    grids = {r.path: g for r, g in items}
    pooled_query = vectors.astype(np.float64).mean(0)
    pooled_query /= np.linalg.norm(pooled_query)

    def fused(path: str, photo) -> float:  # the grid as stored (int8), the words as scored
        local = dict(_exact({path: grids[path]}, vectors))[path]
        return float((1 - weight) * local + weight * photo.pooled.astype(np.float64) @ pooled_query)

    expected = sorted(((p, fused(p, v)) for p, v in stored.items()), key=lambda ps: (-ps[1], ps[0]))
    hits = search(store, query, k=5, exact=True)
    assert [h.path for h in hits] == [p for p, _ in expected[:5]]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected[:5]], atol=1e-4)
    first = search(store, query, k=5)  # what the first stage keeps is scored exactly, fused too
    np.testing.assert_allclose([h.score for h in first], [dict(expected)[h.path] for h in first], atol=1e-4)
    # The stored global vector is the normalised mean patch of the float16 grid (a bundle without its own).
    mean = grids[items[0][0].path].astype(np.float16).reshape(-1, D).astype(np.float64).mean(0)  # as encoded
    np.testing.assert_allclose(stored[items[0][0].path].pooled, mean / np.linalg.norm(mean), atol=1e-3)


def test_bad_queries_are_one_error_in_every_store(store: Store) -> None:
    store.add([_item(i) for i in range(3)])
    for bad in (np.ones((2, D + 1), np.float32), np.ones((0, D), np.float32), np.full((2, D), np.nan, np.float32)):
        with pytest.raises(QueryError):
            search(store, bad)
    assert search(store, _query(_grid(1)), k=0) == []


def test_each_store_implements_the_protocol_with_its_signatures(store: Store) -> None:
    """isinstance() against a runtime-checkable Protocol checks names only: compare every member's
    parameters (names, kinds, defaults) and that every declared attribute is there."""
    members = [name for name in vars(Store) if not name.startswith("_") or name == "__len__"]
    for name in members:
        declared = getattr(Store, name)
        if not callable(declared):
            continue
        ours, theirs = inspect.signature(getattr(type(store), name)), inspect.signature(declared)
        shape = [(p.name, p.kind, p.default) for p in theirs.parameters.values()]
        assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == shape, name
    for name in Store.__annotations__:
        assert hasattr(store, name), name


def test_records_lookup_replace_and_remove(store: Store) -> None:
    store.add([_item(i) for i in range(6)])
    assert search_plan(len(store), FIRST_STAGE, 5).candidates == 10
    record = store.record("/photos/p03.jpg")
    assert record is not None and (record.size, record.content_hash, record.grid) == (103, "hash3", GRID)
    assert store.record("/photos/none.jpg") is None and store.get_grid("/photos/none.jpg") is None
    assert store.find_by_hash("hash5") == "/photos/p05.jpg" and store.find_by_hash("nope") is None
    store.add([_item(3, seed=99)])  # the same path with new content replaces the old
    assert len(store) == 6 and store.record("/photos/p03.jpg").content_hash == "hash99"
    np.testing.assert_allclose(store.get_grid("/photos/p03.jpg"), _grid(99), atol=np.abs(_grid(99)).max() / 254 + 1e-3)
    store.remove(["/photos/p01.jpg", "/photos/absent.jpg"])
    assert len(store) == 5 and "/photos/p01.jpg" not in store.records()
    assert all(h.path != "/photos/p01.jpg" for h in search(store, _query(_grid(1)), k=10))


def test_reopen_after_close_keeps_everything(opener: Opener, tmp_path: Path) -> None:
    first = opener(tmp_path)
    first.add([_item(i) for i in range(8)])
    query = _query(_grid(2))
    before = [(h.path, round(h.score, 5)) for h in search(first, query, k=8)]
    first.close()
    again = opener(tmp_path, create=False)
    try:
        assert len(again) == 8 and sorted(again.records()) == sorted(f"/photos/p{i:02d}.jpg" for i in range(8))
        assert [(h.path, round(h.score, 5)) for h in search(again, query, k=8)] == before
    finally:
        again.close()


def test_another_models_store_is_refused(opener: Opener, tmp_path: Path) -> None:
    opener(tmp_path).close()
    with pytest.raises(ModelMismatchError, match="another-model-ffffffffffff"):
        opener(tmp_path, bundle="another-model-ffffffffffff", create=False)


# ---------------------------------------------------------------------------------------------- filters, combined


DAY = 86_400
EPOCH = 1_600_000_000  # 2020-09-13


def _filed_item(i: int) -> tuple[PhotoRecord, np.ndarray]:
    """Photo i in one of three folders (one nested), a .jpg, .JPEG or .png, taken on day i (every
    seventh one's date unknown, as a photo indexed before dates were kept)."""
    folder = ("a", "b", "b/c")[i % 3]
    suffix = (".jpg", ".JPEG", ".png", ".jpg")[i % 4]
    taken = None if i % 7 == 0 else EPOCH + i * DAY
    return PhotoRecord(f"/photos/{folder}/p{i:02d}{suffix}", 100 + i, 10 + i, f"hash{i}", GRID, 64, 48, taken), _grid(i)


FILTERS = {
    "folder": PhotoFilter.of(["/photos/b"]),  # b and b/c, never a; nor /photos/bb were there one
    "folders": PhotoFilter.of(["/photos/a", "/photos/b/c"]),
    "dates": PhotoFilter(since=EPOCH + 10 * DAY, until=EPOCH + 40 * DAY),
    "since": PhotoFilter(since=EPOCH + 45 * DAY),
    "type": PhotoFilter.of(types="jpg"),  # .jpg and .JPEG
    "all": PhotoFilter.of(["/photos/b"], until="2020-11-01T00:00:00+00:00", types="png,jpeg"),
}


def _meets(record: PhotoRecord, where: PhotoFilter) -> bool:
    """The filter rules of assoc.runtime.search.filters, written out for one photo."""
    folders = not where.folders or any(record.path.startswith(f + "/") for f in where.folders)
    suffix = "." + record.path.rsplit(".", 1)[1].lower()
    types = not where.types or suffix in where.types
    dated = record.taken is not None
    dates = not where.dated or (
        dated
        and (where.since is None or record.taken >= where.since)
        and (where.until is None or record.taken <= where.until)
    )
    return folders and types and dates


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_a_filter_narrows_before_the_first_stage(store: Store, name: str) -> None:
    """The first stage ranks only the photos that meet the filter: k of them come back when k meet it,
    each scored exactly, the best of them first."""
    where = FILTERS[name]
    items = [_filed_item(i) for i in range(PHOTOS)]
    store.add(items)
    meeting = {r.path: g for r, g in items if _meets(r, where)}
    assert 10 < len(meeting) < PHOTOS  # more than the first stage's candidates, fewer than all
    query = _query(items[14][1])
    expected = _exact(meeting, query)
    counted = CountingSource()
    hits = search(store, query, k=10, source=counted, where=where)
    assert counted.kept == [FIRST_STAGE.candidates]  # the first stage ran, among the photos that meet it
    assert len(hits) == 10 and all(h.path in meeting for h in hits)
    np.testing.assert_allclose([h.score for h in hits], [dict(expected)[h.path] for h in hits], atol=1e-4)
    everything = search(store, query, k=PHOTOS, where=where, exact=True)
    assert [h.path for h in everything] == [p for p, _ in expected]  # every photo that meets it, no other
    assert search(store, query, k=PHOTOS, where=PhotoFilter()) == search(store, query, k=PHOTOS)


def test_photos_of_unknown_date_meet_no_date_rule_until_their_dates_are_set(store: Store) -> None:
    items = [(replace(r, taken=None), g) for r, g in (_item(i) for i in range(12))]
    store.add(items)
    where = PhotoFilter(since=EPOCH, until=EPOCH + 5 * DAY)
    query = _query(items[2][1])
    assert search(store, query, k=12, where=where) == []
    store.set_dates({r.path: EPOCH + i * DAY for i, (r, _) in enumerate(items)} | {"/photos/absent.jpg": EPOCH})
    assert store.record(items[3][0].path).taken == EPOCH + 3 * DAY
    assert {p: r.taken for p, r in store.records().items()} == {
        r.path: EPOCH + i * DAY for i, (r, _) in enumerate(items)
    }
    assert sorted(h.path for h in search(store, query, k=12, where=where)) == [r.path for r, _ in items[:6]]


def test_a_combined_score_is_exactly_what_the_docs_say(store: Store) -> None:
    """(2·s₁ + s₂ − s₃) / 3 for terms 2:q₁ + q₂ − q₃, each sᵢ the term's own fused score, against numpy
    written out; the first stage ranks once, by the combination's estimate; a lone plus term is itself."""
    items = [_filed_item(i) for i in range(PHOTOS)]
    store.add(items)
    stored = {r.path: store.get_vectors(r.path) for r, _ in items}
    vectors = [_query(items[i][1], seed=i) for i in (4, 9, 4)]
    terms = [(Query.of(v, D, global_weight=0.3), w) for v, w in zip(vectors, (2.0, 1.0, -1.0), strict=True)]
    combined = CombinedQuery.of(terms)

    grids = {r.path: g for r, g in items}

    def fused(path: str, photo, v: np.ndarray) -> float:  # noqa: ANN001 - PhotoVectors
        pooled = v.astype(np.float64).mean(0)
        pooled /= np.linalg.norm(pooled)
        local = dict(_exact({path: grids[path]}, v))[path]  # the grid as stored, the words as scored
        return float(0.7 * local + 0.3 * photo.pooled.astype(np.float64) @ pooled)

    own = {p: [fused(p, photo, v) for v in vectors] for p, photo in stored.items()}
    score = {p: (2 * s[0] + s[1] - s[2]) / 3 for p, s in own.items()}
    expected = sorted(score.items(), key=lambda ps: (-ps[1], ps[0]))
    hits = search(store, combined, k=5, exact=True)
    assert [h.path for h in hits] == [p for p, _ in expected[:5]]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected[:5]], atol=1e-4)
    for hit in hits:
        np.testing.assert_allclose(hit.terms, own[hit.path], atol=1e-4)
    counted = CountingSource()
    first = search(store, combined, k=5, source=counted)
    assert counted.kept == [FIRST_STAGE.candidates]  # one first stage, by the combination's estimate
    np.testing.assert_allclose([h.score for h in first], [score[h.path] for h in first], atol=1e-4)
    assert CombinedQuery.of([terms[0]]) is terms[0][0]  # one plus term, whatever its weight: its own query
    with pytest.raises(QueryError, match="look for"):
        CombinedQuery.of([(terms[0][0], -1.0)])


def test_both_stores_filter_and_combine_alike_exactly(tmp_path: Path) -> None:
    """The same filters and combined queries, the same hits to the last bit in both stores."""
    items = [_filed_item(i) for i in range(PHOTOS)]
    builtin, qdrant = _open_builtin(tmp_path), _open_qdrant(tmp_path)
    try:
        builtin.add(items)
        qdrant.add(items)
        plain = Query.of(_query(items[17][1]), D, global_weight=0.3)
        combined = CombinedQuery.of(
            [(plain, 1.0), (Query.of(_query(items[5][1]), D), 0.5), (Query.of(_query(items[8][1]), D), -2.0)]
        )
        for where in [None, *FILTERS.values()]:
            for query in (plain, combined):
                for exact in (False, True):
                    ours = search(builtin, query, 8, exact=exact, where=where)
                    assert ours == search(qdrant, query, 8, exact=exact, where=where)
                    assert len(ours) == 8
    finally:
        builtin.close()
        qdrant.close()

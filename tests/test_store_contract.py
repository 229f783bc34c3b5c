"""One contract, every store: the built-in gallery and Qdrant (embedded) behave the same to their callers.

Each test runs against both, on synthetic unit-normalised grids, and compares with MaxSim written out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from assoc.runtime.errors import GalleryError
from assoc.runtime.stores.base import PhotoRecord, Store
from assoc.runtime.stores.gallery import Gallery

D = 32
GRID = (5, 5)
BUNDLE = "contract-0123456789ab"

Opener = Callable[..., Store]


def _open_builtin(folder: Path, bundle: str = BUNDLE, create: bool = True) -> Store:
    return Gallery.open(folder / "gallery", bundle, D, create=create)


def _open_qdrant(folder: Path, bundle: str = BUNDLE, create: bool = True) -> Store:
    pytest.importorskip("qdrant_client", reason="qdrant-client is not installed (assoc[qdrant])")
    from assoc.runtime.stores.qdrant import QdrantStore

    return QdrantStore(bundle, D, path=folder / "qdrant", collection="contract", create=create)


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
    scored = [
        (path, float((g.reshape(-1, D).astype(np.float64) @ query.astype(np.float64).T).max(axis=0).mean()))
        for path, g in grids.items()
    ]
    return sorted(scored, key=lambda ps: (-ps[1], ps[0]))


def _query(grid: np.ndarray, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = grid.reshape(-1, D)[rng.choice(GRID[0] * GRID[1], 3, replace=False)]
    noisy = picks + 0.3 * rng.normal(size=picks.shape)
    return (noisy / np.linalg.norm(noisy, axis=-1, keepdims=True)).astype(np.float32)


def test_add_search_order_and_exact_scores(store: Store) -> None:
    items = [_item(i) for i in range(20)]
    store.add(items)
    assert len(store) == 20
    stored = {r.path: store.get_grid(r.path) for r, _ in items}
    for r, g in items:  # read back as float32, within float16 rounding of what went in
        np.testing.assert_allclose(stored[r.path], g, atol=2e-3)
    query = _query(items[4][1])
    expected = _exact(stored, query)
    hits = store.search(query, k=5)
    assert hits[0].path == items[4][0].path
    assert [h.path for h in hits] == [p for p, _ in expected[:5]]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected[:5]], atol=1e-4)
    assert all(h.score >= 0.0 for h in store.search(query, k=20, min_score=0.0))
    assert len(store.search(query, k=3)) == 3


def test_records_lookup_replace_and_remove(store: Store) -> None:
    store.add([_item(i) for i in range(6)])
    record = store.record("/photos/p03.jpg")
    assert record is not None and (record.size, record.content_hash, record.grid) == (103, "hash3", GRID)
    assert store.record("/photos/none.jpg") is None and store.get_grid("/photos/none.jpg") is None
    assert store.find_by_hash("hash5") == "/photos/p05.jpg" and store.find_by_hash("nope") is None
    store.add([_item(3, seed=99)])  # the same path with new content replaces the old
    assert len(store) == 6 and store.record("/photos/p03.jpg").content_hash == "hash99"
    np.testing.assert_allclose(store.get_grid("/photos/p03.jpg"), _grid(99), atol=2e-3)
    store.remove(["/photos/p01.jpg", "/photos/absent.jpg"])
    assert len(store) == 5 and "/photos/p01.jpg" not in store.records()
    assert all(h.path != "/photos/p01.jpg" for h in store.search(_query(_grid(1)), k=10))


def test_reopen_after_close_keeps_everything(opener: Opener, tmp_path: Path) -> None:
    first = opener(tmp_path)
    first.add([_item(i) for i in range(8)])
    query = _query(_grid(2))
    before = [(h.path, round(h.score, 5)) for h in first.search(query, k=8)]
    first.close()
    again = opener(tmp_path, create=False)
    try:
        assert len(again) == 8 and sorted(again.records()) == sorted(f"/photos/p{i:02d}.jpg" for i in range(8))
        assert [(h.path, round(h.score, 5)) for h in again.search(query, k=8)] == before
    finally:
        again.close()


def test_another_models_store_is_refused(opener: Opener, tmp_path: Path) -> None:
    opener(tmp_path).close()
    with pytest.raises(GalleryError):
        opener(tmp_path, bundle="another-model-ffffffffffff", create=False)

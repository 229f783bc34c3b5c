"""QdrantStore against the real qdrant-client in local mode (and a real server if ASSOC_QDRANT_URL is set)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_client", reason="qdrant-client is not installed (assoc[qdrant])")

from exact_reference import as_stored, exact_scores  # noqa: E402

from assoc.runtime.encoding.bundle import (
    FirstStageConfig,  # noqa: E402
    load_bundle,  # noqa: E402
)
from assoc.runtime.encoding.encoders import ImageEncoder, TextEncoder  # noqa: E402
from assoc.runtime.errors import GalleryError, ModelMismatchError, NoGalleryError, QueryError  # noqa: E402
from assoc.runtime.indexing.indexer import index_paths  # noqa: E402
from assoc.runtime.scoring.quantize import as_scored  # noqa: E402
from assoc.runtime.search.pipeline import search  # noqa: E402
from assoc.runtime.stores.base import PhotoRecord  # noqa: E402
from assoc.runtime.stores.gallery import Gallery  # noqa: E402
from assoc.runtime.stores.qdrant import QdrantStore  # noqa: E402

D = 64
H = W = 7
N_PHOTOS = 40
BUNDLE = "tiny-0123456789ab"


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_items(n: int = N_PHOTOS, seed: int = 0, prefix: str = "/photos") -> list[tuple[PhotoRecord, np.ndarray]]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        grid = unit(rng.normal(size=(H, W, D)))
        record = PhotoRecord(
            path=f"{prefix}/img_{i:03d}.jpg",
            size=1000 + i,
            mtime_ns=1_700_000_000_000_000_000 + i,
            content_hash=f"hash{i:03d}",
            grid=(H, W),
            width=640,
            height=480 + i,
        )
        items.append((record, grid))
    return items


def word_query(grid: np.ndarray, rng: np.random.Generator, t: int = 3) -> np.ndarray:
    """t query vectors, each a noisy copy of one patch of grid: that photo should win."""
    patches = grid.reshape(-1, D)[rng.choice(H * W, size=t, replace=False)]
    return unit(patches + 0.6 * rng.normal(size=patches.shape) / np.sqrt(D))


def brute_force(items: list[tuple[PhotoRecord, np.ndarray]], query: np.ndarray, k: int) -> list[tuple[str, float]]:
    """MISA as every store scores it (exact_reference: the float16 grids quantized as the built-in
    gallery stores them, the query's words quantized as the scan multiplies them)."""
    scores = exact_scores(np.stack([g for _, g in items]), query, "misa")
    order = np.argsort(-scores)[:k]
    return [(items[i][0].path, float(scores[i])) for i in order]


@pytest.fixture()
def items() -> list[tuple[PhotoRecord, np.ndarray]]:
    return make_items()


@pytest.fixture()
def store(items):
    s = QdrantStore(BUNDLE, D, path=":memory:")
    s.add(items)
    yield s
    s.close()


def test_roundtrip_records_and_grids(store, items):
    assert len(store) == N_PHOTOS
    assert store.records() == {r.path: r for r, _ in items}
    record, grid = items[5]
    got = store.get_grid(record.path)
    assert got.dtype == np.float32 and got.shape == (H, W, D)
    # Patches are stored as float16 and given back as the exact score sees them: their int8 codes
    # dequantized, as the built-in gallery gives its grids back.
    np.testing.assert_array_equal(got, as_scored(grid.astype(np.float16)))
    assert np.abs(got - grid).max() < 2 * np.abs(grid).max() / 127
    np.testing.assert_array_equal(store.get_vectors(record.path).grid, grid.astype(np.float16))  # kept as is
    assert store.get_grid("/photos/absent.jpg") is None


def test_record_is_one_point_or_none(store, items):
    record, _ = items[12]
    assert store.record(record.path) == record
    assert store.record("/photos/absent.jpg") is None
    store.remove([record.path])
    assert store.record(record.path) is None


def test_same_path_replaces(store, items):
    record, _ = items[3]
    new_record = PhotoRecord(record.path, 1, 2, "newhash", (4, 5), 10, 20)
    new_grid = unit(np.random.default_rng(9).normal(size=(4, 5, D)))
    store.add([(new_record, new_grid)])
    assert len(store) == N_PHOTOS
    assert store.records()[record.path] == new_record
    assert store.get_grid(record.path).shape == (4, 5, D)
    assert store.find_by_hash("newhash") == record.path
    assert store.find_by_hash(record.content_hash) is None


def test_remove(store, items):
    gone = [items[0][0].path, items[7][0].path]
    store.remove([*gone, "/photos/never-indexed.jpg"])
    assert len(store) == N_PHOTOS - 2
    assert not set(gone) & set(store.records())
    assert store.get_grid(gone[0]) is None
    assert all(hit.path not in gone for hit in search(store, items[0][1].reshape(-1, D), k=N_PHOTOS))


def test_exact_scans_every_photo_and_keeps_the_gallerys_vectors(items):
    """exact=True scores every photo's patches, whatever the first stage keeps; a photo's stored vectors
    are those photo_vectors makes (what the built-in gallery keeps too), to the bit."""
    from assoc.runtime.scoring.first_stage import photo_vectors

    tiny = FirstStageConfig(shortlist=0, shortlist_min=1, candidates=1)
    s = QdrantStore(BUNDLE, D, path=":memory:", first_stage=tiny)
    try:
        s.add(items)
        query = word_query(items[4][1], np.random.default_rng(3), t=4)
        expected = brute_force(items, query, 10)
        hits = search(s, query, k=10, exact=True)
        assert [h.path for h in hits] == [p for p, _ in expected]
        np.testing.assert_allclose([h.score for h in hits], [sc for _, sc in expected], atol=1e-5)
        record, grid = items[0]
        stored, made = s.get_vectors(record.path), photo_vectors(grid[None], tiny)[0]
        for name in ("grid", "pooled", "centroids"):
            assert np.array_equal(getattr(stored, name), getattr(made, name)), name
    finally:
        s.close()


def test_find_by_hash(store, items):
    assert store.find_by_hash("hash011") == items[11][0].path
    assert store.find_by_hash("no-such-hash") is None


@pytest.mark.parametrize("t", [1, 3, 8])
def test_search_equals_brute_force_misa(store, items, t):
    rng = np.random.default_rng(100 + t)
    query = word_query(items[17][1], rng, t)
    expected = brute_force(items, query, k=10)
    hits = search(store, query, k=10)
    assert [h.path for h in hits] == [p for p, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-5)
    assert hits[0].path == items[17][0].path


def test_min_score_filters(store, items):
    query = word_query(items[2][1], np.random.default_rng(1))
    everything = search(store, query, k=N_PHOTOS)
    threshold = everything[4].score
    kept = search(store, query, k=N_PHOTOS, min_score=threshold)
    assert kept == everything[:5]
    assert all(h.score >= threshold for h in kept)
    assert search(store, query, k=N_PHOTOS, min_score=1.5) == []


def test_image_as_query_finds_itself(items):
    # A small first stage still carries the photo through: its pooled vector matches the query's.
    small = FirstStageConfig(shortlist=0, shortlist_min=5, candidates=5)
    store = QdrantStore(BUNDLE, D, path=":memory:", first_stage=small)
    store.add(items)
    for i in (0, 21, 39):
        hits = search(store, items[i][1].reshape(-1, D), k=3)
        assert hits[0].path == items[i][0].path
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert len(search(store, items[0][1].reshape(-1, D), k=10)) == 10  # k above the first stage's candidates
    store.close()


def test_every_score_kind_and_well_formed_queries(store, items):
    query = word_query(items[5][1], np.random.default_rng(8), 4)
    for kind in ("sisa", "mima"):
        expected = sorted(
            ((r.path, float(exact_scores(g[None], query, kind)[0])) for r, g in items), key=lambda x: (-x[1], x[0])
        )[:5]
        hits = search(store, query, k=5, kind=kind, exact=True)
        assert [h.path for h in hits] == [p for p, _ in expected]
    with pytest.raises(QueryError, match="shape"):
        search(store, np.ones((2, D + 1), np.float32))
    with pytest.raises(QueryError, match="shape"):
        search(store, np.ones((0, D), np.float32))


def test_persists_and_refuses_another_bundle(tmp_path: Path, items):
    where = tmp_path / "qdrant"
    store = QdrantStore(BUNDLE, D, path=where, collection="photos")
    store.add(items[:10])
    store.close()

    reopened = QdrantStore(BUNDLE, D, path=where, collection="photos")
    assert reopened.records() == {r.path: r for r, _ in items[:10]}
    reopened.close()

    with pytest.raises(ModelMismatchError, match=f"{BUNDLE}, not other-model-ffffffffffff") as err:
        QdrantStore("other-model-ffffffffffff", D, path=where, collection="photos")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelMismatchError, match="64-d vectors"):
        QdrantStore(BUNDLE, 32, path=where, collection="photos")
    # Another collection in the same folder is free for another model.
    other = QdrantStore("other-model-ffffffffffff", D, path=where, collection="other")
    assert len(other) == 0
    other.close()


def test_without_create_a_missing_collection_is_an_error_and_nothing_is_made(tmp_path: Path, items):
    from qdrant_client import QdrantClient

    where = tmp_path / "qdrant"
    with pytest.raises(NoGalleryError, match="nothing indexed there yet") as err:
        QdrantStore(BUNDLE, D, path=where, collection="photos", create=False)
    assert "\n" not in str(err.value) and str(where) in str(err.value)
    assert not where.exists()

    QdrantStore(BUNDLE, D, path=where, collection="other").close()  # the folder now exists, "photos" not
    with pytest.raises(NoGalleryError, match="no collection 'photos'") as err:
        QdrantStore(BUNDLE, D, path=where, collection="photos", create=False)
    assert "nothing indexed there yet" in str(err.value) and "\n" not in str(err.value)
    client = QdrantClient(path=str(where))
    assert not client.collection_exists("photos")
    client.close()

    made = QdrantStore(BUNDLE, D, path=where, collection="photos")
    made.add(items[:3])
    made.close()
    reopened = QdrantStore(BUNDLE, D, path=where, collection="photos", create=False)
    assert len(reopened) == 3
    reopened.close()


def test_refuses_a_collection_not_made_by_assoc(tmp_path: Path):
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path))
    client.create_collection("assoc", vectors_config=models.VectorParams(size=D, distance=models.Distance.DOT))
    client.close()
    with pytest.raises(GalleryError, match="not made by assoc"):
        QdrantStore(BUNDLE, D, path=tmp_path)


def test_local_folder_is_single_writer(tmp_path: Path):
    store = QdrantStore(BUNDLE, D, path=tmp_path)
    with pytest.raises(GalleryError, match="open in another process"):
        QdrantStore(BUNDLE, D, path=tmp_path)
    store.close()


def test_unreachable_server_is_retried_then_one_line_error():
    with pytest.raises(GalleryError, match="after 3 attempts") as err:
        QdrantStore(BUNDLE, D, url="http://127.0.0.1:9", attempts=3, backoff_s=0.01, timeout=2)
    assert "ConnectError" in str(err.value) and "\n" not in str(err.value)


@contextmanager
def http_server(status: int) -> Iterator[tuple[list[str], str]]:
    """A plain HTTP server answering every request with status and Qdrant's error body."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = json.dumps({"status": {"error": "stub says no"}, "time": 0}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield seen, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_server_errors_503_retried_401_not():
    with http_server(503) as (seen, url), pytest.raises(GalleryError, match="after 3 attempts: HTTP 503"):
        QdrantStore(BUNDLE, D, url=url, attempts=3, backoff_s=0.01)
    assert len(seen) == 3
    with (
        http_server(401) as (seen, url),
        pytest.raises(GalleryError, match="connect failed: HTTP 401 stub says no"),
    ):
        QdrantStore(BUNDLE, D, url=url, attempts=3, backoff_s=0.01)
    assert len(seen) == 1


def test_needs_url_or_path():
    with pytest.raises(GalleryError, match="either"):
        QdrantStore(BUNDLE, D)
    with pytest.raises(GalleryError, match="either"):
        QdrantStore(BUNDLE, D, url="http://localhost:6333", path=":memory:")


def test_clear_error_without_qdrant_client():
    code = (
        "import sys; sys.modules['qdrant_client'] = None\n"
        "import assoc.runtime.stores.qdrant as q\n"
        "from assoc.runtime.errors import AssocError\n"
        "try:\n    q.QdrantStore('b', 4, path=':memory:')\n"
        "except AssocError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "the Qdrant store needs qdrant-client: install assoc[qdrant]"


def test_parity_with_builtin_gallery(tmp_path: Path, store, items):
    with Gallery.open(tmp_path / "gallery", bundle_id=BUNDLE, embed_dim=D) as builtin:
        builtin.add(items)
        assert builtin.records() == store.records()
        # Qdrant keeps the float16 patches, the gallery their int8 codes: those of Qdrant's, to the bit.
        np.testing.assert_array_equal(
            builtin.get_grid(items[8][0].path), as_stored(store.get_grid(items[8][0].path)[None])[0]
        )
        rng = np.random.default_rng(5)
        for target in (4, 30):
            query = word_query(items[target][1], rng)
            ours, theirs = search(store, query, k=8), search(builtin, query, k=8)
            assert [h.path for h in ours] == [h.path for h in theirs]
            assert [h.score for h in ours] == [h.score for h in theirs]


def test_indexer_with_real_photos(tmp_path: Path, flickr8k: Path, bundle_dir: Path):
    """The store-agnostic indexer on a QdrantStore: index, re-run, rename; then parity with a Gallery."""
    bundle = load_bundle(bundle_dir)
    encoder, dim = ImageEncoder(bundle, device="cpu"), bundle.config.embed_dim
    library = tmp_path / "library"
    library.mkdir()
    for source in sorted((flickr8k / "images").glob("*.jpg"))[:6]:
        shutil.copyfile(source, library / source.name)
    store = QdrantStore(bundle.bundle_id, dim, path=tmp_path / "qdrant")
    try:
        first = index_paths(store, encoder, [library], batch_size=4, workers=2)
        assert (first.added, len(store)) == (6, 6)
        assert index_paths(store, encoder, [library], workers=2).unchanged == 6
        renamed = sorted(library.glob("*.jpg"))[0]
        renamed.rename(library / "renamed.jpg")
        again = index_paths(store, encoder, [library], workers=2)
        assert (again.reused, again.removed, again.added) == (1, 1, 0)
        assert str(library / "renamed.jpg") in store.records()

        records = store.records()
        query = TextEncoder(bundle, device="cpu").encode_one("a dog runs on the grass").vectors
        with Gallery.open(tmp_path / "gallery", bundle_id=bundle.bundle_id, embed_dim=dim) as builtin:
            builtin.add([(record, store.get_grid(path)) for path, record in records.items()])
            ours, theirs = search(store, query, k=6), search(builtin, query, k=6)
        assert [h.path for h in ours] == [h.path for h in theirs]
        np.testing.assert_allclose([h.score for h in ours], [h.score for h in theirs], atol=1e-5)
    finally:
        store.close()


def test_real_server():
    url = os.environ.get("ASSOC_QDRANT_URL")
    if not url:
        pytest.skip("set ASSOC_QDRANT_URL (and ASSOC_QDRANT_API_KEY if needed) to test against a Qdrant server")
    from qdrant_client import QdrantClient

    name = f"assoc-test-{uuid.uuid4().hex[:8]}"
    api_key = os.environ.get("ASSOC_QDRANT_API_KEY")
    items = make_items(n=70)  # more than one upload batch
    store = QdrantStore(BUNDLE, D, url=url, api_key=api_key, collection=name)
    try:
        store.add(items)
        assert len(store) == 70
        assert store.records() == {r.path: r for r, _ in items}
        np.testing.assert_array_equal(
            store.get_grid(items[1][0].path), items[1][1].astype(np.float16).astype(np.float32)
        )
        assert store.find_by_hash("hash042") == items[42][0].path
        query = word_query(items[9][1], np.random.default_rng(3))
        hits = search(store, query, k=5)
        expected = brute_force(items, query, k=5)
        assert [h.path for h in hits] == [p for p, _ in expected]
        np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-3)
        store.remove([items[0][0].path])
        assert len(store) == 69
        store.close()
        with pytest.raises(GalleryError, match="not other-model"):
            QdrantStore("other-model", D, url=url, api_key=api_key, collection=name)
    finally:
        store.close()
        client = QdrantClient(url=url, api_key=api_key)
        client.delete_collection(name)
        client.close()

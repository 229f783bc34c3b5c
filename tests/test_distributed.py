"""Indexing on a real local Ray cluster into Qdrant (local mode; a server too if ASSOC_QDRANT_URL is set),
checked against the one-machine indexer on the same real photos."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from cli_support import assert_one_line_error, ok_json, run_process

pytest.importorskip("qdrant_client", reason="qdrant-client is not installed (assoc[qdrant])")
ray = pytest.importorskip("ray", reason="Ray is not installed (assoc[ray])")

from assoc.distributed import index_on_cluster  # noqa: E402
from assoc.runtime.encoding.bundle import Bundle  # noqa: E402
from assoc.runtime.encoding.encoders import ImageEncoder, TextEncoder  # noqa: E402
from assoc.runtime.errors import AssocError  # noqa: E402
from assoc.runtime.indexing.indexer import IndexSummary, index_paths  # noqa: E402
from assoc.runtime.search.pipeline import search  # noqa: E402
from assoc.runtime.stores.gallery import Gallery  # noqa: E402
from assoc.runtime.stores.qdrant import QdrantStore  # noqa: E402

PHOTOS = 24
BATCH = 4
ENCODER_ACTOR = "ray::MapWorker(MapBatches(_Encoder))"  # the process title Ray gives an encoder actor
QUERIES = ("a dog runs on the grass", "children playing in the water", "a man on a bike")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A real Ray cluster on this machine (loopback), shared by the module's tests."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def library(tmp_path: Path, flickr8k: Path) -> Path:
    """24 real photos in two folders, and one file that is not a photo."""
    photos = sorted((flickr8k / "images").glob("*.jpg"))[:PHOTOS]
    for i, photo in enumerate(photos):
        target = tmp_path / "library" / f"{i % 2}" / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
    (tmp_path / "library" / "0" / "shopping-list.jpg").write_text("eggs, milk, not a photo\n")
    return tmp_path / "library"


StoreFactory = Callable[[str], QdrantStore]


@pytest.fixture(params=["local", "server"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path, bundle: Bundle) -> Iterator[StoreFactory]:
    """Opens Qdrant stores by name: folders under tmp_path, or collections on ASSOC_QDRANT_URL."""
    url = os.environ.get("ASSOC_QDRANT_URL")
    if request.param == "server" and not url:
        pytest.skip("set ASSOC_QDRANT_URL (and ASSOC_QDRANT_API_KEY if needed) to test against a Qdrant server")
    opened: list[QdrantStore] = []
    run = uuid.uuid4().hex[:8]

    def open_one(name: str) -> QdrantStore:
        if request.param == "local":
            store = QdrantStore(bundle.bundle_id, bundle.config.embed_dim, path=tmp_path / name)
        else:
            api_key = os.environ.get("ASSOC_QDRANT_API_KEY")
            collection = f"assoc-test-{run}-{name}"
            store = QdrantStore(
                bundle.bundle_id, bundle.config.embed_dim, url=url, api_key=api_key, collection=collection
            )
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        if request.param == "server":
            store._client.delete_collection(store.collection)
        store.close()


def on_cluster(store: QdrantStore, bundle: Bundle, library: Path, **kwargs: object) -> IndexSummary:
    return index_on_cluster(store, bundle, [library], batch_size=BATCH, workers=2, worker_cpus=0.75, **kwargs)


def counts(summary: IndexSummary) -> tuple[int, int, int, int, int, list[tuple[str, str]]]:
    s = summary
    return s.added, s.updated, s.reused, s.removed, s.unchanged, sorted(s.skipped)


def assert_same_gallery(store: QdrantStore, reference: QdrantStore, bundle: Bundle) -> None:
    """Same records, grids equal within float16 storage tolerance, and the same answers to queries."""
    records = store.records()
    assert records == reference.records()
    for path in records:
        np.testing.assert_allclose(store.get_grid(path), reference.get_grid(path), atol=2e-3)
    text = TextEncoder(bundle, device="cpu")
    for query in QUERIES:
        vectors = text.encode_one(query).vectors
        hits, expected = search(store, vectors, k=10), search(reference, vectors, k=10)
        assert [h.path for h in hits] == [h.path for h in expected]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in expected], atol=1e-3)


@pytest.mark.slow
def test_a_cluster_run_makes_the_one_machine_gallery(
    cluster: None, library: Path, bundle: Bundle, encoder: ImageEncoder, open_store: StoreFactory
) -> None:
    store, reference = open_store("cluster"), open_store("local")
    progress: list[tuple[int, int]] = []
    summary = on_cluster(store, bundle, library, on_progress=lambda done, total: progress.append((done, total)))
    expected = index_paths(reference, encoder, [library], batch_size=BATCH, workers=2)
    assert counts(summary) == counts(expected)
    not_a_photo = (str(library / "0" / "shopping-list.jpg"), "not a recognised image format")
    assert (summary.added, summary.skipped) == (PHOTOS, [not_a_photo])
    assert progress[0] == (0, PHOTOS + 1) and progress[-1] == (PHOTOS + 1, PHOTOS + 1)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    # The driver times its own stages; reading and encoding happen on the cluster, which it waits for.
    assert {"walk", "cluster", "write"} <= set(summary.seconds) and "encode" not in summary.seconds
    assert {"walk", "read", "encode", "write"} <= set(expected.seconds)
    assert_same_gallery(store, reference, bundle)

    # The next run: a rename, a copy, a change in place, a deletion, and a photo that turned unreadable.
    photos = sorted(library.glob("*/*.jpg"))
    photos.remove(library / "0" / "shopping-list.jpg")
    photos[0].rename(library / "1" / "renamed.jpg")
    shutil.copyfile(photos[1], library / "0" / "copy.jpg")
    shutil.copyfile(photos[2], photos[3])
    photos[4].unlink()
    photos[5].write_text("overwritten by mistake")
    summary = on_cluster(store, bundle, library)
    expected = index_paths(reference, encoder, [library], batch_size=BATCH, workers=2)
    assert counts(summary) == counts(expected) == (
        0,
        0,
        3,  # renamed, copy, and the photo changed into a copy of another
        3,  # the renamed photo's old path, the deleted one, the unreadable one
        PHOTOS - 4,
        sorted([not_a_photo, (str(photos[5]), "not a recognised image format")]),
    )
    assert_same_gallery(store, reference, bundle)
    assert counts(on_cluster(store, bundle, library))[:5] == (0, 0, 0, 0, PHOTOS - 1)


@pytest.mark.slow
def test_an_interrupted_cluster_run_resumes(
    cluster: None, library: Path, bundle: Bundle, encoder: ImageEncoder, open_store: StoreFactory
) -> None:
    store, reference = open_store("cluster"), open_store("local")
    index_paths(reference, encoder, [library], batch_size=BATCH, workers=2)

    def interrupt(done: int, total: int) -> None:
        if done >= 2 * BATCH:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        on_cluster(store, bundle, library, on_progress=interrupt)
    written = len(store)
    assert 2 * BATCH - 1 <= written < PHOTOS  # whole batches were written (one may hold the bad file)

    summary = on_cluster(store, bundle, library)
    assert (summary.added, summary.unchanged, len(summary.skipped)) == (PHOTOS - written, written, 1)
    assert_same_gallery(store, reference, bundle)


@pytest.mark.slow
def test_a_pool_that_would_starve_decoding_is_refused(
    cluster: None, library: Path, bundle: Bundle, tmp_path: Path
) -> None:
    """Actors holding every CPU would leave the decoding tasks none: the run would wait forever."""
    store = QdrantStore(bundle.bundle_id, bundle.config.embed_dim, path=tmp_path / "q")
    with pytest.raises(AssocError, match="has room for 1 encoder actors of 1 CPUs beside decoding .*, not 2"):
        index_on_cluster(store, bundle, [library], workers=2, worker_cpus=1.0)
    assert len(store) == 0
    store.close()


@pytest.mark.slow
def test_encoders_that_cannot_start_end_the_run_with_their_reason(
    cluster: None, library: Path, bundle: Bundle, tmp_path: Path
) -> None:
    import onnxruntime

    if "CoreMLExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime can run CoreML")
    store = QdrantStore(bundle.bundle_id, bundle.config.embed_dim, path=tmp_path / "q")
    with pytest.raises(AssocError, match="^the Ray cluster failed: device coreml: .*no CoreMLExecutionProvider"):
        on_cluster(store, bundle, library, device="coreml")
    assert len(store) == 0
    store.close()


def encoder_actor_pids() -> list[int]:
    """Processes of this test's Ray cluster that host an encoder actor (Ray names them by their title)."""
    mine = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
            if title.startswith(ENCODER_ACTOR) and _descends_from(int(entry.name), os.getpid()):
                mine.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return mine


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the actor's process in /proc")
def test_a_killed_encoder_actor_is_restarted_and_the_run_completes(
    cluster: None, library: Path, bundle: Bundle, encoder: ImageEncoder, tmp_path: Path
) -> None:
    store = QdrantStore(bundle.bundle_id, bundle.config.embed_dim, path=tmp_path / "cluster")
    reference = QdrantStore(bundle.bundle_id, bundle.config.embed_dim, path=tmp_path / "local")
    index_paths(reference, encoder, [library], batch_size=BATCH, workers=2)
    killed: list[int] = []

    def kill_an_actor(done: int, total: int) -> None:
        if done and not killed:
            pids = encoder_actor_pids()
            assert pids, "no encoder actor process found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    summary = on_cluster(store, bundle, library, on_progress=kill_an_actor)
    assert killed and (summary.added, len(summary.skipped)) == (PHOTOS, 1)
    assert_same_gallery(store, reference, bundle)
    store.close()
    reference.close()


@pytest.mark.slow
def test_assoc_index_with_ray(cluster: None, library: Path, tmp_path: Path) -> None:
    """The CLI on the module's cluster (an initialised Ray is used as it is): the same summary and answers
    as without --ray."""
    on_ray = ("--store", "qdrant", "--qdrant-path", tmp_path / "ray", "--device", "cpu")
    here = ("--store", "qdrant", "--qdrant-path", tmp_path / "here", "--device", "cpu")
    summary = ok_json("index", library, *on_ray, "--ray", "local", "--batch-size", str(BATCH))
    assert summary == ok_json("index", library, *here)
    assert summary["added"] == PHOTOS and len(summary["skipped"]) == 1
    for query in QUERIES:
        hits, expected = ok_json("query", query, "-k", "5", *on_ray), ok_json("query", query, "-k", "5", *here)
        assert [h["path"] for h in hits] == [h["path"] for h in expected]
        assert [h["score"] for h in hits] == pytest.approx([h["score"] for h in expected], abs=1e-3)


@pytest.mark.slow
def test_an_unreachable_cluster_is_one_line(library: Path, tmp_path: Path) -> None:
    store = ("--store", "qdrant", "--qdrant-path", tmp_path / "q")
    unreachable = run_process("index", library, *store, "--ray", "127.0.0.1:1")
    assert_one_line_error(unreachable, "cannot reach Ray at 127.0.0.1:1")
    assert_one_line_error(run_process("index", library, *store, "--ray", "head-node"), "HOST:PORT")


SEARCH_ONLY = """
import json, sys
from assoc.cli.app import main

sys.argv = ["assoc", "query", "a dog runs on the grass", "--gallery", sys.argv[1], "--json"]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
loaded = sorted(name for name in sys.modules if name == "ray" or name.startswith("ray."))
print(json.dumps({"code": code, "ray": loaded}), file=sys.stderr)
"""


def test_searching_never_loads_ray(tmp_path: Path, flickr8k: Path, bundle: Bundle, encoder: ImageEncoder) -> None:
    library = tmp_path / "library"
    library.mkdir()
    for photo in sorted((flickr8k / "images").glob("*.jpg"))[:3]:
        shutil.copyfile(photo, library / photo.name)
    with Gallery.open(tmp_path / "g", bundle.bundle_id, bundle.config.embed_dim) as gallery:
        index_paths(gallery, encoder, [library])
    env = {**os.environ, "ASSOC_MODEL": str(bundle.root)}
    done = subprocess.run(
        [sys.executable, "-c", SEARCH_ONLY, str(tmp_path / "g")], capture_output=True, text=True, env=env, timeout=120
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "ray": []}
    assert len(json.loads(done.stdout)) == 3

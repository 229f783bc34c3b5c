"""Qdrant as an assoc store: a server (url) or qdrant-client's local mode (path, or ":memory:").

Each photo is one point with three named vectors, the built-in gallery's three layers:
- ``pooled``: the photo's global vector (float16, DOT, HNSW; COSINE float32 in collections made before
  global vectors): the first stage's shortlist, and the fused score's global term;
- ``centroids``: the photo's first-stage centroids as a multivector (MAX_SIM, no HNSW), which narrow
  the shortlist to the candidates, as the gallery's do (collections made before them skip this step);
- ``patches``: the whole patch grid as a multivector (float16, no HNSW), read for the exact stage.
The first stage runs on the server (one query_points call with a nested prefetch; its MaxSim needs
the float16 values, so patches stay float16 here); the candidates' patches are then quantized as the
built-in gallery stores them (GridChunk.of_grids, scoring/quantize.py, a pure function of the float16
values) and go through the same rerank (assoc.runtime.search), so both stores give the same scores in
the same order.

Point ids are uuid5 of the path, so indexing a path again replaces its point. One extra point with no
vectors holds the collection's metadata (bundle id, embed dim): a collection is tied to one model.

What filters read (assoc.runtime.search.filters) is each point's payload: ``taken`` (the date taken,
Unix seconds), ``folders`` (every folder above the path) and ``type`` (its suffix); a filter becomes
payload conditions inside the prefetch, the query and the scroll, so the first stage ranks only
photos that meet it, and on a server each field has a payload index (made with the collection, or
by the first index run that opens a collection made before them). Points stored before these fields
get them from the next index run, without their vectors being sent again (set_dates).

qdrant-client is an optional dependency (``assoc[qdrant]``), imported only when a store is opened.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..encoding.bundle import FirstStageConfig
from ..errors import AssocError, GalleryError, ModelMismatchError, NoGalleryError
from ..scoring.first_stage import PhotoVectors, photo_vectors
from ..scoring.quantize import as_scored
from ..search.filters import PhotoFilter, ancestors, photo_type
from ..search.pipeline import SearchPlan
from ..search.query import Query
from ..search.rerank import GridChunk, SearchHit
from .base import PhotoRecord, checked_vectors

POOLED = "pooled"
CENTROIDS = "centroids"
PATCHES = "patches"
DEFAULT_COLLECTION = "assoc"
MIN_SERVER_VERSION = (1, 10)  # multivectors and query_points with prefetch
BATCH_POINTS = 64
BATCH_FLOATS = 1_000_000  # keeps one JSON upsert well under the server's 32 MB request limit
PAGE = 1000
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})

# Never change these: every stored point id is derived from them.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "assoc:qdrant-store")
META_ID = str(uuid.uuid5(_NAMESPACE, "\0collection-metadata"))  # NUL cannot occur in a path

T = TypeVar("T")


def point_id(path: str) -> str:
    """The stable id of a photo's point: uuid5 of the path's bytes (its UTF-8 for any valid name).

    Written out because uuid.uuid5 takes only text that encodes as UTF-8, and a name that is not valid
    UTF-8 arrives from os.fsdecode with lone surrogates; os.fsencode gives back its bytes.
    """
    digest = hashlib.sha1(_NAMESPACE.bytes + os.fsencode(path), usedforsecurity=False).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def _path_payload(path: str) -> dict[str, str]:
    """A path as JSON can carry it: the text, and for a name that is not valid UTF-8 also its bytes
    (base64 in "path_bytes"); "path" then shows those bytes as U+FFFD, for people and filters only."""
    raw = os.fsencode(path)
    try:
        return {"path": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"path": raw.decode("utf-8", "replace"), "path_bytes": base64.b64encode(raw).decode("ascii")}


def _filter_payload(path: str, taken: int | None) -> dict[str, Any]:
    """The fields filters read: the date taken (when known), the folders above the path (as its
    payload text), the suffix."""
    fields: dict[str, Any] = {"folders": ancestors(_path_payload(path)["path"]), "type": photo_type(path)}
    if taken is not None:
        fields["taken"] = int(taken)
    return fields


def _payload_path(payload: dict[str, Any]) -> str:
    """The path _path_payload stored."""
    if "path_bytes" in payload:
        return os.fsdecode(base64.b64decode(payload["path_bytes"]))
    return payload["path"]


def _qdrant() -> Any:
    try:
        import qdrant_client
    except ImportError:
        raise AssocError("the Qdrant store needs qdrant-client: install assoc[qdrant]") from None
    return qdrant_client


class QdrantStore:
    """A Store kept in a Qdrant collection. Give either ``url`` (+ ``api_key``) or a local ``path``.

    ``shard_number``, ``replication_factor`` and ``on_disk`` (patch multivectors served from disk;
    the small pooled vectors stay in RAM for HNSW) apply only when the collection is created.
    ``first_stage`` is the bundle's: the centroids stored and how many photos each stage keeps
    (assoc.runtime.search.pipeline.search_plan). With ``create=False`` (the
    read-only commands) a missing collection, or a missing local folder, is a NoGalleryError and
    nothing is created.
    """

    def __init__(
        self,
        bundle_id: str,
        embed_dim: int,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: str | Path | None = None,
        collection: str = DEFAULT_COLLECTION,
        first_stage: FirstStageConfig | None = None,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        on_disk: bool = False,
        create: bool = True,
        timeout: int | None = None,
        attempts: int = 4,
        backoff_s: float = 0.5,
    ) -> None:
        if (url is None) == (path is None):
            raise GalleryError("the Qdrant store needs either a server url or a local path, not both")
        qdrant_client = _qdrant()
        self.bundle_id = bundle_id
        self.embed_dim = embed_dim
        self.collection = collection
        self.first_stage = first_stage or FirstStageConfig()
        self.has_centroids = True  # set when the collection is opened: older collections have none
        self._models = qdrant_client.models
        self._remote = url is not None
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._where = f"Qdrant at {url}" if self._remote else f"local Qdrant {path}"
        if not create and not self._remote and str(path) != ":memory:" and not Path(path).is_dir():
            raise NoGalleryError(f"no {self._where} (nothing indexed there yet)")
        if self._remote:
            self._client = qdrant_client.QdrantClient(
                url=url, api_key=api_key, timeout=timeout, check_compatibility=False
            )
        else:
            self._client = _open_local(qdrant_client, str(path))
        try:
            if self._remote:
                self._check_server_version()
            self._open_collection(shard_number, replication_factor, on_disk, create)
        except BaseException:
            self._client.close()
            raise

    # -- Store protocol ------------------------------------------------------------------------------

    def records(self) -> dict[str, PhotoRecord]:
        records = (_record(point.payload) for page in self._pages("list photos", PAGE, True, False) for point in page)
        return {record.path: record for record in records}

    def _pages(
        self, what: str, limit: int, with_payload: Any, with_vectors: Any, where: PhotoFilter | None = None
    ) -> Iterator[list[Any]]:
        """Every photo's point (never the metadata point) that meets `where`, a page of `limit` at a time."""
        offset = None
        while True:
            points, offset = self._call(
                what,
                lambda o=offset: self._client.scroll(
                    self.collection,
                    scroll_filter=self._photos_only(where),
                    limit=limit,
                    offset=o,
                    with_payload=with_payload,
                    with_vectors=with_vectors,
                ),
            )
            yield points
            if offset is None:
                return

    def record(self, path: str) -> PhotoRecord | None:
        found = self._call(
            "read a record",
            lambda: self._client.retrieve(self.collection, [point_id(path)], with_payload=True, with_vectors=False),
        )
        return _record(found[0].payload) if found else None

    def add(self, items: list[tuple[PhotoRecord, PhotoVectors | np.ndarray]]) -> None:
        """Insert or replace photos: their PhotoVectors, or bare grids (vectors made here, as the gallery does)."""
        if not items:
            return
        # Points are built batch by batch: as JSON-ready lists of floats they are large.
        per_point = int(np.prod(np.shape(_grid_of(items[0][1]))))
        size = max(1, min(BATCH_POINTS, BATCH_FLOATS // per_point))
        for start in range(0, len(items), size):
            batch = [self._point(record, vectors) for record, vectors in items[start : start + size]]
            self._call("upload", lambda b=batch: self._client.upsert(self.collection, b, wait=True))

    def set_dates(self, dates: dict[str, int]) -> None:
        """Set the filter fields (date taken, folders, type) of points stored before them (those still
        there); their vectors stay where they are."""
        models = self._models
        paths = list(dates)
        for start in range(0, len(paths), PAGE):
            ids = {point_id(path): path for path in paths[start : start + PAGE]}
            found = self._call(
                "read records",
                lambda i=list(ids): self._client.retrieve(self.collection, i, with_payload=False, with_vectors=False),
            )
            operations = [
                models.SetPayloadOperation(
                    set_payload=models.SetPayload(payload=_filter_payload(path, dates[path]), points=[point])
                )
                for point, path in ((str(p.id), ids[str(p.id)]) for p in found)
            ]
            if operations:
                self._call(
                    "record dates", lambda o=operations: self._client.batch_update_points(self.collection, o, wait=True)
                )

    def remove(self, paths: list[str]) -> None:
        ids = [point_id(p) for p in paths]
        for start in range(0, len(ids), PAGE):
            selector = self._models.PointIdsList(points=ids[start : start + PAGE])
            self._call("delete", lambda s=selector: self._client.delete(self.collection, s, wait=True))

    def get_grid(self, path: str) -> np.ndarray | None:
        vectors = self.get_vectors(path)
        return None if vectors is None else as_scored(vectors.grid)

    def get_vectors(self, path: str) -> PhotoVectors | None:
        wanted = [PATCHES, POOLED] + ([CENTROIDS] if self.has_centroids else [])
        found = self._call(
            "read a grid",
            lambda: self._client.retrieve(
                self.collection, [point_id(path)], with_payload=["grid"], with_vectors=wanted
            ),
        )
        if not found:
            return None
        h, w = found[0].payload["grid"]
        vectors = found[0].vector
        grid = np.asarray(vectors[PATCHES], dtype=np.float16).reshape(h, w, self.embed_dim)
        if CENTROIDS not in vectors:
            return photo_vectors(grid[None], self.first_stage, np.asarray(vectors[POOLED])[None])[0]
        return PhotoVectors(grid, np.asarray(vectors[POOLED], np.float16), np.asarray(vectors[CENTROIDS], np.float16))

    def find_by_hash(self, content_hash: str) -> str | None:
        points, _ = self._call(
            "look up a hash",
            lambda: self._client.scroll(
                self.collection,
                scroll_filter=self._match("content_hash", content_hash),
                limit=1,
                with_payload=["path", "path_bytes"],
                with_vectors=False,
            ),
        )
        return _payload_path(points[0].payload) if points else None

    def open_view(self, where: PhotoFilter | None = None) -> QdrantView:
        return QdrantView(self, self._count(where), where or None)

    def __len__(self) -> int:
        return self._count(None)

    def _count(self, where: PhotoFilter | None) -> int:
        counted = self._call(
            "count photos",
            lambda: self._client.count(self.collection, count_filter=self._photos_only(where), exact=True),
        )
        return counted.count

    def close(self) -> None:
        self._client.close()

    # -- collection ----------------------------------------------------------------------------------

    def _open_collection(
        self, shard_number: int | None, replication_factor: int | None, on_disk: bool, create: bool
    ) -> None:
        exists = self._call("open the collection", lambda: self._client.collection_exists(self.collection))
        if not exists and not create:
            raise NoGalleryError(f"{self._where} has no collection {self.collection!r} (nothing indexed there yet)")
        if not exists:
            self._create_collection(shard_number, replication_factor, on_disk)
            return
        found = self._call("read collection metadata", lambda: self._client.retrieve(self.collection, [META_ID]))
        if not found:
            raise GalleryError(f"{self._where}: collection {self.collection!r} was not made by assoc")
        meta = found[0].payload
        if meta.get("bundle_id") != self.bundle_id:
            where = f"{self._where} collection {self.collection!r}"
            raise ModelMismatchError(where, str(meta.get("bundle_id")), self.bundle_id)
        if meta.get("embed_dim") != self.embed_dim:
            where = f"{self._where} collection {self.collection!r}"
            raise ModelMismatchError(where, f"{meta.get('embed_dim')}-d vectors", f"{self.embed_dim}-d")
        info = self._call("read the collection", lambda: self._client.get_collection(self.collection))
        vectors = info.config.params.vectors
        self.has_centroids = isinstance(vectors, dict) and CENTROIDS in vectors
        if self._remote and create:  # an index run: the payload indexes of a collection made before some
            self._index_payload(set(info.payload_schema or {}))

    def _create_collection(self, shard_number: int | None, replication_factor: int | None, on_disk: bool) -> None:
        models = self._models
        patches = models.VectorParams(
            size=self.embed_dim,
            distance=models.Distance.DOT,  # patches and query vectors are L2-normalised: DOT is cosine
            datatype=models.Datatype.FLOAT16,
            on_disk=on_disk or None,
            hnsw_config=models.HnswConfigDiff(m=0),  # only reranks prefetched candidates
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
        )
        centroids = models.VectorParams(
            size=self.embed_dim,
            distance=models.Distance.DOT,
            datatype=models.Datatype.FLOAT16,
            hnsw_config=models.HnswConfigDiff(m=0),  # ranks the shortlist only
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
        )
        # Unit vectors kept as they are (DOT, float16): COSINE would renormalise them, and the fused score
        # must read the very values the built-in gallery keeps.
        pooled = models.VectorParams(
            size=self.embed_dim, distance=models.Distance.DOT, datatype=models.Datatype.FLOAT16
        )
        self._call(
            "create the collection",
            lambda: self._client.create_collection(
                self.collection,
                vectors_config={POOLED: pooled, CENTROIDS: centroids, PATCHES: patches},
                shard_number=shard_number,
                replication_factor=replication_factor,
            ),
        )
        if self._remote:  # local mode ignores payload indexes (and warns)
            self._index_payload(set())
        meta = models.PointStruct(
            id=META_ID, vector={}, payload={"bundle_id": self.bundle_id, "embed_dim": self.embed_dim}
        )
        self._call("write collection metadata", lambda: self._client.upsert(self.collection, [meta], wait=True))

    def _index_payload(self, existing: set[str]) -> None:
        """Payload indexes for the fields lookups and filters read, those not in `existing`: keywords,
        and the date taken as an integer with ranges."""
        models = self._models
        schemas = {
            "content_hash": models.PayloadSchemaType.KEYWORD,
            "path": models.PayloadSchemaType.KEYWORD,
            "folders": models.PayloadSchemaType.KEYWORD,
            "type": models.PayloadSchemaType.KEYWORD,
            "taken": models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=False, range=True),
        }
        for field, schema in schemas.items():
            if field not in existing:
                self._call(
                    "index payload",
                    lambda f=field, s=schema: self._client.create_payload_index(self.collection, f, s, wait=True),
                )

    def _check_server_version(self) -> None:
        version = self._call("connect", self._client.info).version
        try:
            numbers = tuple(int(part) for part in version.split(".")[:2])
        except ValueError:
            return  # a development build: let the server speak for itself
        if numbers < MIN_SERVER_VERSION:
            needed = ".".join(map(str, MIN_SERVER_VERSION))
            raise GalleryError(f"{self._where} runs Qdrant {version}; assoc needs {needed} or newer")

    # -- helpers -------------------------------------------------------------------------------------

    def _point(self, record: PhotoRecord, vectors: PhotoVectors | np.ndarray) -> Any:
        vectors = checked_vectors(record, vectors, self.embed_dim, self.first_stage)
        grid = vectors.grid
        h, w, _ = grid.shape
        payload = {
            **_path_payload(record.path),
            "size": record.size,
            "mtime_ns": record.mtime_ns,
            "content_hash": record.content_hash,
            "grid": [h, w],
            "width": record.width,
            "height": record.height,
            "bundle_id": self.bundle_id,
            **_filter_payload(record.path, record.taken),
        }
        wide = {
            POOLED: vectors.pooled.astype(np.float32).tolist(),
            PATCHES: grid.reshape(h * w, -1).astype(np.float32).tolist(),
        }
        if self.has_centroids:
            wide[CENTROIDS] = vectors.centroids.astype(np.float32).tolist()
        return self._models.PointStruct(id=point_id(record.path), vector=wide, payload=payload)

    def _match(self, key: str, value: str) -> Any:
        models = self._models
        return models.Filter(must=[models.FieldCondition(key=key, match=models.MatchValue(value=value))])

    def _photos_only(self, where: PhotoFilter | None = None) -> Any:
        """Every photo's point (never the metadata point) that meets `where`, as a Qdrant filter."""
        models = self._models
        must: list[Any] = []
        if where is not None and where.dated:
            must.append(models.FieldCondition(key="taken", range=models.Range(gte=where.since, lte=where.until)))
        if where is not None and where.types:
            must.append(models.FieldCondition(key="type", match=models.MatchAny(any=sorted(where.types))))
        if where is not None and where.folders:
            folders = [_path_payload(folder)["path"] for folder in where.folders]  # as "folders" holds them
            must.append(models.FieldCondition(key="folders", match=models.MatchAny(any=folders)))
        return models.Filter(must=must or None, must_not=[models.HasIdCondition(has_id=[META_ID])])

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one client call; on a server, retry transient failures with exponential backoff."""
        from qdrant_client.common.client_exceptions import QdrantException
        from qdrant_client.http.exceptions import ApiException

        attempt = 1
        while True:
            try:
                return fn()
            except (ApiException, QdrantException) as exc:  # the REST client's; local mode raises neither
                delay = _retry_delay(exc, self._backoff_s * 2 ** (attempt - 1))
                if delay is None or attempt >= self._attempts:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise GalleryError(f"{self._where}: {what} failed{tries}: {_describe(exc)}") from None
                time.sleep(delay)
                attempt += 1


class QdrantView:
    """A search's view of a collection (assoc.runtime.search.pipeline.StoreView): a selection is a list
    of point ids, or None for every photo (that meets the view's filter)."""

    def __init__(self, store: QdrantStore, photos: int, where: PhotoFilter | None = None) -> None:
        self.store = store
        self.photos = photos
        self.where = where
        self.condition = store._photos_only(where)  # the payload filter every request of the search carries

    def everything(self) -> None:
        return None

    def first_stage(self) -> ServerPrefetch:
        return ServerPrefetch()

    def read_grids(self, selection: list[str] | None) -> Iterator[GridChunk]:
        """The selected points' patches and global vectors, a page at a time, grouped by grid shape."""
        store = self.store
        fields = ["path", "path_bytes", "grid"]
        if selection is None:
            for points in store._pages("read grids", BATCH_POINTS, fields, [PATCHES, POOLED], self.where):
                yield from _chunks(points, store.embed_dim)
            return
        for start in range(0, len(selection), BATCH_POINTS):
            ids = selection[start : start + BATCH_POINTS]
            points = store._call(
                "read grids",
                lambda i=ids: store._client.retrieve(
                    store.collection, i, with_payload=fields, with_vectors=[PATCHES, POOLED]
                ),
            )
            yield from _chunks(points, store.embed_dim)

    def confirm(self, hits: list[SearchHit]) -> None:
        """Nothing to confirm: a point holds its path and its vectors together."""


class ServerPrefetch:
    """Qdrant's first stage, on the server: HNSW over pooled vectors keeps the shortlist, MaxSim over
    centroids keeps the candidates (over the patches, for a collection made before centroids)."""

    def candidates(self, view: QdrantView, query: Query, plan: SearchPlan) -> list[str]:
        store = view.store
        models = store._models
        pooled = query.pooled.tolist()
        if query.global_only:  # the score is the global cosine: HNSW over pooled vectors picks the candidates
            request: dict[str, Any] = {"query": pooled, "using": POOLED}
        else:
            first = models.Prefetch(query=pooled, using=POOLED, limit=plan.shortlist, filter=view.condition)
            using = CENTROIDS if store.has_centroids else PATCHES
            request = {"prefetch": first, "query": query.vectors.tolist(), "using": using}
        response = store._call(
            "search",
            lambda: store._client.query_points(
                store.collection,
                **request,
                query_filter=view.condition,
                limit=plan.candidates,
                with_payload=False,
                with_vectors=False,
            ),
        )
        return [str(p.id) for p in response.points]


def _chunks(points: list[Any], embed_dim: int) -> Iterator[GridChunk]:
    """Points with their patches -> GridChunks (quantized), one per grid shape among them."""
    by_shape: dict[tuple[int, int], list[Any]] = {}
    for point in points:
        h, w = point.payload["grid"]
        by_shape.setdefault((int(h), int(w)), []).append(point)
    for (h, w), group in by_shape.items():
        grids = np.array([p.vector[PATCHES] for p in group], dtype=np.float16).reshape(len(group), h * w, embed_dim)
        pooled = np.array([p.vector[POOLED] for p in group], dtype=np.float16).reshape(len(group), embed_dim)
        yield GridChunk.of_grids([_payload_path(p.payload) for p in group], grids, pooled)


def _grid_of(vectors: PhotoVectors | np.ndarray) -> np.ndarray:
    return vectors.grid if isinstance(vectors, PhotoVectors) else np.asarray(vectors)


def _open_local(qdrant_client: Any, path: str) -> Any:
    if path == ":memory:":
        return qdrant_client.QdrantClient(location=":memory:")
    try:
        return qdrant_client.QdrantClient(path=path)
    except RuntimeError:  # portalocker: another client holds the folder
        raise GalleryError(
            f"local Qdrant {path} is open in another process; share a collection through a Qdrant server"
        ) from None


def _record(payload: dict[str, Any]) -> PhotoRecord:
    h, w = payload["grid"]
    return PhotoRecord(
        path=_payload_path(payload),
        size=int(payload["size"]),
        mtime_ns=int(payload["mtime_ns"]),
        content_hash=payload["content_hash"],
        grid=(int(h), int(w)),
        width=int(payload["width"]),
        height=int(payload["height"]),
        taken=int(payload["taken"]) if payload.get("taken") is not None else None,
    )


def _retry_delay(exc: Exception, backoff_s: float) -> float | None:
    """Seconds to wait before retrying after exc, or None when retrying cannot help."""
    import httpx
    from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, ResourceExhaustedResponse):
        return max(backoff_s, min(float(exc.retry_after_s), 30.0))
    if isinstance(exc, UnexpectedResponse) and exc.status_code in TRANSIENT_STATUS:
        return backoff_s
    if isinstance(exc, ResponseHandlingException) and isinstance(exc.source, httpx.TransportError):
        return backoff_s  # connection refused/reset, timeouts
    return None


def _describe(exc: Exception) -> str:
    """One line for an ApiException: the server's own error message when it sent one."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        try:
            message = exc.structured()["status"]["error"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason_phrase
        text = f"HTTP {exc.status_code} {message}"
    elif isinstance(exc, ResponseHandlingException):
        text = f"{type(exc.source).__name__}: {exc.source}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())

"""One description of where the patch grids live, and the one place that opens it.

A StoreSpec names the built-in gallery (a folder) or a Qdrant collection (a server or an embedded
folder); its empty fields are filled from the environment by resolved() (assoc.api.settings).
Everything above this module uses only the assoc.runtime.stores.base.Store interface.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from ..runtime.encoding.bundle import Bundle
from ..runtime.errors import NoGalleryError, StoreConfigError
from ..runtime.stores.base import Store
from ..runtime.stores.qdrant import DEFAULT_COLLECTION
from . import settings
from .results import StoreFacts

StoreKind = Literal["builtin", "qdrant"]
STORE_KINDS: tuple[StoreKind, ...] = ("builtin", "qdrant")


@dataclass(frozen=True)
class StoreSpec:
    """Where a gallery lives. Build it with StoreSpec.builtin(...) or StoreSpec.qdrant(...)."""

    kind: StoreKind = "builtin"
    gallery: Path | None = None  # built-in: the gallery folder
    qdrant_url: str | None = None  # Qdrant: a server (or a cluster node) ...
    qdrant_path: Path | None = None  # ... or the folder of an embedded Qdrant
    qdrant_api_key: str | None = None
    collection: str = DEFAULT_COLLECTION

    @classmethod
    def builtin(cls, gallery: str | Path | None = None) -> StoreSpec:
        return cls("builtin", gallery=Path(gallery) if gallery is not None else None)

    @classmethod
    def qdrant(
        cls,
        url: str | None = None,
        path: str | Path | None = None,
        collection: str = DEFAULT_COLLECTION,
        api_key: str | None = None,
    ) -> StoreSpec:
        return cls(
            "qdrant",
            qdrant_url=url,
            qdrant_path=Path(path) if path is not None else None,
            qdrant_api_key=api_key,
            collection=collection,
        )

    def resolved(self) -> StoreSpec:
        """The same spec with environment defaults filled in and its fields checked."""
        if self.kind not in STORE_KINDS:
            raise StoreConfigError(f"unknown store kind {self.kind!r}; use one of {', '.join(STORE_KINDS)}")
        if self.kind == "builtin":
            folder = self.gallery.expanduser() if self.gallery is not None else settings.default_gallery()
            return replace(self, gallery=folder)
        url, path = self.qdrant_url, self.qdrant_path
        if url is not None and path is not None:
            raise StoreConfigError("a Qdrant store takes a server URL or a local folder, not both")
        if url is None and path is None:
            url = settings.default_qdrant_url()
        if url is None and path is None:
            raise StoreConfigError(
                f"a Qdrant store needs a server URL ({settings.ENV_QDRANT_URL}) or a local folder"
            )
        key = self.qdrant_api_key or (settings.default_qdrant_api_key() if url else None)
        return replace(self, qdrant_url=url, qdrant_path=path.expanduser() if path else None, qdrant_api_key=key)

    @property
    def location(self) -> str:
        if self.kind == "builtin":
            return str(self.gallery)
        return f"{self.qdrant_url or self.qdrant_path} collection {self.collection}"


def open_store(spec: StoreSpec, bundle: Bundle, create: bool = False) -> Store:
    """The store for this bundle; a gallery made by another bundle is a ModelMismatchError.

    Only indexing passes create=True. Without it a built-in gallery or a Qdrant collection that does
    not exist is a NoGalleryError and nothing is created, so a mistyped location is an error rather
    than an empty result left behind on disk.
    """
    spec = spec.resolved()
    config = bundle.config
    if spec.kind == "qdrant":
        from ..runtime.stores.qdrant import QdrantStore

        return QdrantStore(
            config.bundle_id,
            config.embed_dim,
            url=spec.qdrant_url,
            api_key=spec.qdrant_api_key,
            path=spec.qdrant_path,
            collection=spec.collection,
            create=create,
            first_stage=config.first_stage,
        )
    from ..runtime.stores.gallery import Gallery

    return Gallery.open(
        spec.gallery, config.bundle_id, config.embed_dim, create=create, first_stage=config.first_stage
    )


def describe_store(spec: StoreSpec, bundle: Bundle, current: Store | None = None) -> StoreFacts:
    """Kind, location, whether it exists, photos, bytes on disk, when it last changed and the model that made it.

    last_indexed is the newest modification time of the store's files (UTC, ISO 8601; None for a server).

    A built-in gallery is opened whatever model made it, so the answer can say which one did. `current`, the
    caller's open store for this spec, is asked instead of opening a second: an embedded Qdrant allows one.
    """
    spec = spec.resolved()
    missing = StoreFacts(spec.kind, spec.location, False, 0, 0, None, None)
    if spec.kind == "qdrant":
        try:
            if current is not None:
                photos = len(current)
            else:
                with closing(open_store(spec, bundle)) as store:
                    photos = len(store)
        except NoGalleryError:  # nothing indexed into this collection yet; describing creates nothing
            return missing
        files = _files(spec.qdrant_path) if spec.qdrant_path is not None else None
        size = sum(f.stat().st_size for f in files) if files is not None else None
        newest = _newest(files) if files is not None else None
        return StoreFacts(spec.kind, spec.location, True, photos, size, newest, bundle.bundle_id)
    from ..runtime.stores.gallery import DB_NAME, SHARD_DIR, Gallery

    try:
        opened = Gallery.open(spec.gallery, create=False)  # shards without a database are damage, not "none"
    except NoGalleryError:
        return missing
    with opened:
        # the database and the shards: its write-ahead log is touched by readers too
        newest = _newest([spec.gallery / DB_NAME, *_files(spec.gallery / SHARD_DIR)])
        return StoreFacts(spec.kind, spec.location, True, len(opened), opened.size_on_disk(), newest, opened.bundle_id)


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _newest(files: list[Path]) -> str | None:
    """The latest modification time of these files as UTC ISO 8601 to the second, or None for none."""
    times = [f.stat().st_mtime for f in files if f.is_file()]
    if not times:
        return None
    return datetime.fromtimestamp(max(times), timezone.utc).isoformat(timespec="seconds")

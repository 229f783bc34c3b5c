"""The store options every command shares, and the one place that turns them into a Store.

Commands call open_store and then use only the assoc.runtime.store.Store interface, so the built-in
gallery and Qdrant behave the same to them. describe_store is the one exception, for `assoc info`:
where a store lives and what it takes on disk differ by kind.
"""

from __future__ import annotations

import os
from contextlib import closing
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..runtime.bundle import Bundle
from ..runtime.errors import GalleryError, NoGalleryError
from ..runtime.store import Store
from .options import resolve_gallery


class StoreKind(str, Enum):
    builtin = "builtin"
    qdrant = "qdrant"


GalleryOpt = Annotated[
    Path | None,
    typer.Option(
        "--gallery",
        help="Gallery folder of the built-in store (default: $ASSOC_GALLERY, else the per-user data folder).",
        show_default=False,
    ),
]
StoreOpt = Annotated[StoreKind, typer.Option("--store", help="Where the patch grids live.")]
QdrantUrlOpt = Annotated[
    str | None,
    typer.Option("--qdrant-url", envvar="ASSOC_QDRANT_URL", help="Qdrant server, e.g. http://localhost:6333."),
]
QdrantPathOpt = Annotated[
    Path | None,
    typer.Option("--qdrant-path", help="Folder of an embedded (local) Qdrant instead of a server."),
]
CollectionOpt = Annotated[str, typer.Option("--collection", help="Qdrant collection name.")]


def open_store(
    bundle: Bundle,
    gallery: Path | None,
    store: StoreKind = StoreKind.builtin,
    qdrant_url: str | None = None,
    qdrant_path: Path | None = None,
    collection: str = "assoc",
    create: bool = False,
) -> Store:
    """The store for this bundle; a gallery made by another bundle is a GalleryError.

    Only `assoc index` passes create=True. Without it (query, localize, info) a built-in gallery or a
    Qdrant collection that does not exist is a NoGalleryError and nothing is created, so a mistyped
    --gallery or --collection is an error rather than an empty result left behind on disk.
    """
    config = bundle.config
    if store is StoreKind.qdrant:
        from ..runtime.qdrant_store import QdrantStore

        if qdrant_url is None and qdrant_path is None:
            raise GalleryError("--store qdrant needs --qdrant-url URL (or ASSOC_QDRANT_URL) or --qdrant-path DIR")
        if qdrant_url is not None and qdrant_path is not None:
            raise GalleryError("give --qdrant-url or --qdrant-path, not both")
        return QdrantStore(
            config.bundle_id,
            config.embed_dim,
            url=qdrant_url,
            api_key=os.environ.get("ASSOC_QDRANT_API_KEY") or None,
            path=qdrant_path,
            collection=collection,
            create=create,
        )
    from ..runtime.gallery import Gallery

    return Gallery.open(resolve_gallery(gallery), config.bundle_id, config.embed_dim, create=create)


def describe_store(
    bundle: Bundle,
    gallery: Path | None,
    store: StoreKind = StoreKind.builtin,
    qdrant_url: str | None = None,
    qdrant_path: Path | None = None,
    collection: str = "assoc",
) -> dict[str, Any]:
    """Facts for `assoc info`: kind, location, whether it exists, photos, bytes on disk, its model.

    A built-in gallery is opened whatever model made it, so info can say which one did.
    """
    missing = {"exists": False, "photos": 0, "size_on_disk": 0, "bundle_id": None}
    if store is StoreKind.qdrant:
        where = qdrant_url or str(qdrant_path)
        facts: dict[str, Any] = {"kind": store.value, "location": f"{where} collection {collection}"}
        try:
            with closing(open_store(bundle, gallery, store, qdrant_url, qdrant_path, collection)) as opened:
                photos = len(opened)
        except NoGalleryError:  # nothing indexed into this collection yet; info creates nothing
            return {**facts, **missing}
        size = _folder_bytes(qdrant_path) if qdrant_path is not None else None
        return {**facts, "exists": True, "photos": photos, "size_on_disk": size, "bundle_id": bundle.bundle_id}
    from ..runtime.gallery import DB_NAME, Gallery

    folder = resolve_gallery(gallery)
    facts = {"kind": store.value, "location": str(folder)}
    if not (folder / DB_NAME).is_file():
        return {**facts, **missing}
    with Gallery.open(folder, create=False) as opened:
        return {
            **facts,
            "exists": True,
            "photos": len(opened),
            "size_on_disk": opened.size_on_disk(),
            "bundle_id": opened.bundle_id,
        }


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

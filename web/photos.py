"""Photos as the web app serves them: opaque ids, cached thumbnails, display copies, heatmap images,
and uploaded query photos held in memory.

A photo in the gallery is addressed by its content hash as the store recorded it (32 hex digits), an
uploaded one by `upload-` and the hash of its bytes. Nothing a client sends is ever used as a path:
an id that is not of that form, or that the store does not hold, is not found.

Thumbnails are made once, EXIF-oriented, and kept as <content hash>.jpg in GALLERY/thumbnails/ beside a
built-in gallery, or (a Qdrant store, or a gallery this user cannot write) in the per-user cache folder.
Uploads live only in memory (the last UPLOADS_KEPT of them) and are never written anywhere.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from PIL import Image

from ..api.render import heat_image
from ..api.results import Hit, Localization, RegionWords
from ..api.searcher import Searcher
from ..api.stores import StoreSpec
from ..runtime.errors import ImageLoadError, QueryError
from ..runtime.imaging.images import load_image

if TYPE_CHECKING:
    from ..runtime.stores.base import PhotoRecord

GALLERY_ID = re.compile(r"[0-9a-f]{32}")
UPLOAD_PREFIX = "upload-"
UPLOAD_ID = re.compile(UPLOAD_PREFIX + r"[0-9a-f]{32}")
THUMBNAIL_FOLDER = "thumbnails"
THUMBNAIL_PIXELS = 400  # long side: sharp in a ~200 px tile on a 2x screen
VIEW_PIXELS = 1600  # long side of the photo shown large (and of an upload as kept)
HEATMAP_PIXELS = 512  # long side of a heatmap image; the browser stretches it over the photo
JPEG_QUALITY = 85
UPLOAD_BYTES = 20 << 20
UPLOAD_MEGAPIXELS = 50.0  # below the indexer's cap (images.MAX_MEGAPIXELS): uploads are decoded in memory
UPLOADS_KEPT = 8
WORDS_AT = 8  # words listed for a clicked point
LOCALIZATIONS_KEPT = 64  # (photo, phrase) pairs: opening a photo asks for its words, then their maps

K = TypeVar("K")
V = TypeVar("V")


class PhotoNotFound(LookupError):
    """An id that names no photo this server may show."""


@dataclass(frozen=True)
class Photo:
    """A photo the client may see: one the store holds, or one it uploaded."""

    id: str
    name: str  # shown to people: the indexed path, or "uploaded photo"
    record: PhotoRecord | None = None  # gallery photos
    image: Image.Image | None = None  # uploads (at most VIEW_PIXELS on the long side)

    @property
    def size(self) -> tuple[int, int]:
        if self.record is not None:
            return self.record.width, self.record.height
        assert self.image is not None
        return self.image.size


class _Recent(Generic[K, V]):
    """A small thread-safe LRU map."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def thumbnail_folders(spec: StoreSpec) -> list[Path]:
    """Where thumbnails are kept, first choice first: beside a built-in gallery, else the user's cache."""
    from platformdirs import user_cache_dir

    spec = spec.resolved()
    key = hashlib.blake2b(f"{spec.kind}\0{spec.location}".encode(), digest_size=8).hexdigest()
    cache = Path(user_cache_dir("assoc")) / THUMBNAIL_FOLDER / key
    return [spec.gallery / THUMBNAIL_FOLDER, cache] if spec.kind == "builtin" else [cache]


class Photos:
    """The photos one Searcher's store holds and the uploads of this server's clients."""

    def __init__(self, searcher: Searcher, thumbnails: list[Path]) -> None:
        self.searcher = searcher
        self.thumbnails = thumbnails
        self._uploads: _Recent[str, Photo] = _Recent(UPLOADS_KEPT)
        self._localized: _Recent[tuple[str, str], Localization] = _Recent(LOCALIZATIONS_KEPT)

    # ------------------------------------------------------------------ finding

    def get(self, photo_id: str) -> Photo:
        if UPLOAD_ID.fullmatch(photo_id):
            upload = self._uploads.get(photo_id)
            if upload is None:
                raise PhotoNotFound("that uploaded photo is no longer kept: drop it on the page again")
            return upload
        if not GALLERY_ID.fullmatch(photo_id):
            raise PhotoNotFound("no such photo")
        record = self.searcher.find(photo_id)
        if record is None:
            raise PhotoNotFound("no such photo in this gallery")
        return Photo(photo_id, record.path, record=record)

    def hits(self, hits: list[Hit]) -> list[dict[str, Any]]:
        """The CLI's JSON of each hit plus its id; a hit the store dropped meanwhile is left out."""
        records = self.searcher.records([hit.path for hit in hits])
        return [{**hit.to_dict(), "id": records[hit.path].content_hash} for hit in hits if hit.path in records]

    # ------------------------------------------------------------------ asking

    def search(self, text: str | None, like: str | None, k: int, min_score: float | None) -> list[Hit]:
        """Photos best first for words, or for a photo (by id): the gallery's own grid when it has one."""
        if like is not None:
            photo = self.get(like)
            query: str | Path | Image.Image = photo.image if photo.image is not None else Path(photo.name)
            return self.searcher.search(query, k=k, min_score=min_score)
        if not text or not text.strip():
            raise QueryError("type some words to search for")
        return self.searcher.search(text, k=k, min_score=min_score, words=True)

    def localize(self, photo: Photo, phrase: str) -> Localization:
        """Where each word lands, as `assoc localize` finds it; a gallery photo that can no longer be
        read falls back to its stored grid (coarser when the bundle localizes at a larger size)."""
        if not phrase.strip():
            raise QueryError("type some words to find in the photo")
        key = (photo.id, phrase)
        found = self._localized.get(key)
        if found is None:
            if photo.image is not None:
                found = self.searcher.localize(photo.image, phrase)
            else:
                try:
                    found = self.searcher.localize(Path(photo.name), phrase)
                except (ImageLoadError, QueryError):  # moved, deleted or damaged since it was indexed
                    found = self.searcher.explain(photo.name, phrase)
                if found is None:  # and removed by an index run since it was found
                    raise PhotoNotFound("no such photo in this gallery")
            self._localized.put(key, found)
        return found

    def words_at(self, photo: Photo, fx: float, fy: float, phrase: str | None) -> RegionWords:
        """The words that match the point at fractions (fx, fy) of the photo's width and height: of the
        phrase when one is given, else of the bundle's vocabulary."""
        width, height = photo.size
        at = (min(fx * width, width - 1), min(fy * height, height - 1))
        source = photo.image if photo.image is not None else Path(photo.name)
        return self.searcher.region_words(source, at=at, phrase=phrase or None, top=WORDS_AT)

    # ------------------------------------------------------------------ pictures

    def heatmap_png(self, photo: Photo, phrase: str, word: int | None) -> bytes:
        """The colour-mapped map of the phrase (or of its word number `word`), in the photo's aspect."""
        maps = self.localize(photo, phrase).heatmaps
        if word is not None and not 0 <= word < len(maps.words):
            raise QueryError(f"word {word} is not one of the {len(maps.words)} words of the phrase")
        grid_map = maps.phrase_map if word is None else maps.word_maps[word]
        return _encode(heat_image(grid_map, _fit(photo.size, HEATMAP_PIXELS)), "PNG")

    def view_jpeg(self, photo: Photo) -> bytes:
        """The photo as shown large: EXIF-oriented, at most VIEW_PIXELS on its long side, no metadata."""
        image = photo.image if photo.image is not None else self._open(photo, VIEW_PIXELS)
        return _encode(image, "JPEG")

    def thumbnail_jpeg(self, photo: Photo) -> bytes:
        """A small EXIF-oriented JPEG, made once per content and then read from the thumbnail folder."""
        if photo.image is not None:
            small = photo.image.copy()
            small.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
            return _encode(small, "JPEG")
        name = f"{photo.id}.jpg"
        for folder in self.thumbnails:
            try:
                return (folder / name).read_bytes()
            except OSError:
                continue
        data = _encode(self._open(photo, THUMBNAIL_PIXELS), "JPEG")
        for folder in self.thumbnails:
            if _write_atomically(folder, name, data):
                break
        return data

    def upload(self, data: bytes) -> Photo:
        """Decode an uploaded photo (pixel cap, EXIF orientation) and keep it in memory under an id."""
        if len(data) > UPLOAD_BYTES:
            raise QueryError(f"the photo is over the {UPLOAD_BYTES >> 20} MB upload limit")
        if not data:
            raise QueryError("the upload held no photo")
        photo_id = UPLOAD_PREFIX + hashlib.blake2b(data, digest_size=16).hexdigest()
        kept = self._uploads.get(photo_id)
        if kept is not None:
            return kept
        image = load_image(io.BytesIO(data), (VIEW_PIXELS, VIEW_PIXELS), UPLOAD_MEGAPIXELS).image
        image.thumbnail((VIEW_PIXELS, VIEW_PIXELS))
        photo = Photo(photo_id, "uploaded photo", image=image)
        self._uploads.put(photo_id, photo)
        return photo

    def _open(self, photo: Photo, pixels: int) -> Image.Image:
        try:
            image = load_image(photo.name, min_size=(pixels, pixels)).image
        except ImageLoadError as exc:  # moved or deleted since it was indexed
            raise PhotoNotFound(f"the photo can no longer be read: {exc}") from None
        image.thumbnail((pixels, pixels))
        return image


def _fit(size: tuple[int, int], pixels: int) -> tuple[int, int]:
    """size scaled so its long side is at most `pixels`, aspect kept."""
    width, height = size
    scale = min(1.0, pixels / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _encode(image: Image.Image, kind: str) -> bytes:
    out = io.BytesIO()
    if kind == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        image.save(out, kind, optimize=False)
    return out.getvalue()


def _write_atomically(folder: Path, name: str, data: bytes) -> bool:
    """Write folder/name whole or not at all (a reader never sees half a file); False if it cannot."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, folder / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError:
        return False
    return True

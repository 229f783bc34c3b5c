"""Photos as the web app serves them: opaque ids, cached thumbnails, display copies, heatmap images,
and uploaded query photos held in memory.

A photo in the gallery is addressed by its content hash as the store recorded it (32 hex digits), an
uploaded one by `upload-` and the hash of its bytes. Nothing a client sends is ever used as a path:
an id that is not of that form, or that the store does not hold, is not found.

Thumbnails are made once, EXIF-oriented, and kept as <content hash>.jpg in GALLERY/thumbnails/ beside a
built-in gallery, or (a Qdrant store, or a gallery this user cannot write) in the per-user cache folder.
Uploads live only in memory (the last UPLOADS_KEPT of them) and are never written anywhere.

Memory is bounded: photos are decoded only at the size a picture needs (JPEG's DCT scaling, then
whole-factor reduction), never over the indexer's pixel cap (pillow_decode.MAX_MEGAPIXELS: TooManyPixels), and
all the server's threads together decode no more pixels at once than one photo at that cap
(DecodeBudget). Localizations are kept as their maps alone, at grid size, never with the photo.

A gallery photo's file may change while the server runs (replaced, edited, deleted): what is made from
its pixels is kept under its version (the file's size, mtime and inode as well as the indexed content
hash), so a replaced photo gets a fresh heatmap and a browser's copy is revalidated (Photos.version).
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..api.recent import Recent
from ..api.render import heat_image
from ..api.results import Hit, Localization, RegionWords
from ..api.searcher import IndexedPhoto, Searcher
from ..api.stores import StoreSpec
from ..runtime.errors import ImageLoadError, QueryError
from ..runtime.imaging.files import open_regular
from ..runtime.imaging.images import RAW_SUFFIXES, load_image
from ..runtime.imaging.pillow_decode import DECODE_PEAK_BYTES, MAX_MEGAPIXELS, LoadedImage, open_guarded
from ..runtime.imaging.raw import decode_pixels as raw_decode_pixels
from ..runtime.indexing.indexer import available_memory
from ..runtime.search.combined import parse_query

if TYPE_CHECKING:
    from ..runtime.search.filters import PhotoFilter
    from ..runtime.stores.base import PhotoRecord

GALLERY_ID = re.compile(r"[0-9a-f]{32}")
UPLOAD_PREFIX = "upload-"
UPLOAD_ID = re.compile(UPLOAD_PREFIX + r"[0-9a-f]{32}")
THUMBNAIL_FOLDER = "thumbnails"
THUMBNAIL_PIXELS = 400  # long side: sharp in a ~200 px tile on a 2x screen
VIEW_PIXELS = 1600  # long side of the photo shown large (and of an upload as kept)
HEATMAP_PIXELS = 512  # long side of a heatmap image; the browser stretches it over the photo
JPEG_QUALITY = 85
UPLOAD_BYTES = 20 << 20  # the one home of the upload limit: the page is handed it (assoc.web.app)
UPLOADS_KEPT = 8
WORDS_AT = 8  # words listed for a clicked point
LOCALIZATIONS_KEPT = 64  # (photo version, phrase) pairs: opening a photo asks for its words, then their maps
MAX_PIXELS = int(MAX_MEGAPIXELS * 1e6)  # decoded at once, as the indexer allows
PEAK_BYTES_PER_PIXEL = DECODE_PEAK_BYTES / MAX_PIXELS  # what a decode holds at its peak, per pixel decoded
TRIM_PIXELS = 4_000_000  # after a decode this large, freed memory goes back to the system at once


class PhotoNotFound(LookupError):
    """An id that names no photo this server may show."""


class TooManyPixels(ValueError):
    """A photo over the indexer's pixel cap, refused before any pixel is decoded."""


class DecodeBudget:
    """Pixels being decoded at once by all of the server's threads, kept under a total: a decode waits
    until its pixels fit, and one larger than the whole budget waits to run alone.

    A large decode's memory is handed back to the system before the next one starts: glibc keeps what a
    thread frees in that thread's arena, where a decode on another thread never finds it, and the server
    would grow by every decode at once after all (four 49-megapixel PNGs: 1045 MiB at the peak, not 530).
    """

    def __init__(self, pixels: int) -> None:
        self.pixels = max(1, pixels)
        self._used = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        want = min(max(0, pixels), self.pixels)
        with self._changed:
            self._changed.wait_for(lambda: self._used + want <= self.pixels)
            self._used += want
        try:
            yield
        finally:
            if pixels >= TRIM_PIXELS:
                _give_back_freed_memory()
            with self._changed:
                self._used -= want
                self._changed.notify_all()


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError, TypeError):  # another C library (which returns large blocks itself)
        return None


_MALLOC_TRIM = _malloc_trim()


def _give_back_freed_memory() -> None:
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def decode_budget() -> DecodeBudget:
    """One photo at the indexer's cap decoded at once (DECODE_PEAK_BYTES at its peak), or what half the
    memory still available holds when that is less."""
    available = available_memory()
    peak = DECODE_PEAK_BYTES if available is None else min(DECODE_PEAK_BYTES, available // 2)
    return DecodeBudget(int(peak / PEAK_BYTES_PER_PIXEL))


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


def thumbnail_folders(spec: StoreSpec) -> list[Path]:
    """Where thumbnails are kept, first choice first: beside a built-in gallery, else the user's cache."""
    from platformdirs import user_cache_dir

    spec = spec.resolved()
    key = hashlib.blake2b(f"{spec.kind}\0{spec.location}".encode(), digest_size=8).hexdigest()
    cache = Path(user_cache_dir("assoc")) / THUMBNAIL_FOLDER / key
    return [spec.gallery / THUMBNAIL_FOLDER, cache] if spec.kind == "builtin" else [cache]


class Photos:
    """The photos one Searcher's store holds and the uploads of this server's clients."""

    def __init__(
        self,
        searcher: Searcher,
        thumbnails: list[Path],
        *,
        upload_bytes: int = UPLOAD_BYTES,
        budget: DecodeBudget | None = None,
    ) -> None:
        self.searcher = searcher
        self.thumbnails = thumbnails
        self.upload_bytes = upload_bytes
        self.budget = budget or decode_budget()
        self._uploads: Recent[str, Photo] = Recent(UPLOADS_KEPT)
        self._localized: Recent[tuple[str, str], Localization] = Recent(LOCALIZATIONS_KEPT)

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

    def search(
        self, text: str | None, like: str | None, k: int, min_score: float | None, where: PhotoFilter | None = None
    ) -> list[Hit]:
        """Photos best first for words in the combined-query syntax (assoc.runtime.search.combined; every
        term words), for a photo (by id: the gallery's own grid when it has one), or for the photo as a
        plus term and the words' terms; only those that meet `where`."""
        terms: list[tuple[str | IndexedPhoto | Image.Image, float]] = []
        if like is not None:
            photo = self.get(like)
            # a gallery photo: its stored grid, whether or not its file is still there
            terms.append((IndexedPhoto(photo.id) if photo.image is None else photo.image, 1.0))
        if text and text.strip():
            terms += [(term.text, term.weight) for term in parse_query(text)]
        elif like is None:
            raise QueryError("type some words to search for")
        return self.searcher.search(terms, k=k, min_score=min_score, words=True, where=where)

    def version(self, photo: Photo) -> str:
        """What names this photo's present pixels: an upload's id; for a gallery photo its id and its
        file's size, mtime and inode (another file put in its place is another version), or "gone"."""
        if photo.image is not None:
            return photo.id
        try:
            facts = os.stat(photo.name)
        except OSError:
            return f"{photo.id}-gone"
        return f"{photo.id}-{facts.st_size}-{facts.st_mtime_ns}-{facts.st_ino}"

    def localize(self, photo: Photo, phrase: str) -> Localization:
        """Where each word lands, as `assoc localize` finds it, kept (maps only) per version of the photo;
        a gallery photo that can no longer be read falls back to its stored grid (coarser when the bundle
        localizes at a larger size)."""
        if not phrase.strip():
            raise QueryError("type some words to find in the photo")
        key = (self.version(photo), phrase)
        found = self._localized.get(key)
        if found is None:
            found = replace(self._localize(photo, phrase), photo=None)  # the maps, never the photo
            self._localized.put(key, found)
        return found

    def _localize(self, photo: Photo, phrase: str) -> Localization:
        if photo.image is not None:
            return self.searcher.localize(photo.image, phrase)
        # Decoded no larger than the localize size needs (the Searcher would decode the whole photo):
        # the maps are the same, and their points are placed on the photo's full size.
        height, width = self.searcher.bundle.config.localize_size
        try:
            with self._decoded(Path(photo.name), (width, height)) as loaded:
                maps = self.searcher.localize(loaded.image, phrase).heatmaps
        except ImageLoadError:  # moved, deleted or damaged since it was indexed
            found = self.searcher.explain(photo.name, phrase)
            if found is None:  # and removed by an index run since it was found
                raise PhotoNotFound("no such photo in this gallery") from None
            return found
        return Localization.from_heatmaps(photo.name, (loaded.width, loaded.height), maps)

    def words_at(self, photo: Photo, fx: float, fy: float, phrase: str | None) -> RegionWords:
        """The words that match the point at fractions (fx, fy) of the photo's width and height: of the
        phrase when one is given, else of the bundle's vocabulary."""
        width, height = photo.size
        at = (min(fx * width, width - 1), min(fy * height, height - 1))
        if photo.image is not None:
            return self.searcher.region_words(photo.image, at=at, phrase=phrase or None, top=WORDS_AT)
        path = Path(photo.name)
        with self.budget.hold(self._pixels(path, None)):  # the Searcher decodes the whole photo
            return self.searcher.region_words(path, at=at, phrase=phrase or None, top=WORDS_AT)

    # ------------------------------------------------------------------ pictures

    def heatmap_png(self, photo: Photo, phrase: str, word: int | None) -> bytes:
        """The colour-mapped map of the phrase (or of its word number `word`), in the photo's aspect, at
        most HEATMAP_PIXELS on its long side (the browser stretches it over the photo)."""
        found = self.localize(photo, phrase)
        maps = found.heatmaps
        if word is not None and not 0 <= word < len(maps.words):
            raise QueryError(f"word {word} is not one of the {len(maps.words)} words of the phrase")
        grid_map = maps.phrase_map if word is None else maps.word_maps[word]
        return _encode(heat_image(grid_map, _fit((found.width, found.height), HEATMAP_PIXELS)), "PNG")

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
        if len(data) > self.upload_bytes:
            raise QueryError(f"the photo is over the {self.upload_bytes >> 20} MB upload limit")
        if not data:
            raise QueryError("the upload held no photo")
        photo_id = UPLOAD_PREFIX + hashlib.blake2b(data, digest_size=16).hexdigest()
        kept = self._uploads.get(photo_id)
        if kept is not None:
            return kept
        with self._decoded(data, (VIEW_PIXELS, VIEW_PIXELS)) as loaded:
            image = loaded.image
            image.thumbnail((VIEW_PIXELS, VIEW_PIXELS))  # in the budget: the decoded photo is still held
        photo = Photo(photo_id, "uploaded photo", image=image)
        self._uploads.put(photo_id, photo)
        return photo

    def _open(self, photo: Photo, pixels: int) -> Image.Image:
        try:
            with self._decoded(Path(photo.name), (pixels, pixels)) as loaded:
                image = loaded.image
                image.thumbnail((pixels, pixels))
        except ImageLoadError as exc:  # moved or deleted since it was indexed
            raise PhotoNotFound(f"the photo can no longer be read: {exc}") from None
        return image

    @contextmanager
    def _decoded(self, source: Path | bytes, min_size: tuple[int, int]) -> Iterator[LoadedImage]:
        """A photo (a file, or an upload's bytes) decoded no larger than min_size needs, within the
        server's decode budget while the block runs (make what is kept of it there: until then the
        decoded photo is held); TooManyPixels, before any pixel is decoded, past the indexer's cap."""
        pixels = self._pixels(source, min_size)
        with self.budget.hold(pixels):
            yield load_image(io.BytesIO(source) if isinstance(source, bytes) else source, min_size)

    @staticmethod
    def _pixels(source: Path | bytes, min_size: tuple[int, int] | None) -> int:
        """How many pixels decoding the photo at min_size (None: whole) takes, from its header (JPEGs
        after DCT scaling, as load_image decodes them); 0 when the header cannot be read, which leaves
        the reason to load_image. A RAW file counts its demosaic's pixels, the most its decode holds."""
        if isinstance(source, Path) and source.suffix.lower() in RAW_SUFFIXES:
            return raw_decode_pixels(source)
        try:
            with open_regular(source) if isinstance(source, Path) else io.BytesIO(source) as fh:
                image = open_guarded(fh)
                full = image.size
                if min_size is not None and image.format == "JPEG":
                    side = max(min_size)  # either way round: the EXIF turn is not read here
                    image.draft("RGB", (side, side))
                width, height = image.size
        except Exception:  # noqa: BLE001 - any header Pillow cannot read: load_image says why
            return 0
        if width * height > MAX_PIXELS:
            megapixels = full[0] * full[1] / 1e6
            raise TooManyPixels(
                f"the photo is {full[0]}x{full[1]}, {megapixels:.0f} megapixels:"
                f" over the {MAX_MEGAPIXELS:g} megapixel limit"
            )
        return width * height


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

"""The Searcher: one model and one store, and what a front end asks of them.

    with assoc.Searcher(store=assoc.StoreSpec.builtin("~/gallery")) as searcher:
        searcher.index(["~/Pictures"])
        hits = searcher.search("a dog on grass", k=5)
        where = searcher.localize(hits[0].path, "dog")

index, search (words, a photo, a PIL image, or a combined query of several weighed terms; in the
photos that meet a PhotoFilter), localize and explain (where words land), region_words
and label (which words a region matches, what is where), duplicates (groups of copies of one picture),
check (stored bytes) and info.

Lazy: opening a Searcher reads and verifies the bundle (its config and its files' hashes) and nothing
else; the text encoder, the image encoder and the store are made on first use, so a search by words
never loads the image encoder and localizing an indexed photo reads its stored grid instead of
encoding it. Ranking is assoc.runtime.search.pipeline's, the same for every store.

Thread-safe: one Searcher may serve many threads (a web server). Encoders are made once under a lock
and ONNX Runtime sessions run concurrently; every store call is serialised by that lock (an SQLite
connection and an embedded Qdrant each belong to one caller at a time), while hashing, decoding and
encoding photos run outside it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from ..runtime.encoding.bundle import Bundle, Vocabulary
from ..runtime.errors import AssocError, GalleryError, QueryError
from ..runtime.indexing.fileinfo import hash_content
from ..runtime.scoring.first_stage import PhotoVectors, pooled_vectors
from ..runtime.scoring.heatmap import cell_to_pixel, compute_heatmaps, smooth_map
from ..runtime.scoring.regions import (
    FUNCTION_WORDS,
    box_cells,
    cells_to_box,
    mask_bounds,
    pick_labels,
    point_cells,
    region_scores,
    word_families,
    word_maps,
)
from ..runtime.search.combined import CombinedQuery, parse_query
from ..runtime.search.duplicates import DEFAULT_THRESHOLD, check_threshold, find_duplicates
from ..runtime.search.filters import PhotoFilter
from ..runtime.search.pipeline import search
from ..runtime.search.query import Query
from ..runtime.stores.base import CheckReport, PhotoRecord, Store
from . import settings
from .recent import Recent
from .results import (
    Duplicates,
    Hit,
    IndexReport,
    Info,
    Localization,
    PhotoLabels,
    RegionLabel,
    RegionWord,
    RegionWords,
    TermScore,
)
from .stores import StoreSpec, describe_store, open_store

if TYPE_CHECKING:  # onnxruntime loads with the encoders, Pillow with the first photo: only when first used
    from PIL import Image

    from ..runtime.encoding.encoders import EncodedQuery, ImageEncoder, TextEncoder

ProgressCallback = Callable[[int, int], None]
PhotoQuery: TypeAlias = "str | Path | Image.Image"


@dataclass(frozen=True)
class IndexedPhoto:
    """A photo the store holds, named by its content hash (PhotoRecord.content_hash), as a query term:
    ranked by its stored vectors, so the file need not be there any more."""

    content_hash: str


QueryTerm: TypeAlias = "str | Path | Image.Image | IndexedPhoto"
SearchQuery: TypeAlias = "str | Path | Image.Image | Sequence[tuple[QueryTerm, float]]"
TEXT_CACHE = 64  # encoded queries kept, so explaining ten hits encodes the words once


class Searcher:
    """Search one store with one model bundle; see the module docstring."""

    def __init__(
        self, model: str | Path | Bundle | None = None, store: StoreSpec | None = None, device: str = "auto"
    ) -> None:
        """model: a bundle folder (default ASSOC_MODEL, else the shipped bundle); store: where the grids
        live (default the built-in gallery at ASSOC_GALLERY, else the per-user data folder)."""
        self.bundle = settings.resolve_bundle(model)
        self.store_spec = (store or StoreSpec()).resolved()
        self.device = device
        self._lock = threading.RLock()  # store calls, and making the encoders
        self._store: Store | None = None
        self._text: TextEncoder | None = None
        self._image: ImageEncoder | None = None
        self._queries: Recent[str, EncodedQuery] = Recent(TEXT_CACHE)
        self._vocabulary: Vocabulary | None = None
        self._families = np.zeros(0, np.int64)  # the vocabulary's word families (regions.word_families)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ operations

    def index(
        self,
        paths: Sequence[str | Path],
        *,
        exclude: Sequence[str] = (),
        batch_size: int = 32,
        workers: int | None = None,
        progress: ProgressCallback | None = None,
        cluster: str | None = None,
    ) -> IndexReport:
        """Bring the store in line with the photos under `paths` (see assoc.runtime.indexing.indexer).

        progress(done, total) counts the new and changed files; it is called from this thread.
        cluster: encode on a Ray cluster (assoc[ray]; see assoc.distributed) at this address: "auto"
        (the cluster this machine joined), "HOST:PORT", "ray://HOST:PORT", or "local" (start one here).
        The workers must see the photos at the same paths. `workers` counts decoding threads here, and
        encoder actors on a cluster (default: sized to the cluster).
        """
        roots = [Path(p).expanduser() for p in paths]
        for root in roots:
            if not os.path.lexists(root):  # a broken link or a link loop is there: the walk says which
                raise QueryError(f"no such file or folder: {root}")
        with self._lock:
            # The encoder first: a model that contradicts its config.json must not make a gallery.
            encoder = self.image_encoder if cluster is None else None
            store = self._open_store(create=True)
            if encoder is not None:
                from ..runtime.indexing.indexer import index_paths

                summary = index_paths(
                    store,
                    encoder,
                    roots,
                    batch_size=batch_size,
                    workers=workers,
                    exclude=exclude,
                    on_progress=progress,
                )
            else:
                try:
                    from ..distributed import index_on_cluster
                except ImportError:
                    raise AssocError("indexing on a Ray cluster needs Ray: install assoc[ray]") from None
                summary = index_on_cluster(
                    store,
                    self.bundle,
                    roots,
                    cluster=cluster,
                    device=self.device,
                    workers=workers,
                    batch_size=batch_size,
                    exclude=exclude,
                    on_progress=progress,
                )
            return IndexReport.from_summary(summary, photos=len(store))

    def search(
        self,
        query: SearchQuery,
        k: int = 10,
        min_score: float | None = None,
        *,
        words: bool = False,
        exact: bool = False,
        where: PhotoFilter | None = None,
    ) -> list[Hit]:
        """Photos best first.

        query: a str is words, unless it names an existing photo file, in the combined-query syntax
        ("2:golden retriever + ./pool.jpg - fruit": assoc.runtime.search.combined), each of its terms
        words unless it names a photo file; a Path or a PIL image is a photo query (MaxSim from its
        patches: an indexed photo scores best with itself, 1 plus the bundle's global weight, mixed to
        1); a list of (term, weight) pairs is a combined query written out, each term words (a str),
        a photo (a Path, a str naming a file, a PIL image, or an IndexedPhoto), its weight negative for
        a minus term. A combined query's hits carry each term's score (Hit.terms).

        words=True takes every str as words whatever it names: a server must not let a client name files.
        exact=True scores every photo instead of the store's first-stage candidates (scores are exact
        either way; see assoc.runtime.stores.gallery). where: only photos that meet this filter
        (assoc.runtime.search.filters; PhotoFilter.of builds one from what a person typed).
        """
        if isinstance(query, str):
            photo = None if words else query_photo(query)
            terms: Sequence[tuple[QueryTerm, float]] = (
                [(photo, 1.0)] if photo is not None else [(t.text, t.weight) for t in parse_query(query)]
            )
        elif _is_image(query) or isinstance(query, Path):
            terms = [(query, 1.0)]
        else:
            terms = _pairs(query)
        resolved = [self._term(term, weight, words) for term, weight in terms]
        ranked = CombinedQuery.of([(q, weight) for q, weight, _ in resolved])
        with self._lock:
            hits = search(self._open_store(), ranked, k, min_score, exact=exact, where=where)
        if not isinstance(ranked, CombinedQuery):
            return [Hit(h.path, h.score) for h in hits]
        labels = [(label, weight) for _, weight, label in resolved]
        return [
            Hit(h.path, h.score, tuple(TermScore(*label, w, s) for (label, w), s in zip(labels, h.terms, strict=True)))
            for h in hits
        ]

    def search_indexed(
        self,
        content_hash: str,
        k: int = 10,
        min_score: float | None = None,
        *,
        exact: bool = False,
        where: PhotoFilter | None = None,
    ) -> list[Hit]:
        """Photos like an indexed one, named by its content hash (PhotoRecord.content_hash): ranked by its
        stored grid, so the file need not be there any more (moved, deleted, on an unmounted disk)."""
        return self.search([(IndexedPhoto(content_hash), 1.0)], k, min_score, exact=exact, where=where)

    def _term(self, term: QueryTerm, weight: float, words: bool) -> tuple[Query, float, tuple[str, str]]:
        """A query term's Query (the bundle's ranking) and its label (what it is, "words" or "photo")."""
        config = self.bundle.config
        if isinstance(term, str):
            photo = None if words else query_photo(term)
            if photo is None:
                return Query.of_text(self.encode_text(term), config), weight, (term, "words")
            term = photo
        if isinstance(term, IndexedPhoto):
            with self._lock:
                stored = _stored_by_hash(self._open_store(), term.content_hash)
            if stored is None:
                raise QueryError(f"no indexed photo has the content hash {term.content_hash!r}")
            label, vectors = stored
        elif isinstance(term, Path):
            photo = query_photo(term)
            label, vectors = str(photo), self._photo_vectors(photo)
        elif _is_image(term):
            label, vectors = "", self._photo_vectors(term)
        else:
            raise QueryError(f"a query term is words, a photo or an IndexedPhoto, not {type(term).__name__}")
        return self._photo_query(vectors), weight, (label, "photo")

    def _photo_query(self, vectors: PhotoVectors) -> Query:
        """The query of a photo: its patches as query vectors, its global vector as the sentence vector."""
        config = self.bundle.config
        return Query.of(
            vectors.grid.reshape(-1, config.embed_dim).astype(np.float32),
            config.embed_dim,
            kind=config.score,
            global_weight=config.ranking.global_weight,
            sentence=vectors.pooled.astype(np.float32),
        )

    def localize(self, photo: str | Path | Image.Image, phrase: str) -> Localization:
        """Where each word of `phrase` lands in one photo, indexed or not, by the bundle's localize
        recipe (assoc.runtime.encoding.bundle.LocalizeConfig): the photo encoded at the localize size,
        each word map smoothed. When that size is the gallery's own, a photo whose content the store
        holds (a renamed copy counts) reuses its stored grid.
        """
        words = self.encode_text(phrase)
        name, size, loaded_image, grid = self._localize_grid(photo)
        maps = compute_heatmaps(grid, words, self.bundle.config.localize.smooth)
        return Localization.from_heatmaps(name, size, maps, photo=loaded_image)

    def region_words(
        self,
        photo: str | Path | Image.Image,
        *,
        at: tuple[float, float] | None = None,
        box: tuple[float, float, float, float] | None = None,
        phrase: str | None = None,
        top: int = 10,
    ) -> RegionWords:
        """The words that match one region of a photo best: a point `at` (x, y) or a `box` (x, y, w, h)
        in the photo's pixels after EXIF orientation (see assoc.runtime.scoring.regions). Read from the
        maps localize() draws (its grid, its smoothing), so the words at a heatmap's peak are the ones
        the heatmap shows there.

        With a phrase, its words ranked by how well each lands here (function words such as 'a' or
        'on' left out, unless the phrase has nothing else); without one, the bundle's vocabulary, one
        form of each word (the best of "dog" and "dogs").
        """
        if (at is None) == (box is None):
            raise QueryError("name one region of the photo: a point or a box")
        vocabulary = None if phrase is not None else self.vocabulary()
        name, size, loaded_image, grid = self._localize_grid(photo)
        grid_shape = (grid.shape[0], grid.shape[1])
        mask = point_cells(at, grid_shape, size) if at is not None else box_cells(box, grid_shape, size)
        if vocabulary is not None:
            words, scores = vocabulary.words, region_scores(self._vocabulary_maps(grid, vocabulary), mask)
        else:
            maps = compute_heatmaps(grid, self.encode_text(phrase), self.bundle.config.localize.smooth)
            words, scores = maps.words, region_scores(maps.word_maps, mask)
            content = [k for k, word in enumerate(words) if word.lower() not in FUNCTION_WORDS]
            if content:
                words, scores = [words[k] for k in content], scores[content]
        order = np.argsort(-scores, kind="stable")
        if vocabulary is not None:  # one form of each word: its best ("dog" or "dogs", not both)
            order = order[np.sort(np.unique(self._families[order], return_index=True)[1])]
        ranked = [RegionWord(words[k], float(scores[k])) for k in order[: max(0, top)]]
        region = cells_to_box(mask_bounds(mask), grid_shape, size)
        source = "vocabulary" if vocabulary is not None else "phrase"
        return RegionWords(name, size[0], size[1], grid_shape, region, source, ranked, photo=loaded_image)

    def label(self, photo: str | Path | Image.Image, top: int = 5) -> PhotoLabels:
        """What is where in a photo, with no text: up to `top` non-overlapping regions, each named by its
        best word of the bundle's vocabulary (see assoc.runtime.scoring.regions), on localize()'s maps."""
        vocabulary = self.vocabulary()
        name, size, loaded_image, grid = self._localize_grid(photo)
        grid_shape = (grid.shape[0], grid.shape[1])
        labels = [
            RegionLabel(
                vocabulary.words[found.word],
                found.score,
                cell_to_pixel(found.cell, grid_shape, size),
                cells_to_box(found.cells, grid_shape, size),
            )
            for found in pick_labels(self._vocabulary_maps(grid, vocabulary), top, self._families)
        ]
        return PhotoLabels(name, size[0], size[1], grid_shape, labels, photo=loaded_image)

    def explain(self, path: str, phrase: str) -> Localization | None:
        """Localization of an indexed photo from its stored grid, without opening the photo (sizes come
        from the store's record); None if the store no longer holds it. Coarser than localize() when the
        bundle localizes at a larger size, and cheap enough for every hit of a search."""
        words = self.encode_text(phrase)
        with self._lock:
            store = self._open_store()
            record, grid = store.record(path), store.get_grid(path)
        if record is None or grid is None:
            return None
        maps = compute_heatmaps(grid, words, self.bundle.config.localize.smooth)
        return Localization.from_heatmaps(path, (record.width, record.height), maps)

    def duplicates(self, threshold: float = DEFAULT_THRESHOLD) -> Duplicates:
        """Groups of indexed photos that show the same picture (resized, re-encoded, lightly cropped or
        recoloured copies; files of one content), read from the stored grids: see
        assoc.runtime.search.duplicates. threshold (above 0, at most 1): the similarity a pair needs."""
        threshold = check_threshold(threshold)
        with self._lock:
            store = self._open_store()
            records = store.records()
            groups = find_duplicates(store.open_view(), records, threshold)
        return Duplicates.of(threshold, records, groups)

    def records(self, paths: Sequence[str]) -> dict[str, PhotoRecord]:
        """What the store holds of these indexed photos (its content hash, displayed size, ...), by path;
        paths it no longer holds are left out."""
        with self._lock:
            store = self._open_store()
            found = {path: store.record(path) for path in paths}
        return {path: record for path, record in found.items() if record is not None}

    def find(self, content_hash: str) -> PhotoRecord | None:
        """The indexed photo with this content hash (a stable id for it that names no path), or None."""
        with self._lock:
            store = self._open_store()
            path = store.find_by_hash(content_hash)
            return store.record(path) if path is not None else None

    def check(self, repair: bool = False) -> CheckReport:
        """Verify every photo the built-in gallery stores against its checksum; with repair, drop the
        damaged ones, which the next index run encodes again from the photos."""
        from ..runtime.stores.gallery import Gallery

        with self._lock:
            store = self._open_store()
            if not isinstance(store, Gallery):
                raise GalleryError("checking stored bytes is for the built-in gallery; Qdrant checks its own")
            return store.check(repair=repair)

    def info(self) -> Info:
        """Facts about the store and the bundle, and whether the two belong together."""
        with self._lock:
            store = describe_store(self.store_spec, self.bundle, self._store)
        return Info.from_facts(store, self.bundle)

    # ------------------------------------------------------------------ building blocks

    @property
    def text_encoder(self) -> TextEncoder:
        with self._lock:
            if self._text is None:
                from ..runtime.encoding.encoders import QUERY_THREADS, TextEncoder

                self._text = TextEncoder(self.bundle, self.device, QUERY_THREADS)
            return self._text

    @property
    def image_encoder(self) -> ImageEncoder:
        with self._lock:
            if self._image is None:
                from ..runtime.encoding.encoders import ImageEncoder

                self._image = ImageEncoder(self.bundle, self.device)
            return self._image

    def vocabulary(self) -> Vocabulary:
        """The bundle's vocabulary (read once); a QueryError if the bundle has none."""
        with self._lock:
            if self._vocabulary is None:
                self._vocabulary = self.bundle.read_vocabulary()
                if self._vocabulary is not None:
                    self._families = word_families(self._vocabulary.words)
            if self._vocabulary is None:
                raise QueryError(
                    f"model bundle {self.bundle.root} has no vocabulary to name photo regions with:"
                    " give words to look for, or add a vocabulary to the bundle"
                )
            return self._vocabulary

    def encode_text(self, text: str) -> EncodedQuery:
        """Word vectors of a text, from a small cache of recent queries."""
        cached = self._queries.get(text)
        if cached is None:
            cached = self.text_encoder.encode_one(text)
            self._queries.put(text, cached)
        return cached

    def _open_store(self, create: bool = False) -> Store:
        """The store, opened once; an index run may create it where a search found nothing yet."""
        if self._store is None:
            self._store = open_store(self.store_spec, self.bundle, create=create)
        return self._store

    def _photo_vectors(self, photo: Path | Image.Image) -> PhotoVectors:
        """A query photo's vectors: the stored ones if the store holds this very content. Hashing,
        decoding and encoding run outside the lock; only the store lookups hold it."""
        if isinstance(photo, Path):
            try:
                digest = hash_content(photo)
            except OSError as exc:
                raise QueryError(f"{photo}: cannot read the query photo ({exc.strerror or exc})") from None
            with self._lock:
                stored = _stored_by_hash(self._open_store(), digest)
            if stored is not None:
                return stored[1]
            from ..runtime.imaging.images import load_image

            height, width = self.bundle.config.visual.image_size
            photo = load_image(photo, min_size=(width, height)).image
        encoder = self.image_encoder
        grids, globals_ = encoder.encode_with_globals(encoder.prepare(photo)[None])
        grid = grids[0].astype(np.float16)
        return PhotoVectors(grid, pooled_vectors(grid[None], globals_)[0], np.empty((0, grid.shape[-1]), np.float16))

    def _open_photo(self, photo: str | Path | Image.Image) -> tuple[str, tuple[int, int], Image.Image, np.ndarray]:
        """(name, displayed (width, height), RGB image, patch grid) of a photo, indexed or not.

        A photo whose content the store holds (a renamed copy counts) reuses its stored grid; otherwise
        it is encoded here. A store that cannot serve this model is no reason to refuse.
        """
        name, size, image = self._load_photo(photo)
        grid = self._stored_grid(Path(name)) if name else None
        if grid is None:
            grid = self.image_encoder.encode([image])[0]
        return name, size, image, grid

    def _localize_grid(self, photo: str | Path | Image.Image) -> tuple[str, tuple[int, int], Image.Image, np.ndarray]:
        """_open_photo's facts with the grid at the bundle's localize size (LocalizeConfig): the stored
        grid when that is the gallery's own size, else the photo encoded at it."""
        config = self.bundle.config
        if config.localize_size == config.visual.image_size:
            return self._open_photo(photo)
        name, size, loaded_image = self._load_photo(photo)
        return name, size, loaded_image, self.image_encoder.encode_for_localizing(loaded_image)

    def _vocabulary_maps(self, grid: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
        """(words, h, w) maps of every vocabulary word, smoothed as localize() smooths a phrase's."""
        maps = word_maps(grid, vocabulary.vectors)
        smooth = self.bundle.config.localize.smooth
        return smooth_map(maps, smooth) if smooth > 1 else maps

    def _load_photo(self, photo: str | Path | Image.Image) -> tuple[str, tuple[int, int], Image.Image]:
        """(name, displayed (width, height), RGB image); a PIL image has no name ("")."""
        if _is_image(photo):
            return "", photo.size, photo.convert("RGB")
        from ..runtime.imaging.images import load_image

        path = _regular_file(Path(photo).expanduser()).absolute()
        loaded = load_image(path, min_size_if_large=self.bundle.config.largest_input_size[::-1])
        return str(path), (loaded.width, loaded.height), loaded.image

    def _stored_grid(self, path: Path) -> np.ndarray | None:
        """The grid the store holds for this file's content (under any name), or None; hashed outside the lock."""
        try:
            digest = hash_content(path)
            with self._lock:
                return _grid_by_hash(self._open_store(), digest)
        except (GalleryError, OSError):  # no store yet, another model's, or unreadable: encode instead
            return None


def _grid_by_hash(store: Store, content_hash: str) -> np.ndarray | None:
    """The grid the store holds for this content hash (under any name), or None."""
    known = store.find_by_hash(content_hash)
    return store.get_grid(known) if known is not None else None


def _pairs(query: object) -> list[tuple[QueryTerm, float]]:
    """A combined query written out as (term, weight) pairs, checked for its shape."""
    try:
        pairs = [(term, weight) for term, weight in query]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise QueryError("a combined query is a list of (term, weight) pairs") from None
    if not pairs:
        raise QueryError("the query is empty")
    return pairs


def _stored_by_hash(store: Store, content_hash: str) -> tuple[str, PhotoVectors] | None:
    """A path the store holds this content hash under, and its vectors, or None."""
    known = store.find_by_hash(content_hash)
    vectors = store.get_vectors(known) if known is not None else None
    return None if vectors is None else (known, vectors)


def query_photo(text: str | Path) -> Path | None:
    """The photo a query names, or None for words.

    Only an existing regular file is a photo query; any text, however long or odd, is otherwise words.
    A short photo-like file name that is not there is an error: a mistyped path must not quietly turn
    into a search for the word 'IMG_0042.jpg'.
    """
    if isinstance(text, Path):
        return _regular_file(text.expanduser()).absolute()
    path = Path(text).expanduser()
    with suppress(OSError, ValueError):  # a name too long for the OS, or holding NUL: words
        if path.is_file():
            return path.absolute()
    if path.suffix and not any(c.isspace() for c in text) and len(text) < 256 and _photo_suffix(path.suffix):
        raise QueryError(f"{text}: no such photo (a query naming a photo file searches with that photo)")
    return None


def _photo_suffix(suffix: str) -> bool:
    from ..runtime.imaging.images import PHOTO_SUFFIXES  # loads Pillow: only for a query that looks like a file

    return suffix.lower() in PHOTO_SUFFIXES


def _is_image(value: object) -> bool:
    """Whether value is a PIL image, without importing Pillow (a text query needs none): one can exist
    only once PIL.Image has been imported."""
    module = sys.modules.get("PIL.Image")
    return module is not None and isinstance(value, module.Image)


def _regular_file(path: Path) -> Path:
    """The path of a regular file (never a pipe or a device, which could block or never end)."""
    try:
        if path.is_file():
            return path
        there = path.exists()
    except (OSError, ValueError):  # a name the OS refuses
        there = False
    raise QueryError(f"{path}: not a regular file" if there else f"{path}: no such photo")


def open(model: str | Path | Bundle | None = None, store: StoreSpec | None = None, device: str = "auto") -> Searcher:
    """A Searcher (use it in a `with` block, or call close())."""
    return Searcher(model, store, device)

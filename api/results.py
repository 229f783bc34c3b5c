"""What the API returns: plain dataclasses whose to_dict() is exactly the JSON the CLI prints.

Scripts parse these shapes (`assoc query --json`, `assoc localize --json`, `assoc index --json`,
`assoc info --json`, `assoc duplicates --json`, and the web app's /api/), so they change only with care.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..runtime.scoring.heatmap import Heatmaps, cell_to_pixel

if TYPE_CHECKING:  # for annotations only: a text query needs neither Pillow nor the indexer
    from PIL import Image

    from ..runtime.encoding.bundle import Bundle
    from ..runtime.indexing.indexer import IndexSummary
    from ..runtime.search.duplicates import Group
    from ..runtime.stores.base import PhotoRecord


@dataclass(frozen=True)
class TermScore:
    """One term of a combined query (assoc.runtime.search.combined) and what one photo scored for it alone."""

    term: str  # the words, or the photo's path ("" for a photo given as an image in memory)
    kind: str  # "words" | "photo"
    weight: float  # as given, signed: a minus term's is negative
    score: float  # the photo's score for this term alone

    def to_dict(self) -> dict[str, Any]:
        return {"term": self.term, "kind": self.kind, "weight": self.weight, "score": self.score}


@dataclass(frozen=True)
class Hit:
    """One photo a search returned: its path as indexed and its exact score; for a combined query, each
    term's own score too (the JSON's "terms", present only then)."""

    path: str
    score: float
    terms: tuple[TermScore, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"path": self.path, "score": self.score}
        if self.terms:
            found["terms"] = [term.to_dict() for term in self.terms]
        return found


@dataclass(frozen=True)
class IndexReport:
    """What an index run did, and how many photos the store holds after it."""

    added: int
    updated: int
    reused: int
    removed: int
    unchanged: int
    skipped: list[tuple[str, str]]  # (path, reason)
    kept_in_empty: list[tuple[str, int]]  # (empty named folder, photos kept)
    photos: int
    dated: int = 0  # unchanged photos indexed before dates were kept whose date taken was read
    seconds: dict[str, float] = field(default_factory=dict)  # per stage (runtime.indexing.indexer.STAGES)

    @classmethod
    def from_summary(cls, summary: IndexSummary, photos: int) -> IndexReport:
        return cls(
            summary.added,
            summary.updated,
            summary.reused,
            summary.removed,
            summary.unchanged,
            list(summary.skipped),
            list(summary.kept_in_empty),
            photos,
            summary.dated,
            dict(summary.seconds),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "reused": self.reused,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "dated": self.dated,
            "skipped": [{"path": path, "reason": reason} for path, reason in self.skipped],
            "kept_in_empty": [{"path": path, "photos": kept} for path, kept in self.kept_in_empty],
            "photos": self.photos,
        }


@dataclass(frozen=True)
class StoreFacts:
    """What `assoc info` says of a store."""

    kind: str  # "builtin" | "qdrant"
    location: str
    exists: bool
    photos: int
    size_on_disk: int | None  # bytes; None for a Qdrant server
    last_indexed: str | None  # UTC ISO 8601 of the newest file; None for a server or nothing indexed
    bundle_id: str | None  # the model that made it; None if nothing is indexed
    matches_bundle: bool = True  # whether the searcher's bundle may search it


@dataclass(frozen=True)
class BundleFacts:
    """What `assoc info` says of a model bundle."""

    path: str
    bundle_id: str
    model_name: str
    embed_dim: int
    grid: tuple[int, int]
    image_size: tuple[int, int]
    score: str
    quantized_text: bool

    @classmethod
    def of(cls, bundle: Bundle) -> BundleFacts:
        config = bundle.config
        return cls(
            str(bundle.root),
            bundle.bundle_id,
            config.model_name,
            config.embed_dim,
            config.visual.grid,
            config.visual.image_size,
            config.score,
            config.textual.quantized,
        )


@dataclass(frozen=True)
class Info:
    """Facts about a store and a bundle, and whether the two belong together (`assoc info --json`)."""

    store: StoreFacts
    bundle: BundleFacts

    @classmethod
    def from_facts(cls, store: StoreFacts, bundle: Bundle) -> Info:
        matches = store.bundle_id in (None, bundle.bundle_id)
        return cls(replace(store, matches_bundle=matches), BundleFacts.of(bundle))

    def to_dict(self) -> dict[str, Any]:
        bundle = asdict(self.bundle)
        bundle["grid"], bundle["image_size"] = list(self.bundle.grid), list(self.bundle.image_size)
        return {"store": asdict(self.store), "bundle": bundle}


@dataclass(frozen=True)
class WordLocalization:
    word: str
    score: float
    peak: tuple[int, int]  # (x, y) in the photo's displayed pixels


@dataclass(frozen=True)
class Localization:
    """Where a phrase lands in one photo; points are in the photo's pixels after EXIF orientation.

    to_dict() is what `assoc localize --json` prints. The maps themselves (heatmaps) and, when it was
    opened, the photo (for drawing overlays) ride along but are not serialised.
    """

    image: str
    width: int
    height: int
    grid: tuple[int, int]  # (h, w)
    peak: tuple[int, int]  # (x, y) of the phrase map's best cell
    words: list[WordLocalization]
    heatmaps: Heatmaps = field(repr=False, compare=False)
    photo: Image.Image | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_heatmaps(
        cls, image: str, size: tuple[int, int], maps: Heatmaps, photo: Image.Image | None = None
    ) -> Localization:
        """size = (width, height) of the full photo as displayed (LoadedImage.width, .height)."""
        words = [
            WordLocalization(word, float(maps.word_scores[k]), cell_to_pixel(maps.word_peak(k), maps.grid, size))
            for k, word in enumerate(maps.words)
        ]
        peak = cell_to_pixel(maps.phrase_peak, maps.grid, size)
        return cls(image, size[0], size[1], maps.grid, peak, words, maps, photo)

    @property
    def score(self) -> float:
        return self.heatmaps.score

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "width": self.width,
            "height": self.height,
            "grid": list(self.grid),
            "peak": list(self.peak),
            "words": [{"word": w.word, "score": w.score, "peak": list(w.peak)} for w in self.words],
        }


@dataclass(frozen=True)
class RegionWord:
    word: str
    score: float  # the word's best cell in the region


@dataclass(frozen=True)
class RegionWords:
    """Which words match one region of a photo best (`assoc localize IMG --at X,Y` or `--box X,Y,W,H`).

    region is the rectangle of grid cells that was scored, in the photo's pixels (x, y, w, h); source
    is "phrase" (the words of a given phrase) or "vocabulary" (the bundle's). to_dict() is the --json.
    """

    image: str
    width: int
    height: int
    grid: tuple[int, int]  # (h, w)
    region: tuple[int, int, int, int]
    source: str
    words: list[RegionWord]
    photo: Image.Image | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "width": self.width,
            "height": self.height,
            "grid": list(self.grid),
            "region": list(self.region),
            "source": self.source,
            "words": [{"word": w.word, "score": w.score} for w in self.words],
        }


@dataclass(frozen=True)
class RegionLabel:
    """One region of a photo named by a word: its best cell's centre (peak) and its box, in pixels."""

    word: str
    score: float
    peak: tuple[int, int]  # (x, y)
    box: tuple[int, int, int, int]  # (x, y, w, h)

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "score": self.score, "peak": list(self.peak), "box": list(self.box)}


@dataclass(frozen=True)
class PhotoLabels:
    """What is where in a photo (`assoc localize IMG` with no words): labels best first, never overlapping.

    to_list() is the --json: a list of {"word", "score", "peak": [x, y], "box": [x, y, w, h]}.
    """

    image: str
    width: int
    height: int
    grid: tuple[int, int]  # (h, w)
    labels: list[RegionLabel]
    photo: Image.Image | None = field(default=None, repr=False, compare=False)

    def to_list(self) -> list[dict[str, Any]]:
        return [label.to_dict() for label in self.labels]


@dataclass(frozen=True)
class DuplicatePhoto:
    """One file of a group of duplicates, with what tells the copies apart."""

    path: str
    content_hash: str  # the photo's id (the web app's); files of one content share it
    width: int  # as displayed
    height: int
    size: int  # bytes
    similarity: float  # its best similarity to another photo of the group (1.0: the same content as another)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DuplicateGroup:
    """Files that show the same picture: the largest first (most pixels, then most bytes), then by path."""

    similarity: float  # the weakest link holding the group together
    photos: list[DuplicatePhoto]

    def to_dict(self) -> dict[str, Any]:
        return {"similarity": self.similarity, "photos": [photo.to_dict() for photo in self.photos]}


@dataclass(frozen=True)
class Duplicates:
    """What `assoc duplicates` found (assoc.runtime.search.duplicates); to_dict() is its --json:
    {"threshold", "photos" (files compared), "groups": [{"similarity", "photos": [{"path",
    "content_hash", "width", "height", "size", "similarity"}]}]}."""

    threshold: float
    photos: int
    groups: list[DuplicateGroup]

    @classmethod
    def of(cls, threshold: float, records: dict[str, PhotoRecord], groups: list[Group]) -> Duplicates:
        """The runtime's groups with each file's record; a file the records lack is left out."""
        found = []
        for group in groups:
            photos = [
                DuplicatePhoto(m.path, r.content_hash, r.width, r.height, r.size, m.similarity)
                for m in group.members
                if (r := records.get(m.path)) is not None
            ]
            if len(photos) > 1:
                found.append(DuplicateGroup(group.similarity, photos))
        return cls(threshold, len(records), found)

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "photos": self.photos, "groups": [g.to_dict() for g in self.groups]}

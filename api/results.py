"""What the API returns: plain dataclasses whose to_dict() is exactly the JSON the CLI prints.

Scripts parse these shapes (`assoc query --json`, `assoc localize --json`, `assoc index --json`,
`assoc info --json`, and the web app's /api/), so they change only with care.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..runtime.encoding.bundle import Bundle
from ..runtime.indexing.indexer import IndexSummary
from ..runtime.scoring.heatmap import Heatmaps, cell_to_pixel


@dataclass(frozen=True)
class Hit:
    """One photo a search returned: its path as indexed and its exact score."""

    path: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "score": self.score}


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
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "reused": self.reused,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped": [{"path": path, "reason": reason} for path, reason in self.skipped],
            "kept_in_empty": [{"path": path, "photos": kept} for path, kept in self.kept_in_empty],
            "photos": self.photos,
        }


@dataclass(frozen=True)
class Info:
    """Facts about a store and a bundle (`assoc info --json`)."""

    store: dict[str, Any]  # kind, location, exists, photos, size_on_disk, bundle_id, matches_bundle
    bundle: dict[str, Any]  # path, bundle_id, model_name, embed_dim, grid, image_size, score, quantized_text

    @classmethod
    def from_facts(cls, store: dict[str, Any], bundle: Bundle) -> Info:
        config = bundle.config
        return cls(
            store={**store, "matches_bundle": store["bundle_id"] in (None, bundle.bundle_id)},
            bundle={
                "path": str(bundle.root),
                "bundle_id": bundle.bundle_id,
                "model_name": config.model_name,
                "embed_dim": config.embed_dim,
                "grid": list(config.visual.grid),
                "image_size": list(config.visual.image_size),
                "score": config.score,
                "quantized_text": config.textual.quantized,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {"store": dict(self.store), "bundle": dict(self.bundle)}


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

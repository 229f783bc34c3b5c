"""The pointing game: does a category's heatmap peak fall inside a box of that category?

Run on COCO-style data (a manifest.json of images with `boxes` of `category` and `bbox_xywh` in the
photo's pixels). The query is the category name; the peak is the phrase heatmap's best cell centre in
the photo's own pixels, made as `assoc localize` makes it (the bundle's LocalizeConfig). Beside it: the
peak of the gallery's grid as `query --explain` and the web app's search overlays show it (input size,
smoothed), and the baseline that always points at the photo's centre.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..runtime.encoding.bundle import Bundle
from ..runtime.encoding.encoders import ImageEncoder, TextEncoder
from ..runtime.errors import AssocError
from ..runtime.imaging.images import load_image
from ..runtime.scoring.heatmap import Heatmaps, cell_to_pixel, compute_heatmaps


@dataclass(frozen=True)
class PointingResult:
    trials: int  # (image, category) pairs
    hits: int  # localize's peak
    gallery_grid_hits: int  # the stored grid's peak (explain)
    centre_hits: int
    categories: int

    def to_dict(self) -> dict:
        def rate(n: int) -> float:
            return round(100.0 * n / max(1, self.trials), 2)

        return {
            "trials": self.trials,
            "hit_rate": rate(self.hits),
            "gallery_grid_hit_rate": rate(self.gallery_grid_hits),
            "centre_baseline": rate(self.centre_hits),
            "categories": self.categories,
        }


def _inside(point: tuple[float, float], box: list[float]) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def pointing_game(bundle: Bundle, folder: Path, device: str = "auto") -> PointingResult:
    manifest = Path(folder) / "manifest.json"
    try:
        records = json.loads(manifest.read_text(encoding="utf-8"))["images"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AssocError(f"{manifest}: not a readable boxes manifest ({exc})") from None
    images, text = ImageEncoder(bundle, device), TextEncoder(bundle, device)
    smooth = bundle.config.localize.smooth
    trials = hits = gallery_grid_hits = centre_hits = 0
    seen_categories: set[str] = set()
    for record in records:
        boxes: dict[str, list[list[float]]] = {}
        for box in record.get("boxes", []):
            if not box.get("iscrowd"):
                boxes.setdefault(box["category"], []).append(box["bbox_xywh"])
        if not boxes:
            continue
        photo = load_image(Path(folder) / record["file"])
        grids = (images.encode_for_localizing(photo.image), images.encode([photo.image])[0])
        size = (photo.width, photo.height)
        centre = (photo.width / 2, photo.height / 2)
        for category, query in zip(boxes, text.encode(list(boxes)), strict=True):
            peak, gallery_peak = (_peak(compute_heatmaps(grid, query, smooth), size) for grid in grids)
            trials += 1
            hits += any(_inside(peak, b) for b in boxes[category])
            gallery_grid_hits += any(_inside(gallery_peak, b) for b in boxes[category])
            centre_hits += any(_inside(centre, b) for b in boxes[category])
            seen_categories.add(category)
    return PointingResult(trials, hits, gallery_grid_hits, centre_hits, len(seen_categories))


def _peak(maps: Heatmaps, size: tuple[int, int]) -> tuple[int, int]:
    return cell_to_pixel(maps.phrase_peak, maps.grid, size)

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


def inside_any(point: tuple[float, float], boxes: list[list[float]]) -> bool:
    """Whether (x, y) falls in any of the boxes (x, y, w, h), edges included."""
    return any(x <= point[0] <= x + w and y <= point[1] <= y + h for x, y, w, h in boxes)


def read_boxes(folder: Path) -> list[tuple[Path, dict[str, list[list[float]]]]]:
    """(photo path, {category: its non-crowd boxes}) for every photo of folder/manifest.json with a box."""
    manifest = Path(folder) / "manifest.json"
    try:
        records = json.loads(manifest.read_text(encoding="utf-8"))["images"]
        out = []
        for record in records:
            boxes: dict[str, list[list[float]]] = {}
            for box in record.get("boxes", []):
                if not box.get("iscrowd"):
                    boxes.setdefault(box["category"], []).append(box["bbox_xywh"])
            if boxes:
                out.append((Path(folder) / record["file"], boxes))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AssocError(f"{manifest}: not a readable boxes manifest ({exc})") from None
    return out


def pointing_game(bundle: Bundle, folder: Path, device: str = "auto") -> PointingResult:
    photos = read_boxes(folder)
    images, text = ImageEncoder(bundle, device), TextEncoder(bundle, device)
    smooth = bundle.config.localize.smooth
    at_input_size = bundle.config.localize_size == bundle.config.visual.image_size
    trials = hits = gallery_grid_hits = centre_hits = 0
    seen_categories: set[str] = set()
    for path, boxes in photos:
        photo = load_image(path)
        fine = images.encode_for_localizing(photo.image)
        grids = (fine, fine if at_input_size else images.encode([photo.image])[0])
        size = (photo.width, photo.height)
        centre = (photo.width / 2, photo.height / 2)
        for category in boxes:
            # One query at a time, as `assoc localize` encodes it: an int8 text encoder's vectors move
            # slightly with the batch they are encoded in, enough to move a peak that is nearly tied.
            query = text.encode_one(category)
            peak, gallery_peak = (_peak(compute_heatmaps(grid, query, smooth), size) for grid in grids)
            trials += 1
            hits += inside_any(peak, boxes[category])
            gallery_grid_hits += inside_any(gallery_peak, boxes[category])
            centre_hits += inside_any(centre, boxes[category])
            seen_categories.add(category)
    return PointingResult(trials, hits, gallery_grid_hits, centre_hits, len(seen_categories))


def _peak(maps: Heatmaps, size: tuple[int, int]) -> tuple[int, int]:
    return cell_to_pixel(maps.phrase_peak, maps.grid, size)

"""What localize's recipe buys on the pointing game, and what it costs per photo.

Accuracy. The pointing game of `assoc pointing` (../shared/data/coco-boxes: 80 COCO photos, each
category's name as the query; a hit when the phrase map's peak falls in a box of that category) for
four ways of making the map, beside always pointing at the photo's centre:
- the gallery's grid (the bundle's input size), as the matchmap has it;
- the same grid smoothed (LocalizeConfig.smooth): what `query --explain` and search overlays show;
- the photo encoded at the bundle's localize size (LocalizeConfig.image_size), not smoothed;
- both: what `assoc localize`, its JSON and the web app's photo view use.
With --sizes, the photo is also encoded at other square input sizes (smoothed and not): the sweep the
localize size was chosen from. A bundle whose visual model takes only its input size gets the first
two rows.

Cost. Per photo, median over --rounds: the image encoder at the input size and at the localize size
(the peer and the recipe's main cost), and the heatmaps of a one-word query on each grid, smoothed and
not. ONNX Runtime uses the cores this machine has; one photo at a time, as `localize` runs.

Run from the repository root:
    python bench/localize_cost.py                # [--model DIR] [--rounds 3] [--sizes 480,640,768] [--json FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import DATA, open_bundle, write_json

from assoc.evaluation.pointing import inside_any, read_boxes
from assoc.runtime.encoding.encoders import ImageEncoder, TextEncoder
from assoc.runtime.imaging.images import load_image
from assoc.runtime.scoring.heatmap import cell_to_pixel, compute_heatmaps

BOXES = DATA / "coco-boxes"


@dataclass
class Tally:
    hits: int = 0
    trials: int = 0

    def rate(self) -> float:
        return round(100.0 * self.hits / max(1, self.trials), 2)


@dataclass
class Timings:
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, start: float) -> None:
        self.seconds.setdefault(name, []).append(time.perf_counter() - start)

    def medians_ms(self) -> dict[str, float]:
        return {name: round(1000 * statistics.median(s), 2) for name, s in self.seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="bundle folder (default: ASSOC_MODEL, then the shipped bundle)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds over the photos")
    parser.add_argument("--sizes", default="", help="extra square input sizes to sweep, e.g. 480,640,768")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    bundle = open_bundle(args.model)
    config = bundle.config
    images, text = ImageEncoder(bundle), TextEncoder(bundle)
    smooth = config.localize.smooth
    sizes = {"input": config.visual.image_size}
    if images.takes_any_size:
        sizes["localize"] = config.localize_size
        for side in filter(None, args.sizes.split(",")):
            sizes[f"{side}px"] = (int(side), int(side))

    tallies: dict[str, Tally] = {"centre point": Tally()}
    timings = Timings()
    photos = read_boxes(BOXES)
    for round_ in range(max(1, args.rounds)):
        for path, boxes in photos:
            photo = load_image(path)
            size = (photo.width, photo.height)
            grids = {}
            for name, wanted in sizes.items():
                start = time.perf_counter()
                grids[name] = images.encode_arrays(images.prepare(photo.image, wanted)[None])[0]
                if name in ("input", "localize"):
                    timings.add(f"encode at the {name} size", start)
            queries = text.encode(list(boxes))
            for name, grid in grids.items():
                for width in (1, smooth):
                    start = time.perf_counter()
                    maps = compute_heatmaps(grid, queries[0], width)
                    if name in ("input", "localize"):
                        timings.add(f"heatmaps on the {name} grid, smooth {width}", start)
            if round_:  # accuracy does not change between rounds
                continue
            for query, category in zip(queries, boxes, strict=True):
                tallies["centre point"].trials += 1
                tallies["centre point"].hits += inside_any((size[0] / 2, size[1] / 2), boxes[category])
                for name, grid in grids.items():
                    for width in (1, smooth):
                        maps = compute_heatmaps(grid, query, width)
                        tally = tallies.setdefault(f"{name} {maps.grid[0]}x{maps.grid[1]}, smooth {width}", Tally())
                        tally.trials += 1
                        tally.hits += inside_any(cell_to_pixel(maps.phrase_peak, maps.grid, size), boxes[category])

    trials = tallies["centre point"].trials
    print(f"bundle {bundle.bundle_id}: pointing game on {trials} (photo, category) pairs, {len(photos)} photos")
    if not images.takes_any_size:
        print("(its visual model takes only its input size: no finer grid to measure)")
    for name, tally in tallies.items():
        print(f"  {name:34s} {tally.rate():6.2f}%")
    print(f"per photo, median of {max(1, args.rounds)} rounds:")
    for name, ms in timings.medians_ms().items():
        print(f"  {name:40s} {ms:8.2f} ms")
    write_json(
        args.json,
        {
            "bundle": bundle.bundle_id,
            "trials": trials,
            "pointing_percent": {name: t.rate() for name, t in tallies.items()},
            "per_photo_ms": timings.medians_ms(),
        },
    )


if __name__ == "__main__":
    main()

"""Region naming on COCO boxes: which of the 80 category names a box's patches match best, and how fast a
photo is labelled.

Accuracy. For every non-crowd (photo, object box) of ../shared/data/coco-boxes, the 80 COCO category
names (each encoded as a query by the bundle's TextEncoder) are ranked by their score inside the box:
per word of the name, its best cell among the box's cells (assoc.runtime.scoring.regions.box_cells),
averaged over the name's words (MISA restricted to the box; one-word names: the best cell). Top-1 and
top-5 accuracy, overall and by COCO box size (small < 32², medium < 96², large), beside
- chance: 1/80 and 5/80;
- the whole-photo baseline: the same ranking over every cell of the photo, ignoring the box. It is
  right only as often as the box's object is what the whole photo matches best, so the gap between the
  two is what localization adds.
And, in photos holding 2+ categories, top-1 among the photo's own categories: the question only
localization can answer (the whole photo gives every box the same answer), beside its chance level.

Speed. Per photo, median over --rounds of: Searcher.label (decode, encode, name regions from the
vocabulary, pick labels) on a photo in no gallery; the image encoder alone on the decoded photo (the
peer: labelling's share is the difference); and the naming step alone on a grid in memory (vocabulary
maps + peak picking). ONNX Runtime and numpy use the cores this machine has.

Run from the repository root:
    python bench/region_naming.py                # [--model DIR] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from common import DATA, open_bundle, write_json

from assoc.api.searcher import Searcher
from assoc.api.stores import StoreSpec
from assoc.runtime.encoding.bundle import Bundle
from assoc.runtime.encoding.encoders import ImageEncoder, TextEncoder
from assoc.runtime.imaging.images import load_image
from assoc.runtime.scoring.heatmap import compute_heatmaps
from assoc.runtime.scoring.regions import box_cells, pick_labels, region_scores, word_families, word_maps

COCO = DATA / "coco-boxes"
SIZES = (("small", 32**2), ("medium", 96**2), ("large", float("inf")))


def size_class(area: float) -> str:
    return next(name for name, limit in SIZES if area < limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle folder (default: ASSOC_MODEL, then the shipped bundle)")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the photos (0: accuracy only)")
    parser.add_argument("--top", type=int, default=5, help="labels per photo in the speed figures")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--grid",
        choices=("localize", "stored"),
        default="localize",
        help="name regions on localize's maps (its input size and smoothing: what `localize --box` reads) "
        "or on the gallery's grid at the input size, unsmoothed",
    )
    args = parser.parse_args()

    bundle = open_bundle(args.model)
    records = json.loads((COCO / "manifest.json").read_text(encoding="utf-8"))["images"]
    categories = sorted({box["category"] for record in records for box in record["boxes"]})
    print(f"bundle {bundle.bundle_id}; {len(records)} photos, {len(categories)} category names")
    accuracy = naming_accuracy(bundle, records, categories, args.grid)
    print(f"\nregion naming, {accuracy['trials']} (photo, box) pairs, {len(categories)} names; top-1 / top-5 %:")
    print(f"{'boxes':>16} {'inside the box':>16} {'whole photo':>16} {'chance':>12}")
    chance = f"{accuracy['chance_top1']} / {accuracy['chance_top5']}"
    for group, row in accuracy["groups"].items():
        print(
            f"{group + ' (' + str(row['trials']) + ')':>16} {row['box_top1']:>7} / {row['box_top5']:<6}"
            f" {row['photo_top1']:>7} / {row['photo_top5']:<6} {chance:>12}"
        )
    print("names ranked first inside the most boxes:", accuracy["most_named_in_boxes"])
    own = accuracy["own_categories"]
    print(
        f"\namong each photo's own categories ({own['trials']} boxes in photos of 2+ categories), top-1 %: "
        f"inside the box {own['box_top1']}, whole photo {own['photo_top1']}, chance {own['chance_top1']}"
    )

    if args.rounds < 1:
        write_json(args.json, {"bundle": bundle.bundle_id, "grid": args.grid, "accuracy": accuracy})
        return
    speed = measure_speed(bundle, records, args)
    print(
        f"\nlabelling speed per photo ({speed['photos']} photos x {args.rounds} rounds, {os.cpu_count()} cores, "
        f"{speed['vocabulary']} vocabulary words, top {args.top}), median ms:"
    )
    print(f"  Searcher.label, end to end: {speed['label_ms']:.1f}")
    print(f"  image encoder alone (peer): {speed['encode_ms']:.1f}")
    print(f"  naming alone (grid given):  {speed['naming_ms']:.1f}")
    write_json(args.json, {"bundle": bundle.bundle_id, "grid": args.grid, "accuracy": accuracy, "speed": speed})


def naming_accuracy(bundle: Bundle, records: list[dict], categories: list[str], grid_kind: str = "localize") -> dict:
    """Top-1/top-5 of the box's category among all names, inside the box and over the whole photo, by
    box size; and top-1 among the categories the photo itself holds (photos with 2+), where the whole
    photo cannot tell its boxes apart."""
    text, images = TextEncoder(bundle, "cpu"), ImageEncoder(bundle, "cpu")
    queries = [text.encode_one(name) for name in categories]
    tally: Counter[tuple[str, str]] = Counter()
    winners: Counter[str] = Counter()  # the name ranked first inside each box
    own: Counter[str] = Counter()
    own_chance = 0.0
    for record in records:
        boxes = [box for box in record["boxes"] if not box.get("iscrowd")]
        photo = load_image(COCO / record["file"])
        if grid_kind == "localize":
            grid, smooth = images.encode_for_localizing(photo.image), bundle.config.localize.smooth
        else:
            grid, smooth = images.encode([photo.image])[0], 1
        shape, size = (grid.shape[0], grid.shape[1]), (photo.width, photo.height)
        maps = [compute_heatmaps(grid, query, smooth).word_maps for query in queries]
        whole = np.ones(shape, dtype=bool)
        photo_scores = np.array([region_scores(m, whole).mean() for m in maps])
        present = sorted({categories.index(box["category"]) for box in boxes})
        for box in boxes:
            truth = categories.index(box["category"])
            mask = box_cells(tuple(box["bbox_xywh"]), shape, size)
            box_scores = np.array([region_scores(m, mask).mean() for m in maps])
            winners[categories[int(np.argmax(box_scores))]] += 1
            for group in ("all", size_class(box["area"])):
                tally[group, "trials"] += 1
                for where, scores in (("box", box_scores), ("photo", photo_scores)):
                    rank = int((scores > scores[truth]).sum())  # 0 = best
                    tally[group, f"{where}_top1"] += rank < 1
                    tally[group, f"{where}_top5"] += rank < 5
            if len(present) > 1:
                own["trials"] += 1
                own_chance += 1 / len(present)
                for where, scores in (("box", box_scores), ("photo", photo_scores)):
                    own[f"{where}_top1"] += bool(scores[present].max() <= scores[truth])

    def pct(n: float, of: int) -> float:
        return round(100.0 * n / max(1, of), 1)

    columns = ("box_top1", "box_top5", "photo_top1", "photo_top5")
    return {
        "trials": tally["all", "trials"],
        "categories": len(categories),
        "chance_top1": pct(1, len(categories)),
        "chance_top5": pct(5, len(categories)),
        "groups": {
            group: {"trials": (n := tally[group, "trials"]), **{c: pct(tally[group, c], n) for c in columns}}
            for group in ("all", *(name for name, _ in SIZES))
        },
        "most_named_in_boxes": dict(winners.most_common(5)),
        "own_categories": {
            "trials": own["trials"],
            "box_top1": pct(own["box_top1"], own["trials"]),
            "photo_top1": pct(own["photo_top1"], own["trials"]),
            "chance_top1": pct(own_chance, own["trials"]),
        },
    }


def measure_speed(bundle: Bundle, records: list[dict], args: argparse.Namespace) -> dict:
    paths = [COCO / record["file"] for record in records]
    # A store that is not there: every photo is decoded and encoded, as for a photo in no gallery.
    with tempfile.TemporaryDirectory() as tmp, Searcher(bundle, StoreSpec.builtin(Path(tmp)), "cpu") as searcher:
        vocabulary = searcher.vocabulary()
        encoder = searcher.image_encoder
        decoded = [load_image(p).image for p in paths]
        grids = [encoder.encode([image])[0] for image in decoded]  # also warms the sessions up
        searcher.label(paths[0], top=args.top)
        label_s, encode_s, naming_s = [], [], []
        families = word_families(vocabulary.words)
        for _ in range(args.rounds):
            for path, image, grid in zip(paths, decoded, grids, strict=True):
                start = time.perf_counter()
                searcher.label(path, top=args.top)
                label_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                encoder.encode([image])
                encode_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                pick_labels(word_maps(grid, vocabulary.vectors), args.top, families)
                naming_s.append(time.perf_counter() - start)
    return {
        "photos": len(paths),
        "vocabulary": len(vocabulary.words),
        "label_ms": 1000 * statistics.median(label_s),
        "encode_ms": 1000 * statistics.median(encode_s),
        "naming_ms": 1000 * statistics.median(naming_s),
    }


if __name__ == "__main__":
    main()

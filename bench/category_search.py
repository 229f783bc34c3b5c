"""Category search on COCO photos: index the 80 photos of coco-boxes, ask "a photo of a {category}".

    python bench/category_search.py [--model BUNDLE] [--min-photos 5] [--k 5] [--json FILE]

For every COCO category present (a non-crowd box) in at least --min-photos of the 80 photos, the
query "a photo of a {category}" runs through assoc.Searcher (the bundle's ranking, the built-in
gallery, exact search: 80 photos are fewer than the first stage's candidates anyway); P@k is the share
of the top k that hold that category. Printed per category and as the mean over categories, beside
chance (the category's share of the photos, averaged the same way).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from common import DATA, open_bundle, write_json

import assoc
from assoc.api.stores import StoreSpec

COCO = DATA / "coco-boxes"
QUERY = "a photo of a {}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle folder (default: ASSOC_MODEL, then the shipped bundle)")
    parser.add_argument("--min-photos", type=int, default=5, help="categories present in at least this many photos")
    parser.add_argument("--k", type=int, default=5, help="precision at this many hits")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    bundle = open_bundle(args.model)
    records = json.loads((COCO / "manifest.json").read_text(encoding="utf-8"))["images"]
    holds: dict[str, set[str]] = {}
    for record in records:
        for box in record["boxes"]:
            if not box.get("iscrowd"):
                holds.setdefault(box["category"], set()).add(str((COCO / record["file"]).absolute()))
    categories = sorted(c for c, photos in holds.items() if len(photos) >= args.min_photos)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        searcher = assoc.Searcher(bundle, StoreSpec.builtin(Path(folder) / "gallery"), device="cpu")
        searcher.index([COCO / "images"])
        for category in categories:
            hits = searcher.search(QUERY.format(category), k=args.k, words=True, exact=True)
            right = sum(hit.path in holds[category] for hit in hits)
            rows.append({"category": category, "photos": len(holds[category]), "p_at_k": right / args.k})
        searcher.close()
    mean = statistics.mean(r["p_at_k"] for r in rows)
    chance = statistics.mean(r["photos"] / len(records) for r in rows)
    print(f"bundle {bundle.bundle_id}; {len(records)} photos, {len(rows)} categories in >= {args.min_photos} photos")
    for r in rows:
        print(f"  {r['category']:>16s} ({r['photos']:2d} photos)  P@{args.k} {100 * r['p_at_k']:5.1f}")
    print(f"mean P@{args.k}: {100 * mean:.1f}%   (chance {100 * chance:.1f}%)")
    write_json(args.json, {"bundle": bundle.bundle_id, "k": args.k, "mean": mean, "chance": chance, "rows": rows})


if __name__ == "__main__":
    main()

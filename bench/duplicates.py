"""Duplicate finding (assoc.runtime.search.duplicates): precision and recall on a labelled set of real photos.

    python bench/duplicates.py [--originals 300] [--lookalikes 600] [--thresholds 0.70:0.98:0.02]
                               [--scale 100000] [--device cpu] [--tmp DIR] [--json FILE]

The set, written under --tmp and indexed into a fresh built-in gallery:
- originals: the 60 full-size Flickr8k photos, the 80 COCO photos and Flickr8k photos up to --originals
  (half of those from the look-alike pool below), each with an EXIF block added (losslessly);
- seven edited copies of each: re-encoded at JPEG quality 35, resized to half, cropped by 4% and by 8% on
  every side, its EXIF stripped (the very same pixels), its colours changed a little (brightness +8%, saturation -10%,
  contrast -5%), and resized to 60% and re-encoded at quality 60 (what messaging apps do);
- look-alikes: distinct Flickr8k photos whose captions are the same words ("a dog runs through the
  grass": seven photos), up to --lookalikes; none is a copy of another.

A pair of files is a true duplicate when both come from one original. For each threshold it prints the
pairs' precision, recall and F1 over all pairs, per transform (recall: the copy is in its original's
group; precision: of the pairs the copy was grouped in, the true ones) and how many look-alike photos
were grouped with a photo they are not. Baseline in the same run: the same candidate pairs verified by
the location-free similarity (each patch's best match anywhere in the other photo, both ways: MaxSim),
grouped the same way; its best F1 is printed beside the shipped one's. The candidate stage is measured
too: the pooled cosine of the true pairs and the share of them among the candidate pairs. --scale N
times the candidate stage alone on N random pooled vectors (its peak memory by tracemalloc) beside what
the n x n matrix would take.
"""

from __future__ import annotations

import argparse
import io
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import numpy as np
from common import DATA, FLICKR, write_json
from PIL import Image, ImageEnhance

import assoc
from assoc.runtime.search import duplicates
from assoc.runtime.stores.gallery import Gallery

COCO = DATA / "coco-boxes" / "images"
TRANSFORMS = ("recode q35", "resize 50%", "crop 4%", "crop 8%", "exif strip", "colour", "resize 60% + q60")
# Where the originals come from, by their labels' prefixes: real-size photos, and Flickr8k's 224 x 224 ones
# (a copy resized to half of those is 112 pixels wide, a third of what the model takes in).
SOURCES = {"500-640 px": ("flickr8k-fullres-", "coco-boxes-"), "224 px": ("flickr8k-images-",)}
STOP_WORDS = frozenset({"a", "an", "the", "is", "are", "of", "in", "on", "at"})


def strip_exif(jpeg: bytes) -> bytes:
    """A JPEG's bytes without its APP1 (EXIF, XMP) segments: the same pixels, no metadata."""
    out, at = bytearray(jpeg[:2]), 2
    while at + 4 <= len(jpeg) and jpeg[at] == 0xFF and jpeg[at + 1] not in (0xDA, 0xD9):
        length = int.from_bytes(jpeg[at + 2 : at + 4], "big")
        if jpeg[at + 1] != 0xE1:
            out += jpeg[at : at + 2 + length]
        at += 2 + length
    return bytes(out + jpeg[at:])


def with_exif(jpeg: bytes, name: str) -> bytes:
    """A JPEG's bytes with a camera's EXIF block spliced in after its start marker (pixels untouched)."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0131] = "assoc bench camera", "B-1", "bench/duplicates.py"
    exif[0x0132] = "2024:06:01 12:00:00"
    exif[0x010E] = name
    data = exif.tobytes()
    return jpeg[:2] + b"\xff\xe1" + (len(data) + 2).to_bytes(2, "big") + data + jpeg[2:]


def edited(source: bytes, transform: str) -> bytes:
    """One edited copy of a photo, as a JPEG's bytes."""
    if transform == "exif strip":
        return strip_exif(source)
    image = Image.open(io.BytesIO(source)).convert("RGB")
    quality = 90
    if transform == "recode q35":
        quality = 35
    elif transform == "resize 50%":
        image = image.resize((image.width // 2, image.height // 2), Image.LANCZOS)
    elif transform.startswith("crop"):
        side = float(transform.split()[1].rstrip("%")) / 100
        dx, dy = round(image.width * side), round(image.height * side)
        image = image.crop((dx, dy, image.width - dx, image.height - dy))
    elif transform == "colour":
        image = ImageEnhance.Brightness(image).enhance(1.08)
        image = ImageEnhance.Color(image).enhance(0.9)
        image = ImageEnhance.Contrast(image).enhance(0.95)
    elif transform == "resize 60% + q60":
        image = image.resize((round(image.width * 0.6), round(image.height * 0.6)), Image.LANCZOS)
        quality = 60
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def lookalike_pool() -> list[list[str]]:
    """Flickr8k photos grouped by a caption they share word for word (function words aside), largest first."""
    by_caption: dict[str, set[str]] = defaultdict(set)
    for line in (FLICKR / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        key, _, caption = line.partition("\t")
        words = [w for w in re.findall(r"[a-z]+", caption.lower()) if w not in STOP_WORDS]
        if len(words) >= 3:
            by_caption[" ".join(words)].add(key.split("#")[0])
    present = {p.name for p in (FLICKR / "images").glob("*.jpg")}
    groups = [sorted(found & present) for found in by_caption.values() if len(found & present) > 1]
    return sorted(groups, key=lambda g: (-len(g), g))


def build_set(root: Path, originals: int, lookalikes: int) -> dict[str, str]:
    """Write the labelled set under root; returns each file's label (its original's name, or its own)."""
    pool = lookalike_pool()
    alike: list[str] = list(dict.fromkeys(name for group in pool for name in group))
    random.Random(0).shuffle(alike)
    sources = sorted((FLICKR / "fullres").glob("*.jpg")) + sorted(COCO.glob("*.jpg"))
    flickr_count = max(0, originals - len(sources))
    used = {p.name for p in sources}
    from_pool = [n for n in alike if n not in used][: flickr_count // 2]
    used |= set(from_pool)
    others = [p.name for p in sorted((FLICKR / "images").glob("*.jpg")) if p.name not in used and p.name not in alike]
    picked = from_pool + others[: flickr_count - len(from_pool)]
    sources = (sources + [FLICKR / "images" / n for n in picked])[:originals]
    used = {p.name for p in sources}
    labels: dict[str, str] = {}
    for source in sources:
        clean = strip_exif(source.read_bytes())
        stem = f"{source.parent.parent.name}-{source.parent.name}-{source.stem}"
        original = root / "originals" / f"{stem}.jpg"
        original.parent.mkdir(parents=True, exist_ok=True)
        original.write_bytes(with_exif(clean, stem))
        labels[str(original)] = stem
        for transform in TRANSFORMS:
            folder = root / "copies" / re.sub(r"[^a-z0-9]+", "-", transform)
            folder.mkdir(parents=True, exist_ok=True)
            copy = folder / f"{stem}.jpg"
            copy.write_bytes(edited(original.read_bytes(), transform))
            labels[str(copy)] = stem
    distractors = [n for n in alike if n not in used][:lookalikes]
    folder = root / "lookalikes"
    folder.mkdir(parents=True, exist_ok=True)
    for name in distractors:
        shutil.copyfile(FLICKR / "images" / name, folder / name)
        labels[str(folder / name)] = f"lookalike-{name}"
    return labels


def transform_of(path: str) -> str | None:
    parts = Path(path).parts
    if "copies" not in parts:
        return None
    slug = parts[parts.index("copies") + 1]
    return next(t for t in TRANSFORMS if re.sub(r"[^a-z0-9]+", "-", t) == slug)


def score(groups: list[duplicates.Group], labels: dict[str, str]) -> dict:
    """Pair precision, recall and F1 over all pairs and per transform, and look-alikes wrongly grouped."""
    group_of = {m.path: g for g, group in enumerate(groups) for m in group.members}
    by_label: dict[str, list[str]] = defaultdict(list)
    for path, label in labels.items():
        by_label[label].append(path)
    true_pairs = sum(len(v) * (len(v) - 1) // 2 for v in by_label.values())
    predicted = correct = 0
    per: dict[str, list[int]] = {t: [0, 0] for t in TRANSFORMS}  # predicted, correct pairs with such a copy
    for group in groups:
        paths = [m.path for m in group.members]
        for a in range(len(paths)):
            for b in range(a + 1, len(paths)):
                right = labels[paths[a]] == labels[paths[b]]
                predicted, correct = predicted + 1, correct + right
                for t in {transform_of(paths[a]), transform_of(paths[b])} - {None}:
                    per[t][0] += 1
                    per[t][1] += right
    originals = {label: p for p, label in labels.items() if "originals" in Path(p).parts}
    row: dict = {**_prf(correct, predicted, correct, true_pairs), "per_transform": {}}
    for t in TRANSFORMS:
        copies = [p for p in labels if transform_of(p) == t]
        found = sum(p in group_of and group_of.get(originals[labels[p]]) == group_of[p] for p in copies)
        row["per_transform"][t] = _prf(per[t][1], per[t][0], found, len(copies))
    row["recall_by_source"] = {}
    for source, prefixes in SOURCES.items():
        copies = [p for p in labels if transform_of(p) and labels[p].startswith(prefixes)]
        found = sum(p in group_of and group_of.get(originals[labels[p]]) == group_of[p] for p in copies)
        row["recall_by_source"][source] = round(found / len(copies), 4) if copies else None
    alike = [p for p, label in labels.items() if label.startswith("lookalike-")]
    row["lookalikes_grouped"] = sum(p in group_of for p in alike)
    return row


def _prf(correct: int, predicted: int, found: int, wanted: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 1.0
    recall = found / wanted if wanted else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def candidate_scale(n: int, dim: int) -> dict[str, float]:
    """Seconds and peak traced memory of candidate_pairs on n random unit vectors of dim dimensions."""
    vectors = np.random.default_rng(0).standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tracemalloc.start()
    start = time.perf_counter()
    pairs = duplicates.candidate_pairs(vectors, duplicates.DEFAULT_THRESHOLD - duplicates.CANDIDATE_MARGIN)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "photos": n,
        "seconds": round(seconds, 1),
        "peak_mb": round(peak / 2**20, 1),
        "pooled_mb": round(vectors.nbytes / 2**20, 1),
        "full_matrix_mb": round(n * n * 4 / 2**20),
        "pairs": len(pairs),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--originals", type=int, default=300)
    ap.add_argument("--lookalikes", type=int, default=600)
    ap.add_argument("--thresholds", default="0.70:0.98:0.02", help="first:last:step")
    ap.add_argument("--scale", type=int, default=0, help="also time the candidate stage on this many photos")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tmp", type=Path, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    first, last, step = (float(x) for x in args.thresholds.split(":"))
    thresholds = [round(t, 4) for t in np.arange(first, last + step / 2, step)]
    root = Path(tempfile.mkdtemp(prefix="assoc-bench-duplicates-", dir=args.tmp))
    figures: dict = {}
    try:
        labels = build_set(root / "photos", args.originals, args.lookalikes)
        start = time.perf_counter()
        with assoc.Searcher(store=assoc.StoreSpec.builtin(root / "gallery"), device=args.device) as searcher:
            report = searcher.index([root / "photos"])
            bundle = searcher.bundle
        indexed = time.perf_counter() - start
        with Gallery.open(root / "gallery", bundle.bundle_id, bundle.config.embed_dim, create=False) as store:
            records = store.records()
            view = store.open_view()
            timings: dict[str, float] = {}
            clock = time.perf_counter()
            contents = duplicates.read_contents(view, records)
            timings["read pooled"], clock = time.perf_counter() - clock, time.perf_counter()
            floor = min(thresholds) - duplicates.CANDIDATE_MARGIN  # candidates for the lowest threshold swept
            pairs = duplicates.candidate_pairs(contents.pooled, floor)
            timings["candidate pairs"], clock = time.perf_counter() - clock, time.perf_counter()
            similarity = duplicates.verify_pairs(view, contents, pairs)
            timings["verify pairs"] = time.perf_counter() - clock
            baseline = location_free(view, contents, pairs)
        files = len(labels)
        print(
            f"{files} photos ({args.originals} originals x {1 + len(TRANSFORMS)} files, the rest look-alikes),"
            f" {report.photos} indexed in {indexed:.0f} s; {len(contents.paths)} contents"
        )
        index = {p: i for i, p in enumerate(contents.paths)}
        truth = [
            (index[p], index[q], p, q)
            for p, q in _true_pairs(labels)
            if p in index and q in index and index[p] != index[q]
        ]
        cosines = np.array([float(contents.pooled[i] @ contents.pooled[j]) for i, j, _, _ in truth])
        candidates = {(int(a), int(b)) for a, b in pairs}
        kept = sum((min(i, j), max(i, j)) in candidates for i, j, _, _ in truth)
        figures["candidates"] = {
            "true_pairs": len(truth),
            "pooled_cosine_min": round(float(cosines.min()), 4),
            "pooled_cosine_p1": round(float(np.percentile(cosines, 1)), 4),
            "pooled_cosine_median": round(float(statistics.median(cosines)), 4),
            "candidate_pairs": len(pairs),
            "true_pairs_among_candidates": round(kept / len(truth), 4),
        }
        figures["seconds"] = {k: round(v, 2) for k, v in timings.items()}
        print(
            "candidates: {candidate_pairs} pairs verified; true pairs' pooled cosine min {pooled_cosine_min},"
            " 1st percentile {pooled_cosine_p1}, median {pooled_cosine_median};"
            " {true_pairs_among_candidates:.2%} of {true_pairs} true pairs among the candidates".format(
                **figures["candidates"]
            )
        )
        print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
        rows = []
        for t in thresholds:
            groups = duplicates.group_pairs(contents, pairs, similarity, records, t)
            rows.append({"threshold": t, "groups": len(groups), **score(groups, labels)})
        figures["thresholds"] = rows
        best = max(rows, key=lambda r: (r["f1"], r["threshold"]))
        figures["best_threshold"] = best["threshold"]
        figures["default_threshold"] = duplicates.DEFAULT_THRESHOLD
        _print_rows(rows)
        print(f"best F1 at threshold {best['threshold']} (the default is {duplicates.DEFAULT_THRESHOLD})")
        plain = [
            {"threshold": t, **score(duplicates.group_pairs(contents, pairs, baseline, records, t), labels)}
            for t in np.arange(0.5, 1.0, 0.01).round(2)
        ]
        top = max(plain, key=lambda r: (r["f1"], r["threshold"]))
        figures["baseline_location_free"] = {k: top[k] for k in ("threshold", "precision", "recall", "f1")}
        figures["baseline_location_free"]["lookalikes_grouped"] = top["lookalikes_grouped"]
        print(
            "baseline, location-free verification (MaxSim both ways): best F1 {f1} at threshold {threshold}"
            " (precision {precision}, recall {recall}, {lookalikes_grouped} look-alikes grouped); shipped: F1 {mine}"
            " (precision {p}, recall {r}, {g} look-alikes grouped)".format(
                **figures["baseline_location_free"],
                mine=best["f1"],
                p=best["precision"],
                r=best["recall"],
                g=best["lookalikes_grouped"],
            )
        )
        _print_worst(contents, pairs, similarity, labels)
        if args.scale:
            dim = contents.pooled.shape[1]
            figures["scale"] = candidate_scale(args.scale, dim)
            print(
                "candidate stage on {photos} random photos: {seconds} s, peak {peak_mb} MB traced (pooled vectors"
                " {pooled_mb} MB; the whole n x n matrix would be {full_matrix_mb} MB)".format(**figures["scale"])
            )
        write_json(args.json, figures)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def location_free(view: object, contents: duplicates.Contents, pairs: np.ndarray) -> np.ndarray:
    """The baseline verification: (mean over A's patches of the best match anywhere in B + the same from
    B to A) / 2 for each pair, from the view's grids held all at once (fine at this set's size)."""
    index = {path: i for i, path in enumerate(contents.paths)}
    grids: dict[int, np.ndarray] = {}
    for chunk in view.read_grids(view.everything()):
        for path, grid in zip(chunk.paths, chunk.grids(), strict=True):
            if path in index:
                grids[index[path]] = np.asarray(grid, np.float32)
    out = np.empty(len(pairs), np.float32)
    for n, (a, b) in enumerate(pairs.tolist()):
        scores = grids[a] @ grids[b].T
        out[n] = (scores.max(axis=1).mean() + scores.max(axis=0).mean()) / 2
    return out


def _true_pairs(labels: dict[str, str]) -> list[tuple[str, str]]:
    by_label: dict[str, list[str]] = defaultdict(list)
    for path, label in labels.items():
        by_label[label].append(path)
    return [(v[a], v[b]) for v in by_label.values() for a in range(len(v)) for b in range(a + 1, len(v))]


def _print_rows(rows: list[dict]) -> None:
    short = {t: t.replace("resize ", "").replace(" ", "") for t in TRANSFORMS}
    head = " | ".join(f"{short[t]} R" for t in TRANSFORMS)
    sources = " | ".join(f"R {s}" for s in SOURCES)
    print(f"| threshold | groups | precision | recall | F1 | {head} | {sources} | look-alikes grouped |")
    print("| ---: " * (6 + len(TRANSFORMS) + len(SOURCES)) + "|")
    for r in rows:
        per = " | ".join(f"{r['per_transform'][t]['recall']:.3f}" for t in TRANSFORMS)
        by_source = " | ".join("-" if (v := r["recall_by_source"][s]) is None else f"{v:.3f}" for s in SOURCES)
        print(
            f"| {r['threshold']:.2f} | {r['groups']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} |"
            f" {per} | {by_source} | {r['lookalikes_grouped']} |"
        )
    print("per transform at each threshold (precision / recall / F1):")
    for r in rows:
        cells = ", ".join(
            f"{short[t]} {v['precision']:.3f}/{v['recall']:.3f}/{v['f1']:.3f}" for t, v in r["per_transform"].items()
        )
        print(f"  {r['threshold']:.2f}: {cells}")


def _print_worst(
    contents: duplicates.Contents, pairs: np.ndarray, similarity: np.ndarray, labels: dict[str, str]
) -> None:
    """The most similar pairs that are not duplicates and the least similar ones that are, to look at."""
    rows = [
        (float(s), contents.paths[a], contents.paths[b], labels[contents.paths[a]] == labels[contents.paths[b]])
        for (a, b), s in zip(pairs.tolist(), similarity.tolist(), strict=True)
    ]
    wrong = sorted((r for r in rows if not r[3]), reverse=True)[:5]
    missed = sorted(r for r in rows if r[3])[:5]
    for title, found in (("most similar distinct photos", wrong), ("least similar duplicates", missed)):
        print(f"{title}:")
        for s, a, b, _ in found:
            print(f"  {s:.4f}  {Path(a).parent.name}/{Path(a).name}  {Path(b).parent.name}/{Path(b).name}")


if __name__ == "__main__":
    sys.exit(main())

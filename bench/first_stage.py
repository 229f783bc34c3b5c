"""How well the built-in gallery's first stage keeps the exact top 10, on real photos: ALL Flickr8k
photos (7,091 in ../shared/data/flickr8k/images) encoded by the bundle, searched with dev captions.

1. Candidate survival per first-stage representation: for each dev caption (--captions, one per dev
   photo), the share of the exact MaxSim top 10 (over all photos) found among the first N photos
   ranked by MaxSim against each photo's reduced vectors: its pooled (mean) vector, and its k-means
   centroids for each of --vectors; and the cascade the gallery runs (pooled -> a shortlist of S ->
   centroids -> N), for each of --shortlists.
2. The Gallery itself, end to end, with the bundle's first-stage settings (config.json "first_stage"):
   the same photos in a real Gallery, the share of the exact top 10 its default search returns, and
   its p50 beside the exact search's.
3. Dev retrieval unchanged: a Gallery of the 1,000 dev photos, text -> image R@1 / R@10 over the dev
   captions (5 per photo) for the default search and for exact search.

The grids are encoded once and cached in --cache (runs/bench-cache/, git-ignored) as
assoc-bench-flickr8k-all-<bundle id>.npy with the photo names beside it; so are the caption vectors
and the exact top 10. Encoding takes ~5 minutes on 2 busy cores.

Run:
    python bench/first_stage.py
    python bench/first_stage.py --captions 300 --vectors 4 8 --json first-stage.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import (
    FLICKR,
    add_common_options,
    flickr_captions,
    flickr_dev_images,
    open_bundle,
    percentiles_ms,
    write_json,
)

from assoc.evaluation.retrieval import encode_photos
from assoc.runtime.encoding.bundle import Bundle, FirstStageConfig
from assoc.runtime.encoding.encoders import ImageEncoder, TextEncoder
from assoc.runtime.scoring.first_stage import reduce_grids
from assoc.runtime.scoring.matchmap import score_grids
from assoc.runtime.scoring.scan import ScanKernel
from assoc.runtime.search.pipeline import search
from assoc.runtime.stores.base import PhotoRecord
from assoc.runtime.stores.gallery import Gallery

TOP = 10
NS = (50, 100, 150, 200, 300, 500, 700, 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=1000, help="dev captions (one per photo) for survival")
    parser.add_argument("--vectors", type=int, nargs="+", default=[4, 8, 16], help="centroids per photo")
    parser.add_argument("--shortlists", type=int, nargs="+", default=[500, 700, 1000, 1500])
    parser.add_argument("--dev-captions", type=int, default=5, help="captions per dev photo for R@k")
    add_common_options(parser, "the temporary galleries")
    args = parser.parse_args()

    bundle = open_bundle(args.model)
    names, grids = all_grids(bundle, args.cache)
    dev = flickr_dev_images()
    captions = flickr_captions(dev, per_image=1)[: args.captions]
    text = TextEncoder(bundle, "cpu")
    queries = [q.vectors for q in text.encode([c for _, c in captions])]
    print(f"bundle {bundle.bundle_id}: {len(names)} photos, {len(queries)} dev captions")
    exact = exact_top(bundle, grids, queries, args.cache)

    figures: dict = {"bundle": bundle.bundle_id, "photos": len(names), "captions": len(queries)}
    figures["survival"] = survival_table(grids, queries, exact, args)
    figures["gallery"] = gallery_agreement(bundle, names, grids, queries, exact, args)
    figures["dev_recall"] = dev_recall(bundle, names, grids, dev, text, args)
    write_json(args.json, figures)


def all_grids(bundle: Bundle, cache: Path) -> tuple[list[str], np.ndarray]:
    """(names, (N, h, w, D) float16 grids) of every Flickr8k photo, from the cache when encoded before."""
    cache.mkdir(parents=True, exist_ok=True)
    stem = cache / f"assoc-bench-flickr8k-all-{bundle.bundle_id}"
    if stem.with_suffix(".npy").is_file() and stem.with_suffix(".txt").is_file():
        return stem.with_suffix(".txt").read_text().split(), np.load(stem.with_suffix(".npy"))
    names = sorted(p.name for p in (FLICKR / "images").iterdir() if p.suffix.lower() == ".jpg")
    print(f"encoding {len(names)} photos (cached in {stem}.npy) ...")
    flat, _ = encode_photos(ImageEncoder(bundle, "cpu"), [FLICKR / "images" / n for n in names])
    grids = flat.reshape(len(names), *bundle.config.visual.grid, -1).astype(np.float16)
    np.save(stem.with_suffix(".npy"), grids)
    stem.with_suffix(".txt").write_text("\n".join(names) + "\n")
    return names, grids


def exact_top(bundle: Bundle, grids: np.ndarray, queries: list[np.ndarray], cache: Path) -> np.ndarray:
    """(captions, TOP) indices of each caption's exact top photos over all photos, cached."""
    where = cache / f"assoc-bench-flickr8k-all-{bundle.bundle_id}-exact{TOP}-{len(queries)}captions.npy"
    if where.is_file():
        return np.load(where)
    kernel = ScanKernel(bundle.config.score)
    flat = grids.reshape(len(grids), -1, grids.shape[-1])
    start = time.perf_counter()
    exact = np.stack([top(kernel.scores(flat, np.ascontiguousarray(q.T)), TOP) for q in queries])
    seconds = (time.perf_counter() - start) / len(queries)
    print(f"exact search of all {len(grids)} photos: {1000 * seconds:.0f} ms a caption (ScanKernel in memory)")
    np.save(where, exact)
    return exact


def top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n best scores, best first (ties by index)."""
    n = min(n, len(scores))
    best = np.argpartition(-scores, n - 1)[:n]
    return best[np.lexsort((best, -scores[best]))]


def survival_table(grids: np.ndarray, queries: list[np.ndarray], exact: list[np.ndarray], args) -> list[dict]:  # noqa: ANN001
    reduced = {1: reduce_grids(grids, FirstStageConfig(vectors=1)).astype(np.float16).astype(np.float32)}
    for c in args.vectors:
        start = time.perf_counter()
        reduced[c] = reduce_grids(grids, FirstStageConfig(vectors=c)).astype(np.float16).astype(np.float32)
        print(f"  {c} centroids of {len(grids)} photos: {time.perf_counter() - start:.1f} s")
    rows = []
    header = "".join(f"{n:>7d}" for n in NS)
    print(f"\nshare of the exact top {TOP} among the first N candidates (all {len(grids)} photos)")
    print(f"{'first stage':<28s}{'bytes/photo':>12s}{header}")
    d = grids.shape[-1]
    for c, vectors in reduced.items():
        name = "pooled (mean) vector" if c == 1 else f"{c} k-means centroids"
        kept = {n: [] for n in NS}
        for q, truth in zip(queries, exact, strict=True):
            order = top(score_grids(vectors, q), max(NS))
            for n in NS:
                kept[n].append(len(set(truth) & set(order[:n])) / TOP)
        rows.append(report(name, c * d * 2, kept))
    for c in args.vectors:
        for s in args.shortlists:
            kept = {n: [] for n in NS if n < s}
            for q, truth in zip(queries, exact, strict=True):
                shortlist = top(score_grids(reduced[1], q), s)
                order = shortlist[top(score_grids(reduced[c][shortlist], q), max(kept))]
                for n in kept:
                    kept[n].append(len(set(truth) & set(order[:n])) / TOP)
            rows.append(report(f"pooled -> {s} -> {c} centroids", (1 + c) * d * 2, kept))
    return rows


def report(name: str, nbytes: int, kept: dict[int, list[float]]) -> dict:
    shares = {n: float(np.mean(v)) for n, v in kept.items()}
    print(f"{name:<28s}{nbytes:>12d}" + "".join(f"{shares[n]:7.3f}" if n in shares else f"{'':>7s}" for n in NS))
    return {"first_stage": name, "bytes_per_photo": nbytes, "survival": shares}


def fill(folder: Path, bundle: Bundle, paths: list[str], grids: np.ndarray) -> Gallery:
    gallery = Gallery.open(folder, bundle.bundle_id, bundle.config.embed_dim, first_stage=bundle.config.first_stage)
    for start in range(0, len(paths), 1000):
        gallery.add(
            [
                (PhotoRecord(path, 1, 0, path, grids.shape[1:3], 224, 224), grid)
                for path, grid in zip(paths[start : start + 1000], grids[start : start + 1000], strict=True)
            ]
        )
    return gallery


def gallery_agreement(bundle, names, grids, queries, exact, args) -> dict:  # noqa: ANN001
    """The real Gallery with the bundle's first-stage settings over all photos."""
    paths = [str(FLICKR / "images" / n) for n in names]
    kept, two, full = [], [], []
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder, fill(Path(folder) / "g", bundle, paths, grids) as g:
        for i, (q, truth) in enumerate(zip(queries, exact, strict=True)):
            start = time.perf_counter()
            hits = search(g, q, k=TOP)
            two.append(time.perf_counter() - start)
            if i < 20:
                start = time.perf_counter()
                search(g, q, k=TOP, exact=True)
                full.append(time.perf_counter() - start)
            kept.append(len({paths[j] for j in truth} & {h.path for h in hits}) / TOP)
    row = {
        "config": str(bundle.config.first_stage),
        "kept": float(np.mean(kept)),
        "two_stage": percentiles_ms(two),
        "exact": percentiles_ms(full),
    }
    print(
        f"\nGallery over all {len(paths)} photos, {bundle.config.first_stage}: exact top {TOP} kept "
        f"{row['kept']:.4f}; p50 {row['two_stage']['p50_ms']:.1f} ms (exact search {row['exact']['p50_ms']:.0f} ms)"
    )
    return row


def dev_recall(bundle, names, grids, dev, text, args) -> dict:  # noqa: ANN001
    """Text -> image R@1 / R@10 on the dev split, default search against exact search."""
    index = {n: i for i, n in enumerate(names)}
    dev_grids = grids[[index[n] for n in dev]]
    captions = flickr_captions(dev, per_image=args.dev_captions)
    queries = [q.vectors for q in text.encode([c for _, c in captions])]
    found = {"two_stage": [], "exact": []}
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder, fill(Path(folder) / "g", bundle, dev, dev_grids) as g:
        for (image, _), q in zip(captions, queries, strict=True):
            for kind, exact in (("two_stage", False), ("exact", True)):
                hits = [h.path for h in search(g, q, k=TOP, exact=exact)]
                found[kind].append(hits.index(image) + 1 if image in hits else TOP + 1)
    out = {}
    for kind, ranks in found.items():
        ranks = np.array(ranks)
        out[kind] = {"R@1": 100 * float(np.mean(ranks <= 1)), "R@10": 100 * float(np.mean(ranks <= TOP))}
    print(
        f"\ndev text -> image over {len(dev)} photos, {len(captions)} captions: default R@1 "
        f"{out['two_stage']['R@1']:.2f} R@10 {out['two_stage']['R@10']:.2f}; exact R@1 {out['exact']['R@1']:.2f} "
        f"R@10 {out['exact']['R@10']:.2f}"
    )
    return out


if __name__ == "__main__":
    main()

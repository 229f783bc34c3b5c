"""The built-in Gallery against Qdrant local mode (QdrantStore with a path), side by side.

1. Latency on SYNTHETIC grids (random unit-normalised float16 of the bundle's grid shape and D; search
   cost does not depend on what they hold): for each of --sizes both stores, in temporary folders,
   grow to that many photos through Store.add; then --queries Flickr8k dev captions, encoded by the
   bundle, are searched (k=10) --repeats times in each. Printed: add photos/s, p50/p95 search ms, and
   qdrant/gallery. Qdrant reranks the top --prefetch of its pooled first stage.

2. First-stage survival on REAL embeddings: the 1,000 Flickr8k dev photos encoded by the bundle (the
   grids are cached in --cache as assoc-bench-flickr8k-dev-<bundle id>.npy, so reruns skip encoding)
   go into both stores; --captions dev captions (one per photo) are the queries. The exact top 10 is
   the Gallery's (MaxSim over every photo). For each --prefetch-sizes N:
   - survival@N: the share of the exact top 10 among the first N candidates of Qdrant's first stage
     (cosine of pooled mean vectors), asked of the collection itself through qdrant-client;
   - overlap@N: the share of the exact top 10 in search(QdrantStore, k=10) with prefetch=N;
   - R@10: the share of captions whose own photo is in the top 10 (the exact search's too), and the
     p50 search latency.
   The rerank is exact MaxSim over the candidates, so overlap@N should equal survival@N but for ties.
   Local mode scans the pooled vectors exhaustively; a server's HNSW first stage can only lose more.

Needs qdrant-client (pip install assoc[qdrant]).
Run (defaults: sizes 1k and 10k, 20 latency queries, 500 captions, N = 50 200 1000):
    python bench/store_comparison.py
    python bench/store_comparison.py --sizes 1000 --repeats 1 --captions 200 --json stores.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from common import (
    FLICKR,
    flickr_captions,
    flickr_dev_images,
    latencies,
    open_bundle,
    percentiles_ms,
    synthetic_batches,
    write_json,
)
from qdrant_client import QdrantClient

from assoc.evaluation.retrieval import encode_photos
from assoc.runtime.encoding.bundle import Bundle, FirstStageConfig
from assoc.runtime.encoding.devices import DEVICES
from assoc.runtime.encoding.encoders import ImageEncoder, TextEncoder
from assoc.runtime.search.pipeline import search
from assoc.runtime.stores.base import PhotoRecord, Store
from assoc.runtime.stores.gallery import Gallery
from assoc.runtime.stores.qdrant import POOLED, QdrantStore, pool

TOP = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--queries", type=int, default=20, help="captions timed in the latency part")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prefetch", type=int, default=200, help="Qdrant prefetch in the latency part")
    parser.add_argument("--captions", type=int, default=500, help="dev captions in the survival part")
    parser.add_argument("--prefetch-sizes", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--model", help="bundle folder (default: ASSOC_MODEL, then the shipped bundle)")
    parser.add_argument("--tmp", type=Path, help="where the temporary stores go (default: system temp)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()), help="folder for encoded grids")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    bundle = open_bundle(args.model)
    text = TextEncoder(bundle, args.device)
    dev = flickr_dev_images()
    captions = flickr_captions(dev, per_image=1)[: max(args.queries, args.captions)]
    queries = [q.vectors for q in text.encode([c for _, c in captions])]
    (h, w), dim = bundle.config.visual.grid, bundle.config.embed_dim
    print(f"bundle {bundle.bundle_id}: grid {h}x{w}, D {dim}")
    figures = {
        "bundle": bundle.bundle_id,
        "latency": latency_part(bundle, queries[: args.queries], args),
        "survival": survival_part(bundle, dev, captions[: args.captions], queries[: args.captions], args),
    }
    write_json(args.json, figures)


def latency_part(bundle: Bundle, queries: list[np.ndarray], args: argparse.Namespace) -> list[dict]:
    grid, dim = bundle.config.visual.grid, bundle.config.embed_dim
    print(f"\nlatency, synthetic grids, {len(queries)} queries x{args.repeats}, k={TOP}, prefetch {args.prefetch}")
    header = ("photos", "add/s gal", "add/s qd", "gal p50", "p95", "qd p50", "p95", "qd/gal")
    print(" ".join(f"{h:>{w}s}" for h, w in zip(header, (8, 10, 9, 8, 7, 8, 7, 7), strict=True)))
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        gallery = Gallery.open(Path(folder) / "gallery", bundle.bundle_id, dim)
        qdrant = QdrantStore(bundle.bundle_id, dim, path=Path(folder) / "qdrant", first_stage=pooled_top(args.prefetch))
        have, add_s = 0, {"gallery": 0.0, "qdrant": 0.0}
        for n in sorted(set(args.sizes)):
            for records, grids in synthetic_batches(have, n, grid, dim):
                items = list(zip(records, grids, strict=True))
                add_s["gallery"] += timed(lambda items=items: gallery.add(items))
                add_s["qdrant"] += timed(lambda items=items: qdrant.add(items))
            have = n
            row = {"photos": n, **{f"{name}_add_per_s": n / s for name, s in add_s.items()}}
            for name, store in (("gallery", gallery), ("qdrant", qdrant)):
                row[name] = percentiles_ms(latencies(partial(store.search, k=TOP), queries, args.repeats))
            g, q = row["gallery"], row["qdrant"]
            print(
                f"{n:8d} {row['gallery_add_per_s']:10.0f} {row['qdrant_add_per_s']:9.0f} {g['p50_ms']:8.2f} "
                f"{g['p95_ms']:7.2f} {q['p50_ms']:8.2f} {q['p95_ms']:7.2f} {q['p50_ms'] / g['p50_ms']:7.2f}"
            )
            rows.append(row)
        gallery.close()
        qdrant.close()
    return rows


def survival_part(
    bundle: Bundle, dev: list[str], captions: list[tuple[str, str]], queries: list[np.ndarray], args: argparse.Namespace
) -> list[dict]:
    grids = dev_grids(bundle, dev, args)
    paths = [str(FLICKR / "images" / name) for name in dev]
    truth = [str(FLICKR / "images" / image) for image, _ in captions]
    items = [
        (PhotoRecord(path, 1, 0, f"{i:032x}", grids.shape[1:3], 224, 224), grid)  # these photos are 224x224
        for i, (path, grid) in enumerate(zip(paths, grids, strict=True))
    ]
    print(f"\nfirst-stage survival: {len(paths)} Flickr8k dev photos, {len(queries)} dev captions, exact top {TOP}")
    print(f"{'prefetch N':>10s} {'survival@N':>11s} {'overlap@N':>10s} {'R@10':>6s} {'p50 ms':>7s}")
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        with Gallery.open(Path(folder) / "gallery", bundle.bundle_id, bundle.config.embed_dim) as gallery:
            gallery.add(items)
            exact, seconds = search_all(gallery, queries)
        rows = [{"prefetch": None, "recall_at_10": recall(exact, truth), **percentiles_ms(seconds)}]
        print(f"{'exact':>10s} {'':>11s} {'':>10s} {rows[0]['recall_at_10']:6.3f} {rows[0]['p50_ms']:7.2f}")
        where = Path(folder) / "qdrant"
        store = QdrantStore(bundle.bundle_id, bundle.config.embed_dim, path=where)
        store.add(items)
        collection = store.collection
        store.close()
        first_stage = pooled_candidates(where, collection, queries, max(args.prefetch_sizes))
        for n in args.prefetch_sizes:
            store = QdrantStore(bundle.bundle_id, bundle.config.embed_dim, path=where, first_stage=pooled_top(n))
            hits, seconds = search_all(store, queries)
            store.close()
            survival = share(exact, [candidates[:n] for candidates in first_stage])
            row = {
                "prefetch": n,
                "survival": survival,
                "overlap": share(exact, hits),
                "recall_at_10": recall(hits, truth),
                **percentiles_ms(seconds),
            }
            print(f"{n:10d} {survival:11.3f} {row['overlap']:10.3f} {row['recall_at_10']:6.3f} {row['p50_ms']:7.2f}")
            rows.append(row)
    return rows


def dev_grids(bundle: Bundle, dev: list[str], args: argparse.Namespace) -> np.ndarray:
    """(N, h, w, D) float16 grids of the dev photos, from the cache when the bundle encoded them before."""
    cache = args.cache / f"assoc-bench-flickr8k-dev-{bundle.bundle_id}.npy"
    if cache.is_file():
        return np.load(cache)
    print(f"encoding {len(dev)} dev photos (cached in {cache}) ...")
    flat, _ = encode_photos(ImageEncoder(bundle, args.device), [FLICKR / "images" / name for name in dev])
    grids = flat.reshape(len(dev), *bundle.config.visual.grid, -1).astype(np.float16)
    np.save(cache, grids)
    return grids


def pooled_candidates(where: Path, collection: str, queries: list[np.ndarray], n: int) -> list[list[str]]:
    """The paths Qdrant's first stage ranks best for each query: pooled query vs pooled grids."""
    client = QdrantClient(path=str(where))
    try:
        return [
            [
                p.payload["path"]
                for p in client.query_points(
                    collection, query=pool(q).tolist(), using=POOLED, limit=n, with_payload=["path"]
                ).points
            ]
            for q in queries
        ]
    finally:
        client.close()


def pooled_top(n: int) -> FirstStageConfig:
    """Qdrant's first stage as "the pooled ranking's first n, all scored exactly": a shortlist of n that
    the centroid stage passes on whole (candidates = n)."""
    return FirstStageConfig(shortlist=0.0, shortlist_min=n, candidates=n)


def search_all(store: Store, queries: list[np.ndarray]) -> tuple[list[list[str]], list[float]]:
    """Top-10 paths of every query, and the seconds each search took."""
    hits, seconds = [], []
    for q in queries:
        start = time.perf_counter()
        found = search(store, q, k=TOP)
        seconds.append(time.perf_counter() - start)
        hits.append([h.path for h in found])
    return hits, seconds


def share(exact: list[list[str]], found: list[list[str]]) -> float:
    """Mean over queries of the share of the exact top 10 that is in found."""
    return float(np.mean([len(set(e) & set(f)) / len(e) for e, f in zip(exact, found, strict=True)]))


def recall(hits: list[list[str]], truth: list[str]) -> float:
    return float(np.mean([t in h for h, t in zip(hits, truth, strict=True)]))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()

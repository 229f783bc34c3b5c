"""Filtered and combined queries against plain ones on a 10,000-photo synthetic Gallery, in one run.

The gallery holds SYNTHETIC photos (random unit-normalised grids of the bundle's shape, as in
query_latency.py; search cost does not depend on what they hold) filed as a photo library is:
/synthetic/YEAR/MONTH/NNNNNNN.jpg over five years (2019-2023), every fifth one a .png, each taken in
its month. Queries are --queries Flickr8k dev captions encoded by the bundle and ranked as `assoc
query` ranks them (token weights, fused term). Per variant, ms per search (pipeline.search, k=10, two
stages): the median and p95 over --rounds rounds of every query, the variants interleaved query by
query so that they share the machine's state; `x plain` divides a median by the plain query's.

Variants: plain; filters (a folder of one year, 20%; one month, 1.7%, fewer photos than the first
stage's candidates, so scored exactly; a 12-month date range, 20%; a type, 20%; a folder, a type and
a date together); combined queries (two plus terms; two plus and one minus term, as in
`"2:golden retriever" + pool.jpg - fruit`; the same within a filter). Text encoding is not timed (one
encoding per term, cached by the Searcher; the encoder's cost is query_latency.py's end-to-end row).

What a combined query's first stage keeps, on REAL photos (--real, default the 1,000 Flickr8k dev
photos, indexed once into a gallery kept in --cache): the share of the exact top k (exact=True) that
the two-stage search returns, for plain captions and for combined queries of dev captions (two plus
terms; two plus and a minus): as searched (the first stage ranks by the combined query's estimate,
assoc.runtime.search.combined), and as the union of each plus term's own candidates (twice the photos
scored exactly), the design it replaced; with the bundle's first stage, and with one scaled to the
share of the gallery it keeps of 10,000 photos (shortlist 10%, candidates 2%).

Run: python bench/filtered_query.py [--photos 10000] [--queries 10] [--rounds 5] [--real 1000] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import (
    FLICKR,
    dev_queries,
    flickr_captions,
    flickr_dev_images,
    open_bundle,
    percentiles_ms,
    synthetic_batches,
    write_json,
)

from assoc.api.searcher import Searcher
from assoc.api.stores import StoreSpec
from assoc.runtime.encoding.bundle import FirstStageConfig
from assoc.runtime.encoding.encoders import TextEncoder
from assoc.runtime.search.combined import CombinedQuery
from assoc.runtime.search.filters import PhotoFilter
from assoc.runtime.search.pipeline import search, search_plan
from assoc.runtime.search.query import Query
from assoc.runtime.search.rerank import rerank
from assoc.runtime.stores.gallery import Gallery

REPO = Path(__file__).resolve().parents[1]
YEARS = range(2019, 2024)
AGREEMENT_QUERIES = 100


def filed(i: int, n: int) -> tuple[str, int]:
    """Photo i of n: its path (/synthetic/YEAR/MONTH/i.jpg or .png) and its date taken."""
    months = len(YEARS) * 12
    month = i * months // n
    year, month = YEARS[0] + month // 12, month % 12 + 1
    start = dt.datetime(year, month, 1, tzinfo=dt.timezone.utc)
    taken = int(start.timestamp()) + (i * 7919) % (28 * 86_400)
    suffix = ".png" if i % 5 == 0 else ".jpg"
    return f"/synthetic/{year}/{month:02d}/{i:07d}{suffix}", taken


def build(folder: Path, bundle, photos: int) -> Gallery:  # noqa: ANN001 - a Bundle
    config = bundle.config
    gallery = Gallery.open(folder, config.bundle_id, config.embed_dim, first_stage=config.first_stage)
    start = time.perf_counter()
    for records, grids in synthetic_batches(0, photos, tuple(config.visual.grid), config.embed_dim):
        first = int(records[0].path.rsplit("/", 1)[1][:7])
        renamed = [
            replace(r, path=filed(first + j, photos)[0], taken=filed(first + j, photos)[1])
            for j, r in enumerate(records)
        ]
        gallery.add(list(zip(renamed, grids, strict=True)))
    print(f"{photos} photos in the gallery; adding took {time.perf_counter() - start:.0f} s")
    return gallery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--model", help="bundle folder (default: ASSOC_MODEL, then the shipped bundle)")
    parser.add_argument("--tmp", type=Path, help="where the temporary gallery goes (default: system temp)")
    parser.add_argument("--real", type=int, default=1000, help="dev photos for the agreement figures (0: none)")
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "bench-cache", help="the real photos' gallery")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    bundle = open_bundle(args.model)
    config = bundle.config
    captions = dev_queries(3 * args.queries)
    encoded = [Query.of_text(q, config) for q in TextEncoder(bundle, "cpu").encode(captions)]
    plain = encoded[: args.queries]
    second, minus = encoded[args.queries : 2 * args.queries], encoded[2 * args.queries :]
    two = [CombinedQuery.of([(a, 1.0), (b, 1.0)]) for a, b in zip(plain, second, strict=True)]
    three = [CombinedQuery.of([(a, 2.0), (b, 1.0), (c, -1.0)]) for a, b, c in zip(plain, second, minus, strict=True)]
    year = PhotoFilter.of(["/synthetic/2021"])
    variants = {
        "plain": (plain, None),
        "filter: folder (a year, 20%)": (plain, year),
        "filter: folder (a month, 1.7%)": (plain, PhotoFilter.of(["/synthetic/2021/03"])),
        "filter: dates (12 months, 20%)": (plain, PhotoFilter.of(since="2020-06", until="2021-05")),
        "filter: type (png, 20%)": (plain, PhotoFilter.of(types="png")),
        "filter: folder + type + since": (plain, PhotoFilter.of(["/synthetic/2021"], since="2021-03", types="jpg")),
        "combined: 2 plus terms": (two, None),
        "combined: 2 plus + 1 minus": (three, None),
        "combined: 3 terms + folder filter": (three, year),
    }
    print(
        f"bundle {bundle.bundle_id}: grid {config.visual.grid}, D {config.embed_dim}; first stage {config.first_stage}"
    )
    with (
        tempfile.TemporaryDirectory(dir=args.tmp) as folder,
        build(Path(folder) / "gallery", bundle, args.photos) as gallery,
    ):
        matching = {
            name: gallery.open_view(where).photos if where else len(gallery) for name, (_, where) in variants.items()
        }
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for queries, where in variants.values():  # warm-up: kernels, page cache, the snapshot
            search(gallery, queries[0], k=args.k, where=where)
        for _ in range(args.rounds):
            for i in range(args.queries):
                for name, (queries, where) in variants.items():
                    start = time.perf_counter()
                    hits = search(gallery, queries[i], k=args.k, where=where)
                    seconds[name].append(time.perf_counter() - start)
                    assert len(hits) == min(args.k, matching[name])  # k photos whenever k meet the filter
    base = statistics.median(seconds["plain"])
    figures = {"photos": args.photos, "queries": args.queries, "rounds": args.rounds, "variants": {}}
    print(f"\n{'variant':36s} {'photos':>7s} {'p50 ms':>8s} {'p95 ms':>8s} {'x plain':>8s}")
    for name, times in seconds.items():
        found = {**percentiles_ms(times), "photos_meeting": matching[name], "x_plain": statistics.median(times) / base}
        figures["variants"][name] = found
        print(f"{name:36s} {matching[name]:7d} {found['p50_ms']:8.2f} {found['p95_ms']:8.2f} {found['x_plain']:8.2f}")
    if args.real:
        figures["agreement"] = agreement(bundle, args)
    write_json(args.json, figures)


def real_gallery(bundle, count: int, cache: Path) -> Path:  # noqa: ANN001 - a Bundle
    """The first `count` Flickr8k dev photos indexed by assoc (links to them in a folder), kept in cache."""
    folder = cache / f"filtered-query-dev{count}-{bundle.bundle_id}"
    photos, gallery = folder / "photos", folder / "gallery"
    photos.mkdir(parents=True, exist_ok=True)
    for name in flickr_dev_images()[:count]:
        if not (photos / name).exists():
            (photos / name).symlink_to(FLICKR / "images" / name)
    with Searcher(bundle, StoreSpec.builtin(gallery), device="cpu") as searcher:
        start = time.perf_counter()
        report = searcher.index([photos])
        if report.added:
            print(f"indexed {report.added} real photos into {gallery} in {time.perf_counter() - start:.0f} s")
    return gallery


def agreement(bundle, args: argparse.Namespace) -> dict:  # noqa: ANN001 - a Bundle
    """Shares of the exact top k that two stages keep, plain and combined (see the module docstring)."""
    config = bundle.config
    gallery = real_gallery(bundle, args.real, args.cache)
    captions = [c for _, c in flickr_captions(flickr_dev_images()[: args.real], per_image=1)]
    step = max(1, len(captions) // (3 * AGREEMENT_QUERIES))
    encoded = [Query.of_text(q, config) for q in TextEncoder(bundle, "cpu").encode(captions[::step])]
    n = min(AGREEMENT_QUERIES, len(encoded) // 3)
    a, b, c = encoded[:n], encoded[n : 2 * n], encoded[2 * n : 3 * n]
    kinds = {
        "plain": a,
        "2 plus": [CombinedQuery.of([(x, 1.0), (y, 1.0)]) for x, y in zip(a, b, strict=True)],
        "2 plus + 1 minus": [
            CombinedQuery.of([(x, 2.0), (y, 1.0), (z, -1.0)]) for x, y, z in zip(a, b, c, strict=True)
        ],
    }
    stages = {
        "bundle": config.first_stage,
        "scaled to 10k": replace(
            config.first_stage, shortlist=0.1, shortlist_min=0, candidates=max(args.k, args.real // 50)
        ),
    }
    out: dict = {}
    print(f"\nshare of the exact top {args.k} kept by two stages, {args.real} real photos, {n} queries each")
    print(f"{'first stage':16s} {'query':18s} {'as searched':>12s} {'union of terms':>15s}")
    for stage_name, stage in stages.items():
        with Gallery.open(gallery, config.bundle_id, config.embed_dim, create=False, first_stage=stage) as store:
            for kind, queries in kinds.items():
                searched, union = [], []
                for query in queries:
                    truth = {h.path for h in search(store, query, k=args.k, exact=True)}
                    searched.append(len(truth & {h.path for h in search(store, query, k=args.k)}) / args.k)
                    if isinstance(query, CombinedQuery):
                        union.append(
                            len(truth & {h.path for h in union_of_terms(store, query, args.k, stage)}) / args.k
                        )
                row = {
                    "as_searched": statistics.mean(searched),
                    "union_of_terms": statistics.mean(union) if union else None,
                }
                out[f"{stage_name}: {kind}"] = row
                other = f"{row['union_of_terms']:15.3f}" if union else f"{'':15s}"
                print(f"{stage_name:16s} {kind:18s} {row['as_searched']:12.3f} {other}")
    return out


def union_of_terms(store: Gallery, query: CombinedQuery, k: int, stage: FirstStageConfig) -> list:
    """The comparison: each plus term proposes the plan's candidates by its own query, and the union of
    them (per shard, the gallery's selection) is scored exactly."""
    view = store.open_view()
    plan = search_plan(view.photos, stage, k)
    first = view.first_stage()
    picks = [first.candidates(view, t.query, plan) for t in query.terms if t.weight > 0]
    union = [np.unique(np.concatenate(rows)) for rows in zip(*picks, strict=True)]
    return rerank(query, view.read_grids(union), k)


if __name__ == "__main__":
    main()

"""Query latency against gallery size: the built-in Gallery's exact MaxSim search vs raw score_grids.

For each of --sizes (ascending) a Gallery in a temporary folder grows to that many SYNTHETIC photos:
random unit-normalised float16 grids of the bundle's grid shape and D, written with Gallery.add in
batches of 2,000 (search cost does not depend on what the vectors hold). A size whose grids do not fit
on the disk under --tmp is skipped, and says so.

The queries are --queries Flickr8k dev captions (one per photo), encoded by the bundle's TextEncoder;
the text-encoding latency (encode_one, one query a call) is reported on its own line. Per size, after
one warm-up search, every query is searched --repeats times with Gallery.search(k=--k) and timed:
p50/p95 in ms and the per-photo cost (p50 / size, in microseconds).

Baseline in the same process: score_grids (no top-k) over an in-memory float32 (N, h*w, D) array of
the same grids, for the sizes whose array takes under half the available memory. store/memory is the
store's overhead: memory maps, float16 -> float32 in chunks, SQLite snapshot, top-k. The shards were
just written, so they sit in the page cache: these are warm-cache figures. numpy uses all cores.

Run (defaults: sizes 1k, 10k, 100k; 20 queries; 3 repeats; ~1.3 GB of disk for 100k at D=128, 7x7):
    python bench/query_latency.py
    python bench/query_latency.py --sizes 1000 10000 --repeats 1 --json latency.json
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from common import (
    available_memory,
    flickr_captions,
    flickr_dev_images,
    latencies,
    open_bundle,
    percentiles_ms,
    synthetic_batches,
    write_json,
)

from assoc.runtime.encoding.encoders import TextEncoder
from assoc.runtime.encoding.providers import DEVICES
from assoc.runtime.scoring.matchmap import score_grids
from assoc.runtime.stores.gallery import Gallery

DISK_MARGIN = 256 << 20  # bytes kept free besides the grids (SQLite, WAL, other users of the disk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--device", choices=DEVICES, default="auto", help="for the text encoder")
    parser.add_argument("--model", help="bundle folder (default: ASSOC_MODEL, then the shipped bundle)")
    parser.add_argument("--tmp", type=Path, help="where the temporary gallery goes (default: system temp)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    bundle = open_bundle(args.model)
    grid, dim = bundle.config.visual.grid, bundle.config.embed_dim
    patches = grid[0] * grid[1]
    text = TextEncoder(bundle, args.device)
    captions = [c for _, c in flickr_captions(flickr_dev_images()[: args.queries], per_image=1)]
    text_ms = percentiles_ms(latencies(text.encode_one, captions, args.repeats))
    queries = [q.vectors for q in text.encode(captions)]
    words = np.mean([len(q) for q in queries])
    print(f"bundle {bundle.bundle_id}: grid {grid[0]}x{grid[1]}, D {dim}, score {bundle.config.score}")
    print(
        f"text encoding (encode_one): p50 {text_ms['p50_ms']:.2f} ms, p95 {text_ms['p95_ms']:.2f} ms "
        f"({len(captions)} captions, {words:.1f} vectors each on average, x{args.repeats})"
    )

    sizes = sorted(set(args.sizes))
    row_bytes = patches * dim * 2
    spare = available_memory() // 2
    in_memory = [n for n in sizes if n * patches * dim * 4 < spare]
    memory = np.empty((max(in_memory, default=0), patches, dim), dtype=np.float32)
    figures: dict = {"bundle": bundle.bundle_id, "grid": list(grid), "dim": dim, "text_encode": text_ms, "sizes": []}
    header = ("photos", "store p50", "p95", "us/photo", "memory p50", "p95", "store/mem")
    print(" ".join(f"{h:>{w}s}" for h, w in zip(header, (8, 10, 8, 9, 11, 8, 10), strict=True)))
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        gallery = Gallery.open(Path(folder) / "gallery", bundle.bundle_id, dim)
        with gallery:
            have = 0
            for n in sizes:
                need, free = (n - have) * row_bytes + DISK_MARGIN, shutil.disk_usage(folder).free
                if need > free:
                    print(f"{n:8d} skipped: needs {need / 1e9:.1f} GB on disk, {free / 1e9:.1f} GB free under {folder}")
                    figures["sizes"].append({"photos": n, "skipped": "disk"})
                    continue
                for records, grids in synthetic_batches(have, n, grid, dim):
                    gallery.add(list(zip(records, grids, strict=True)))
                    if have < len(memory):
                        memory[have : have + len(grids)] = grids.reshape(len(grids), patches, dim)
                    have += len(grids)
                baseline = memory[:n] if n in in_memory else None
                row = measure(gallery, baseline, queries, bundle.config.score, args.k, args.repeats)
                print(row.pop("line"))
                figures["sizes"].append(row)
    write_json(args.json, figures)


def measure(
    gallery: Gallery, memory: np.ndarray | None, queries: list[np.ndarray], kind: str, k: int, repeats: int
) -> dict:
    """Latency figures of one gallery size, with a printable line under "line"."""
    n = len(gallery)
    store = percentiles_ms(latencies(lambda q: gallery.search(q, k=k, kind=kind), queries, repeats))
    row: dict = {"photos": n, "store": store, "us_per_photo": store["p50_ms"] * 1000 / n}
    line = f"{n:8d} {store['p50_ms']:10.2f} {store['p95_ms']:8.2f} {row['us_per_photo']:9.3f}"
    if memory is None:
        return {**row, "line": line + "   (baseline skipped: the array would take over half the available memory)"}
    row["memory"] = percentiles_ms(latencies(lambda q: score_grids(memory, q, kind), queries, repeats))
    row["store_vs_memory"] = store["p50_ms"] / row["memory"]["p50_ms"]
    line += f" {row['memory']['p50_ms']:11.2f} {row['memory']['p95_ms']:8.2f} {row['store_vs_memory']:10.2f}"
    return {**row, "line": line}


if __name__ == "__main__":
    main()

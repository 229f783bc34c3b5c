"""Indexing on Ray against the one-machine indexer: photos/s on the same photos, in one run.

Runs, each into a fresh Qdrant local-mode store under --tmp (the same store kind for every run):
- local:  assoc.runtime.indexing.indexer.index_paths (decoding threads, one ONNX Runtime session on
          all cores);
- ray N:  assoc.distributed.index_on_cluster with N encoder actors (--workers, default 1 and 2), each
          --worker-cpus Ray CPUs and as many ONNX Runtime threads, on a local Ray cluster of --num-cpus
          CPUs started once before the runs (its start is not timed; each run's actor start is).
Per run: photos/s end to end (walk, plan, actor start, hash, decode, encode, writes); photos/s at
steady state (from the first progress report to the end: past the actors' start); and the driver's
write cost, milliseconds in store.add per photo: one driver cannot write faster than its inverse,
however large the cluster. For a Qdrant server, which this bench does not start, the driver's share
is computed: the time to serialise a photo's vectors as the JSON body of an upsert.
With --repeats R each figure is the median of R runs. Photos are read once before timing (warm cache).

Run (defaults: 300 Flickr8k photos, the default bundle, a 2-CPU local cluster):
    python bench/ray_index.py
    python bench/ray_index.py --count 1000 --workers 1 2 4 --num-cpus 8 --json ray.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray
from common import DATA, open_bundle, write_json

from assoc.distributed import index_on_cluster
from assoc.runtime.encoding.bundle import Bundle
from assoc.runtime.encoding.encoders import ImageEncoder
from assoc.runtime.imaging.images import load_image
from assoc.runtime.indexing.indexer import IndexSummary, index_paths
from assoc.runtime.indexing.walk import walk
from assoc.runtime.stores.qdrant import QdrantStore, pool


class TimedStore:
    """A store whose add calls are timed: the driver's write cost."""

    def __init__(self, store: QdrantStore) -> None:
        self.store = store
        self.add_s = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def add(self, items: list[tuple[Any, np.ndarray]]) -> None:
        start = time.perf_counter()
        self.store.add(items)
        self.add_s += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DATA / "flickr8k" / "images")
    parser.add_argument("--count", type=int, default=300, help="the first this many photos of --folder")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="encoder actors per Ray run")
    parser.add_argument("--worker-cpus", type=float, default=0.75, help="Ray CPUs per actor (room left to decode)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--model", help="bundle folder (default: ASSOC_MODEL, then the shipped bundle)")
    parser.add_argument("--tmp", type=Path, help="where the temporary stores go (default: system temp)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    bundle = open_bundle(args.model)
    files = [f.path for f in walk([args.folder]).files[: args.count]]
    if not files:
        raise SystemExit(f"no photos found under {args.folder}")
    for path in files:
        Path(path).read_bytes()
    print(f"{len(files)} photos from {args.folder}; batch {args.batch_size}; median of {args.repeats}")

    encoder = ImageEncoder(bundle, device="cpu")
    runs: list[tuple[str, Callable[[TimedStore, Callable[[int, int], None]], IndexSummary]]] = [
        ("local", lambda store, tick: index_paths(store, encoder, files, batch_size=args.batch_size, on_progress=tick))
    ]
    for n in args.workers:
        runs.append(
            (
                f"ray {n}",
                lambda store, tick, n=n: index_on_cluster(
                    store,
                    bundle,
                    files,
                    workers=n,
                    worker_cpus=args.worker_cpus,
                    batch_size=args.batch_size,
                    on_progress=tick,
                ),
            )
        )
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        figures = {name: measure(run, bundle, len(files), args.repeats, args.tmp) for name, run in runs}
    finally:
        ray.shutdown()

    local = figures["local"]["photos_per_s"]
    print(f"{'run':8s} {'photos/s':>9s} {'steady/s':>9s} {'vs local':>9s} {'add ms/photo':>13s}")
    for name, f in figures.items():
        print(
            f"{name:8s} {f['photos_per_s']:9.1f} {f['steady_photos_per_s']:9.1f} "
            f"{f['photos_per_s'] / local:9.2f} {f['add_ms_per_photo']:13.2f}"
        )
    add_ms = statistics.median(f["add_ms_per_photo"] for f in figures.values())
    json_ms, json_best_ms = json_ms_per_photo(bundle, encoder, files[: args.batch_size])
    print(f"driver write ceiling, Qdrant local mode (store.add measured): {1000 / add_ms:.0f} photos/s")
    print(
        f"driver ceiling for a Qdrant server (computed from the JSON body of a point, {json_ms:.1f} ms median, "
        f"{json_best_ms:.1f} ms fastest): {1000 / json_ms:.0f} photos/s, {1000 / json_best_ms:.0f} on an idle core"
    )
    write_json(
        args.json,
        {
            "bundle": bundle.bundle_id,
            "photos": len(files),
            "batch_size": args.batch_size,
            "num_cpus": args.num_cpus,
            "worker_cpus": args.worker_cpus,
            "repeats": args.repeats,
            "runs": figures,
            "driver_write_ceiling_photos_per_s": 1000 / add_ms,
            "json_ms_per_photo": json_ms,
            "json_ms_per_photo_fastest": json_best_ms,
        },
    )


def measure(
    run: Callable[[TimedStore, Callable[[int, int], None]], IndexSummary],
    bundle: Bundle,
    photos: int,
    repeats: int,
    tmp: Path | None,
) -> dict[str, float]:
    """Median figures of `repeats` runs, each into a fresh store."""
    whole, steady, add_ms = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(dir=tmp) as folder:
            store = TimedStore(QdrantStore(bundle.bundle_id, bundle.config.embed_dim, path=Path(folder) / "q"))
            ticks: list[tuple[float, int]] = []
            start = time.perf_counter()
            summary = run(store, lambda done, total, ticks=ticks: ticks.append((time.perf_counter(), done)))
            end = time.perf_counter()
            store.close()
        if summary.added != photos:
            raise SystemExit(f"a run stored {summary.added} of {photos} photos")
        first_time, first_done = next((t, d) for t, d in ticks if d > 0)
        whole.append(photos / (end - start))
        steady.append((photos - first_done) / (end - first_time) if end > first_time else float("nan"))
        add_ms.append(1000 * store.add_s / photos)
    return {
        "photos_per_s": statistics.median(whole),
        "steady_photos_per_s": statistics.median(steady),
        "add_ms_per_photo": statistics.median(add_ms),
    }


def json_ms_per_photo(bundle: Bundle, encoder: ImageEncoder, files: list[str], rounds: int = 5) -> tuple[float, float]:
    """Milliseconds (median, fastest) to serialise one photo's point vectors as the JSON an upsert to a
    server carries: the driver's own share of writing to a Qdrant server (the server's ingest scales with
    its nodes). The fastest is the cost on an otherwise idle core."""
    height, width = encoder.config.image_size
    grids = encoder.encode([load_image(path, min_size=(width, height)).image for path in files])
    times = []
    for _ in range(rounds):
        for grid in grids.astype(np.float16).astype(np.float32):
            start = time.perf_counter()
            json.dumps({"pooled": pool(grid).tolist(), "patches": grid.reshape(-1, grid.shape[-1]).tolist()})
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), min(times)


if __name__ == "__main__":
    main()

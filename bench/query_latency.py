"""Query latency against gallery size: the built-in Gallery's two-stage and exact search beside the
machine's limits, numpy, and qdrant-edge, all in one run.

1. Machine limits, measured here: memory read bandwidth (numpy sum over 512 MB of float32), sgemm
   GFLOP/s (numpy matmul of 2048 x 2048 float32), float16 -> float32 widening (numpy astype, and ONNX
   Runtime's Cast, which the scan kernel uses), and numpy's MaxSim GEMM shape (a T x D query against
   the rows of 2,000 photos' patches). The exact scan's bound for a size is max(bytes / bandwidth,
   FLOPs / sgemm rate) for its float16 bytes and its 2*N*P*D*T FLOPs; `exact/bound` is how far the
   gallery's exact scan is from it.
2. For each of --sizes (ascending) a Gallery in a temporary folder grows to that many SYNTHETIC photos
   (random unit-normalised grids of the bundle's shape; search cost does not depend on what they hold;
   a size that does not fit on the disk under --tmp is skipped, and says so). Queries: --queries dev
   captions encoded by the bundle, cut to exactly T vectors for each T in --words. Per size and T,
   p50/p95 of Gallery.search (two stages, the default), p50 of search(Gallery, exact=True), p50 of
   numpy's score_grids over the same grids as float32 in memory (sizes whose array fits in a quarter of
   the available memory), and p50 of qdrant-edge's exact MAX_SIM over the same grids (sizes up to
   --edge-max; a shard is built once per size and kept in --cache, since qdrant-edge takes vectors as
   Python lists and builds ~150 points/s) with its top-10 overlap with the gallery's exact top 10.
3. End to end: `assoc query` as a subprocess on the largest gallery up to 10,000 photos (process
   start, bundle and model load, search, print), p50 of 3 runs.

Warm-cache figures: the shards were just written. Agreement of the two stages with exact search on
real photos is bench/first_stage.py's job (random grids have no meaningful first stage).

Run (defaults: sizes 1k, 10k, 100k; T = 6 and 15; 10 queries; 3 repeats; ~5.6 GB of disk for 100k):
    python bench/query_latency.py
    python bench/query_latency.py --sizes 1000 10000 --edge-max 0 --json latency.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import dev_queries, latencies, open_bundle, percentiles_ms, synthetic_batches, write_json

from assoc.runtime.encoding.encoders import TextEncoder
from assoc.runtime.indexing.indexer import available_memory
from assoc.runtime.scoring.matchmap import score_grids
from assoc.runtime.scoring.scan import ScanKernel
from assoc.runtime.search.pipeline import search
from assoc.runtime.stores.gallery import Gallery

DISK_MARGIN = 512 << 20  # bytes kept free besides the grids (SQLite, WAL, other users of the disk)
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--words", type=int, nargs="+", default=[6, 15], help="query vectors T")
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--edge-max", type=int, default=10_000, help="largest size qdrant-edge is built for")
    parser.add_argument("--model", help="bundle folder (default: ASSOC_MODEL, then the shipped bundle)")
    parser.add_argument("--tmp", type=Path, help="where the temporary gallery goes (default: system temp)")
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "bench-cache", help="qdrant-edge shards")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    bundle = open_bundle(args.model)
    grid, dim = bundle.config.visual.grid, bundle.config.embed_dim
    patches = grid[0] * grid[1]
    print(f"bundle {bundle.bundle_id}: grid {grid[0]}x{grid[1]}, D {dim}, score {bundle.config.score}")
    print(f"first stage: {bundle.config.first_stage}")
    limits = machine_limits(patches, dim)
    queries = word_queries(bundle, args.words, args.queries)

    figures: dict = {"bundle": bundle.bundle_id, "limits": limits, "sizes": []}
    sizes = sorted(set(args.sizes))
    row_bytes = patches * dim * 2 + (1 + bundle.config.first_stage.vectors) * dim * 2
    memory_rows = max((n for n in sizes if n * patches * dim * 4 < (available_memory() or 0) // 4), default=0)
    memory = np.empty((memory_rows, patches, dim), np.float32)
    print("\nphotos    T  2-stage p50   p95 | exact p50  bound  exact/bound | numpy f32 p50 | edge p50  overlap")
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        path = Path(folder) / "gallery"
        gallery = Gallery.open(path, bundle.bundle_id, dim, first_stage=bundle.config.first_stage)
        have = 0
        end_to_end_at = max((n for n in sizes if n <= 10_000), default=0)
        with gallery:
            for n in sizes:
                need, free = (n - have) * row_bytes + DISK_MARGIN, shutil.disk_usage(folder).free
                if need > free:
                    print(f"{n:7d} skipped: needs {need / 1e9:.1f} GB on disk, {free / 1e9:.1f} GB free under {folder}")
                    figures["sizes"].append({"photos": n, "skipped": "disk"})
                    continue
                start = time.perf_counter()
                for records, grids in synthetic_batches(have, n, grid, dim):
                    gallery.add(list(zip(records, grids, strict=True)))
                    if have < len(memory):
                        memory[have : have + len(grids)] = grids.reshape(len(grids), patches, dim)
                    have += len(grids)
                print(f"  ({n} photos in the gallery; adding took {time.perf_counter() - start:.0f} s)")
                steps = [0, *(m for m in sizes if m <= n)]
                edge = edge_shard(args.cache, steps, grid, dim) if n <= args.edge_max else None
                for words, qs in queries.items():
                    row = measure(gallery, memory[:n] if n <= len(memory) else None, edge, qs, args, limits, patches)
                    print(row.pop("line"))
                    figures["sizes"].append({"photos": n, "words": words, **row})
                if n == end_to_end_at:
                    figures["end_to_end"] = end_to_end(path, n, args.model)
    write_json(args.json, figures)


def machine_limits(patches: int, dim: int) -> dict:
    """What this machine allows, measured now: see the module docstring."""
    rng = np.random.default_rng(0)
    big = rng.standard_normal(128 << 20, dtype=np.float32)  # 512 MB
    read = big.nbytes / 1e9 / best_of(lambda: big.sum(), 5)
    a = rng.standard_normal((2048, 2048), dtype=np.float32)
    sgemm = 2 * 2048**3 / 1e9 / best_of(lambda: a @ a, 5)
    half = (rng.standard_normal((2000, patches, dim)) * 0.06).astype(np.float16)
    astype = half.nbytes / 1e9 / best_of(lambda: half.astype(np.float32), 5)
    query = rng.standard_normal((dim, 15), dtype=np.float32)
    cast = ScanKernel("sisa")  # the kernel's own widening + matmul + a cheap reduction
    kernel = half.nbytes / 1e9 / best_of(lambda: cast.scores(half, query), 5)
    wide = half.astype(np.float32).reshape(-1, dim)
    shape = 2 * wide.shape[0] * dim * 15 / 1e9 / best_of(lambda: wide @ query, 5)
    limits = {
        "read_gb_s": read,
        "sgemm_gflop_s": sgemm,
        "numpy_f16_to_f32_gb_s": astype,
        "scan_kernel_f16_gb_s": kernel,
        "numpy_maxsim_gemm_gflop_s": shape,
        "cores": os.cpu_count(),
    }
    print(
        f"machine: read {read:.1f} GB/s (one thread); sgemm {sgemm:.0f} GFLOP/s (2048^2, all {os.cpu_count()} cores); "
        f"float16->float32: numpy astype {astype:.2f} GB/s, scan kernel (Cast+MatMul, T=15) {kernel:.2f} GB/s of "
        f"float16; numpy MaxSim GEMM shape (T=15) {shape:.0f} GFLOP/s"
    )
    return limits


def best_of(fn, rounds: int) -> float:  # noqa: ANN001 - a callable
    """Fastest of some timed calls, in seconds (after one untimed warm-up)."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def word_queries(bundle, words: list[int], count: int) -> dict[int, list[np.ndarray]]:  # noqa: ANN001
    """For each T, `count` dev captions' vectors with exactly T vectors each (longer captions cut)."""
    captions = dev_queries()
    encoded = [q.vectors for q in TextEncoder(bundle, "cpu").encode(captions[: count * 20])]
    out = {}
    for t in words:
        long_enough = [q[:t] for q in encoded if len(q) >= t][:count]
        if len(long_enough) < count:
            raise SystemExit(f"fewer than {count} dev captions have {t} query vectors")
        out[t] = long_enough
    return out


def measure(
    gallery: Gallery,
    memory: np.ndarray | None,
    edge,  # noqa: ANN001 - a qdrant_edge.EdgeShard, or None
    queries: list[np.ndarray],
    args: argparse.Namespace,
    limits: dict,
    cells: int,
) -> dict:
    """Latency figures of one gallery size and query length, with a printable line under "line"."""
    n, (t, dim) = len(gallery), queries[0].shape
    k, repeats = args.k, args.repeats
    two = percentiles_ms(latencies(lambda q: search(gallery, q, k=k), queries, repeats))
    exact = percentiles_ms(latencies(lambda q: search(gallery, q, k=k, exact=True), queries, max(1, repeats // 3)))
    values = n * cells * dim  # float16 values the exact scan reads
    bound_s = max(values * 2 / (limits["read_gb_s"] * 1e9), 2 * values * t / (limits["sgemm_gflop_s"] * 1e9))
    row: dict = {
        "two_stage": two,
        "exact": exact,
        "exact_bound_ms": bound_s * 1000,
        "exact_over_bound": exact["p50_ms"] / (bound_s * 1000),
    }
    line = (
        f"{n:7d} {t:4d} {two['p50_ms']:11.2f} {two['p95_ms']:6.2f} | {exact['p50_ms']:9.1f} {bound_s * 1000:6.1f}"
        f" {row['exact_over_bound']:12.2f} |"
    )
    if memory is not None:
        row["numpy_f32"] = percentiles_ms(latencies(lambda q: score_grids(memory, q, "misa"), queries, 1))
        line += f" {row['numpy_f32']['p50_ms']:13.1f} |"
    else:
        line += f" {'(no memory)':>13s} |"
    if edge is not None:
        seconds, overlap = [], []
        for q in queries:
            start = time.perf_counter()
            found = edge_search(edge, q, k)
            seconds.append(time.perf_counter() - start)
            truth = {int(h.path.split("/")[-1][:7]) for h in search(gallery, q, k=k, exact=True)}
            overlap.append(len(truth & set(found)) / k)
        row["qdrant_edge"] = {**percentiles_ms(seconds), "overlap": float(np.mean(overlap))}
        line += f" {row['qdrant_edge']['p50_ms']:8.1f} {row['qdrant_edge']['overlap']:8.3f}"
    return {**row, "line": line}


def edge_shard(cache: Path, steps: list[int], grid: tuple[int, int], dim: int):  # noqa: ANN201
    """A qdrant-edge shard of the synthetic photos the gallery holds after growing through `steps`
    (the same batches, so the same grids; point id = photo number), built once and kept in cache;
    None when qdrant-edge-py is not installed."""
    try:
        import qdrant_edge as qe
    except ImportError:
        print("  (qdrant-edge-py is not installed: pip install qdrant-edge-py to compare with it)")
        return None
    n = steps[-1]
    where = cache / f"qdrant-edge-synthetic-{grid[0]}x{grid[1]}-d{dim}-{'-'.join(map(str, steps[1:]))}"
    config = qe.EdgeConfig(
        vectors={
            "patches": qe.EdgeVectorParams(
                size=dim,
                distance=qe.Distance.Dot,
                datatype=qe.VectorStorageDatatype.Float16,
                multivector_config=qe.MultiVectorConfig(comparator=qe.MultiVectorComparator.MaxSim),
            )
        }
    )
    if (where / "done").is_file():
        return qe.EdgeShard.load(str(where), config)
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    shard = qe.EdgeShard.create(str(where), config)
    start = time.perf_counter()
    batches = (b for lo, hi in zip(steps, steps[1:], strict=False) for b in synthetic_batches(lo, hi, grid, dim))
    for records, grids in batches:
        first = int(records[0].path.split("/")[-1][:7])
        for at in range(0, len(grids), 200):
            points = [
                qe.Point(id=first + at + j, vector={"patches": g.reshape(-1, dim).tolist()}, payload={})
                for j, g in enumerate(grids[at : at + 200].astype(np.float32))
            ]
            shard.update(qe.UpdateOperation.upsert_points(points))
    shard.flush()
    (where / "done").write_text("built\n")
    print(f"  (qdrant-edge: {n} points built in {time.perf_counter() - start:.0f} s, kept in {where})")
    return shard


def edge_search(shard, query: np.ndarray, k: int) -> list[int]:  # noqa: ANN001
    import qdrant_edge as qe

    request = qe.QueryRequest(
        query=qe.Query.Nearest(query.tolist(), using="patches"),
        limit=k,
        with_payload=False,
        params=qe.SearchParams(exact=True),  # its optimizer builds an HNSW index on a grown shard: bypass it
    )
    return [int(p.id) for p in shard.query(request)]


def end_to_end(gallery: Path, photos: int, model: str | None) -> dict:
    """`assoc query` as a subprocess: process start, model load, search, print; p50 of 3 runs."""
    code = "import sys; from assoc.cli.app import main; sys.argv[0] = 'assoc'; main()"
    command = [sys.executable, "-c", code, "query", "a dog runs on the grass", "--gallery", str(gallery)]
    command += ["--model", model] if model else []
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        if done.returncode != 0:
            print(f"end to end: assoc query failed: {done.stderr.strip()}")
            return {}
    p50 = float(np.median(seconds))
    print(f"\nend to end: `assoc query` on {photos} photos (start, model load, search, print): p50 {p50 * 1000:.0f} ms")
    return {"photos": photos, "p50_ms": p50 * 1000}


if __name__ == "__main__":
    main()

"""Which ANN library could replace the first stage's linear scan of the pooled vectors, measured here.

Today every search ranks all photos by the cosine of their pooled (global) float16 vector with the
query's sentence vector and keeps a shortlist of S photos (runtime/stores/gallery_view.py
PooledCentroids; S = search_plan(...).shortlist: 10% of the gallery, at least 1,000, for the shipped
bundle). An ANN index would replace only that step, so what counts is the share of the exact pooled
top S that it returns (recall@S), at S = the plan's shortlist and 2x, and at a fixed --fixed S (an
ANN stage is only sublinear if S stops growing with the gallery).

Candidates, each built and queried in its own process (clean resident memory, one crash isolated):
- exact: the baseline, what assoc does: the float16 vectors in a memory map, scored by the scan
  kernel the gallery uses (runtime/search/rerank.py scan_kernel, ONNX Runtime, here 1 thread), then
  argpartition. Every ANN row also times it interleaved with its own queries (`x exact`).
- usearch HNSW, float16 vectors (loaded into RAM, and viewed: memory-mapped from its file);
- faiss-cpu HNSW (IndexHNSWFlat, float32), and IVF with float32 (IndexIVFFlat) or float16 vectors
  (faiss-ivf16: IndexIVFScalarQuantizer QT_fp16), nlist = 2 sqrt(N), trained on the first 64 x nlist
  vectors; per S the smallest nprobe of a doubling ladder (then nlist) that reaches --ivf-recall on
  these very queries, so its recall is tuned, not predicted;
- hnswlib HNSW (float32). All HNSW share M = --connectivity and ef_construction = --expansion-add;
  ef_search = S (the least they allow for S results).
Built on --build-threads threads (all but the last 10% of the vectors, at most 20,000, in chunks of
50,000); that tail is then added in batches of 2,000 on 1 thread, as the indexer would add photos to
a grown gallery (`add/s`). A build still running after --build-limit seconds is stopped and reported.
The index is saved to a temporary name, fsynced and renamed; `disk` is its file. RSS: the process's
anonymous resident memory after the build minus before it; its resident memory (anonymous and
file-backed) after loading the saved file minus before it, and for a view (or the exact scan's
memory map) also after one search per query at each S. Queries: 1 thread, one untimed pass for
recall, then --rounds timed passes, p50/p95 ms.

Data: the 7,091 Flickr8k photos' real pooled vectors (grids encoded once with the bundle and cached in
--cache, shared with bench/first_stage.py) searched with dev captions' real sentence vectors
(Query.of_text: the bundle's token weights, as a search builds them); and synthetic galleries made
from them: each vector is a random real one moved a uniform 0..MIX of the way towards another random
real one, plus Gaussian noise shaped by the real vectors' own principal axes (NOISE times their
standard deviation along each axis), normalised. So the synthetic vectors keep the real ones' uneven
spectrum and clusters (ANN on iid noise is a worst case no photo library has). The structure line
compares the real and a same-sized synthetic set. Vectors and exact top-2S are cached in --cache.

Last, the file story of each library on 2,000 real vectors: save to a temporary name + rename,
reopen and add, memory-mapped load (and add to it), delete, and loading a truncated copy or one with a
flipped byte (in a child process, so a crash is seen as one).

Run:
    python bench/ann_candidates.py
    python bench/ann_candidates.py --sizes real 10000 --libraries exact usearch --json ann.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import SYNTHETIC_BATCH, add_common_options, dev_queries, open_bundle, percentiles_ms, write_json

LIBRARIES = ("exact", "usearch", "faiss-hnsw", "faiss-ivf", "faiss-ivf16", "hnswlib")
VIEWABLE = ("usearch", "faiss-hnsw")  # also searched memory-mapped from their file (a view)
MIX = 0.5  # a synthetic vector moves up to this share of the way from one real vector to another
NOISE = 0.3  # ... plus noise of this many real standard deviations along each principal axis
BUILD_CHUNK = 50_000  # vectors per bulk add call (the build limit is checked between them)
TAIL = 0.1  # share of the vectors (at most TAIL_MAX) added incrementally at the end, 1 thread
TAIL_MAX = 20_000
PROBE_VECTORS = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one phase of one library, as JSON
    parser.add_argument("--sizes", nargs="+", default=["real", "10000", "100000", "1000000"])
    parser.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    parser.add_argument("--queries", type=int, default=50, help="dev captions searched (real: --real-queries)")
    parser.add_argument("--real-queries", type=int, default=500, help="dev captions searched on the real set")
    parser.add_argument("--queries-1m", type=int, default=20, help="at most this many at 1,000,000 and over")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the queries")
    parser.add_argument("--pass-limit", type=float, default=120, help="no further passes after one this long (s)")
    parser.add_argument("--fixed", type=int, default=1000, help="also this shortlist at every size (0: not)")
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--build-limit", type=float, default=600, help="seconds before a build is stopped")
    parser.add_argument("--connectivity", type=int, default=16, help="HNSW M")
    parser.add_argument("--expansion-add", type=int, default=128, help="HNSW ef_construction")
    parser.add_argument("--ivf-recall", type=float, default=0.99)
    add_common_options(parser, "the index files")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return

    bundle = open_bundle(args.model)
    args.cache.mkdir(parents=True, exist_ok=True)
    real, queries = real_vectors(bundle, args)
    print(f"bundle {bundle.bundle_id}: {len(real)} real pooled vectors, {len(queries)} dev caption queries")
    print(", ".join(f"{k} {v}" for k, v in versions().items()) + f"; build threads {args.build_threads}, queries 1")
    figures: dict = {"bundle": bundle.bundle_id, "versions": versions(), "settings": settings(args), "sizes": []}
    figures["structure"] = structure(real, queries)
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="assoc-ann-") as tmp:
        for size in args.sizes:
            figures["sizes"].append(bench_size(size, bundle, real, queries, args, Path(tmp)))
        figures["files"] = file_story(real, args, Path(tmp))
    write_json(args.json, figures)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    import onnxruntime

    return {name: version(name) for name in ("usearch", "faiss-cpu", "hnswlib", "numpy")} | {
        "onnxruntime": onnxruntime.__version__
    }


def settings(args: argparse.Namespace) -> dict:
    keep = ("build_threads", "connectivity", "expansion_add", "rounds", "queries", "ivf_recall", "fixed")
    return {k: getattr(args, k) for k in keep} | {"mix": MIX, "noise": NOISE, "query_threads": 1}


# ---------------------------------------------------------------------------------------------- data


def real_vectors(bundle, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """(7,091 pooled float16 vectors of all Flickr8k photos, (Q, D) float32 dev caption sentence vectors)."""
    from first_stage import all_grids

    from assoc.runtime.encoding.encoders import TextEncoder
    from assoc.runtime.scoring.first_stage import pooled_vectors
    from assoc.runtime.search.query import Query

    where = args.cache / f"ann-pooled-flickr8k-all-{bundle.bundle_id}.npy"
    if not where.is_file():
        _, grids = all_grids(bundle, args.cache)
        np.save(where, pooled_vectors(grids))
        del grids
    count = max(args.queries, args.real_queries)
    captions = dev_queries(count)
    encoded = TextEncoder(bundle, "cpu").encode(captions)
    return np.load(where), np.stack([Query.of_text(e, bundle.config).pooled for e in encoded])


def synthetic(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """(n, D) float16 unit vectors near the real ones' structure (see the module docstring)."""
    base = real.astype(np.float32)
    centred = base - base.mean(axis=0)
    _, sigma, axes = np.linalg.svd(centred, full_matrices=False)
    shape = (sigma / np.sqrt(len(base) - 1))[:, None] * axes  # noise along the real principal axes
    out = np.empty((n, base.shape[1]), np.float16)
    for first in range(0, n, BUILD_CHUNK):
        m = min(BUILD_CHUNK, n - first)
        rng = np.random.default_rng([seed, first])
        a, b = rng.integers(len(base), size=(2, m))
        w = rng.uniform(0, MIX, size=(m, 1)).astype(np.float32)
        v = (1 - w) * base[a] + w * base[b] + NOISE * (rng.standard_normal((m, len(shape)), np.float32) @ shape)
        out[first : first + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def exact_order(vectors: np.ndarray, queries: np.ndarray, count: int) -> np.ndarray:
    """(Q, count) int32 indices of each query's exact top `count` by cosine over the float16 values, best first."""
    scores = np.empty((len(queries), len(vectors)), np.float32)
    for first in range(0, len(vectors), BUILD_CHUNK):
        scores[:, first : first + BUILD_CHUNK] = queries @ vectors[first : first + BUILD_CHUNK].astype(np.float32).T
    out = np.empty((len(queries), count), np.int32)
    for i, row in enumerate(scores):
        best = np.argpartition(-row, count - 1)[:count]
        out[i] = best[np.argsort(-row[best], kind="stable")]
    return out


def structure(real: np.ndarray, queries: np.ndarray) -> dict:
    """How alike the real and the synthetic vectors are, at the real set's size: each vector's nearest
    other vector, and the queries' 1st and 100th best cosine (medians)."""

    def stats(v: np.ndarray) -> dict:
        v = v.astype(np.float32)
        gram = v @ v.T
        np.fill_diagonal(gram, -2)
        s = np.sort(queries @ v.T, axis=1)
        return {
            "nearest_other": float(np.median(gram.max(axis=1))),
            "query_top1": float(np.median(s[:, -1])),
            "query_top100": float(np.median(s[:, -100])),
            "spectrum_top10_share": float(np.square(np.linalg.svd(v - v.mean(0), compute_uv=False)[:10]).sum())
            / float(np.square(v - v.mean(0)).sum()),
        }

    out = {"real": stats(real), "synthetic": stats(synthetic(real, len(real), seed=1))}
    print("\nstructure (medians)  nearest other  query top-1  query top-100  variance in 10 axes")
    for name, s in out.items():
        print(
            f"  {name:<18s} {s['nearest_other']:13.3f} {s['query_top1']:12.3f} {s['query_top100']:14.3f}"
            f" {s['spectrum_top10_share']:20.3f}"
        )
    return out


# ------------------------------------------------------------------------------------------ per size


def bench_size(size: str, bundle, real, queries, args, tmp: Path) -> dict:  # noqa: ANN001
    from assoc.runtime.search.pipeline import search_plan

    n = len(real) if size == "real" else int(size)
    name = f"real-{n}" if size == "real" else f"synthetic-{n}"
    q = args.real_queries if size == "real" else min(args.queries, args.queries_1m if n >= 1_000_000 else n)
    q = min(q, len(queries))
    plan = search_plan(n, bundle.config.first_stage, 10)
    shortlists = sorted({plan.shortlist, 2 * plan.shortlist} | ({args.fixed} if args.fixed else set()))
    shortlists = [s for s in shortlists if s < n]
    made = "" if size == "real" else f"-mix{MIX}-noise{NOISE}"
    vectors_file = args.cache / f"ann-{name}{made}-{bundle.bundle_id}.npy"
    if size == "real":
        np.save(vectors_file, real)
    elif not vectors_file.is_file():
        start = time.perf_counter()
        np.save(vectors_file, synthetic(real, n))
        print(f"  {n:,} synthetic vectors made in {time.perf_counter() - start:.0f} s (cached in {vectors_file})")
    truth_file = vectors_file.with_name(f"{vectors_file.stem}-exact{max(shortlists)}-{q}q.npy")
    queries_file = tmp / f"queries-{name}.npy"
    np.save(queries_file, queries[:q])
    if not truth_file.is_file():
        np.save(truth_file, exact_order(np.load(vectors_file, mmap_mode="r"), queries[:q], max(shortlists)))
    print(f"\n{name}: {n:,} vectors, {q} queries, shortlists {shortlists} (the plan's: {plan.shortlist:,})")
    job = {"vectors": str(vectors_file), "queries": str(queries_file), "truth": str(truth_file)}
    keep = ("build_threads", "connectivity", "expansion_add", "rounds", "ivf_recall", "build_limit", "pass_limit")
    job |= {"shortlists": shortlists} | {k: getattr(args, k) for k in keep}
    rows = []
    for library in args.libraries:
        index = tmp / f"{name}.{library}"
        built = worker({**job, "phase": "build", "library": library, "index": str(index)})
        report_build(library, n, built)
        if built.get("stopped") or "error" in built:
            rows.append({"library": library, "build": built})
            continue
        for view in (False, True) if library in VIEWABLE else (False,):
            searched = worker({**job, "phase": "query", "library": library, "index": str(index), "view": view})
            report_query(library + (" (view)" if view else ""), searched)
            rows.append({"library": library, "view": view, "build": built, "query": searched})
        index.unlink(missing_ok=True)
    return {"name": name, "photos": n, "queries": q, "plan_shortlist": plan.shortlist, "rows": rows}


def worker(job: dict) -> dict:
    """One phase of one library in a fresh process (clean RSS; a crash is reported, not inherited)."""
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {done.returncode}: {last}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def report_build(library: str, n: int, built: dict) -> None:
    if "error" in built:
        print(f"  {library:<16s} build failed: {built['error']}")
    elif built.get("stopped"):
        print(
            f"  {library:<16s} build STOPPED after {built['build_s']:.0f} s at {built['added']:,} of {n:,} vectors"
            f" ({built['bulk_per_s']:,.0f}/s)"
        )
    elif library != "exact":
        print(
            f"  {library:<16s} build {built['build_s']:7.1f} s ({built['bulk_per_s']:,.0f}/s on"
            f" {built['threads']} threads; then {built['tail_per_s']:,.0f}/s on 1), disk"
            f" {built['disk_bytes'] / 2**20:,.1f} MB ({built['disk_bytes'] / n:,.0f} B/photo), build RSS"
            f" +{built['rss_build_mb']:,.0f} MB"
        )


def report_query(label: str, searched: dict) -> None:
    if "error" in searched:
        print(f"  {label:<16s} query failed: {searched['error']}")
        return
    mapped = "(view)" in label or label == "exact"
    extra = f", after searching +{searched['rss_after_mb']:,.0f} MB" if mapped else ""
    print(f"  {label:<16s} load {searched['load_ms']:,.0f} ms, RSS +{searched['rss_load_mb']:,.0f} MB{extra}")
    for row in searched["shortlists"]:
        tuned = f" nprobe {row['nprobe']}" if "nprobe" in row else ""
        print(
            f"    S {row['S']:>7,d}: p50 {row['p50_ms']:8.2f} ms  p95 {row['p95_ms']:8.2f}  exact p50"
            f" {row['exact_p50_ms']:7.1f} (x{row['exact_p50_ms'] / row['p50_ms']:5.1f})  recall"
            f" {row['recall']:.4f} (worst {row['recall_min']:.3f}){tuned}  [{row['timed']} timed]"
        )


# ------------------------------------------------------------------------------------------ libraries


class Exact:
    """The baseline: float16 vectors, the gallery's scan kernel over chunks, argpartition."""

    def __init__(self, dim: int, job: dict) -> None:
        self.parts: list[np.ndarray] = []

    def add(self, vectors: np.ndarray, first: int, threads: int) -> None:
        self.parts.append(vectors.astype(np.float16))

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            np.save(f, np.concatenate(self.parts))

    @classmethod
    def opened(cls, path: str, dim: int, view: bool) -> Exact:
        self = cls.__new__(cls)
        self.vectors = np.load(path, mmap_mode="r")[:, None, :]  # (N, 1, D): the gallery's pooled layout
        return self

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        return exact_search(self.vectors, query, count)


def exact_search(vectors: np.ndarray, query: np.ndarray, count: int) -> np.ndarray:
    """What PooledCentroids does with the pooled vectors (runtime/stores/gallery_view.py _narrow), on 1 thread."""
    from assoc.runtime.stores.shard_files import SEARCH_CHUNK_BYTES

    kernel = exact_kernel()
    step = max(1, SEARCH_CHUNK_BYTES // (vectors.shape[1] * vectors.shape[2] * 2))
    query_t = query[:, None].astype(np.float32)
    flat = np.concatenate([kernel.scores(vectors[i : i + step], query_t) for i in range(0, len(vectors), step)])
    return np.argpartition(-flat, count - 1)[:count]


_KERNEL = []


def exact_kernel():  # noqa: ANN201
    if not _KERNEL:
        from assoc.runtime.scoring.scan import ScanKernel

        _KERNEL.append(ScanKernel("misa", threads=1))
    return _KERNEL[0]


class Usearch:
    def __init__(self, dim: int, job: dict) -> None:
        from usearch.index import Index

        self.index = Index(
            ndim=dim, metric="ip", dtype="f16", connectivity=job["connectivity"], expansion_add=job["expansion_add"]
        )

    def add(self, vectors: np.ndarray, first: int, threads: int) -> None:
        self.index.add(np.arange(first, first + len(vectors)), vectors, threads=threads)

    def save(self, path: str) -> None:
        self.index.save(path)

    @classmethod
    def opened(cls, path: str, dim: int, view: bool) -> Usearch:
        from usearch.index import Index

        self = cls.__new__(cls)
        self.index = Index.restore(path, view=view)
        return self

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        self.index.expansion_search = count
        return self.index.search(query, count, threads=1).keys


class FaissHnsw:
    def __init__(self, dim: int, job: dict) -> None:
        import faiss

        self.index = faiss.IndexHNSWFlat(dim, job["connectivity"], faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = job["expansion_add"]

    def add(self, vectors: np.ndarray, first: int, threads: int) -> None:
        import faiss

        faiss.omp_set_num_threads(threads)
        self.index.add(vectors)

    def save(self, path: str) -> None:
        import faiss

        faiss.write_index(self.index, path)

    @classmethod
    def opened(cls, path: str, dim: int, view: bool) -> FaissHnsw:
        """view: the vectors memory-mapped (IO_FLAG_MMAP_IFC, read-only; the graph is read into memory)."""
        import faiss

        self = cls.__new__(cls)
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if view else 0
        self.index = faiss.read_index(path, flags)
        faiss.omp_set_num_threads(1)
        return self

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        self.index.hnsw.efSearch = count
        return self.index.search(query[None], count)[1][0]


class FaissIvf(FaissHnsw):
    def __init__(self, dim: int, job: dict) -> None:
        import faiss

        self.nlist = max(16, round(2 * np.sqrt(job["photos"])))
        self.quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(self.quantizer, dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
        self.nprobe = 1

    def train(self, vectors: np.ndarray, threads: int) -> None:
        """k-means on the first photos (up to 64 per list): a growing gallery would retrain as it grows."""
        import faiss

        faiss.omp_set_num_threads(threads)
        self.index.train(np.asarray(vectors[: 64 * self.nlist], np.float32))

    @classmethod
    def opened(cls, path: str, dim: int, view: bool) -> FaissIvf:
        self = super().opened(path, dim, view)
        self.nlist, self.nprobe = self.index.nlist, 1
        return self

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        self.index.nprobe = self.nprobe
        found = self.index.search(query[None], count)[1][0]
        return found[found >= 0]


class FaissIvf16(FaissIvf):
    """IVF with the vectors kept as float16 (IndexIVFScalarQuantizer QT_fp16): half the memory of IVF-Flat."""

    def __init__(self, dim: int, job: dict) -> None:
        import faiss

        super().__init__(dim, job)
        fp16, ip = faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        self.index = faiss.IndexIVFScalarQuantizer(self.quantizer, dim, self.nlist, fp16, ip)


class Hnswlib:
    def __init__(self, dim: int, job: dict) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=dim)
        self.index.init_index(max_elements=job["photos"], M=job["connectivity"], ef_construction=job["expansion_add"])

    def add(self, vectors: np.ndarray, first: int, threads: int) -> None:
        self.index.add_items(vectors, np.arange(first, first + len(vectors)), num_threads=threads)

    def save(self, path: str) -> None:
        self.index.save_index(path)

    @classmethod
    def opened(cls, path: str, dim: int, view: bool) -> Hnswlib:
        import hnswlib

        self = cls.__new__(cls)
        self.index = hnswlib.Index(space="ip", dim=dim)
        self.index.load_index(path)
        return self

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        self.index.set_ef(count)
        return self.index.knn_query(query, k=count, num_threads=1)[0][0]


CANDIDATES = {
    "exact": Exact,
    "usearch": Usearch,
    "faiss-hnsw": FaissHnsw,
    "faiss-ivf": FaissIvf,
    "faiss-ivf16": FaissIvf16,
    "hnswlib": Hnswlib,
}


# -------------------------------------------------------------------------------------------- workers


def run_worker(job: dict) -> dict:
    # onnxruntime before any ANN library: usearch 2.26.2-2.26.6 makes a later `import onnxruntime` segfault
    import onnxruntime  # noqa: F401

    return {"build": build_phase, "query": query_phase, "probe": probe_phase, "load": load_phase}[job["phase"]](job)


def rss_mb(kinds: tuple[str, ...] = ("RssAnon", "RssFile")) -> float:
    """Resident memory of this process in MB: anonymous (what a library allocates) and file-backed (the
    pages of memory-mapped files it has touched)."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return sum(int(fields[k].split()[0]) for k in kinds) / 1024


def save_atomic(candidate, path: str) -> float:  # noqa: ANN001
    """Save under a temporary name in the same folder, fsync it, rename it over path, fsync the folder:
    the order a gallery needs (a crash leaves the old file or the new one, never half of one)."""
    start = time.perf_counter()
    tmp = f"{path}.tmp-{os.getpid()}"
    candidate.save(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    folder = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return time.perf_counter() - start


def build_phase(job: dict) -> dict:
    vectors = np.load(job["vectors"], mmap_mode="r")
    n, dim = vectors.shape
    tail = 0 if job["library"] == "exact" else min(TAIL_MAX, int(n * TAIL))
    before = rss_mb(("RssAnon",))  # anonymous only: the vectors read from their memory map are file-backed
    candidate = CANDIDATES[job["library"]](dim, {**job, "photos": n})
    start = time.perf_counter()
    if hasattr(candidate, "train"):
        candidate.train(vectors, job["build_threads"])
    added = 0
    while added < n - tail:
        stop = min(n - tail, added + BUILD_CHUNK)
        candidate.add(np.asarray(vectors[added:stop], np.float32), added, job["build_threads"])
        added = stop
        if time.perf_counter() - start > job["build_limit"] and added < n - tail:
            seconds = time.perf_counter() - start
            return {"stopped": True, "added": added, "build_s": seconds, "bulk_per_s": added / seconds}
    bulk_s = time.perf_counter() - start
    tail_start = time.perf_counter()
    for first in range(n - tail, n, SYNTHETIC_BATCH):
        candidate.add(np.asarray(vectors[first : first + SYNTHETIC_BATCH], np.float32), first, 1)
    tail_s = time.perf_counter() - tail_start
    rss_build = rss_mb(("RssAnon",)) - before
    save_s = save_atomic(candidate, job["index"])
    return {
        "threads": job["build_threads"],
        "build_s": bulk_s + tail_s,
        "bulk_per_s": (n - tail) / bulk_s,
        "tail_per_s": tail / tail_s if tail else None,
        "save_s": save_s,
        "disk_bytes": os.path.getsize(job["index"]),
        "rss_build_mb": rss_build,
    }


def query_phase(job: dict) -> dict:
    queries = np.load(job["queries"])
    truth = np.load(job["truth"])
    exact_kernel()  # its session made before the RSS baseline: it is not the index's memory
    before = rss_mb()
    start = time.perf_counter()
    candidate = CANDIDATES[job["library"]].opened(job["index"], queries.shape[1], job["view"])
    load_ms = 1000 * (time.perf_counter() - start)
    rss_load = rss_mb() - before
    recalls = {}
    for count in job["shortlists"]:  # untimed, before the baseline's memory map is touched
        if isinstance(candidate, FaissIvf):
            candidate.nprobe = tune_nprobe(candidate, queries, truth, count, job["ivf_recall"])
        kept = [recall(candidate.search(q, count), t[:count]) for q, t in zip(queries, truth, strict=True)]
        recalls[count] = (kept, getattr(candidate, "nprobe", None))
    rss_after = rss_mb() - before  # with a view: the pages of its file that the searches touched
    pooled = np.load(job["vectors"], mmap_mode="r")[:, None, :]  # the baseline's memory map, timed beside
    rows = []
    for count, (kept, nprobe) in recalls.items():
        if nprobe is not None:
            candidate.nprobe = nprobe
        row = {"S": count, "recall": float(np.mean(kept)), "recall_min": float(np.min(kept))}
        row |= {"nprobe": nprobe} if nprobe is not None else {}
        rows.append(row | time_shortlist(candidate, pooled, queries, count, job))
    return {"load_ms": load_ms, "rss_load_mb": rss_load, "rss_after_mb": rss_after, "shortlists": rows}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return len(np.intersect1d(found, truth, assume_unique=True)) / len(truth)


def tune_nprobe(candidate: FaissIvf, queries: np.ndarray, truth: np.ndarray, count: int, target: float) -> int:
    """The least nprobe of 1, 2, 4, ... nlist whose mean recall@count over these queries reaches target."""
    nprobe = 1
    while nprobe < candidate.nlist:
        candidate.nprobe = nprobe
        kept = [recall(candidate.search(q, count), t[:count]) for q, t in zip(queries, truth, strict=True)]
        if np.mean(kept) >= target:
            return nprobe
        nprobe *= 2
    return candidate.nlist


def time_shortlist(candidate, pooled: np.ndarray, queries: np.ndarray, count: int, job: dict) -> dict:  # noqa: ANN001
    """p50/p95 of the candidate and of the exact scan, query by query in turn (which goes first
    alternates), over --rounds passes (fewer when one pass takes over --pass-limit seconds)."""
    candidate.search(queries[0], count)
    exact_search(pooled, queries[0], count)
    own, exact = [], []
    for round_ in range(job["rounds"]):
        pass_start = time.perf_counter()
        for i, q in enumerate(queries):
            for which in (0, 1) if (i + round_) % 2 == 0 else (1, 0):
                start = time.perf_counter()
                candidate.search(q, count) if which == 0 else exact_search(pooled, q, count)
                (own if which == 0 else exact).append(time.perf_counter() - start)
        if time.perf_counter() - pass_start > job["pass_limit"]:
            break
    theirs = percentiles_ms(exact)
    return percentiles_ms(own) | {"exact_p50_ms": theirs["p50_ms"], "exact_p95_ms": theirs["p95_ms"], "timed": len(own)}


# --------------------------------------------------------------------------------------- file story


def file_story(real: np.ndarray, args: argparse.Namespace, tmp: Path) -> dict:
    vectors = tmp / "probe-vectors.npy"
    np.save(vectors, real[: PROBE_VECTORS + 100])
    out = {}
    print("\nfile story (2,000 real vectors; damaged files loaded in a child process)")
    for library in (lib for lib in args.libraries if lib != "exact"):
        job = {"phase": "probe", "library": library, "vectors": str(vectors), "folder": str(tmp)}
        job |= {"connectivity": args.connectivity, "expansion_add": args.expansion_add, "build_threads": 1}
        out[library] = worker(job)
        for key, value in out[library].items():
            print(f"  {library:<12s} {key:<34s} {value}")
    return out


def attempt(fn) -> str:  # noqa: ANN001
    """'yes' (or what fn says) when fn works, else 'no: ' and the library's own first line."""
    try:
        return fn() or "yes"
    except Exception as e:  # noqa: BLE001  (what the library says is the finding)
        return f"no: {str(e).splitlines()[0][:100]}"


def probe_phase(job: dict) -> dict:
    """What each library's file can do, tried on a small index."""
    vectors = np.load(job["vectors"]).astype(np.float32)
    base, more = vectors[:PROBE_VECTORS], vectors[PROBE_VECTORS:]
    library, dim = job["library"], base.shape[1]
    path = os.path.join(job["folder"], f"probe.{library}")
    kind = CANDIDATES[library]
    candidate = kind(dim, {**job, "photos": PROBE_VECTORS})
    if hasattr(candidate, "train"):
        candidate.train(base, 1)
    candidate.add(base, 0, 1)
    out = {"save to temp name, fsync, rename": attempt(lambda: save_atomic(candidate, path) and None)}

    def reopen_add_save() -> None:
        again = kind.opened(path, dim, False)
        if library == "hnswlib":
            again.index.resize_index(PROBE_VECTORS + len(more))  # its capacity is fixed until resized
        again.add(more, PROBE_VECTORS, 1)
        save_atomic(again, path)

    out["reopen, add, save again"] = attempt(reopen_add_save)
    out["serialise to bytes in memory"] = attempt(lambda: serialise(candidate))
    child = {**job, "index": path, "dim": dim, "probe": base[0].tolist()}
    out["memory-mapped load, search"] = mapped(library, path, dim, base[0])
    if library in VIEWABLE:
        added = worker({**child, "phase": "load", "view": True, "add": True})
        out["add to the memory-mapped index"] = added.get("error") or added["outcome"]
    out["delete a photo"] = attempt(lambda: delete(candidate, base[0]))
    data = Path(path).read_bytes()
    damaged = {"truncated to half": data[: len(data) // 2], "one byte flipped at 3/4": flip(data, 3 * len(data) // 4)}
    for what, content in damaged.items():
        Path(path + ".bad").write_bytes(content)
        loaded = worker({**child, "phase": "load", "index": path + ".bad", "view": False, "add": False})
        out[f"load a file {what}"] = loaded.get("error") or loaded["outcome"]
    return out


def serialise(candidate) -> str:  # noqa: ANN001
    if isinstance(candidate, Usearch):
        return f"yes: Index.save() -> {len(candidate.index.save()):,} bytes"
    if isinstance(candidate, FaissHnsw):
        import faiss

        return f"yes: faiss.serialize_index -> {faiss.serialize_index(candidate.index).nbytes:,} bytes"
    import pickle

    return f"yes: pickle -> {len(pickle.dumps(candidate.index)):,} bytes (a copy of the whole index)"


def mapped(library: str, path: str, dim: int, vector: np.ndarray) -> str:
    if library not in VIEWABLE:
        ivf = library.startswith("faiss-ivf")
        return "no: " + ("IVF lists map only as OnDiskInvertedLists" if ivf else "no such API")
    view = CANDIDATES[library].opened(path, dim, True)
    return f"yes: photo 0's search returns {int(view.search(vector, 10)[0])} first"


def delete(candidate, vector: np.ndarray) -> str:  # noqa: ANN001
    if isinstance(candidate, Usearch):
        candidate.index.remove(0)
        how = "remove(key): a tombstone (compact=True or a rebuild reclaims it)"
    elif isinstance(candidate, Hnswlib):
        candidate.index.mark_deleted(0)
        how = "mark_deleted: a tombstone (allow_replace_deleted reuses the slot)"
    else:
        candidate.index.remove_ids(np.array([0], np.int64))
        how = "remove_ids"
    return f"yes: {how}" + ("" if 0 not in candidate.search(vector, 10) else " (BUT it is still returned)")


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def load_phase(job: dict) -> dict:
    """Open an index file (a damaged one, or memory-mapped to add to it) in a child process."""
    try:
        candidate = CANDIDATES[job["library"]].opened(job["index"], job["dim"], job["view"])
    except Exception as e:  # noqa: BLE001
        return {"outcome": f"refused: {str(e).splitlines()[0][:100]}"}
    vector = np.asarray(job["probe"], np.float32)
    if job["add"]:
        candidate.add(vector[None], 10**6, 1)
        return {"outcome": "yes"}
    return {"outcome": f"LOADED without complaint (photo 0's search returns {int(candidate.search(vector, 10)[0])})"}


if __name__ == "__main__":
    main()

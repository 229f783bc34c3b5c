"""Index photos on a Ray cluster into a store, with the one-machine indexer's semantics.

driver: plan_index (walk + diff with the store, once) -> Ray Data over the new and changed files:
  tasks:  prepare (hash; unless the store holds that content, decode + preprocess), the same function
          the local indexer runs in its thread pool, so a bad file gets the same reason;
  actors: a pool of ONNX Runtime sessions (ImageEncoder, loaded once per actor; `cuda` actors ask Ray
          for a GPU) encodes the pixels;
-> driver: run_stages, the local indexer's own loop, into its IndexWriter: stored grids for known
   content (renames, copies), the cluster's grids for the rest, one durable store.add per batch,
   removals last.

- One writer: the driver. Qdrant local mode locks its folder, and a store keeps one point layout,
  so a gallery indexed here is the one `index_paths` would have made.
- Workers read the photos by the driver's paths: they must see the same filesystem (a share).
- A batch is written as soon as it comes back; an interrupted run keeps what was written and the
  next run encodes only the rest. Ray retries tasks and restarts actors whose worker died.
- The store's content hashes go to the tasks once, as one sorted array in Ray's object store.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data

from ..runtime.encoding.bundle import Bundle, FirstStageConfig, VisualConfig, load_bundle
from ..runtime.encoding.default_model import shipped_bundle_path
from ..runtime.errors import AssocError, BundleError
from ..runtime.imaging.pillow_decode import DECODE_PEAK_BYTES
from ..runtime.indexing.indexer import (
    IndexSummary,
    IndexWriter,
    Prepared,
    ProgressCallback,
    photo_encoder,
    plan_index,
    prepare,
    run_stages,
    timed,
)
from ..runtime.indexing.lock import index_lock
from ..runtime.indexing.walk import PhotoFile
from ..runtime.scoring.first_stage import PhotoVectors
from ..runtime.stores.base import Store
from .cluster import LOCAL, check_address, connect

DECODE_CPUS = 0.5  # Ray CPUs a decoding task asks for: it also waits on file reads
# Decoding a photo takes about a fifth of the CPU time of encoding it (bench/README.md,
# index_throughput), so by default encoders get this share of the cluster's CPUs.
ENCODE_SHARE = 0.8
_NONE = np.zeros((0, 0, 0), dtype=np.float32)  # a row without pixels (ragged columns keep ndim)
# The encoder's output columns (PhotoVectors' fields), and an empty row of each for a file not encoded.
VECTOR_COLUMNS = {
    name: np.zeros((0,) * ndim, np.float16) for name, ndim in (("grid", 3), ("pooled", 1), ("centroids", 2))
}


def index_on_cluster(
    store: Store,
    bundle: Bundle,
    paths: Sequence[str | Path],
    *,
    cluster: str = LOCAL,
    device: str = "cpu",
    workers: int | None = None,
    worker_cpus: float = 1.0,
    batch_size: int = 32,
    exclude: Sequence[str] = (),
    on_progress: ProgressCallback | None = None,
) -> IndexSummary:
    """Index the photos under `paths` into `store`, encoding on the Ray cluster at `cluster`.

    cluster: a Ray address ("auto", "HOST:PORT", "ray://HOST:PORT") or LOCAL (a Ray instance on this
    machine for the run); an already initialised Ray is used as it is. device: "cpu", "cuda" (each
    encoder actor asks Ray for one GPU) or "auto" (cuda when the cluster has GPUs). workers: encoder
    actors (default: one per GPU, or ENCODE_SHARE of the cluster's CPUs over worker_cpus), each with
    worker_cpus Ray CPUs and as many ONNX Runtime threads. on_progress(done, total) counts the new and
    changed files; it is called once with done=0, then after each file taken (as index_paths).
    """
    check_address(cluster)
    if bundle.config.embed_dim != store.embed_dim or bundle.bundle_id != store.bundle_id:
        raise BundleError(f"the store holds model {store.bundle_id}, not {bundle.bundle_id}")
    with index_lock(store):  # one run at a time per gallery, as index_paths
        return _index_on_cluster(
            store, bundle, paths, cluster, device, workers, worker_cpus, batch_size, exclude, on_progress
        )


def _index_on_cluster(
    store: Store,
    bundle: Bundle,
    paths: Sequence[str | Path],
    cluster: str,
    device: str,
    workers: int | None,
    worker_cpus: float,
    batch_size: int,
    exclude: Sequence[str],
    on_progress: ProgressCallback | None,
) -> IndexSummary:
    plan = plan_index(store, paths, exclude)
    writer = IndexWriter(store, plan, bundle.config.visual, _DriverEncoder(bundle, store.first_stage))
    if not plan.todo:
        return run_stages(writer, [], 0, batch_size, on_progress)
    with connect(cluster):
        stages = (bundle, store.first_stage)
        work = _encoded(plan.todo, writer.by_hash, stages, device, workers, worker_cpus, batch_size)
        with closing(work) as batches:  # an interrupted run stops the cluster's work at once
            prepared = _timed_items(batches, writer.summary)
            return run_stages(writer, prepared, len(plan.todo), batch_size, on_progress)


def _timed_items(batches: Iterator[list[Prepared]], summary: IndexSummary) -> Iterator[Prepared]:
    """The cluster's batches as one stream of files, the driver's wait for each counted as "cluster"."""
    while True:
        with timed(summary, "cluster"):
            items = next(batches, None)
        if items is None:
            return
        yield from items


def _encoded(
    files: list[PhotoFile],
    stored: dict[str, Any],
    stages: tuple[Bundle, FirstStageConfig],
    device: str,
    workers: int | None,
    worker_cpus: float,
    batch_size: int,
) -> Iterator[list[Prepared]]:
    """The files, prepared by Ray tasks and encoded by an actor pool (which also derives the vectors the
    store keeps by `stages`' first-stage reduction), a batch at a time, in any order."""
    bundle, first_stage = stages
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), int(resources.get("GPU", 0))
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    room = int((cpus - DECODE_CPUS) // worker_cpus)  # actors that leave a decoding task its CPUs: no deadlock
    if device == "cuda":
        room = min(room, gpus)
    if workers is None:
        workers = room if device == "cuda" else min(room, int(cpus * ENCODE_SHARE / worker_cpus))
    if not 1 <= workers <= room:
        raise AssocError(
            f"the Ray cluster ({cpus:g} CPUs, {gpus} GPUs) has room for {max(room, 0)} encoder actors of "
            f"{worker_cpus:g} CPUs{' and a GPU' if device == 'cuda' else ''} beside decoding ({DECODE_CPUS:g} CPUs "
            f"a task), not {max(workers, 1)}"
        )
    workers = min(workers, math.ceil(len(files) / batch_size))  # an actor beyond one per batch would only wait
    hashes = np.array(sorted(h.encode() for h in stored), dtype=np.bytes_) if stored else np.array([], dtype="S1")
    rows = [{"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns} for f in files]
    dataset = (
        ray.data.from_items(rows, override_num_blocks=math.ceil(len(files) / batch_size))
        .map_batches(
            _prepare_batch,
            batch_size=batch_size,
            num_cpus=DECODE_CPUS,
            memory=DECODE_PEAK_BYTES,  # a photo at the megapixel cap: Ray runs no more decodes than a node holds
            fn_kwargs={"config": bundle.config.visual, "stored": [ray.put(hashes)]},
        )
        .map_batches(
            _Encoder,
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=worker_cpus,
            num_gpus=1 if device == "cuda" else 0,
            fn_constructor_kwargs={
                "root": str(bundle.root),
                "bundle_id": bundle.bundle_id,
                "device": device,
                "threads": max(1, round(worker_cpus)),
                "first_stage": first_stage,
            },
        )
    )
    batches = iter(dataset.iter_batches(batch_size=batch_size, batch_format="numpy"))  # a generator
    try:
        for batch in batches:
            yield _items(batch)
    except ray.exceptions.RayError as exc:
        raise _cluster_error(exc) from None
    finally:
        batches.close()  # an interrupted run stops the cluster's work too


def _prepare_batch(batch: dict[str, np.ndarray], config: VisualConfig, stored: list[Any]) -> dict[str, Any]:
    """A Ray task: the local indexer's prepare on each file of a batch."""
    hashes = _SortedHashes(ray.get(stored[0]))
    columns = zip(batch["path"], batch["size"], batch["mtime_ns"], strict=True)
    items = [prepare(PhotoFile(str(p), int(s), int(m)), config, hashes) for p, s, m in columns]
    return {
        "path": batch["path"],
        "size": batch["size"],
        "mtime_ns": batch["mtime_ns"],
        "content_hash": np.array([item.content_hash for item in items], dtype=object),
        "error": np.array([item.error or "" for item in items], dtype=object),
        "width": np.array([item.size[0] for item in items], dtype=np.int64),
        "height": np.array([item.size[1] for item in items], dtype=np.int64),
        "taken": np.array([item.taken for item in items], dtype=object),  # None where no date was read
        "pixels": [_NONE if item.pixels is None else item.pixels for item in items],
    }


class _Encoder:
    """A Ray actor: one ONNX Runtime session, loaded once, encoding the rows that carry pixels into the
    vectors a store keeps (runtime.indexing.indexer.photo_encoder, as the local indexer does)."""

    def __init__(self, root: str, bundle_id: str, device: str, threads: int, first_stage: FirstStageConfig) -> None:
        from ..runtime.encoding.encoders import ImageEncoder

        encoder = ImageEncoder(_worker_bundle(root, bundle_id), device=device, threads=threads)
        self.encode = photo_encoder(encoder, first_stage)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        pixels = batch.pop("pixels")
        todo = [i for i, p in enumerate(pixels) if p.size]
        columns: dict[str, list[Any]] = {name: [empty] * len(pixels) for name, empty in VECTOR_COLUMNS.items()}
        if todo:
            for i, vectors in zip(todo, self.encode(np.stack([pixels[i] for i in todo])), strict=True):
                for name in VECTOR_COLUMNS:
                    columns[name][i] = getattr(vectors, name)
        batch.update(columns)
        return batch


class _DriverEncoder:
    """Encodes on the driver, made on first use: only for a file whose stored twin vanished while the
    cluster worked (the writer then decodes and encodes it itself)."""

    def __init__(self, bundle: Bundle, first_stage: FirstStageConfig) -> None:
        self.bundle = bundle
        self.first_stage = first_stage
        self.encode: Any = None

    def __call__(self, batch: np.ndarray) -> list[PhotoVectors]:
        if self.encode is None:
            from ..runtime.encoding.encoders import ImageEncoder

            self.encode = photo_encoder(ImageEncoder(self.bundle, device="cpu"), self.first_stage)
        return self.encode(batch)


class _SortedHashes:
    """`in` over a sorted array of content hashes (bytes): a binary search, no set to build per task."""

    def __init__(self, hashes: np.ndarray) -> None:
        self.hashes = hashes

    def __contains__(self, content_hash: object) -> bool:
        key = str(content_hash).encode()
        i = int(np.searchsorted(self.hashes, key))
        return i < len(self.hashes) and self.hashes[i] == key


def _worker_bundle(root: str, bundle_id: str) -> Bundle:
    """The driver's bundle as this worker sees it: at the same path (a shared filesystem), else the one
    shipped with assoc on this node when it is the same model."""
    for candidate in (Path(root), shipped_bundle_path()):
        if candidate is not None and (candidate / "config.json").is_file():
            bundle = load_bundle(candidate)
            if bundle.bundle_id == bundle_id:
                return bundle
    raise BundleError(f"a Ray worker has no model {bundle_id}: put the bundle {root} on a filesystem all nodes share")


def _items(batch: dict[str, Any]) -> list[Prepared]:
    vectors = zip(*(batch[name] for name in VECTOR_COLUMNS), strict=True)
    return [
        Prepared(
            PhotoFile(str(path), int(size), int(mtime_ns)),
            str(content_hash),
            size=(int(width), int(height)),
            error=str(error) or None,
            vectors=PhotoVectors(*(np.asarray(v) for v in photo)) if np.size(photo[0]) else None,
            taken=None if taken is None else int(taken),
        )
        for path, size, mtime_ns, content_hash, width, height, error, taken, photo in zip(
            batch["path"],
            batch["size"],
            batch["mtime_ns"],
            batch["content_hash"],
            batch["width"],
            batch["height"],
            batch["error"],
            batch["taken"],
            vectors,
            strict=True,
        )
    ]


def _cluster_error(exc: BaseException) -> AssocError:
    """One line for a failure on the cluster; an assoc error raised there (a missing bundle, a device the
    workers lack) as it was, or by its message where Ray could not carry the exception back."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, AssocError):
        return cause
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    line = next((line for line in reversed(lines) if "Error:" in line), lines[-1] if lines else type(exc).__name__)
    ours = re.match(r"assoc\.[\w.]+: (.*)", line)
    return AssocError(f"the Ray cluster failed: {ours.group(1) if ours else line}")

"""Incremental indexing: bring a store in line with the photos under some paths.

walk -> diff with the store by (size, mtime_ns) -> for new and changed files, in a thread pool: content
hash, then (unless a stored photo has that content) decode and preprocess -> the visual encoder in
batches on the calling thread, which also derives every vector a store keeps of a photo (its grid,
global vector and first-stage centroids: photo_encoder) -> store.add, one durable commit per batch.

- Decoding runs ahead in the pool while ONNX Runtime encodes the previous batch, so both keep cores busy.
- A photo whose content is already stored (renamed, copied, or only touched) takes the stored grid.
- Each file travels through the batch with its own pixels; a file that cannot be read or decoded is
  set aside with a reason and never takes another file's place in a batch.
- Photos gone from under the walked folders are removed last (after renames have taken their grids);
  nothing outside the walked folders, under an unreadable folder or under a missing path is removed.
  Nor under a named folder that is suddenly empty (an unmounted disk, a disconnected share): its
  photos stay and the summary names it in `kept_in_empty`. A named folder that still holds anything
  (a file of any kind, a subfolder) counts as looked at, and photos gone from it are removed.
- Each photo's date taken (EXIF, else its file time: assoc.runtime.imaging.dates) is read with its hash
  and stored with its record. Unchanged photos stored before dates were kept have theirs read (the
  file's header only, never decoded or encoded) and recorded, DATE_BATCH to a commit (set_dates).
- A killed run loses at most the batch in flight; the next run starts where it stopped.
- One run at a time writes a gallery (lock.py): a second one at once is refused, not run twice over.

The stages are public so that other executors share them (assoc.distributed encodes on a Ray cluster):
`plan_index` (walk and diff, once), the reader `prepare` (hash, then decode unless the content is
stored: the per-file work), the mapper `photo_encoder` and the writer `IndexWriter` (reuse stored
grids, encode or take grids encoded elsewhere, one commit per batch, removals last); `run_stages` is
the one loop that drives them, whichever executor prepared the files.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..encoding.bundle import FirstStageConfig, VisualConfig
from ..errors import DiskFullError, ImageLoadError
from ..imaging.dates import date_taken
from ..imaging.files import NotRegularFileError
from ..imaging.images import load_image
from ..imaging.pillow_decode import DECODE_PEAK_BYTES
from ..imaging.preprocess import preprocess
from ..scoring.first_stage import PhotoVectors, photo_vectors
from ..stores.base import PhotoRecord, Store
from .fileinfo import hash_content
from .lock import index_lock
from .walk import PhotoFile, walk

if TYPE_CHECKING:  # onnxruntime loads with the encoder, which the caller makes
    from ..encoding.encoders import ImageEncoder

ProgressCallback = Callable[[int, int], None]
MAX_WORKERS = 8  # decoding threads by default; more rarely helps the encoder that they feed
EncodePhotos = Callable[[np.ndarray], list[PhotoVectors]]  # (N, 3, H, W) pixels -> what a store keeps of each
DATE_BATCH = 500  # dates of unchanged photos recorded per commit
STAGES = ("walk", "read", "encode", "write", "cluster")  # reader -> mapper -> writer, as IndexSummary.seconds has them
_STAGE_LOCK = threading.Lock()  # pool threads add their read time to one summary


@contextmanager
def timed(summary: IndexSummary, stage: str) -> Iterator[None]:
    """Add the time the block takes to summary.seconds[stage] (any thread)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        with _STAGE_LOCK:
            summary.seconds[stage] = summary.seconds.get(stage, 0.0) + elapsed


@dataclass
class IndexSummary:
    added: int = 0  # new photos, encoded
    updated: int = 0  # known paths whose content changed, encoded again
    reused: int = 0  # new or changed paths whose content was already stored (renames, copies, touches)
    removed: int = 0  # records dropped: photos gone, or changed into something unreadable
    unchanged: int = 0
    dated: int = 0  # of the unchanged, photos stored before dates were kept whose date taken was read
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    # Seconds spent in each stage (STAGES); "read" (hashing, decoding) is summed over the pool's threads,
    # "cluster" is the driver's wait for a Ray cluster's read and encode.
    seconds: dict[str, float] = field(default_factory=dict)
    kept_in_empty: list[tuple[str, int]] = field(default_factory=list)  # (empty named folder, photos kept)


@dataclass(frozen=True)
class Prepared:
    """One file after `prepare`: content that is stored (no pixels), pixels to encode, or an error.
    `vectors` is set when the file was encoded elsewhere (on a cluster) before it reached the writer."""

    file: PhotoFile
    content_hash: str = ""
    pixels: np.ndarray | None = None
    size: tuple[int, int] = (0, 0)  # (width, height) of the photo as displayed
    error: str | None = None
    vectors: PhotoVectors | None = None
    taken: int | None = None  # Unix seconds (assoc.runtime.imaging.dates)


@dataclass
class IndexPlan:
    """What a run has to do, decided from the walk and the store's records before any file is read."""

    known: dict[str, PhotoRecord]  # the store's records, by path
    todo: list[PhotoFile]  # new and changed files, sorted by path
    gone: list[str]  # stored photos no longer on disk under the walked folders
    summary: IndexSummary  # so far: the walk's skipped entries, unchanged, kept_in_empty
    undated: list[PhotoFile] = field(default_factory=list)  # unchanged files stored without a date taken


def index_paths(
    store: Store,
    encoder: ImageEncoder,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    exclude: Sequence[str] = (),
    on_progress: ProgressCallback | None = None,
) -> IndexSummary:
    """Index the photos under `paths` into `store`.

    on_progress(done, total) counts the new and changed files (unchanged ones cost nothing); it is
    called once with done=0, then after each file. One run at a time per gallery: another process's
    run on it is a GalleryIndexingError (assoc.runtime.indexing.lock).
    """
    with index_lock(store):
        return _index_paths(store, encoder, paths, batch_size, workers, exclude, on_progress)


def _index_paths(
    store: Store,
    encoder: ImageEncoder,
    paths: Sequence[str | Path],
    batch_size: int,
    workers: int | None,
    exclude: Sequence[str],
    on_progress: ProgressCallback | None,
) -> IndexSummary:
    plan = plan_index(store, paths, exclude)
    writer = IndexWriter(store, plan, encoder.config, photo_encoder(encoder, store.first_stage))
    workers = workers or default_workers()
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        window = batch_size + 2 * workers  # decoded ahead: the next batch and then some
        prepared = _in_order(pool, writer.prepare, plan.todo, window)
        return run_stages(writer, prepared, len(plan.todo), batch_size, on_progress)
    finally:
        pool.shutdown(cancel_futures=True)


def run_stages(
    writer: IndexWriter,
    prepared: Iterable[Prepared],
    total: int,
    batch_size: int,
    on_progress: ProgressCallback | None = None,
) -> IndexSummary:
    """The one loop of every executor: files prepared by the reader stage (and encoded by the mapper
    stage when that ran elsewhere) go to the writer, batch_size to a commit; unreadable ones are set
    aside; removals come last (IndexWriter.finish). Here (a thread pool) and on a Ray cluster alike.

    on_progress(done, total) is called once with done=0, then after each file taken."""
    if on_progress:
        on_progress(0, total)
    first_skip = len(writer.summary.skipped)  # the walk's, in its own order
    batch: list[Prepared] = []
    try:
        for done, item in enumerate(prepared, 1):
            if item.error is None:
                batch.append(item)
            else:
                writer.skip(item)
            if len(batch) >= batch_size:
                writer.store_batch(batch)
                batch = []
            if on_progress:
                on_progress(done, total)
        writer.store_batch(batch)
    except DiskFullError as exc:  # what was stored stays: say how far the run got
        stored = writer.summary.added + writer.summary.updated + writer.summary.reused
        raise DiskFullError(exc.where, stored, total) from None
    writer.summary.skipped[first_skip:] = sorted(writer.summary.skipped[first_skip:])  # path order, any executor
    return writer.finish()


def default_workers() -> int:
    """Decoding threads: one per core, at most MAX_WORKERS, and no more than the memory available can
    hold if each decodes a photo at the megapixel cap at once (DECODE_PEAK_BYTES)."""
    cores = min(MAX_WORKERS, os.cpu_count() or 1)
    available = available_memory()
    return cores if available is None else max(1, min(cores, available // DECODE_PEAK_BYTES))


def available_memory() -> int | None:
    """Bytes this process can still take: the kernel's MemAvailable, or less under a cgroup (container)
    limit; None where neither can be read (not Linux)."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as fh:
            found += [int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, min(found)) if found else None


def plan_index(store: Store, paths: Sequence[str | Path], exclude: Sequence[str] = ()) -> IndexPlan:
    """Walk `paths` and diff the photos found with the store's records by (size, mtime_ns)."""
    started = time.perf_counter()
    found = walk(paths, exclude)
    known = store.records()
    summary = IndexSummary(skipped=list(found.skipped))
    todo, undated = [], []
    for file in found.files:
        record = known.get(file.path)
        if record is not None and (record.size, record.mtime_ns) == (file.size, file.mtime_ns):
            summary.unchanged += 1
            if record.taken is None:
                undated.append(file)
        else:
            todo.append(file)
    present = {file.path for file in found.files}
    gone: list[str] = []
    kept: dict[str, int] = {}
    for path in known:
        if path in present or not found.covers(path):
            continue
        empty = found.empty_folder_of(path)
        if empty is None:
            gone.append(path)
        else:
            kept[empty] = kept.get(empty, 0) + 1
    summary.kept_in_empty = sorted(kept.items())
    summary.seconds["walk"] = time.perf_counter() - started
    return IndexPlan(known, todo, gone, summary, undated)


def prepare(file: PhotoFile, config: VisualConfig, stored: Container[str]) -> Prepared:
    """Hash a file and read its date taken; unless `stored` holds that content hash (its grid will be
    taken from the store), decode and preprocess it. Never raises for a bad file: the reason is in
    `error`."""
    if file.size == 0:
        return Prepared(file, error="empty file")
    try:
        content_hash = hash_content(file.path)
    except NotRegularFileError as exc:  # replaced by a pipe or a device since the walk
        return Prepared(file, error=str(exc))
    except OSError as exc:
        return Prepared(file, error=f"cannot read ({exc.strerror or exc})")
    taken = date_taken(file.path, file.mtime_ns)
    if content_hash in stored:
        return Prepared(file, content_hash, taken=taken)
    return replace(decode(file, content_hash, config), taken=taken)


def decode(file: PhotoFile, content_hash: str, config: VisualConfig) -> Prepared:
    """Load a photo (EXIF orientation, decompression-bomb guard) and preprocess it for the encoder."""
    height, width = config.image_size
    try:
        loaded = load_image(file.path, min_size=(width, height))
        pixels = preprocess(loaded.image, config)
    except ImageLoadError as exc:
        return Prepared(file, content_hash, error=_without_path(str(exc), file.path))
    except Exception as exc:  # noqa: BLE001 - decoders raise many types; one odd file must not end a run
        return Prepared(file, content_hash, error=f"cannot decode ({type(exc).__name__}: {exc})")
    return Prepared(file, content_hash, pixels=pixels, size=(loaded.width, loaded.height))


def photo_encoder(encoder: ImageEncoder, first_stage: FirstStageConfig) -> EncodePhotos:
    """The encoding stage: a batch of pixels -> each photo's grid, global vector and centroids, derived
    where the pixels are encoded (here, or a Ray worker) so that a store only stores."""

    def encode(batch: np.ndarray) -> list[PhotoVectors]:
        grids, globals_ = encoder.encode_with_globals(batch)
        return photo_vectors(grids, first_stage, globals_)

    return encode


class IndexWriter:
    """Writes one run's prepared files into the store and keeps its summary. Pool threads may call
    prepare, which reads by_hash; only the writing thread (store_batch) writes it."""

    def __init__(self, store: Store, plan: IndexPlan, config: VisualConfig, encode: EncodePhotos) -> None:
        self.store = store
        self.config = config
        self.encode = encode
        self.known = plan.known
        self.gone = list(plan.gone)
        self.undated = list(plan.undated)
        self.summary = plan.summary
        self.by_hash: dict[str, PhotoRecord] = {}
        for record in sorted(self.known.values(), key=lambda r: r.path):
            self.by_hash.setdefault(record.content_hash, record)

    def prepare(self, file: PhotoFile) -> Prepared:
        with timed(self.summary, "read"):
            return prepare(file, self.config, self.by_hash)

    def skip(self, item: Prepared) -> None:
        """Set aside a file that could not be read or decoded."""
        self.summary.skipped.append((item.file.path, str(item.error)))
        if item.file.path in self.known:  # changed into something unreadable: the grid is stale
            self.gone.append(item.file.path)

    def finish(self) -> IndexSummary:
        """Record the dates of unchanged photos stored without one, then remove the photos that are gone
        (after renames have taken their grids)."""
        with timed(self.summary, "write"):
            self.learn_dates()
            self.store.remove(sorted(self.gone))
        self.summary.removed = len(self.gone)
        return self.summary

    def learn_dates(self) -> None:
        """The dates taken of the plan's undated photos, read in a thread pool (headers only) and
        recorded DATE_BATCH to a commit: a killed run keeps what it committed."""
        if not self.undated:
            return
        with ThreadPoolExecutor(max_workers=default_workers()) as pool:
            for start in range(0, len(self.undated), DATE_BATCH):
                files = self.undated[start : start + DATE_BATCH]
                taken = pool.map(lambda f: date_taken(f.path, f.mtime_ns), files)
                self.store.set_dates({f.path: t for f, t in zip(files, taken, strict=True)})
                self.summary.dated += len(files)
        self.undated = []

    def store_batch(self, batch: list[Prepared]) -> None:
        """Take stored vectors for known content, encode the rest (unless encoded elsewhere), and add the
        batch in one commit. The summary counts a photo once the commit holds it."""
        items: list[tuple[PhotoRecord, PhotoVectors]] = []
        reused = 0
        to_encode: list[Prepared] = []
        encoded: list[tuple[Prepared, PhotoVectors]] = []
        for item in batch:
            same_as = self.by_hash.get(item.content_hash)  # also a copy met earlier in this run
            stored = self.store.get_vectors(same_as.path) if same_as is not None else None
            if stored is not None:
                items.append((_record(item, same_as.grid, (same_as.width, same_as.height)), stored))
                reused += 1
                continue
            if item.vectors is not None:
                encoded.append((item, item.vectors))
                continue
            if item.pixels is None:  # its stored twin was removed by someone else meanwhile
                item = replace(decode(item.file, item.content_hash, self.config), taken=item.taken)
                if item.error is not None:
                    self.skip(item)
                    continue
            to_encode.append(item)
        if to_encode:
            with timed(self.summary, "encode"):
                made = self.encode(np.stack([item.pixels for item in to_encode]))
            encoded += zip(to_encode, made, strict=True)
        for item, vectors in encoded:
            items.append((_record(item, vectors.grid.shape[:2], item.size), vectors))
        if items:
            with timed(self.summary, "write"):
                self.store.add(items)
        updated = sum(item.file.path in self.known for item, _ in encoded)
        self.summary.reused += reused
        self.summary.updated += updated
        self.summary.added += len(encoded) - updated
        for record, _ in items:
            self.by_hash.setdefault(record.content_hash, record)


def _in_order(
    pool: ThreadPoolExecutor, fn: Callable[[PhotoFile], Prepared], files: list[PhotoFile], window: int
) -> Iterator[Prepared]:
    """fn over files in the pool, results in input order, at most `window` files in flight."""
    futures: deque[Future[Prepared]] = deque()
    queue = iter(files)
    for file in queue:
        futures.append(pool.submit(fn, file))
        if len(futures) >= window:
            break
    while futures:
        result = futures.popleft().result()
        for file in queue:
            futures.append(pool.submit(fn, file))
            break
        yield result


def _record(item: Prepared, grid: tuple[int, int], size: tuple[int, int]) -> PhotoRecord:
    return PhotoRecord(
        path=item.file.path,
        size=item.file.size,
        mtime_ns=item.file.mtime_ns,
        content_hash=item.content_hash,
        grid=(int(grid[0]), int(grid[1])),
        width=size[0],
        height=size[1],
        taken=item.taken,
    )


def _without_path(message: str, path: str) -> str:
    """ImageLoadError messages start with the path; the summary keeps path and reason apart."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message

"""Incremental indexing: bring a store in line with the photos under some paths.

walk -> diff with the store by (size, mtime_ns) -> for new and changed files, in a thread pool: partial
hash, then (unless a stored photo has that content) decode and preprocess -> the visual encoder in
batches on the calling thread -> store.add, one durable commit per batch.

- Decoding runs ahead in the pool while ONNX Runtime encodes the previous batch, so both keep cores busy.
- A photo whose content is already stored (renamed, copied, or only touched) takes the stored grid.
- Each file travels through the batch with its own pixels; a file that cannot be read or decoded is
  set aside with a reason and never takes another file's place in a batch.
- Photos gone from under the walked folders are removed last (after renames have taken their grids);
  nothing outside the walked folders, under an unreadable folder or under a missing path is removed.
  Nor under a named folder that is suddenly empty (an unmounted disk, a disconnected share): its
  photos stay and the summary names it in `kept_in_empty`. A named folder that still holds anything
  (a file of any kind, a subfolder) counts as looked at, and photos gone from it are removed.
- A killed run loses at most the batch in flight; the next run starts where it stopped.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .encoders import ImageEncoder
from .errors import ImageLoadError
from .fileinfo import partial_hash
from .images import load_image
from .store import PhotoRecord, Store
from .walk import PhotoFile, walk

ProgressCallback = Callable[[int, int], None]


@dataclass
class IndexSummary:
    added: int = 0  # new photos, encoded
    updated: int = 0  # known paths whose content changed, encoded again
    reused: int = 0  # new or changed paths whose content was already stored (renames, copies, touches)
    removed: int = 0  # records dropped: photos gone, or changed into something unreadable
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    kept_in_empty: list[tuple[str, int]] = field(default_factory=list)  # (empty named folder, photos kept)


@dataclass(frozen=True)
class _Prepared:
    """One file after the pool is done with it: a stored match, pixels to encode, or an error."""

    file: PhotoFile
    content_hash: str = ""
    same_as: PhotoRecord | None = None
    pixels: np.ndarray | None = None
    size: tuple[int, int] = (0, 0)  # (width, height) of the photo as displayed
    error: str | None = None


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
    called once with done=0, then after each file.
    """
    found = walk(paths, exclude)
    run = _Run(store, encoder, IndexSummary(skipped=list(found.skipped)))
    todo = []
    for file in found.files:
        record = run.known.get(file.path)
        if record is not None and (record.size, record.mtime_ns) == (file.size, file.mtime_ns):
            run.summary.unchanged += 1
        else:
            todo.append(file)
    present = {file.path for file in found.files}
    gone: list[str] = []
    kept: dict[str, int] = {}
    for path in run.known:
        if path in present or not found.covers(path):
            continue
        empty = found.empty_folder_of(path)
        if empty is None:
            gone.append(path)
        else:
            kept[empty] = kept.get(empty, 0) + 1
    run.summary.kept_in_empty = sorted(kept.items())

    if on_progress:
        on_progress(0, len(todo))
    workers = workers or min(8, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        batch: list[_Prepared] = []
        window = batch_size + 2 * workers  # decoded ahead: the next batch and then some
        for done, item in enumerate(_in_order(pool, run.prepare, todo, window), 1):
            if item.error is None:
                batch.append(item)
            else:
                run.summary.skipped.append((item.file.path, item.error))
                if item.file.path in run.known:  # changed into something unreadable: the grid is stale
                    gone.append(item.file.path)
            if len(batch) >= batch_size:
                run.store_batch(batch)
                batch = []
            if on_progress:
                on_progress(done, len(todo))
        run.store_batch(batch)
    finally:
        pool.shutdown(cancel_futures=True)
    store.remove(sorted(gone))
    run.summary.removed = len(gone)
    return run.summary


class _Run:
    """The state of one index run. Pool threads call prepare, which reads by_hash; only the calling
    thread (store_batch) writes it."""

    def __init__(self, store: Store, encoder: ImageEncoder, summary: IndexSummary) -> None:
        self.store = store
        self.encoder = encoder
        self.summary = summary
        self.known = store.records()
        self.by_hash: dict[str, PhotoRecord] = {}
        for record in sorted(self.known.values(), key=lambda r: r.path):
            self.by_hash.setdefault(record.content_hash, record)
        height, width = encoder.config.image_size
        self.min_size = (width, height)

    def prepare(self, file: PhotoFile) -> _Prepared:
        if file.size == 0:
            return _Prepared(file, error="empty file")
        try:
            content_hash = partial_hash(file.path)
        except OSError as exc:
            return _Prepared(file, error=f"cannot read ({exc.strerror or exc})")
        same_as = self.by_hash.get(content_hash)
        if same_as is not None:
            return _Prepared(file, content_hash, same_as=same_as)
        return self.decode(file, content_hash)

    def decode(self, file: PhotoFile, content_hash: str) -> _Prepared:
        try:
            loaded = load_image(file.path, min_size=self.min_size)
            pixels = self.encoder.prepare(loaded.image)
        except ImageLoadError as exc:
            return _Prepared(file, content_hash, error=_without_path(str(exc), file.path))
        except Exception as exc:  # noqa: BLE001 - decoders raise many types; one odd file must not end a run
            return _Prepared(file, content_hash, error=f"cannot decode ({type(exc).__name__}: {exc})")
        return _Prepared(file, content_hash, pixels=pixels, size=(loaded.width, loaded.height))

    def store_batch(self, batch: list[_Prepared]) -> None:
        """Take stored grids for known content, encode the rest, and add the batch in one commit."""
        items: list[tuple[PhotoRecord, np.ndarray]] = []
        to_encode: list[_Prepared] = []
        for item in batch:
            same_as = item.same_as or self.by_hash.get(item.content_hash)  # also a copy met earlier in this run
            grid = self.store.get_grid(same_as.path) if same_as is not None else None
            if grid is not None:
                items.append((_record(item, same_as.grid, (same_as.width, same_as.height)), grid))
                self.summary.reused += 1
                continue
            if item.pixels is None:  # its stored twin was removed by someone else meanwhile
                item = self.decode(item.file, item.content_hash)
                if item.error is not None:
                    self.summary.skipped.append((item.file.path, item.error))
                    continue
            to_encode.append(item)
        if to_encode:
            grids = self.encoder.encode_arrays(np.stack([item.pixels for item in to_encode]))
            for item, grid in zip(to_encode, grids, strict=True):
                items.append((_record(item, grid.shape[:2], item.size), grid))
                if item.file.path in self.known:
                    self.summary.updated += 1
                else:
                    self.summary.added += 1
        if items:
            self.store.add(items)
        for record, _ in items:
            self.by_hash.setdefault(record.content_hash, record)


def _in_order(
    pool: ThreadPoolExecutor, fn: Callable[[PhotoFile], _Prepared], files: list[PhotoFile], window: int
) -> Iterator[_Prepared]:
    """fn over files in the pool, results in input order, at most `window` files in flight."""
    futures: deque[Future[_Prepared]] = deque()
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


def _record(item: _Prepared, grid: tuple[int, int], size: tuple[int, int]) -> PhotoRecord:
    return PhotoRecord(
        path=item.file.path,
        size=item.file.size,
        mtime_ns=item.file.mtime_ns,
        content_hash=item.content_hash,
        grid=(int(grid[0]), int(grid[1])),
        width=size[0],
        height=size[1],
    )


def _without_path(message: str, path: str) -> str:
    """ImageLoadError messages start with the path; the summary keeps path and reason apart."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message

"""What a search reads of the built-in gallery's database, loaded as late and as little as it can be.

A search of a gallery of a million photos should not read a million rows of SQLite before it
answers. So the snapshot has three depths, each loaded when a search first needs it and kept until
a commit shows in PRAGMA data_version (a write of this process drops it at once):

    Snapshot   the photo count, the shards and the cells (gallery_cells.py) with their sizes
    parts      every live row's place, checksum and cell, shard by shard: numbers only (a search
               of a gallery without cells, `check`)
    labels     every row's path and date taken, read with the parts (a filter, an exact search,
               `check`, duplicates)

An unfiltered search of a partitioned gallery loads no parts at all: the rows of the cells nearest
the query come through the photos_cell index (probed_parts). Where a search holds no labels, the
paths of the photos whose grids it reads come through the place index (paths_at). A (shard, row)
never changes owner while its photo is live (rows are appended; shard ids are never reused; a row
that a killed writer's cleanup gave back has a new checksum), so a path looked up late, with its
checksum, names the photo whose bytes were read, or nothing where another process has committed
since: that photo is then left out, as a snapshot taken a moment later would leave it out.

Each shard file is memory-mapped once per process (layer_maps) and mapped again only when its
committed rows outgrow the map.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..errors import DatabaseDamagedError, GalleryDamagedError
from ..search.filters import NO_DATE, photo_type
from .catalogue import path_of
from .gallery_cells import Cells, cell_sizes, load_cells, nearest_first
from .gallery_files import GalleryFiles, Shard

NO_CELL = -1  # where probed_parts keeps the rows whose cell is missing or impossible
SQL_VARIABLES = 500  # values bound in one IN (...) list, well under any SQLite's limit


@dataclass(frozen=True)
class Labels:
    """The paths and dates of a part's rows, row for row."""

    paths: list[str]
    taken: np.ndarray  # int64 Unix seconds; NO_DATE: unknown

    @functools.cached_property
    def types(self) -> np.ndarray:
        """Each row's photo_type (what a filter by type compares), worked out once per snapshot."""
        return np.array([photo_type(path) for path in self.paths], dtype=str)


@dataclass(frozen=True)
class Part:
    """Live rows of one shard, in row order, as a search reads them: all of them (parts) or some
    (probed_parts)."""

    shard: Shard  # its id, grid shape, layout and committed rows (live rows not counted)
    rows: np.ndarray
    sums: np.ndarray  # each row's stored checksum (int64)
    cells: np.ndarray  # each row's first-stage cell (int64; -1: none; gallery_cells.py)
    labels: Labels | None = None  # read with the parts where a search asks for them


@dataclass
class Snapshot:
    """What a search knows of the committed gallery before it reads any photo's row."""

    version: int  # PRAGMA data_version when it was read
    photos: int
    shards: dict[int, Shard]
    cells: Cells | GalleryDamagedError | None  # None: not partitioned (or before format 5)
    sizes: np.ndarray | None = None  # photos per cell (gallery_cells.cell_sizes), with usable cells
    parts: list[Part] | None = None
    cell_rows: dict[int, np.ndarray] = field(default_factory=dict)  # probed_parts' cells read so far
    mapped: bool = False  # whether a view has mapped every one of its shards' files (GalleryView)

    @property
    def labelled(self) -> bool:
        """Whether the parts are read, with their labels."""
        return self.parts is not None and all(part.labels is not None for part in self.parts)

    @property
    def usable_cells(self) -> Cells | None:
        return self.cells if isinstance(self.cells, Cells) and len(self.cells) else None


def current(files: GalleryFiles) -> Snapshot:
    """The snapshot of what is committed now (the one held, while nothing was committed since)."""
    version = files.db.execute("PRAGMA data_version").fetchone()[0]
    held = files.snapshot
    if isinstance(held, Snapshot) and held.version == version:
        return held
    with _one_read(files):
        try:
            cells: Cells | GalleryDamagedError | None = load_cells(files)
        except GalleryDamagedError as exc:
            cells = exc
        sizes = cell_sizes(files, cells) if isinstance(cells, Cells) and len(cells) else None
        if sizes is not None:
            photos = int(sizes.sum())  # what counting the photos would read anyway
        else:
            photos = files.db.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
        shards = {s.id: s for s in _shards(files)}
        version = files.db.execute("PRAGMA data_version").fetchone()[0]  # of this read, whoever committed since
    snapshot = files.snapshot = Snapshot(version, photos, shards, cells, sizes)
    files.maps = {key: m for key, m in files.maps.items() if key[0] in shards}
    return snapshot


def parts(files: GalleryFiles, labels: bool = False) -> list[Part]:
    """The live rows of every shard (with their labels, when asked for), kept with the snapshot."""
    snapshot = current(files)
    if snapshot.parts is None or (labels and not snapshot.labelled):
        snapshot.parts = _load_parts(files, labels)
    return snapshot.parts


def probed_parts(files: GalleryFiles, snapshot: Snapshot, query_pooled: np.ndarray, probe: int) -> list[Part]:
    """The live rows of the cells nearest the query's sentence vector, until they hold `probe` photos,
    and every row without a valid cell (gallery_cells.nearest_first), read through the cells' index.

    A cell's rows, once read, are kept with the snapshot (cell_rows), so later searches read only the
    cells no search has read since the last commit; read after another process's commit (the
    snapshot is then behind), every chosen cell is read again, and nothing is kept."""
    cells, sizes = snapshot.usable_cells, snapshot.sizes
    assert cells is not None and sizes is not None, "probed_parts needs a partitioned gallery"
    chosen = [int(c) for c in nearest_first(cells, sizes, query_pooled, probe)] + [NO_CELL]
    with _one_read(files):
        shards = {s.id: s for s in _shards(files)}  # also begins the read, so the version below is its own
        current_read = files.db.execute("PRAGMA data_version").fetchone()[0] == snapshot.version
        kept = snapshot.cell_rows if current_read else {}
        read = _cell_rows(files, [c for c in chosen if c not in kept], len(cells))
    kept.update(read)
    table = np.concatenate([kept[c] for c in chosen])
    table = table[np.lexsort((table[:, 1], table[:, 0]))]
    out = []
    for rows in np.split(table, np.flatnonzero(np.diff(table[:, 0])) + 1):
        if len(rows) and (shard := shards.get(int(rows[0, 0]))) is not None:
            out.append(Part(shard, rows[:, 1], rows[:, 2], rows[:, 3]))
    return out


def _cell_rows(files: GalleryFiles, wanted: list[int], cells: int) -> dict[int, np.ndarray]:
    """Each wanted cell's live rows (n, 4): shard, row, checksum, cell; NO_CELL: the rows whose cell is
    missing or impossible (with cell -1)."""
    found: list[np.ndarray] = []
    valid = [c for c in wanted if c != NO_CELL]
    for start in range(0, len(valid), SQL_VARIABLES):
        batch = valid[start : start + SQL_VARIABLES]
        said = f"SELECT shard, row, checksum, cell FROM photos WHERE cell IN ({','.join('?' * len(batch))})"
        found.append(np.fromiter(itertools.chain.from_iterable(files.db.execute(said, batch)), np.int64))
    if NO_CELL in wanted:
        said = "SELECT shard, row, checksum, -1 FROM photos WHERE cell IS NULL OR cell < 0 OR cell >= ?"
        found.append(np.fromiter(itertools.chain.from_iterable(files.db.execute(said, (cells,))), np.int64))
    table = np.concatenate([np.zeros(0, np.int64), *found]).reshape(-1, 4)
    table = table[np.argsort(table[:, 3], kind="stable")]
    out = {c: np.zeros((0, 4), np.int64) for c in wanted}
    for rows in np.split(table, np.flatnonzero(np.diff(table[:, 3])) + 1):
        if len(rows):
            out[int(rows[0, 3])] = rows
    return out


def paths_at(files: GalleryFiles, pieces: list[tuple[Part, np.ndarray]]) -> list[list[str | None]]:
    """For each (part, indices into part.rows), the paths of those rows, looked up by their place and
    checksum in a few statements; None for a row no longer live as it was read (another process has
    committed since)."""
    wanted = [(part.shard.id, row) for part, where in pieces for row in part.rows[where].tolist()]
    found: dict[tuple[int, int], tuple[str, int]] = {}
    step = SQL_VARIABLES // 2
    for start in range(0, len(wanted), step):
        batch = wanted[start : start + step]
        said = ", ".join(["(?, ?)"] * len(batch))
        rows = files.db.execute(  # a join, which searches the place index (an IN of row values scans)
            f"WITH wanted(shard, row) AS (VALUES {said}) SELECT p.shard, p.row, p.path, p.checksum"
            " FROM wanted w JOIN photos p ON p.shard = w.shard AND p.row = w.row",
            [value for place in batch for value in place],
        )
        found.update(((shard, row), (path, checksum)) for shard, row, path, checksum in rows)
    out = []
    for part, where in pieces:
        paths: list[str | None] = []
        for row, checksum in zip(part.rows[where].tolist(), part.sums[where].tolist(), strict=True):
            path, stored = found.get((part.shard.id, row), (None, None))
            paths.append(path_of(path) if path is not None and stored == checksum else None)
        out.append(paths)
    return out


def layer_maps(files: GalleryFiles, shard: Shard, tolerant: bool = False) -> dict[str, np.memmap]:
    """A map of each of a shard's files, made once and again when its committed rows outgrow it.

    A file shorter than its committed rows is a GalleryDamagedError, or, when tolerant, mapped only
    as far as its whole rows go. A missing file is a FileNotFoundError (Gallery retries the read:
    a compaction in another process may have deleted it).
    """
    layers = {}
    for layer in files.layers(shard.grid, shard.layout):
        mm = files.maps.get((shard.id, layer.suffix))
        if mm is None or mm.shape[0] < shard.rows:
            path = files.layer_path(shard.id, layer.suffix)
            rows = shard.rows
            if tolerant:
                rows = min(rows, path.stat().st_size // layer.row_bytes)
            try:
                mm = np.memmap(path, dtype=layer.dtype, mode="r", shape=(rows, *layer.shape))
            except ValueError:  # numpy's word for a file shorter than the map (or an empty one)
                if rows:
                    detail = f"{path.name} is shorter than its rows (photos there need indexing again)"
                    raise GalleryDamagedError(files.folder, detail) from None
                mm = np.zeros((0, *layer.shape), layer.dtype)
            files.maps[(shard.id, layer.suffix)] = mm
        layers[layer.suffix] = mm
    return layers


@contextmanager
def _one_read(files: GalleryFiles) -> Iterator[None]:
    """Every statement inside reads one committed state, whoever commits meanwhile."""
    files.db.execute("SAVEPOINT snapshot_read")
    try:
        yield
    finally:
        files.db.execute("RELEASE snapshot_read")


def _shards(files: GalleryFiles) -> list[Shard]:
    rows = files.db.execute(f"SELECT id, grid_h, grid_w, rows, {files.layout_column} FROM shards s")
    return [Shard(i, (gh, gw), n, 0, layout) for i, gh, gw, n, layout in rows]  # live rows not counted


def _load_parts(files: GalleryFiles, labels: bool) -> list[Part]:
    """Every live row, in (shard, row) order through the place index; the numbers straight into one
    array (a row a photo: shard, row, checksum, cell), the labels, where asked for, beside them."""
    numbers = f"p.shard, p.row, p.checksum, COALESCE({files.cell_column}, -1)"
    with _one_read(files):
        shards = {s.id: s for s in _shards(files)}
        if labels:
            said = f"{numbers}, p.path, {files.taken_column}"
            rows = files.db.execute(f"SELECT {said} FROM photos p ORDER BY p.shard, p.row").fetchall()
            table = np.array([r[:4] for r in rows], np.int64).reshape(-1, 4)
        else:
            cursor = files.db.execute(f"SELECT {numbers} FROM photos p ORDER BY p.shard, p.row")
            table = np.fromiter(itertools.chain.from_iterable(cursor), np.int64).reshape(-1, 4)
        photos = files.db.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
    placed = np.isin(table[:, 0], np.fromiter(shards, np.int64, len(shards)))
    if photos != len(table) or not placed.all():  # a photo pointing at no shard, or an index that lost or doubled a row
        raise DatabaseDamagedError(files.folder, f"it lists {photos} photos, but {int(placed.sum())} in its shards")
    out: list[Part] = []
    bounds = np.flatnonzero(np.diff(table[:, 0])) + 1
    for start, end in zip([0, *bounds.tolist()], [*bounds.tolist(), len(table)], strict=True):
        if start == end:
            continue
        known = None
        if labels:
            chunk = rows[start:end]
            dates = np.array([NO_DATE if r[5] is None else r[5] for r in chunk], np.int64)
            known = Labels([path_of(r[4]) for r in chunk], dates)
        block = table[start:end]
        out.append(Part(shards[int(block[0, 0])], block[:, 1].copy(), block[:, 2].copy(), block[:, 3].copy(), known))
    return out

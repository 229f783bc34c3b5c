"""`assoc query`: rank the gallery's photos against words (or against a photo), best first.

A text query becomes one vector per word piece; a photo given as the query becomes its patch grid, and
every photo is scored by MaxSim from those vectors (a photo that is indexed scores 1.0 with itself).
--explain and --preview run the same matchmap code as `assoc localize` on each hit's stored grid.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.table import Table
from rich.text import Text

from ..runtime.bundle import Bundle
from ..runtime.errors import ImageLoadError, QueryError
from ..runtime.images import PHOTO_SUFFIXES, load_image
from ..runtime.store import SearchHit, Store
from .common import DeviceOpt, JsonOpt, ModelOpt, echo_json, heatmap_picture, out_console
from .stores import CollectionOpt, GalleryOpt, QdrantPathOpt, QdrantUrlOpt, StoreKind, StoreOpt, open_store

if TYPE_CHECKING:  # onnxruntime loads with the encoders: only when a command runs, not for --help
    from ..runtime.encoders import EncodedQuery

PREVIEW_PIXELS = 512  # photos are decoded at least this big for a terminal preview


def query(
    text: Annotated[str, typer.Argument(metavar="QUERY", help="Words to look for, or the path of a photo.")],
    top: Annotated[int, typer.Option("-k", "--top", min=1, help="How many photos to show.")] = 10,
    min_score: Annotated[float | None, typer.Option("--min-score", help="Hide photos scoring below this.")] = None,
    as_json: JsonOpt = False,
    paths_only: Annotated[bool, typer.Option("--paths-only", help="Print only the paths, one a line.")] = False,
    null: Annotated[bool, typer.Option("-0", "--null", help="With --paths-only: end each path with NUL.")] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Per word, the best patch of each photo and its score.")
    ] = False,
    preview: Annotated[bool, typer.Option("--preview", help="Draw each photo with its heatmap.")] = False,
    gallery: GalleryOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = "auto",
    store: StoreOpt = StoreKind.builtin,
    qdrant_url: QdrantUrlOpt = None,
    qdrant_path: QdrantPathOpt = None,
    collection: CollectionOpt = "assoc",
) -> None:
    """Search the gallery with words; QUERY may also be a photo, to find photos like it."""
    from .options import resolve_bundle

    if (explain or preview) and (as_json or paths_only):
        raise QueryError("--explain and --preview draw for people; leave out --json and --paths-only")
    if null and not paths_only:
        raise QueryError("-0 goes with --paths-only")
    bundle = resolve_bundle(model)
    photo = _query_photo(text)
    if photo is not None and (explain or preview):
        raise QueryError("--explain and --preview show where words land: they need a text query")
    encoded = None if photo is not None else _encode_text(bundle, text, device)
    with closing(open_store(bundle, gallery, store, qdrant_url, qdrant_path, collection)) as opened:
        vectors = encoded.vectors if encoded is not None else _photo_vectors(bundle, photo, opened, device)
        hits = opened.search(vectors, k=top, min_score=min_score, kind=bundle.config.score)
        if as_json:
            echo_json([{"path": h.path, "score": h.score} for h in hits])
        elif paths_only:
            typer.echo("".join(h.path + ("\0" if null else "\n") for h in hits), nl=False)
        elif encoded is not None and (explain or preview):
            _show_hits(hits, encoded, opened, explain, preview)
        else:
            out_console().print(_table(hits))


def _query_photo(text: str) -> Path | None:
    """The photo a query names, or None for words.

    A photo file name that is not there is an error: a mistyped path must not quietly turn into a
    search for the word 'IMG_0042.jpg'.
    """
    path = Path(text).expanduser()
    if path.is_file():
        return path.absolute()
    if path.suffix.lower() in PHOTO_SUFFIXES and not any(c.isspace() for c in text):
        raise QueryError(f"{text}: no such photo (a query naming a photo file searches with that photo)")
    return None


def _encode_text(bundle: Bundle, text: str, device: str) -> EncodedQuery:
    from ..runtime.encoders import TextEncoder

    return TextEncoder(bundle, device).encode_one(text)


def _photo_vectors(bundle: Bundle, path: Path, store: Store, device: str) -> np.ndarray:
    """The query photo's patches (P, D): its stored grid if the store holds this very file, else encoded."""
    from ..runtime.fileinfo import partial_hash

    try:
        digest = partial_hash(path)
    except OSError as exc:
        raise QueryError(f"{path}: cannot read the query photo ({exc.strerror or exc})") from None
    known = store.find_by_hash(digest)
    grid = store.get_grid(known) if known is not None else None
    if grid is None:
        from ..runtime.encoders import ImageEncoder

        size = bundle.config.visual.image_size
        photo = load_image(path, min_size=(size[1], size[0])).image
        grid = ImageEncoder(bundle, device).encode([photo])[0]
    return grid.reshape(-1, grid.shape[-1])


def _table(hits: list[SearchHit]) -> Table:
    table = Table(box=None, pad_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("score", justify="right")
    table.add_column("path", overflow="fold")
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), f"{hit.score:.4f}", Text(hit.path))  # a path is not markup
    if not hits:
        table.caption = "no photos matched"
    return table


def _show_hits(hits: list[SearchHit], query: EncodedQuery, store: Store, explain: bool, preview: bool) -> None:
    """Per hit: its rank, score and path, then per word the best cell and point, and/or the heatmap."""
    from ..runtime.heatmap import cell_to_pixel, compute_heatmaps

    console = out_console()
    if preview and not console.is_terminal:  # blocks without colour say nothing in a pipe or file
        preview = False
        console.print(Text("(previews are drawn only on a terminal; FORCE_COLOR=1 draws them anyway)", style="dim"))
    if not hits:
        console.print(_table(hits))
    for rank, hit in enumerate(hits, 1):
        console.print(Text.assemble((f"{rank}.", "bold"), f" {hit.score:.4f}  {hit.path}"), soft_wrap=True)
        grid = store.get_grid(hit.path)
        if grid is None:  # removed by a concurrent index run since the search
            continue
        maps = compute_heatmaps(grid, query)
        if explain:
            record = store.record(hit.path)
            words = Table(box=None, padding=(0, 2))
            for column in ("word", "cell (row, col)", "point (x, y)", "score"):
                words.add_column(column, justify="left" if column == "word" else "right")
            for k, word in enumerate(maps.words):
                cell = maps.word_peak(k)
                point = cell_to_pixel(cell, maps.grid, (record.width, record.height)) if record else None
                words.add_row(Text(word), f"{cell}", f"{point}" if point else "-", f"{maps.word_scores[k]:.4f}")
            console.print(words)
        if preview:
            try:
                photo = load_image(hit.path, min_size=(PREVIEW_PIXELS, PREVIEW_PIXELS)).image
            except ImageLoadError as exc:
                console.print(Text(f"(no preview: {exc})", style="dim"), soft_wrap=True)
                continue
            photo.thumbnail((PREVIEW_PIXELS * 2, PREVIEW_PIXELS * 2))
            console.print(heatmap_picture(photo, maps.phrase_map, query.text, console))


def register(app: typer.Typer) -> None:
    app.command()(query)

"""`assoc query`: rank the gallery's photos against words (or against a photo), best first.

A text query becomes one vector per word piece; a photo given as the query becomes its patch grid, and
every photo is scored by MaxSim from those vectors (an indexed photo scores best with itself: 1 plus
the bundle's global weight).
--explain and --preview run the same matchmap code as `assoc localize` on each hit's stored grid (the
gallery's grid, coarser than localize's when the bundle localizes at a larger size).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

import typer

from ..api.searcher import query_photo
from ..runtime.errors import ImageLoadError, QueryError
from .common import echo_json, heatmap_picture, out_console
from .names import echo_paths, shown
from .options import JsonOpt, SearcherOptions, searcher_options
from .quick_exit import keep_until_exit

if TYPE_CHECKING:  # rich and Pillow load only for what is drawn for people: --json and --paths-only need neither
    from rich.table import Table

    from ..api.results import Hit
    from ..api.searcher import Searcher

PREVIEW_PIXELS = 512  # photos are decoded at least this big for a terminal preview


def _finite(value: float | None) -> float | None:
    """--min-score is a number (what the web API's min_score takes too): nan or inf would filter nothing
    or everything, silently."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"a score must be a finite number, not {value}")
    return value


@searcher_options
def query(
    text: Annotated[str, typer.Argument(metavar="QUERY", help="Words to look for, or the path of a photo.")],
    top: Annotated[int, typer.Option("-k", "--top", min=1, help="How many photos to show.")] = 10,
    min_score: Annotated[
        float | None, typer.Option("--min-score", callback=_finite, help="Hide photos scoring below this.")
    ] = None,
    as_json: JsonOpt = False,
    paths_only: Annotated[bool, typer.Option("--paths-only", help="Print only the paths, one a line.")] = False,
    null: Annotated[bool, typer.Option("-0", "--null", help="With --paths-only: end each path with NUL.")] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Per word, the best patch of each photo and its score.")
    ] = False,
    preview: Annotated[bool, typer.Option("--preview", help="Draw each photo with its heatmap.")] = False,
    exact: Annotated[
        bool, typer.Option("--exact", help="Score every photo, not only the first stage's candidates.")
    ] = False,
    *,
    target: SearcherOptions,
) -> None:
    """Search the gallery with words; QUERY may also be a photo, to find photos like it."""
    if (explain or preview) and (as_json or paths_only):
        raise QueryError("--explain and --preview draw for people; leave out --json and --paths-only")
    if null and not paths_only:
        raise QueryError("-0 goes with --paths-only")
    if (explain or preview) and query_photo(text) is not None:
        raise QueryError("--explain and --preview show where words land: they need a text query")
    with target.open() as searcher:
        keep_until_exit(searcher)  # not torn down just before the process ends (assoc.cli.quick_exit)
        hits = searcher.search(text, k=top, min_score=min_score, exact=exact)
        if as_json:
            echo_json([hit.to_dict() for hit in hits])
        elif paths_only:
            echo_paths([h.path for h in hits], null)
        elif explain or preview:
            _show_hits(hits, text, searcher, explain, preview)
        else:
            out_console().print(_table(hits))


def _table(hits: list[Hit]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("score", justify="right")
    table.add_column("path", overflow="fold")
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), f"{hit.score:.4f}", Text(shown(hit.path)))  # a path is neither markup nor escapes
    if not hits:
        table.caption = "no photos matched"
    return table


def _show_hits(hits: list[Hit], text: str, searcher: Searcher, explain: bool, preview: bool) -> None:
    """Per hit: its rank, score and path, then per word the best cell and point, and/or the heatmap."""
    from rich.table import Table
    from rich.text import Text

    from ..runtime.imaging.images import load_image

    console = out_console()
    if preview and not console.is_terminal:  # blocks without colour say nothing in a pipe or file
        preview = False
        console.print(Text("(previews are drawn only on a terminal; FORCE_COLOR=1 draws them anyway)", style="dim"))
    if not hits:
        console.print(_table(hits))
    for rank, hit in enumerate(hits, 1):
        console.print(Text.assemble((f"{rank}.", "bold"), f" {hit.score:.4f}  {shown(hit.path)}"), soft_wrap=True)
        found = searcher.explain(hit.path, text)
        if found is None:  # removed by a concurrent index run since the search
            continue
        maps = found.heatmaps
        if explain:
            words = Table(box=None, padding=(0, 2))
            for column in ("word", "cell (row, col)", "point (x, y)", "score"):
                words.add_column(column, justify="left" if column == "word" else "right")
            for k, word in enumerate(found.words):
                words.add_row(Text(word.word), f"{maps.word_peak(k)}", f"{word.peak}", f"{word.score:.4f}")
            console.print(words)
        if preview:
            try:
                photo = load_image(hit.path, min_size=(PREVIEW_PIXELS, PREVIEW_PIXELS)).image
            except ImageLoadError as exc:
                console.print(Text(f"(no preview: {exc})", style="dim"), soft_wrap=True)
                continue
            photo.thumbnail((PREVIEW_PIXELS * 2, PREVIEW_PIXELS * 2))
            console.print(heatmap_picture(photo, maps.phrase_map, text, console))


def register(app: typer.Typer) -> None:
    app.command()(query)

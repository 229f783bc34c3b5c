"""`assoc query`: rank the gallery's photos against words (or against a photo), best first.

A text query becomes one vector per word piece; a photo given as the query becomes its patch grid, and
every photo is scored by MaxSim from those vectors (an indexed photo scores best with itself: 1 plus
the bundle's global weight). Several terms, weighed and subtracted, make a combined query
(`assoc query "2:golden retriever" + ./pool.jpg - fruit`: the syntax and the score are
assoc.runtime.search.combined's); its hits carry each term's score (in --json, "terms").
--in, --since, --until and --type search only the photos that meet them (assoc.runtime.search.filters),
before any first stage, so k photos come back whenever k meet them.
--explain and --preview run the same matchmap code as `assoc localize` on each hit's stored grid (the
gallery's grid, coarser than localize's when the bundle localizes at a larger size), for each term
made of words.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..api.searcher import query_photo
from ..runtime.errors import ImageLoadError, QueryError
from ..runtime.search.combined import parse_arguments
from ..runtime.search.filters import DATE_FORMS, PhotoFilter
from .common import echo_json, heatmap_picture, out_console
from .names import echo_paths, shown
from .options import JsonOpt, SearcherOptions, searcher_options
from .quick_exit import keep_until_exit

if TYPE_CHECKING:  # rich and Pillow load only for what is drawn for people: --json and --paths-only need neither
    from PIL import Image
    from rich.console import Console
    from rich.table import Table

    from ..api.results import Hit, TermScore
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
    text: Annotated[
        list[str],
        typer.Argument(
            metavar="QUERY",
            help="Words to look for, or the path of a photo; or terms joined by + and -, each with an optional"
            ' weight: "2:golden retriever" + ./pool.jpg - fruit.',
        ),
    ],
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
    folders: Annotated[
        list[Path] | None,
        typer.Option("--in", metavar="FOLDER", help="Only photos under this folder (repeat for several)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="DATE", help=f"Only photos taken on or after DATE ({DATE_FORMS}).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="DATE", help="Only photos taken on or before DATE (a whole day).")
    ] = None,
    types: Annotated[
        str | None, typer.Option("--type", metavar="TYPES", help="Only these kinds of file, e.g. jpg,heic.")
    ] = None,
    *,
    target: SearcherOptions,
) -> None:
    """Search the gallery with words; QUERY may also be a photo, to find photos like it, or several terms
    joined by + and - (a weight before a term: 2:words)."""
    if (explain or preview) and (as_json or paths_only):
        raise QueryError("--explain and --preview draw for people; leave out --json and --paths-only")
    if null and not paths_only:
        raise QueryError("-0 goes with --paths-only")
    where = PhotoFilter.of(folders or (), since, until, types)
    phrases = _phrases(text)
    if (explain or preview) and not phrases:
        raise QueryError("--explain and --preview show where words land: they need a text query")
    asked = text[0] if len(text) == 1 else [(term.text, term.weight) for term in parse_arguments(text)]
    with target.open() as searcher:
        keep_until_exit(searcher)  # not torn down just before the process ends (assoc.cli.quick_exit)
        hits = searcher.search(asked, k=top, min_score=min_score, exact=exact, where=where)
        if as_json:
            echo_json([hit.to_dict() for hit in hits])
        elif paths_only:
            echo_paths([h.path for h in hits], null)
        elif explain or preview:
            _show_hits(hits, phrases, searcher, explain, preview)
        else:
            out_console().print(_table(hits, bool(where)))


def _phrases(text: list[str]) -> list[str]:
    """The query's terms made of words, which --explain and --preview draw: none for a photo query;
    a term naming a photo file is a photo (as the Searcher takes it)."""
    if len(text) == 1 and query_photo(text[0]) is not None:
        return []
    return [term.text for term in parse_arguments(text) if query_photo(term.text) is None]


def _table(hits: list[Hit], filtered: bool = False) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("score", justify="right")
    terms = hits[0].terms if hits else ()
    for term in terms:
        table.add_column(_term_label(term), justify="right")
    table.add_column("path", overflow="fold")
    for rank, hit in enumerate(hits, 1):
        scores = [f"{t.score:.4f}" for t in hit.terms]
        table.add_row(str(rank), f"{hit.score:.4f}", *scores, Text(shown(hit.path)))  # a path: no markup, no escapes
    if not hits:
        table.caption = "no photos matched the filters" if filtered else "no photos matched"
    return table


def _term_label(term: TermScore) -> str:
    """A term as a column heading: its sign and weight, then its words or its photo's file name."""
    sign = "-" if term.weight < 0 else "+"
    weight = f"{abs(term.weight):g}:" if abs(term.weight) != 1 else ""
    what = term.term if term.kind == "words" else Path(term.term).name or "photo"
    return shown(f"{sign}{weight}{what}")


def _show_hits(hits: list[Hit], phrases: list[str], searcher: Searcher, explain: bool, preview: bool) -> None:
    """Per hit: its rank, score and path (and each term's score), then per term made of words, per word
    the best cell and point, and/or the heatmap."""
    from rich.table import Table
    from rich.text import Text

    console = out_console()
    if preview and not console.is_terminal:  # blocks without colour say nothing in a pipe or file
        preview = False
        console.print(Text("(previews are drawn only on a terminal; FORCE_COLOR=1 draws them anyway)", style="dim"))
    if not hits:
        console.print(_table(hits))
    for rank, hit in enumerate(hits, 1):
        console.print(Text.assemble((f"{rank}.", "bold"), f" {hit.score:.4f}  {shown(hit.path)}"), soft_wrap=True)
        if hit.terms:
            console.print(Text("  " + "  ".join(f"{_term_label(t)} {t.score:.4f}" for t in hit.terms), style="dim"))
        photo = _preview_photo(hit.path, console) if preview else None
        for phrase in phrases:
            found = searcher.explain(hit.path, phrase)
            if found is None:  # removed by a concurrent index run since the search
                break
            maps = found.heatmaps
            if len(phrases) > 1:
                console.print(Text(f"  {shown(phrase)}", style="bold"), soft_wrap=True)
            if explain:
                words = Table(box=None, padding=(0, 2))
                for column in ("word", "cell (row, col)", "point (x, y)", "score"):
                    words.add_column(column, justify="left" if column == "word" else "right")
                for k, word in enumerate(found.words):
                    words.add_row(Text(word.word), f"{maps.word_peak(k)}", f"{word.peak}", f"{word.score:.4f}")
                console.print(words)
            if photo is not None:
                console.print(heatmap_picture(photo, maps.phrase_map, phrase, console))


def _preview_photo(path: str, console: Console) -> Image.Image | None:
    """A hit's photo to draw its heatmaps over, or None (having said why) where it cannot be read."""
    from rich.text import Text

    from ..runtime.imaging.images import load_image

    try:
        photo = load_image(path, min_size=(PREVIEW_PIXELS, PREVIEW_PIXELS)).image
    except ImageLoadError as exc:
        console.print(Text(f"(no preview: {exc})", style="dim"), soft_wrap=True)
        return None
    photo.thumbnail((PREVIEW_PIXELS * 2, PREVIEW_PIXELS * 2))
    return photo


def register(app: typer.Typer) -> None:
    app.command()(query)

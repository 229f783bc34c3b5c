"""`assoc duplicates`: groups of indexed photos that show the same picture (assoc.runtime.search.duplicates).

Each group lists its largest photo first (most pixels, then most bytes): the one to keep, most often.
With --json: {"threshold", "photos", "groups": [{"similarity", "photos": [{"path", "content_hash",
"width", "height", "size", "similarity"}]}]} (assoc.api.results.Duplicates). A threshold outside
(0, 1] is one line on stderr and exit code 2, as every error.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ..runtime.search.duplicates import DEFAULT_THRESHOLD
from .common import echo_json, out_console
from .names import shown
from .options import JsonOpt, SearcherOptions, searcher_options


@searcher_options
def duplicates(
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold",
            help="How alike two photos must be to be one picture: above 0, at most 1 (1: the same grid);"
            " lower finds more, and more that are not copies.",
        ),
    ] = DEFAULT_THRESHOLD,
    as_json: JsonOpt = False,
    *,
    target: SearcherOptions,
) -> None:
    """Find photos that are copies of one picture: resized, re-encoded, lightly cropped or recoloured."""
    with target.open() as searcher:
        found = searcher.duplicates(threshold)
    if as_json:
        echo_json(found.to_dict())
        return
    console = out_console()
    for number, group in enumerate(found.groups, 1):
        table = Table(box=None, show_header=False, pad_edge=False, title_justify="left")
        table.title = f"group {number}: {len(group.photos)} photos, similarity {group.similarity:.3f}"
        table.add_column(overflow="fold")
        table.add_column(justify="right")
        table.add_column(justify="right")
        table.add_column(justify="right")
        for photo in group.photos:
            table.add_row(
                Text(shown(photo.path)), f"{photo.width}x{photo.height}", _bytes(photo.size), f"{photo.similarity:.3f}"
            )
        console.print(table)
    copies = sum(len(group.photos) - 1 for group in found.groups)
    console.print(
        Text(
            f"{len(found.groups)} groups, {copies} copies besides the largest of each, among {found.photos} photos"
            f" (threshold {found.threshold:g})"
        ),
        soft_wrap=True,
    )


def _bytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


def register(app: typer.Typer) -> None:
    app.command()(duplicates)

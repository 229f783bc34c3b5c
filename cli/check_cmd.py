"""`assoc check`: verify every photo the built-in gallery stores, and optionally drop the damaged ones.

Exit codes: 0 when nothing is damaged (or --repair dropped the damaged photos and made damaged cells
again), 4 when damage was found and left in place (assoc.cli.errors).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from .common import echo_json, out_console
from .errors import EXIT_DAMAGED
from .names import shown
from .options import JsonOpt, SearcherOptions, searcher_options


@searcher_options
def check(
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Drop damaged photos from the gallery; `assoc index` then encodes them again."),
    ] = False,
    as_json: JsonOpt = False,
    *,
    target: SearcherOptions,
) -> None:
    """Verify every stored photo against its checksum (and that its values are numbers)."""
    with target.open(rehash=True) as searcher:  # and every file of the model bundle, read in full
        report = searcher.check(repair=repair)
    if as_json:
        echo_json(report.to_dict())
    else:
        console = out_console()
        for damaged in report.damaged:
            console.print(Text(f"damaged: {shown(damaged.path)}: {damaged.reason}"), soft_wrap=True)
        if report.cells is not None:
            done = ": made again" if report.cells_rebuilt else ": `assoc check --repair` makes them again"
            console.print(Text(f"damaged: the first stage's cells: {report.cells}{done}"), soft_wrap=True)
        summary = f"{report.photos} photos checked, {len(report.damaged)} damaged"
        if report.dropped:
            summary += f", {report.dropped} dropped: run `assoc index` on your photos to encode them again"
        elif report.damaged:
            summary += ": `assoc check --repair` drops them, then `assoc index` encodes them again"
        console.print(Text(summary), soft_wrap=True)
    if not report.mended:
        raise typer.Exit(EXIT_DAMAGED)


def register(app: typer.Typer) -> None:
    app.command()(check)

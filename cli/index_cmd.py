"""`assoc index PATH...`: bring the store in line with the photos under some files and folders.

Progress (images/s, ETA) goes to stderr; the summary goes to stdout, as a table or with --json as
{"added", "updated", "reused", "removed", "unchanged", "dated", "skipped": [{"path", "reason"}],
"kept_in_empty": [{"path", "photos"}], "photos"}. A named folder found empty while the store holds
photos under it (an unmounted disk?) keeps them, and a warning line on stderr says so.
Running it again only encodes what changed: renamed and copied photos reuse their stored grids.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape  # Typer reads help as rich markup: [ray] would vanish
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .common import echo_json, err_console, out_console
from .errors import EXIT_NOTHING_INDEXED
from .names import shown
from .options import JsonOpt, SearcherOptions, searcher_options

if TYPE_CHECKING:
    from ..api.results import IndexReport

SKIPPED_SHOWN = 20  # skipped files listed in the table; --json lists them all


@searcher_options
def index(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="Photos and folders to index.")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Photos per encoder call.")] = 32,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Decoding threads (default: CPU count, at most 8, fewer if memory is short); with --ray, encoder"
            " actors (default: sized to the cluster).",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip names or paths matching this glob (repeatable).")
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help=f"Encode on a Ray cluster ({escape('assoc[ray]')}): auto (the one this machine joined), HOST:PORT,"
            " or local (start one here). Workers read the photos at the same paths: a shared filesystem.",
        ),
    ] = None,
    as_json: JsonOpt = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Also print on stderr the seconds each stage took (walk, read, encode, write)."
        ),
    ] = False,
    *,
    target: SearcherOptions,
) -> None:
    """Index photos: new and changed ones are encoded, renamed ones reuse their grids, gone ones leave."""
    with target.open() as searcher, _progress() as progress:
        task = progress.add_task("indexing", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = searcher.index(
            paths, exclude=exclude or (), batch_size=batch_size, workers=workers, progress=on_progress, cluster=ray
        )
    for folder, kept in report.kept_in_empty:
        typer.echo(
            f"assoc: warning: {shown(folder)} is empty (an unmounted disk or share?); its {kept} indexed photos were"
            " kept",
            err=True,
        )
    if as_json:
        echo_json(report.to_dict())
    else:
        out_console().print(_summary_table(report))
    if verbose:
        typer.echo(f"assoc: {stage_line(report.seconds)}", err=True)
    if report.skipped and not (report.added or report.updated or report.reused or report.unchanged):
        typer.echo("assoc: warning: nothing could be indexed: every photo found was skipped", err=True)
        raise typer.Exit(EXIT_NOTHING_INDEXED)


def stage_line(seconds: dict[str, float]) -> str:
    """'stages: walk 0.02 s, read 1.30 s (summed over threads), ...' in the indexer's stage order."""
    from ..runtime.indexing.indexer import STAGES

    notes = {"read": " (summed over threads)", "cluster": " (waiting for the Ray cluster)"}
    parts = [f"{stage} {seconds[stage]:.2f} s{notes.get(stage, '')}" for stage in STAGES if stage in seconds]
    return "stages: " + ", ".join(parts)


class _RateColumn(ProgressColumn):
    """Photos per second over rich's recent window (its speed estimate)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f} img/s" if task.speed else "", style="progress.data.speed")


def _progress() -> Progress:
    """A bar on stderr with photos per second and the time left; off when stderr is no terminal (a log)."""
    console = err_console()
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _summary_table(summary: IndexReport) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(overflow="fold")
    notes = {
        "added": "new photos encoded",
        "updated": "changed photos encoded again",
        "reused": "renamed, copied or touched: stored grid reused",
        "removed": "gone from disk",
        "unchanged": "",
        "skipped": "",
    }
    for key, note in notes.items():
        value = len(summary.skipped) if key == "skipped" else getattr(summary, key)
        table.add_row(key, str(value), note)
    if summary.dated:
        table.add_row("dated", str(summary.dated), "unchanged photos indexed before dates were kept: date taken read")
    for path, reason in summary.skipped[:SKIPPED_SHOWN]:
        table.add_row("", "", Text(f"{shown(path)}: {shown(reason)}"))
    if len(summary.skipped) > SKIPPED_SHOWN:
        table.add_row("", "", f"... and {len(summary.skipped) - SKIPPED_SHOWN} more (--json lists all)")
    table.add_row("photos", str(summary.photos), "in the store now")
    return table


def register(app: typer.Typer) -> None:
    app.command()(index)

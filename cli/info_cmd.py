"""`assoc info`: what gallery and model a command would use (`assoc --version` is assoc.cli.app's)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from .common import echo_json, out_console
from .names import shown
from .options import JsonOpt, SearcherOptions, searcher_options


@searcher_options
def info(as_json: JsonOpt = False, *, target: SearcherOptions) -> None:
    """Facts about the gallery and the model bundle, and whether the two belong together."""
    with target.open() as searcher:
        facts = searcher.info().to_dict()
    if as_json:
        echo_json(facts)
        return
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for section, values in facts.items():
        for key, value in values.items():
            table.add_row(f"{section} {key.replace('_', ' ')}", Text(shown(_human(key, value))))
    out_console().print(table)


def _human(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "size_on_disk":
        return f"{value / 1e6:.1f} MB"
    if isinstance(value, list):
        return " x ".join(str(v) for v in value)
    return str(value)


def register(app: typer.Typer) -> None:
    app.command()(info)

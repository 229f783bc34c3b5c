"""`assoc info` (what gallery and model a command would use) and `assoc --version`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from .common import JsonOpt, ModelOpt, echo_json, out_console
from .stores import CollectionOpt, GalleryOpt, QdrantPathOpt, QdrantUrlOpt, StoreKind, StoreOpt, describe_store


def info(
    as_json: JsonOpt = False,
    gallery: GalleryOpt = None,
    model: ModelOpt = None,
    store: StoreOpt = StoreKind.builtin,
    qdrant_url: QdrantUrlOpt = None,
    qdrant_path: QdrantPathOpt = None,
    collection: CollectionOpt = "assoc",
) -> None:
    """Facts about the gallery and the model bundle, and whether the two belong together."""
    from .options import resolve_bundle

    bundle = resolve_bundle(model)
    config = bundle.config
    facts: dict[str, Any] = {
        "store": describe_store(bundle, gallery, store, qdrant_url, qdrant_path, collection),
        "bundle": {
            "path": str(bundle.root),
            "bundle_id": bundle.bundle_id,
            "model_name": config.model_name,
            "embed_dim": config.embed_dim,
            "grid": list(config.visual.grid),
            "image_size": list(config.visual.image_size),
            "score": config.score,
            "quantized_text": config.textual.quantized,
        },
    }
    facts["store"]["matches_bundle"] = facts["store"]["bundle_id"] in (None, bundle.bundle_id)
    if as_json:
        echo_json(facts)
        return
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for section, values in facts.items():
        for key, value in values.items():
            table.add_row(f"{section} {key.replace('_', ' ')}", Text(_human(key, value)))
    out_console().print(table)


def _human(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "size_on_disk":
        return f"{value / 1e6:.1f} MB"
    if isinstance(value, list):
        return " x ".join(str(v) for v in value)
    return str(value)


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"assoc {version('assoc')}")
        except PackageNotFoundError:  # running from a source tree that was never installed
            typer.echo("assoc (not installed)")
        raise typer.Exit()


def main_options(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Search your photos with words, and see where in each photo the words land."""


def register(app: typer.Typer) -> None:
    app.callback()(main_options)
    app.command()(info)

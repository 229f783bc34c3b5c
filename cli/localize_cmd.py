"""`assoc localize IMG TEXT`: where each word of TEXT lands in one photo.

The photo need not be in any gallery. When the store holds a photo with the same content (by the
indexer's partial hash, so a renamed copy counts), its stored grid is reused; otherwise the photo is
encoded here (assoc.api.Searcher.localize). The maps are the same as `query --explain` shows.

Files: --out FILE writes the phrase heatmap blended over the photo at the photo's own size;
--per-word adds FILE's sibling NAME.words.png, one labelled panel per word and one for the phrase.
On a terminal each map is drawn; into a pipe or file each word's score and peak point are printed
(FORCE_COLOR=1 draws the maps anyway).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from PIL import Image
from rich.text import Text

from ..runtime.errors import AssocError
from .common import echo_json, heatmap_picture, out_console
from .options import JsonOpt, SearcherOptions, searcher_options


@searcher_options
def localize(
    image: Annotated[Path, typer.Argument(metavar="IMG", help="A photo (indexed or not).")],
    text: Annotated[str, typer.Argument(metavar="TEXT", help="Words to find in the photo.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Save the phrase heatmap over the photo (PNG, photo-sized).")
    ] = None,
    per_word: Annotated[
        bool,
        typer.Option("--per-word", help="Draw every word's map; with --out also save NAME.words.png beside it."),
    ] = False,
    as_json: JsonOpt = False,
    *,
    target: SearcherOptions,
) -> None:
    """Heatmaps of each word and of the whole phrase over one photo; peaks in the photo's pixels."""
    from ..api.render import overlay, per_word_sheet

    with target.open() as searcher:
        found = searcher.localize(image, text)
    maps, photo = found.heatmaps, found.photo
    if out is not None:
        _save(overlay(photo, maps.phrase_map), out)
        if per_word:
            _save(per_word_sheet(photo, maps), out.with_name(out.stem + ".words.png"))
    if as_json:
        echo_json(found.to_dict())
        return
    console = out_console()
    if not console.is_terminal:  # a pipe or a file: blocks without colour say nothing, the peaks do
        for word in found.words:
            console.print(Text(f"{word.word}  {word.score:.4f}  peak (x, y) {word.peak}"), soft_wrap=True)
        console.print(Text(f"phrase: {text}  {found.score:.4f}  peak (x, y) {found.peak}"), soft_wrap=True)
        return
    panels = list(zip(maps.words, maps.word_scores, maps.word_maps, strict=True)) if per_word else []
    for word, score, grid_map in [*panels, ("phrase: " + text, found.score, maps.phrase_map)]:
        console.print(heatmap_picture(photo, grid_map, f"{word}  {score:.4f}", console))


def _save(picture: Image.Image, out: Path) -> None:
    try:
        picture.save(out)
    except (OSError, ValueError) as exc:
        raise AssocError(f"cannot write {out}: {exc}") from None


def register(app: typer.Typer) -> None:
    app.command()(localize)

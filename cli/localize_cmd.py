"""`assoc localize IMG TEXT`: where each word of TEXT lands in one photo.

The photo need not be in any gallery. When the store holds a photo with the same content (by the
indexer's partial hash, so a renamed copy counts), its stored grid is reused; otherwise the photo is
encoded here. Either way the maps are computed by assoc.runtime.heatmap, as for `query --explain`.

Files: --out FILE writes the phrase heatmap blended over the photo at the photo's own size;
--per-word adds FILE's sibling NAME.words.png, one labelled panel per word and one for the phrase.
On a terminal each map is drawn; into a pipe or file each word's score and peak point are printed
(FORCE_COLOR=1 draws the maps anyway).
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from PIL import Image
from rich.text import Text

from ..runtime.bundle import Bundle
from ..runtime.errors import AssocError, GalleryError
from .common import DeviceOpt, JsonOpt, ModelOpt, echo_json, heatmap_picture, out_console
from .stores import CollectionOpt, GalleryOpt, QdrantPathOpt, QdrantUrlOpt, StoreKind, StoreOpt, open_store

if TYPE_CHECKING:
    import numpy as np


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
    gallery: GalleryOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = "auto",
    store: StoreOpt = StoreKind.builtin,
    qdrant_url: QdrantUrlOpt = None,
    qdrant_path: QdrantPathOpt = None,
    collection: CollectionOpt = "assoc",
) -> None:
    """Heatmaps of each word and of the whole phrase over one photo; peaks in the photo's pixels."""
    from ..runtime.encoders import TextEncoder
    from ..runtime.heatmap import Localization, compute_heatmaps, overlay, per_word_sheet
    from ..runtime.images import load_image
    from .options import resolve_bundle

    bundle = resolve_bundle(model)
    query = TextEncoder(bundle, device).encode_one(text)
    loaded = load_image(image)
    path = image.expanduser().absolute()
    grid = _stored_grid(bundle, path, gallery, store, qdrant_url, qdrant_path, collection)
    if grid is None:
        from ..runtime.encoders import ImageEncoder

        grid = ImageEncoder(bundle, device).encode([loaded.image])[0]
    maps = compute_heatmaps(grid, query)
    if out is not None:
        _save(overlay(loaded.image, maps.phrase_map), out)
        if per_word:
            _save(per_word_sheet(loaded.image, maps), out.with_name(out.stem + ".words.png"))
    found = Localization.from_heatmaps(str(path), (loaded.width, loaded.height), maps)
    if as_json:
        echo_json(found.to_json_dict())
        return
    console = out_console()
    if not console.is_terminal:  # a pipe or a file: blocks without colour say nothing, the peaks do
        for word in found.words:
            console.print(Text(f"{word.word}  {word.score:.4f}  peak (x, y) {word.peak}"), soft_wrap=True)
        console.print(Text(f"phrase: {query.text}  {maps.score:.4f}  peak (x, y) {found.peak}"), soft_wrap=True)
        return
    panels = list(zip(maps.words, maps.word_scores, maps.word_maps, strict=True)) if per_word else []
    for word, score, grid_map in [*panels, ("phrase: " + query.text, maps.score, maps.phrase_map)]:
        console.print(heatmap_picture(loaded.image, grid_map, f"{word}  {score:.4f}", console))


def _stored_grid(
    bundle: Bundle,
    path: Path,
    gallery: Path | None,
    store: StoreKind,
    qdrant_url: str | None,
    qdrant_path: Path | None,
    collection: str,
) -> np.ndarray | None:
    """The grid a store holds for this photo's content, or None (no store yet, another model, not indexed).

    A store that cannot serve this model is no reason to refuse: the photo is simply encoded instead.
    """
    from ..runtime.fileinfo import partial_hash

    try:
        with closing(open_store(bundle, gallery, store, qdrant_url, qdrant_path, collection)) as opened:
            known = opened.find_by_hash(partial_hash(path))
            return opened.get_grid(known) if known is not None else None
    except GalleryError:
        return None


def _save(picture: Image.Image, out: Path) -> None:
    try:
        picture.save(out)
    except (OSError, ValueError) as exc:
        raise AssocError(f"cannot write {out}: {exc}") from None


def register(app: typer.Typer) -> None:
    app.command()(localize)

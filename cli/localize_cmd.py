"""`assoc localize IMG [TEXT]`: where each word of TEXT lands in one photo, and the other way round.

The photo need not be in any gallery. It is encoded at the bundle's localize size (twice the indexing
input for the shipped bundle: a 20x20 grid) and each word map is smoothed over 3x3 cells before its peak
is taken (assoc.runtime.encoding.bundle.LocalizeConfig, assoc.api.Searcher.localize). `query --explain`
shows the same smoothed maps on each hit's stored, coarser grid. A bundle that localizes at its input
size reuses the stored grid of a photo with the same content (a renamed copy counts).

Files: --out FILE writes the phrase heatmap blended over the photo at the photo's own size;
--per-word adds FILE's sibling NAME.words.png, one labelled panel per word and one for the phrase.
On a terminal each map is drawn; into a pipe or file each word's score and peak point are printed
(FORCE_COLOR=1 draws the maps anyway).

The other direction (assoc.api.Searcher.region_words and .label):
- `--at X,Y` or `--box X,Y,W,H` (the photo's pixels after EXIF orientation): the words that match that
  region best, from TEXT's words when given, else from the model's vocabulary. --json:
  {"image", "width", "height", "grid", "region": [x, y, w, h] (the grid cells scored), "source":
  "phrase" | "vocabulary", "words": [{"word", "score"}, ...]} best first.
- no TEXT and no region: the photo's regions named by the vocabulary, a few non-overlapping ones best
  first. --json: [{"word", "score", "peak": [x, y], "box": [x, y, w, h]}, ...].
With --out both draw the boxes and their words over the photo; a terminal shows that picture, a pipe
one line per word. A bundle without a vocabulary needs TEXT.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated

import typer
from PIL import Image
from rich.console import Console
from rich.text import Text

from ..api.results import PhotoLabels, RegionWords
from ..runtime.errors import AssocError
from .common import PICTURE_CELLS, echo_json, heatmap_picture, out_console
from .options import JsonOpt, SearcherOptions, searcher_options
from .quick_exit import keep_until_exit
from .terminal import InlineImage, render

REGION_WORDS = 10  # words listed for a region by default
PHOTO_LABELS = 5  # labelled regions of a photo by default
REGION_WORDS_DRAWN = 3  # words written on the region's tag in a picture


@searcher_options
def localize(
    image: Annotated[Path, typer.Argument(metavar="IMG", help="A photo (indexed or not).")],
    text: Annotated[
        str | None,
        typer.Argument(
            metavar="[TEXT]", help="Words to find in the photo; without them, name its regions from the vocabulary."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Save the phrase heatmap (or the named regions) over the photo (PNG, photo-sized)."),
    ] = None,
    per_word: Annotated[
        bool,
        typer.Option("--per-word", help="Draw every word's map; with --out also save NAME.words.png beside it."),
    ] = False,
    at: Annotated[
        str | None, typer.Option("--at", metavar="X,Y", help="Which words match this point (photo pixels).")
    ] = None,
    box: Annotated[
        str | None, typer.Option("--box", metavar="X,Y,W,H", help="Which words match this box (photo pixels).")
    ] = None,
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            help=f"Words for --at/--box (default {REGION_WORDS}), or regions named without TEXT ({PHOTO_LABELS}).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    *,
    target: SearcherOptions,
) -> None:
    """Heatmaps of each word and of the whole phrase over one photo; peaks in the photo's pixels.

    With --at or --box, the words that match that region; with no TEXT, what is where in the photo."""
    from ..api.render import overlay, per_word_sheet

    if at is not None and box is not None:
        raise AssocError("give --at or --box, not both")
    if top is not None and top < 1:
        raise AssocError(f"--top must be at least 1, not {top}")
    if per_word and (text is None or at is not None or box is not None):
        raise AssocError("--per-word draws the maps of TEXT's words: give TEXT, without --at or --box")
    if out is not None:
        _check_out(out, image, per_word)
    point = _numbers(at, "--at", "X,Y") if at is not None else None
    rect = _numbers(box, "--box", "X,Y,W,H") if box is not None else None
    with target.open() as searcher:
        keep_until_exit(searcher)  # not torn down just before the process ends (assoc.cli.quick_exit)
        if text is None and searcher.bundle.config.vocabulary is None:
            raise AssocError(
                f"model bundle {searcher.bundle.root} has no vocabulary to name photo regions with: give TEXT,"
                f" or add one with `assoc vocab {searcher.bundle.root} --data CAPTIONS`"
            )
        if point is not None or rect is not None:
            region = searcher.region_words(image, at=point, box=rect, phrase=text, top=top or REGION_WORDS)
            _show_region(region, out, as_json)
            return
        if text is None:
            _show_labels(searcher.label(image, top=top or PHOTO_LABELS), out, as_json)
            return
        found = searcher.localize(image, text)
    maps, photo = found.heatmaps, found.photo
    if out is not None:
        _save(overlay(photo, maps.phrase_map), out)
        if per_word:
            _save(per_word_sheet(photo, maps), _sheet(out))
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


def _numbers(value: str, flag: str, shape: str) -> tuple[float, ...]:
    """'12,30' -> (12.0, 30.0): as many finite numbers as `shape` names, else a one-line error."""
    try:
        numbers = tuple(float(part) for part in value.split(","))
    except ValueError:
        numbers = ()
    if len(numbers) != shape.count(",") + 1 or not all(math.isfinite(n) for n in numbers):
        raise AssocError(f"{flag} wants {shape} in the photo's pixels, not {value!r}")
    return numbers


def _show_region(region: RegionWords, out: Path | None, as_json: bool) -> None:
    """The region outlined and tagged with its best words (--out, a terminal), or the words as lines or JSON."""
    from ..api.render import labelled_overlay

    tag = ", ".join(f"{w.word} {w.score:.2f}" for w in region.words[:REGION_WORDS_DRAWN])
    console = out_console()
    draw = region.photo is not None and (out is not None or (console.is_terminal and not as_json))
    picture = labelled_overlay(region.photo, [(tag, region.region, None)]) if draw else None
    if out is not None and picture is not None:
        _save(picture, out)
    if as_json:
        echo_json(region.to_dict())
        return
    if console.is_terminal and picture is not None:
        console.print(_picture(picture, console))
    for w in region.words:
        console.print(Text(f"{w.word}  {w.score:.4f}"), soft_wrap=True)
    console.print(Text(f"region (x, y, w, h) {region.region}  words from the {region.source}"), soft_wrap=True)


def _show_labels(found: PhotoLabels, out: Path | None, as_json: bool) -> None:
    from ..api.render import LABEL_COLOURS, labelled_overlay

    drawn = [(f"{label.word} {label.score:.2f}", label.box, label.peak) for label in found.labels]
    console = out_console()
    draw = found.photo is not None and (out is not None or (console.is_terminal and not as_json))
    picture = labelled_overlay(found.photo, drawn) if draw else None
    if out is not None and picture is not None:
        _save(picture, out)
    if as_json:
        echo_json(found.to_list())
        return
    terminal = console.is_terminal and picture is not None
    if terminal:
        console.print(_picture(picture, console))
    for k, label in enumerate(found.labels):
        line = Text(f"{label.word}  {label.score:.4f}  peak (x, y) {label.peak}  box (x, y, w, h) {label.box}")
        if terminal:
            line = Text.assemble(("\u25a0 ", "rgb({},{},{})".format(*LABEL_COLOURS[k % len(LABEL_COLOURS)])), line)
        console.print(line, soft_wrap=True)


def _picture(picture: Image.Image, console: Console) -> Text | InlineImage:
    return render(picture, max(8, min(PICTURE_CELLS, console.width - 2)))


def _sheet(out: Path) -> Path:
    """Where --per-word saves its sheet of panels: NAME.words.png beside --out NAME.EXT."""
    return out.with_name(out.stem + ".words.png")


def _check_out(out: Path, image: Path, per_word: bool) -> None:
    """Refuse, before any work, an --out that cannot be written or would overwrite the photo itself."""
    if out.is_dir():
        raise AssocError(f"--out {out} is a folder: give the file to write, such as {out / 'overlay.png'}")
    formats = Image.registered_extensions()
    if formats.get(out.suffix.lower()) not in Image.SAVE:
        raise AssocError(f"--out {out}: give a picture file name ending .png (or .jpg, .webp, .tif)")
    if not out.parent.is_dir():
        raise AssocError(f"--out {out}: there is no folder {out.parent} to write it in")
    for written, flag in ((out, "--out"), (_sheet(out), "--per-word's sheet")):
        if (written is out or per_word) and _same_file(written, image):
            raise AssocError(f"{flag} {written} is the photo itself: give --out another file name")


def _same_file(a: Path, b: Path) -> bool:
    """Whether a and b are one file (also through a link or another spelling of the path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either one does not exist (yet)
        return False


def _save(picture: Image.Image, out: Path) -> None:
    try:
        picture.save(out)
    except (OSError, ValueError) as exc:
        raise AssocError(f"cannot write {out}: {exc}") from None


def register(app: typer.Typer) -> None:
    app.command()(localize)

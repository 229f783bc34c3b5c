"""Heatmaps drawn over photos: the colour ramp, a photo-sized overlay, a labelled per-word sheet, and
labelled regions (boxes with their words).

Presentation shared by every front end (the CLI's files and terminal pictures, the web app's images);
the maps themselves are numbers from assoc.runtime.scoring.heatmap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..runtime.scoring.heatmap import Heatmaps, normalize, upsample

# Control points of a dark-purple -> red -> yellow -> near-white ramp, close to inferno: lightness
# rises monotonically, so a heatmap reads the same in greyscale and for colour-blind viewers.
_COLORMAP_POINTS = np.array(
    [
        (0.00, 0, 0, 4),
        (0.14, 30, 12, 70),
        (0.28, 87, 16, 110),
        (0.42, 140, 37, 105),
        (0.56, 190, 56, 80),
        (0.70, 231, 95, 45),
        (0.84, 250, 160, 25),
        (1.00, 252, 255, 164),
    ],
    dtype=np.float64,
)
_LEVELS = np.linspace(0.0, 1.0, 256)
_LUT = np.rint(
    np.stack([np.interp(_LEVELS, _COLORMAP_POINTS[:, 0], _COLORMAP_POINTS[:, c]) for c in (1, 2, 3)], axis=1)
).astype(np.uint8)  # (256, 3)



def colorize(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 RGB with one more axis of 3."""
    index = (np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return _LUT[index]


def heat_image(grid_map: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The normalised, colour-mapped heatmap alone at size (width, height): for a viewer that blends it.

    Normalising before upsampling gives the same result (bilinear values stay within the cells' range)
    at grid cost instead of photo cost.
    """
    return Image.fromarray(colorize(upsample(normalize(grid_map), size)), "RGB")


def overlay(photo: Image.Image, grid_map: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The heatmap blended over the photo (alpha = heatmap weight), photo-sized."""
    return Image.blend(photo.convert("RGB"), heat_image(grid_map, photo.size), alpha)


def per_word_sheet(
    photo: Image.Image, maps: Heatmaps, panel_height: int = 240, alpha: float = 0.5
) -> Image.Image:
    """Side-by-side overlays, one per word and a last one for the phrase, each labelled 'word score'."""
    panel_width = max(1, round(panel_height * photo.width / photo.height))
    small = photo.convert("RGB").resize((panel_width, panel_height), Image.BILINEAR)
    panels = [
        (word, float(s), m) for word, s, m in zip(maps.words, maps.word_scores, maps.word_maps, strict=True)
    ]
    panels.append(("phrase", maps.score, maps.phrase_map))
    font = ImageFont.load_default()
    label_height = 20
    sheet = Image.new("RGB", (panel_width * len(panels), panel_height + label_height), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (label, score, grid_map) in enumerate(panels):
        sheet.paste(overlay(small, grid_map, alpha), (k * panel_width, 0))
        draw.text((k * panel_width + 4, panel_height + 3), f"{label} {score:.3f}", fill="black", font=font)
    return sheet


# Outline colours of labelled regions, in the order labels come (best first): strong, distinct hues that
# stand out on most photos; the terminal's caption lines use the same ones.
LABEL_COLOURS = [(255, 59, 48), (52, 199, 89), (0, 122, 255), (255, 204, 0), (175, 82, 222), (255, 149, 0)]


def labelled_overlay(
    photo: Image.Image, labels: Sequence[tuple[str, tuple[int, int, int, int], tuple[int, int] | None]]
) -> Image.Image:
    """The photo with each (text, box (x, y, w, h), peak (x, y) or None) drawn on it: the box outlined,
    the peak marked with a dot, the text on a tag in the box's colour (LABEL_COLOURS, in order)."""
    picture = photo.convert("RGB")
    draw = ImageDraw.Draw(picture)
    short_side = min(picture.size)
    line = max(2, round(short_side / 160))
    font = _font(max(12, round(short_side / 24)))
    for k, (text, (x, y, w, h), peak) in enumerate(labels):
        colour = LABEL_COLOURS[k % len(LABEL_COLOURS)]
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=colour, width=line)
        if peak is not None:
            r = 2 * line
            draw.ellipse((peak[0] - r, peak[1] - r, peak[0] + r, peak[1] + r), fill=colour, outline=(0, 0, 0))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tag_w, tag_h = right - left + 2 * line, bottom - top + 2 * line
        tag_x = min(x, picture.width - tag_w)
        tag_y = y - tag_h if y >= tag_h else y  # above the box when there is room, else inside it
        draw.rectangle((tag_x, tag_y, tag_x + tag_w, tag_y + tag_h), fill=colour)
        ink = (0, 0, 0) if sum(colour) > 400 else (255, 255, 255)
        draw.text((tag_x + line - left, tag_y + line - top), text, fill=ink, font=font)
    return picture


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at about `size` pixels (a fixed small one on Pillow builds without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()

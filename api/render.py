"""Heatmaps drawn over photos: the colour ramp, a photo-sized overlay and a labelled per-word sheet.

Presentation shared by every front end (the CLI's files and terminal pictures, the web app's images);
the maps themselves are numbers from assoc.runtime.scoring.heatmap.
"""

from __future__ import annotations

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


def overlay(photo: Image.Image, grid_map: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The normalised, colour-mapped heatmap blended over the photo (alpha = heatmap weight), photo-sized.

    Normalising before upsampling gives the same result (bilinear values stay within the cells' range)
    at grid cost instead of photo cost.
    """
    heat = colorize(upsample(normalize(grid_map), photo.size))
    return Image.blend(photo.convert("RGB"), Image.fromarray(heat, "RGB"), alpha)


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

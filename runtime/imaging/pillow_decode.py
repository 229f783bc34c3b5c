"""Pillow's part of decoding a photo: one file or stream into 8-bit RGB as a viewer shows it, under
assoc's pixel cap. load_image (assoc.runtime.imaging.images) decodes every photo but a RAW file here
and words the errors; the RAW decoder (assoc.runtime.imaging.raw) decodes a camera's embedded preview
here too, so neither imports the other's internals.

- EXIF orientation is applied first, so grids and heatmaps line up with the displayed photo; a
  damaged EXIF block leaves the photo as stored.
- Palette, CMYK, 16-bit, float, greyscale and alpha images become plain 8-bit RGB (alpha over white).
- Memory is bounded: a cap on the pixels decoded at once refuses what no photo library holds before
  any pixel is decoded; when only a small version is needed, JPEGs are decoded at a reduced scale
  (DCT scaling) and other formats are reduced right after decoding; 16-bit and float images are
  converted in strips.
- Only regular files are read (a named pipe or a device named like a photo is refused, never read).
- HEIC/HEIF open through pillow-heif when it is installed (assoc[heic]): its opener is registered
  here, beside the one place assoc opens a file with Pillow (open_guarded), so a header read alone
  (a photo's date, assoc.runtime.imaging.dates) reads HEIC too.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from ..errors import ImageLoadError
from .files import open_regular
from .preprocess import REDUCING_GAP

# Pixels decoded at once (after JPEG's DCT scaling): 100 MP is 400 MB in Pillow's RGB, about twice that
# while converting. A phone's 200 MP JPEG still indexes (decoded at 1/8 scale); a 16-bit PNG of 110 MP,
# which no photo library holds but a 238 KB file can declare, is refused.
MAX_MEGAPIXELS = 100.0
DECODE_PEAK_BYTES = int(MAX_MEGAPIXELS * 1e6 * 4 * 2)  # the most one load_image holds at its peak
# Pillow's own guard (an error past twice this) lets JPEGs through that DCT scaling brings under the cap.
# Set only while assoc opens a photo (open_guarded), never for the rest of the user's process.
PILLOW_GUARD_PIXELS = int(MAX_MEGAPIXELS * 1e6 * 64 / 2)
_GUARD_LOCK = threading.Lock()
# What Pillow raises for a file it cannot open or decode (UnidentifiedImageError is an OSError), besides
# the cap's ImageLoadError; load_image words each as one line.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I", "F")  # more than 8 bits per pixel, one channel
_STRIP_PIXELS = 1 << 22  # wide greyscale is converted this many pixels at a time
EXIF_TRANSPOSE = {  # EXIF orientation -> what shows the photo upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

try:  # optional: HEIC support
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_OPENER = True
except ImportError:  # pragma: no cover - depends on the user's install
    HEIF_OPENER = False


@dataclass(frozen=True)
class LoadedImage:
    """An RGB image plus the size of the full photo as displayed (after EXIF orientation)."""

    image: Image.Image
    width: int
    height: int


def open_guarded(fh: BinaryIO) -> Image.Image:
    """Image.open under assoc's pixel guard, restoring the caller's Pillow setting at once (the open
    parses only the header; decoding happens later, outside the lock)."""
    with _GUARD_LOCK:
        before = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = PILLOW_GUARD_PIXELS
        try:
            return Image.open(fh)
        finally:
            Image.MAX_IMAGE_PIXELS = before


def photo_name(source: Path | BinaryIO) -> str:
    """How messages name a photo: its path, or "the photo" for an open file (an upload, a preview)."""
    return str(source) if isinstance(source, Path) else "the photo"


def decode_with_pillow(
    source: Path | BinaryIO,
    min_size: tuple[int, int] | None,
    max_megapixels: float,
    *,
    min_size_if_large: tuple[int, int] | None,
    orientation: int | None,
) -> LoadedImage:
    """A photo Pillow reads, as load_image decodes it (its arguments, meant the same way). Over the
    cap is an ImageLoadError; anything else that goes wrong is left as raised (DECODE_ERRORS, and
    the OSErrors of opening the file) for the caller to word."""
    with open_regular(source) if isinstance(source, Path) else nullcontext(source) as fh:
        img = open_guarded(fh)
        width, height = img.size
        orientation = exif_orientation(img) if orientation is None else orientation
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        want = None  # min_size in the photo's stored frame (before the EXIF turn)
        if min_size is None and img.size[0] * img.size[1] > max_megapixels * 1e6:
            min_size = min_size_if_large
        if min_size is not None:
            want = min_size if orientation not in (5, 6, 7, 8) else (min_size[1], min_size[0])
            if img.format == "JPEG":
                img.draft("RGB", want)
        if img.size[0] * img.size[1] > max_megapixels * 1e6:
            size = f"{width}x{height} is {width * height / 1e6:.0f} megapixels"
            raise ImageLoadError(f"{photo_name(source)}: {size}, over the {max_megapixels:g} megapixel limit")
        img.load()
    if want is not None:
        img = reduced(img, want)
    if orientation in EXIF_TRANSPOSE:
        img = img.transpose(EXIF_TRANSPOSE[orientation])
    return LoadedImage(image=to_rgb(img), width=width, height=height)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; transparent pixels are composited over white."""
    if img.mode == "RGB":
        return img
    if img.mode in _WIDE_GREY:
        return _grey_to_8bit(img).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8); 1 (as stored) when there is none or the EXIF block is damaged."""
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - EXIF parsers raise many types on damaged blocks; the pixels may be fine
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def reduced(img: Image.Image, want: tuple[int, int]) -> Image.Image:
    """The image shrunk by the whole factors by which the preprocessing resize (Image.resize with
    REDUCING_GAP) would reduce it first, so less is held and the resize gives the same pixels."""
    factors = (int(img.width / want[0] / REDUCING_GAP) or 1, int(img.height / want[1] / REDUCING_GAP) or 1)
    if factors == (1, 1):
        return img
    if img.mode in _WIDE_GREY:
        img = _grey_to_8bit(img)
    try:
        return img.reduce(factors)
    except ValueError:  # a mode reduce does not take (palette, 1-bit): left to the resize
        return img


def _grey_to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float greyscale image as 8-bit "L", a strip at a time.

    Images whose values go over 255 are taken as 16-bit (scaled by 255/65535); NaN becomes 0 and
    infinities the ends of the range.
    """
    top = img.getextrema()[1]
    scale = 255.0 / 65535.0 if top > 255 else 1.0
    out = Image.new("L", img.size)
    rows = max(1, _STRIP_PIXELS // max(1, img.width))
    for y in range(0, img.height, rows):
        strip = np.asarray(img.crop((0, y, img.width, min(img.height, y + rows))), dtype=np.float64) * scale
        grey = np.nan_to_num(strip, nan=0.0, posinf=255.0, neginf=0.0).clip(0, 255).astype(np.uint8)
        out.paste(Image.fromarray(grey, "L"), (0, y))
    return out

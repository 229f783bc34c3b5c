"""Decoding photos as real libraries hold them, into RGB images that match what a viewer shows.

- EXIF orientation is applied first, so grids and heatmaps line up with the displayed photo; a
  damaged EXIF block leaves the photo as stored.
- Palette, CMYK, 16-bit, float, greyscale and alpha images become plain 8-bit RGB (alpha over white).
- Memory is bounded: a cap on the pixels decoded at once refuses what no photo library holds before
  any pixel is decoded; when only a small version is needed, JPEGs are decoded at a reduced scale
  (DCT scaling) and other formats are reduced right after decoding; 16-bit and float images are
  converted in strips.
- Only regular files are read (a named pipe or a device named like a photo is refused, never read).
- HEIC/HEIF open through pillow-heif when it is installed (assoc[heic]), AVIF through Pillow itself
  where it was built with libavif (its wheels are); a message names what is missing.
- RAW camera files (RAW_SUFFIXES) open through rawpy when it is installed (assoc[raw]): their embedded
  preview or a half-size demosaic, under the same cap and orientation rules (assoc.runtime.imaging.raw).
- Pillow's warnings about a file (corrupt EXIF, odd chunks) are not printed by the CLI and the web
  server (assoc.runtime.imaging.quiet_pillow_warnings): a damaged part either still decodes, or the
  load fails with a reason.
  Importing assoc changes no Pillow setting and no warning filter of the user's process.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError, features

from ..errors import ImageLoadError
from .files import NotRegularFileError, open_regular
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
# Camera RAW formats LibRaw reads (Sony, Canon, Canon CR3, Nikon, Nikon Coolpix, Adobe DNG, Olympus, Fujifilm,
# Panasonic, Pentax, Samsung); decoded by assoc.runtime.imaging.raw.
RAW_SUFFIXES = frozenset({".arw", ".cr2", ".cr3", ".nef", ".nrw", ".dng", ".orf", ".raf", ".rw2", ".pef", ".srw"})
PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jp2", ".j2k"}
    | {".heic", ".heif", ".avif"}
    | RAW_SUFFIXES
)
_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I", "F")  # more than 8 bits per pixel, one channel
_STRIP_PIXELS = 1 << 22  # wide greyscale is converted this many pixels at a time
_TRANSPOSE = {  # EXIF orientation -> what shows the photo upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}



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

try:  # optional: HEIC support
    import pillow_heif

    pillow_heif.register_heif_opener()
    _HEIF_OPENER = True
except ImportError:  # pragma: no cover - depends on the user's install
    _HEIF_OPENER = False


@dataclass(frozen=True)
class LoadedImage:
    """An RGB image plus the size of the full photo as displayed (after EXIF orientation)."""

    image: Image.Image
    width: int
    height: int


def load_image(
    path: str | Path | BinaryIO,
    min_size: tuple[int, int] | None = None,
    max_megapixels: float = MAX_MEGAPIXELS,
    *,
    min_size_if_large: tuple[int, int] | None = None,
    orientation: int | None = None,
) -> LoadedImage:
    """Open a photo as RGB, oriented as a viewer shows it.

    min_size (width, height), when given, says no more detail than that is needed: JPEGs decode at a
    reduced scale and other photos are reduced by the whole factors the preprocessing resize would
    reduce by first (so its result is unchanged); the reported width and height are always those of
    the full photo. min_size_if_large is min_size for a photo over max_megapixels only: one that
    fits is decoded whole (to be drawn over at its own size), a larger one as indexing decodes it,
    at a reduced scale, so whatever index accepts opens here too. path may also be an open binary
    file (a photo held in memory, such as an upload); messages then call it "the photo". orientation
    (an EXIF orientation, 1-8) replaces the photo's own where the caller knows better (a RAW file's
    preview, assoc.runtime.imaging.raw).
    """
    source: Path | BinaryIO = path if hasattr(path, "read") else Path(path)
    name = source if isinstance(source, Path) else "the photo"
    try:
        if isinstance(source, Path) and source.suffix.lower() in RAW_SUFFIXES:
            from .raw import load_raw  # rawpy loads with the first RAW file, never before

            return load_raw(source, min_size, max_megapixels, min_size_if_large=min_size_if_large)
        with open_regular(source) if isinstance(source, Path) else nullcontext(source) as fh:
            img = open_guarded(fh)
            width, height = img.size
            orientation = _orientation(img) if orientation is None else orientation
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
                raise ImageLoadError(f"{name}: {size}, over the {max_megapixels:g} megapixel limit")
            img.load()
        if want is not None:
            img = _reduced(img, want)
        if orientation in _TRANSPOSE:
            img = img.transpose(_TRANSPOSE[orientation])
        rgb = to_rgb(img)
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageLoadError(f"{name}: is a folder, not a photo") from None
    except PermissionError:
        raise ImageLoadError(f"{name}: permission denied") from None
    except NotRegularFileError as exc:
        raise ImageLoadError(f"{name}: {exc}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: {_unrecognised(source)}") from None
    except Image.DecompressionBombError:
        raise ImageLoadError(f"{name}: too many pixels (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(f"{name}: cannot decode ({exc})") from None
    return LoadedImage(image=rgb, width=width, height=height)


def _unrecognised(source: Path | BinaryIO) -> str:
    """Why Pillow opened nothing: a format this install lacks (said with what adds it), or none at all."""
    suffix = source.suffix.lower() if isinstance(source, Path) else ""
    if suffix in (".heic", ".heif") and not _HEIF_OPENER:
        return "HEIC/HEIF photos need pillow-heif: pip install 'assoc[heic]'"
    if suffix == ".avif" and not _pillow_has("avif"):
        return "this Pillow was built without AVIF support (libavif); Pillow's own wheels have it"
    return "not a recognised image format"


def _pillow_has(module: str) -> bool:
    try:
        return features.check_module(module)
    except ValueError:  # a Pillow too old to know the module at all
        return False


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


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8); 1 (as stored) when there is none or the EXIF block is damaged."""
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - EXIF parsers raise many types on damaged blocks; the pixels may be fine
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _reduced(img: Image.Image, want: tuple[int, int]) -> Image.Image:
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

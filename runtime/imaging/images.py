"""Decoding photos as real libraries hold them, into RGB images that match what a viewer shows.

- EXIF orientation is applied first, so grids and heatmaps line up with the displayed photo.
- Palette, CMYK, 16-bit, greyscale and alpha images become plain 8-bit RGB (alpha over white).
- JPEGs are decoded in draft mode (DCT scaling) when only a small version is needed.
- A pixel-count cap refuses decompression bombs before any pixel is decoded.
- HEIC/HEIF/AVIF open through pillow-heif when it is installed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageLoadError

MAX_MEGAPIXELS = 120.0
# Pillow's hard limit is twice this; it must stay above any cap a caller asks for.
Image.MAX_IMAGE_PIXELS = int(MAX_MEGAPIXELS * 1e6)
PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)

try:  # optional: HEIC support
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the user's install
    HEIF_AVAILABLE = False


@dataclass(frozen=True)
class LoadedImage:
    """An RGB image plus the size of the full photo as displayed (after EXIF orientation)."""

    image: Image.Image
    width: int
    height: int


def load_image(
    path: str | Path, min_size: tuple[int, int] | None = None, max_megapixels: float = MAX_MEGAPIXELS
) -> LoadedImage:
    """Open a photo as RGB, oriented as a viewer shows it.

    min_size (width, height), when given, lets JPEG decoding skip detail below that size; the
    reported width and height are always those of the full photo.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # The explicit pixel cap below decides; Pillow's own warning would fire below it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
            width, height = img.size
            if width * height > max_megapixels * 1e6:
                raise ImageLoadError(
                    f"{path}: {width}x{height} is over the {max_megapixels:g} megapixel limit"
                )
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            if min_size is not None and img.format == "JPEG":
                want = min_size if orientation not in (5, 6, 7, 8) else (min_size[1], min_size[0])
                img.draft("RGB", want)
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = to_rgb(img)
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageLoadError(f"{path}: is a folder, not a photo") from None
    except PermissionError:
        raise ImageLoadError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not a recognised image format") from None
    except Image.DecompressionBombError:
        raise ImageLoadError(f"{path}: too many pixels (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(f"{path}: cannot decode ({exc})") from None
    return LoadedImage(image=rgb, width=width, height=height)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; transparent pixels are composited over white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / (65535.0 if top > 255 else 255.0) if top > 0 else 1.0
        grey = np.clip(arr * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")

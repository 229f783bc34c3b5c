"""Opening any photo assoc reads: load_image, the one entry point, which picks the decoder by the
file's suffix and words whatever goes wrong as one line (an ImageLoadError).

- RAW camera files (RAW_SUFFIXES) go to assoc.runtime.imaging.raw, which reads them through rawpy
  when it is installed (assoc[raw]): their embedded preview or a half-size demosaic, under the same cap
  and orientation rules. rawpy loads with the first RAW file, never before.
- Every other photo is decoded by Pillow (assoc.runtime.imaging.pillow_decode, which holds the pixel
  cap, EXIF orientation, the reduction to what is needed and the conversion to RGB; raw decodes its
  previews there too). Arrows point one way: images -> raw -> pillow_decode, images -> pillow_decode.
- HEIC/HEIF open through pillow-heif when it is installed (assoc[heic]), AVIF through Pillow itself
  where it was built with libavif (its wheels are); a message names what is missing.
- Pillow's warnings about a file (corrupt EXIF, odd chunks) are not printed by the CLI and the web
  server (assoc.runtime.imaging.quiet_pillow_warnings): a damaged part either still decodes, or the
  load fails with a reason.
  Importing assoc changes no Pillow setting and no warning filter of the user's process.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError, features

from ..errors import ImageLoadError
from .files import NotRegularFileError
from .pillow_decode import (
    DECODE_ERRORS,
    HEIF_OPENER,
    MAX_MEGAPIXELS,
    LoadedImage,
    decode_with_pillow,
    photo_name,
)
from .raw import load_raw

# Camera RAW formats LibRaw reads (Sony, Canon, Canon CR3, Nikon, Nikon Coolpix, Adobe DNG, Olympus, Fujifilm,
# Panasonic, Pentax, Samsung); decoded by assoc.runtime.imaging.raw.
RAW_SUFFIXES = frozenset({".arw", ".cr2", ".cr3", ".nef", ".nrw", ".dng", ".orf", ".raf", ".rw2", ".pef", ".srw"})
PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jp2", ".j2k"}
    | {".heic", ".heif", ".avif"}
    | RAW_SUFFIXES
)


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
    (an EXIF orientation, 1-8) replaces the photo's own where the caller knows better.
    """
    source: Path | BinaryIO = path if hasattr(path, "read") else Path(path)
    name = photo_name(source)
    try:
        if isinstance(source, Path) and source.suffix.lower() in RAW_SUFFIXES:
            return load_raw(source, min_size, max_megapixels, min_size_if_large=min_size_if_large)
        return decode_with_pillow(
            source, min_size, max_megapixels, min_size_if_large=min_size_if_large, orientation=orientation
        )
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
    except DECODE_ERRORS as exc:
        raise ImageLoadError(f"{name}: cannot decode ({exc})") from None


def _unrecognised(source: Path | BinaryIO) -> str:
    """Why Pillow opened nothing: a format this install lacks (said with what adds it), or none at all."""
    suffix = source.suffix.lower() if isinstance(source, Path) else ""
    if suffix in (".heic", ".heif") and not HEIF_OPENER:
        return "HEIC/HEIF photos need pillow-heif: pip install 'assoc[heic]'"
    if suffix == ".avif" and not _pillow_has("avif"):
        return "this Pillow was built without AVIF support (libavif); Pillow's own wheels have it"
    return "not a recognised image format"


def _pillow_has(module: str) -> bool:
    try:
        return features.check_module(module)
    except ValueError:  # a Pillow too old to know the module at all
        return False

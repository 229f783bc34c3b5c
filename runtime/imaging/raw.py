"""RAW camera files (assoc[raw], through rawpy and LibRaw), decoded as load_image decodes any photo.

load_image (assoc.runtime.imaging.images) hands a RAW file here; an embedded JPEG preview is decoded by
Pillow as any other photo is (assoc.runtime.imaging.pillow_decode), so this module never imports images.
rawpy is imported with the first RAW file, never when this module is.

- What is decoded: the camera's embedded preview (JPEG, or a bitmap) when it is at least as large as
  what is asked for, else LibRaw's half-size demosaic (each 2x2 block of the sensor becomes one pixel,
  with no interpolation: a quarter of the sensor's pixels), white balance as shot, LibRaw's automatic
  brightness, sRGB tone curve.
  A photo asked for whole (no min_size) is wanted at the half-size demosaic's size: a preview that
  large serves it, and nothing larger is ever decoded. rclip reads RAW files the same way.
- Orientation: a preview carrying an EXIF orientation of its own is turned by it; one
  without is turned by the RAW's own (LibRaw's flip), unless its shape shows it is stored turned
  already; LibRaw turns the demosaic itself.
- Size: the reported width and height are those of the sensor's visible area as displayed (after the
  turn), what a RAW viewer shows, whatever was decoded.
- Memory: a demosaic holds more than its output (the sensor's 16-bit values and a 4-channel
  half-size image besides the RGB one); decode_pixels says what it holds in load_image's own unit (the
  pixels of an ordinary decode), so the megapixel cap and the web server's decode budget cover it too.
- Without rawpy, a RAW file is an ImageLoadError that names the extra to install (`assoc index` lists
  it among the skipped files with that reason).

Which RAW files are skipped because a JPEG of the same name lies beside them is the walk's rule
(assoc.runtime.indexing.walk).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ImageLoadError
from .files import open_regular
from .pillow_decode import (
    DECODE_ERRORS,
    DECODE_PEAK_BYTES,
    EXIF_TRANSPOSE,
    MAX_MEGAPIXELS,
    LoadedImage,
    decode_with_pillow,
    exif_orientation,
    open_guarded,
    reduced,
    to_rgb,
)

MISSING_EXTRA = "RAW photos need rawpy: pip install 'assoc[raw]'"
SRGB_GAMMA = (2.4, 12.92)  # LibRaw's (power, toe slope) for the sRGB curve; its default is BT.709's
# LibRaw's flip (dcraw's code for a turn or mirror; bit 4 swaps width and height) -> the same as an EXIF orientation
_FLIP_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
# What a half-size demosaic holds at its peak per sensor pixel: the raw 16-bit values (2 bytes), LibRaw's
# 4 x 16-bit half-size image (2 bytes), the 8-bit RGB output and its copy into Pillow (1.5 bytes), and
# LibRaw's work buffers. Measured: a 24 MP DNG's demosaic raised the process's peak RSS by 6.0 bytes per
# sensor pixel (137 MB).
DEMOSAIC_BYTES_PER_SENSOR_PIXEL = 6.0
_BYTES_PER_PIXEL = DECODE_PEAK_BYTES / (MAX_MEGAPIXELS * 1e6)  # what load_image's cap allows per decoded pixel


def load_raw(
    path: Path,
    min_size: tuple[int, int] | None = None,
    max_megapixels: float = MAX_MEGAPIXELS,
    *,
    min_size_if_large: tuple[int, int] | None = None,
) -> LoadedImage:
    """A RAW file as an RGB image, oriented as displayed; load_image's arguments, meant the same way
    (the whole photo is the half-size demosaic here). OSErrors (no such file, permission, a pipe) are
    left to load_image, which words them as for any photo."""
    rawpy = _rawpy(path)
    with open_regular(path):  # a pipe or a device named like a RAW file is refused before LibRaw opens it
        pass
    try:
        with rawpy.imread(str(path)) as raw:
            return _decode(raw, rawpy, path, min_size, max_megapixels, min_size_if_large)
    except rawpy.LibRawFileUnsupportedError:
        raise ImageLoadError(f"{path}: not a RAW file LibRaw can read") from None
    except rawpy.LibRawError as exc:
        raise ImageLoadError(f"{path}: cannot decode the RAW file ({_message(exc)})") from None


def decode_pixels(path: Path) -> int:
    """What decoding this RAW file holds at its peak, in pixels of an ordinary decode (what the web
    server's decode budget counts): its demosaic's, the most a RAW decode takes. 0 when it cannot be
    read (rawpy missing, not a RAW file), which leaves the reason to load_raw."""
    try:
        rawpy = _rawpy(path)
        with open_regular(path):
            pass
        with rawpy.imread(str(path)) as raw:
            sizes = raw.sizes
    except Exception:  # noqa: BLE001 - rawpy missing, no such file, LibRaw's errors: load_raw says why
        return 0
    return _demosaic_pixels(sizes.raw_width * sizes.raw_height)


def _decode(
    raw: Any,
    rawpy: Any,
    path: Path,
    min_size: tuple[int, int] | None,
    max_megapixels: float,
    min_size_if_large: tuple[int, int] | None,
) -> LoadedImage:
    sizes = raw.sizes
    swapped = bool(sizes.flip & 4)
    width, height = (sizes.height, sizes.width) if swapped else (sizes.width, sizes.height)
    demosaic = _demosaic_pixels(sizes.raw_width * sizes.raw_height)
    if min_size is None and demosaic > max_megapixels * 1e6:
        min_size = min_size_if_large
    half = ((width + 1) // 2, (height + 1) // 2)
    need = half if min_size is None else (min(half[0], min_size[0]), min(half[1], min_size[1]))
    preview = _preview(raw, rawpy, need, sizes, max_megapixels)
    if preview is not None:
        return LoadedImage(preview, width, height)
    if demosaic > max_megapixels * 1e6:
        sensor = sizes.raw_width * sizes.raw_height / 1e6
        raise ImageLoadError(
            f"{path}: a {sensor:.0f} megapixel RAW file with no preview that large; its demosaic is over the"
            f" {max_megapixels:g} megapixel limit"
        )
    rgb = raw.postprocess(half_size=True, use_camera_wb=True, gamma=SRGB_GAMMA, output_bps=8)
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")  # turned by LibRaw (its flip)
    return LoadedImage(reduced(image, need) if min_size is not None else image, width, height)


def _preview(raw: Any, rawpy: Any, need: tuple[int, int], sizes: Any, max_megapixels: float) -> Image.Image | None:
    """The embedded preview, oriented and reduced as far as `need` (displayed width, height) allows, if
    it is at least that large; None when there is none, it is smaller, or it cannot be decoded."""
    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawError:  # none, a kind LibRaw cannot hand out, or damaged: the demosaic instead
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            header = open_guarded(io.BytesIO(thumb.data))
            stored, own = header.size, exif_orientation(header)
        except Exception:  # noqa: BLE001 - a preview Pillow cannot open: the demosaic instead
            return None
    elif thumb.format == rawpy.ThumbFormat.BITMAP:
        bitmap = np.asarray(thumb.data)
        stored, own = (bitmap.shape[1], bitmap.shape[0]), 1
    else:
        return None
    turn = _preview_turn(own, sizes, stored)
    shown = (stored[1], stored[0]) if turn in (5, 6, 7, 8) else stored
    if shown[0] < need[0] or shown[1] < need[1]:
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            preview = io.BytesIO(thumb.data)
            return decode_with_pillow(preview, need, max_megapixels, min_size_if_large=None, orientation=turn).image
        except (ImageLoadError, *DECODE_ERRORS):  # over the cap, or damaged: the demosaic instead
            return None
    image = to_rgb(Image.fromarray(bitmap[..., 0] if bitmap.shape[-1] == 1 else bitmap))
    image = image.transpose(EXIF_TRANSPOSE[turn]) if turn in EXIF_TRANSPOSE else image
    return reduced(image, need)


def _preview_turn(own: int, sizes: Any, preview: tuple[int, int]) -> int:
    """The EXIF orientation that shows a preview upright: its own (LibRaw writes the RAW's into a JPEG
    preview that has none), else the RAW's, unless that is a quarter turn and the preview's shape is
    the turned one already (stored upright by the camera)."""
    turn = own if own != 1 else _FLIP_ORIENTATION.get(sizes.flip, 1)
    quarter = turn in (5, 6, 7, 8) and sizes.width != sizes.height and preview[0] != preview[1]
    if quarter and (preview[0] > preview[1]) != (sizes.width > sizes.height):
        return 1
    return turn


def _demosaic_pixels(sensor_pixels: int) -> int:
    """A half-size demosaic's peak memory in pixels of an ordinary decode."""
    return int(sensor_pixels * DEMOSAIC_BYTES_PER_SENSOR_PIXEL / _BYTES_PER_PIXEL)


def _rawpy(path: Path) -> Any:
    try:
        import rawpy
    except ImportError:
        raise ImageLoadError(f"{path}: {MISSING_EXTRA}") from None
    return rawpy


def _message(exc: Exception) -> str:
    """LibRaw's own words for an error (rawpy hands them over as bytes)."""
    text = exc.args[0] if exc.args else type(exc).__name__
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split()) or type(exc).__name__

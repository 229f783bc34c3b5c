"""A small library of real photos (examples/photos) for the filter tests: copies in three folders with
EXIF dates taken written by Pillow, a .jpeg among the .jpg, and a PNG that has only its file time."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DOG = "000000442450.jpg"  # examples/photos: a dog in the woods
UTC = dt.timezone.utc
# name -> (folder, EXIF DateTimeOriginal, OffsetTimeOriginal): what each copy says of when it was taken
TAKEN = {
    DOG: ("summer", "2019:07:14 10:00:00", "+02:00"),
    "000000078499.jpg": ("summer", "2019:07:14 23:30:00", "+00:00"),
    "000000107438.jpg": ("summer", "2019:07:20 08:00:00", "-05:00"),
    "000000129648.jpg": ("summer/beach", "2019:08:02 12:00:00", "+00:00"),
    "000000174375.jpg": ("winter", "2020:01:05 09:00:00", "+01:00"),
    "000000196393.jpeg": ("winter", "2020:01:06 09:00:00", "+01:00"),  # a .jpeg is a jpg
}
PNG = "000000252639.png"  # in winter/: no EXIF, so its file time counts, set to this
PNG_TIME = dt.datetime(2018, 5, 1, 12, tzinfo=UTC)
PHOTOS = len(TAKEN) + 1


def instant(stamp: str, offset: str) -> int:
    """Unix seconds of an EXIF date and time at an offset, written out."""
    local = dt.datetime.strptime(stamp, "%Y:%m:%d %H:%M:%S")
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    zone = dt.timezone((-1 if offset[0] == "-" else 1) * dt.timedelta(hours=hours, minutes=minutes))
    return int(local.replace(tzinfo=zone).timestamp())


def make_library(root: Path) -> Path:
    """The seven photos under root (made); root."""
    examples = REPO / "examples" / "photos"
    for name, (folder, stamp, offset) in TAKEN.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        exif = Image.Exif()
        exif.get_ifd(0x8769).update({0x9003: stamp, 0x9011: offset})  # DateTimeOriginal, OffsetTimeOriginal
        Image.open(examples / (Path(name).stem + ".jpg")).save(root / folder / name, "JPEG", quality=92, exif=exif)
    Image.open(examples / (Path(PNG).stem + ".jpg")).save(root / "winter" / PNG)
    os.utime(root / "winter" / PNG, (PNG_TIME.timestamp(), PNG_TIME.timestamp()))
    return root

"""When a photo was taken, as the indexer stores it for date filters (assoc.runtime.search.filters).

EXIF DateTimeOriginal, at its OffsetTimeOriginal where the photo records one, else in the local time
zone of the machine reading it (a camera's clock keeps local time and says nothing of its zone);
without a readable DateTimeOriginal, the file's modification time. Only the file's header is read
(Pillow parses EXIF without decoding a pixel), so reading the date of a photo indexed before dates
were kept costs no encoding.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

_EXIF_IFD = 0x8769
_DATE_TIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011
_EXIF_TIME = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
OFFSET = re.compile(r"Z|[+-]\d{2}:?\d{2}")


def date_taken(path: str | Path, mtime_ns: int) -> int:
    """Unix seconds of when the photo was taken (see the module docstring); never raises: a file that
    cannot be read for it, or holds no usable date, gives its modification time."""
    found = exif_taken(path)
    return found if found is not None else mtime_ns // 1_000_000_000


def exif_taken(path: str | Path) -> int | None:
    """Unix seconds of the photo's EXIF DateTimeOriginal (at its offset, else local time), or None."""
    from .files import open_regular
    from .pillow_decode import open_guarded  # registers the HEIC opener too

    try:
        with open_regular(path) as fh:
            exif = open_guarded(fh).getexif().get_ifd(_EXIF_IFD)
            stamp, offset = exif.get(_DATE_TIME_ORIGINAL), exif.get(_OFFSET_TIME_ORIGINAL)
    except Exception:  # noqa: BLE001 - any file Pillow cannot read a header of: the file's time instead
        return None
    found = _EXIF_TIME.match(str(stamp or "").strip())
    if found is None:
        return None
    try:
        when = dt.datetime(*(int(part) for part in found.groups()))
        zone = str(offset or "").strip().rstrip("\0")
        return int(at_offset(when, zone if OFFSET.fullmatch(zone) else None).timestamp())
    except (ValueError, OverflowError):  # 0000:00:00 00:00:00, a month 13: no date
        return None


def at_offset(when: dt.datetime, offset: str | None) -> dt.datetime:
    """A wall-clock time at an offset written +02:00, +0200 or Z; in local time without one."""
    if offset is None:
        return when.astimezone()
    if offset == "Z":
        return when.replace(tzinfo=dt.timezone.utc)
    digits = offset.replace(":", "")
    minutes = int(digits[1:3]) * 60 + int(digits[3:5])
    return when.replace(tzinfo=dt.timezone(dt.timedelta(minutes=-minutes if digits[0] == "-" else minutes)))

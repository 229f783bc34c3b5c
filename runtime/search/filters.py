"""Which photos a search may return: by folder, by date taken, by kind of file (PhotoFilter).

A filter narrows the photos a store hands a search BEFORE any first stage keeps candidates
(assoc.runtime.search.pipeline: store.open_view(where)), so a filtered search still returns k photos
when k match. Each store applies the same rules its own way: the built-in gallery through its
catalogue (PhotoFilter.mask over the rows of its snapshot), Qdrant as payload filters inside its
prefetch, its query and its scroll (runtime/stores/qdrant.py); tests/test_store_contract.py holds
both to the same answers.

The rules, all of which a photo must meet:
- folders: the photo's indexed path lies under one of them (a prefix of whole folder names, compared
  as text: nothing is looked up on disk, so the photos a gallery keeps of an unmounted disk match);
- since / until: its date taken lies in [since, until], both ends included. The date taken is EXIF
  DateTimeOriginal (with OffsetTimeOriginal where the photo has it), else the file's modification
  time, read at index time (assoc.runtime.imaging.dates). A photo whose date is unknown (indexed
  before dates were kept, until the next `assoc index` reads it) never meets a date rule;
- types: its file name ends in one of the suffixes (case-insensitive; jpg = jpeg = jpe = jfif,
  tif = tiff, heic = heif, jp2 = j2k).

Dates are Unix seconds. A date or time written without an offset is in the local time zone of the
machine reading it: `--since 2023-07-14` starts at local midnight there, and an EXIF time without
an offset is local time on the machine that indexes it. A date alone (2023, 2023-07, 2023-07-14)
stands for its whole year, month or day: as `until` it ends at that period's last second.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import QueryError
from ..imaging.dates import at_offset

NO_DATE = np.iinfo(np.int64).min  # a row's date taken when it is unknown, in arrays of dates
# Suffixes that name the same kind of file: asking for one asks for all of its group.
SAME_TYPE = (
    frozenset({".jpg", ".jpeg", ".jpe", ".jfif"}),
    frozenset({".tif", ".tiff"}),
    frozenset({".heic", ".heif"}),
    frozenset({".jp2", ".j2k"}),
)
_DATE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.\d+)?)?"
    r"(?P<offset>Z|[+-]\d{2}:?\d{2})?)?)?)?"
)
DATE_FORMS = "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]"


@dataclass(frozen=True)
class PhotoFilter:
    """Rules a photo must meet to be searched (see the module docstring). Build it with PhotoFilter.of,
    which checks and normalises what a person typed; an empty filter lets every photo through."""

    folders: tuple[str, ...] = ()  # absolute, normalised (no trailing separator but the root's)
    since: int | None = None  # Unix seconds, included
    until: int | None = None  # Unix seconds, included
    types: frozenset[str] = frozenset()  # lower-case suffixes with their dot; empty: any kind

    @classmethod
    def of(
        cls,
        folders: Iterable[str | os.PathLike[str]] = (),
        since: str | dt.date | None = None,
        until: str | dt.date | None = None,
        types: str | Iterable[str] | None = None,
    ) -> PhotoFilter:
        """A checked filter. folders: relative ones are taken from the working folder, ~ is expanded;
        since/until: a date as DATE_FORMS says, or a datetime.date / datetime.datetime (naive: local
        time); types: "jpg,heic" or a list of names, with or without their dot. A QueryError names
        what is wrong."""
        start = None if since is None else date_bound(since, "since", end=False)
        end = None if until is None else date_bound(until, "until", end=True)
        if start is not None and end is not None and start > end:
            raise QueryError(f"since {_shown_bound(since)} is after until {_shown_bound(until)}: no photo can match")
        return cls(tuple(dict.fromkeys(folder_of(f) for f in folders)), start, end, photo_types(types))

    @property
    def dated(self) -> bool:
        return self.since is not None or self.until is not None

    def __bool__(self) -> bool:
        return bool(self.folders or self.dated or self.types)

    def mask(self, paths: list[str], types: np.ndarray, taken: np.ndarray) -> np.ndarray:
        """Which of some photos meet the rules: their paths, their types (photo_type of each path, an
        array of str) and their dates taken (int64, NO_DATE where unknown)."""
        keep = np.ones(len(paths), bool)
        if self.dated:
            keep &= taken != NO_DATE
            if self.since is not None:
                keep &= taken >= self.since
            if self.until is not None:
                keep &= taken <= self.until
        if self.types:
            keep &= np.isin(types, sorted(self.types))
        if self.folders:
            prefixes = tuple(folder_prefix(f) for f in self.folders)
            keep &= np.fromiter((p.startswith(prefixes) for p in paths), bool, len(paths))
        return keep


def photo_type(path: str) -> str:
    """What --type compares: a path's suffix, lower-case, with its dot ("" for none)."""
    return os.path.splitext(path)[1].lower()


def folder_of(folder: str | os.PathLike[str]) -> str:
    """A folder as filters compare it: absolute (from the working folder), ~ expanded, normalised."""
    text = os.fspath(folder)
    if not text.strip():
        raise QueryError("a folder to search in must be named, not left empty")
    return os.path.normpath(os.path.abspath(os.path.expanduser(text)))


def folder_prefix(folder: str) -> str:
    """The text every path under a normalised folder starts with."""
    return folder if folder.endswith(os.sep) else folder + os.sep


def ancestors(path: str) -> list[str]:
    """Every folder a path lies under, nearest first, up to the root (what Qdrant's folder payload
    holds): a photo is under folder F when F is one of these."""
    out = []
    folder = os.path.dirname(path)
    while folder and (not out or folder != out[-1]):
        out.append(folder)
        folder = os.path.dirname(folder)
    return out


def photo_types(types: str | Iterable[str] | None) -> frozenset[str]:
    """Suffixes for type names such as "jpg,HEIC" (each with its group in SAME_TYPE); a QueryError for
    a name that is no photo type assoc reads."""
    names = types.split(",") if isinstance(types, str) else list(types or ())
    if not names:
        return frozenset()
    from ..imaging.images import PHOTO_SUFFIXES  # loads Pillow: only for a search by type

    out: set[str] = set()
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        suffix = name if name.startswith(".") else "." + name
        if suffix not in PHOTO_SUFFIXES:
            known = ", ".join(sorted(s[1:] for s in PHOTO_SUFFIXES))
            raise QueryError(f"type {raw.strip()!r} is not a kind of photo assoc reads ({known})")
        out |= next((group for group in SAME_TYPE if suffix in group), {suffix})
    if isinstance(types, str) and types.strip() and not out:
        raise QueryError(f"no photo type named in {types!r}")
    return frozenset(out)


def date_bound(value: str | dt.date, name: str, *, end: bool) -> int:
    """Unix seconds of the start (end=False) or the last second (end=True) of a date as DATE_FORMS
    says; without an offset in local time. A date with a time of day (a str, or a datetime) is one
    instant either way."""
    if isinstance(value, dt.datetime):
        return int(value.timestamp())  # naive: local time
    if isinstance(value, dt.date):
        value = value.isoformat()
    found = _DATE.fullmatch(value.strip())
    if found is None:
        raise QueryError(f"{name} {value!r} is not a date ({DATE_FORMS})")
    parts = found.groupdict()
    try:
        year, month, day = int(parts["year"]), int(parts["month"] or 1), int(parts["day"] or 1)
        when = dt.datetime(
            year, month, day, int(parts["hour"] or 0), int(parts["minute"] or 0), int(parts["second"] or 0)
        )
        if parts["hour"] is not None:
            return int(at_offset(when, parts["offset"]).timestamp())
        if end:  # the first moment of the next period, less one second
            if parts["day"] is not None:
                when += dt.timedelta(days=1)
            elif parts["month"] is not None:
                when = when.replace(year=year + month // 12, month=month % 12 + 1)
            else:
                when = when.replace(year=year + 1)
    except (ValueError, OverflowError):
        raise QueryError(f"{name} {value!r} is not a date on the calendar") from None
    return int(when.astimezone().timestamp()) - (1 if end else 0)


def _shown_bound(value: str | dt.date | None) -> str:
    return value.isoformat() if isinstance(value, dt.date) else str(value)

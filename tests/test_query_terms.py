"""The combined-query syntax (assoc.runtime.search.combined) and the filter rules a person types
(assoc.runtime.search.filters), as their docstrings define them."""

from __future__ import annotations

import datetime as dt
import os
import time

import numpy as np
import pytest

from assoc.runtime.errors import QueryError
from assoc.runtime.search.combined import TermText, parse_arguments, parse_query
from assoc.runtime.search.filters import NO_DATE, PhotoFilter, ancestors, date_bound, photo_type


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("a dog on grass", [("a dog on grass", 1)]),
        ("2:golden retriever + ./pool.jpg - fruit", [("golden retriever", 2), ("./pool.jpg", 1), ("fruit", -1)]),
        ("t-shirt - c++ + -5 degrees", [("t-shirt", 1), ("c++", -1), ("-5 degrees", 1)]),  # signs inside words
        ("10:30 train", [("10:30 train", 1)]),  # a digit after the colon: words, not a weight
        ("0.5:dog + 3:cat", [("dog", 0.5), ("cat", 3)]),
        ("2: dog", [("dog", 2)]),
        ('2:"golden retriever" - "salt + pepper"', [("golden retriever", 2), ("salt + pepper", -1)]),
        ('"./my photos/pool.jpg" + dog', [("./my photos/pool.jpg", 1), ("dog", 1)]),
        ('a "red" car', [("a red car", 1)]),
        ('12" vinyl', [('12" vinyl', 1)]),  # a quote without a partner is a character
        ('"2:dog"', [("2:dog", 1)]),  # quoted: no weight
        ("- fruit + dog", [("fruit", -1), ("dog", 1)]),
        ("dog   +   cat", [("dog", 1), ("cat", 1)]),
    ],
)
def test_query_strings_split_into_weighed_terms(text: str, terms: list[tuple[str, float]]) -> None:
    assert parse_query(text) == [TermText(t, float(w)) for t, w in terms]


def test_command_line_arguments_are_literal_but_for_lone_operators() -> None:
    args = ["2:golden retriever", "+", "./pool.jpg", "-", "fruit"]
    assert parse_arguments(args) == [TermText("golden retriever", 2), TermText("./pool.jpg"), TermText("fruit", -1)]
    assert parse_arguments(["golden", "retriever", "+", "t - shirt"]) == [
        TermText("golden retriever"),
        TermText("t - shirt"),  # one argument: its spaces, signs and all
    ]
    assert parse_arguments(["dog + cat"]) == [TermText("dog"), TermText("cat")]  # one argument is one string


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("dog + - cat", "two operators in a row"),
        ("dog +", "nothing follows the last operator"),
        ("-", "nothing follows the last operator"),
        ("2:", "weighs nothing"),
        ("0:dog", "must be more than 0"),
        ("", "the query is empty"),
        ("   ", "the query is empty"),
    ],
)
def test_malformed_queries_are_one_query_error(text: str, fragment: str) -> None:
    with pytest.raises(QueryError, match=fragment) as info:
        parse_query(text)
    assert "\n" not in str(info.value)


def test_date_bounds_cover_whole_periods_in_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset to choose the local time zone")
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9, no daylight saving time
    time.tzset()
    try:
        tokyo = dt.timezone(dt.timedelta(hours=9))
        start = int(dt.datetime(2023, 7, 14, tzinfo=tokyo).timestamp())
        assert date_bound("2023-07-14", "since", end=False) == start
        assert date_bound("2023-07-14", "until", end=True) == start + 86_400 - 1
        assert date_bound("2023-07", "until", end=True) == int(dt.datetime(2023, 8, 1, tzinfo=tokyo).timestamp()) - 1
        assert date_bound("2023-12", "until", end=True) == int(dt.datetime(2024, 1, 1, tzinfo=tokyo).timestamp()) - 1
        assert date_bound("2023", "since", end=False) == int(dt.datetime(2023, 1, 1, tzinfo=tokyo).timestamp())
        assert date_bound(dt.date(2023, 7, 14), "until", end=True) == start + 86_400 - 1
        # A time of day is one instant; its offset, when written, wins over the local zone.
        assert date_bound("2023-07-14T10:00+02:00", "until", end=True) == int(
            dt.datetime(2023, 7, 14, 8, tzinfo=dt.timezone.utc).timestamp()
        )
        assert date_bound("2023-07-14 10:00:30Z", "since", end=False) == int(
            dt.datetime(2023, 7, 14, 10, 0, 30, tzinfo=dt.timezone.utc).timestamp()
        )
        assert date_bound("2023-07-14T09:00", "since", end=False) == start + 9 * 3600
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"since": "yesterday"}, "is not a date"),
        ({"until": "2023-02-30"}, "not a date on the calendar"),
        ({"since": "2024", "until": "2023-12-31"}, "is after until"),
        ({"types": "jpg,xyz"}, "'xyz' is not a kind of photo"),
        ({"types": ","}, "no photo type named"),
        ({"folders": [" "]}, "must be named"),
    ],
)
def test_bad_filters_are_one_query_error(kwargs: dict, fragment: str) -> None:
    with pytest.raises(QueryError, match=fragment) as info:
        PhotoFilter.of(**kwargs)
    assert "\n" not in str(info.value)


def test_filters_match_folders_types_and_dates_as_documented() -> None:
    where = PhotoFilter.of(
        ["/photos/2023/", "/photos/2023", "/photos/trip"], since="2023", until="2023", types="JPG,heic"
    )
    assert where.folders == ("/photos/2023", "/photos/trip")  # normalised, once each
    assert where.types == {".jpg", ".jpeg", ".jpe", ".jfif", ".heic", ".heif"}
    paths = [
        "/photos/2023/a.JPG",  # meets every rule
        "/photos/2023-old/b.jpg",  # another folder that merely starts alike
        "/photos/trip/day1/c.heif",  # a nested folder
        "/photos/2023/d.png",  # another type
        "/photos/2023/e.jpeg",  # date unknown
        "/photos/2023/f.jpg",  # taken the next year
    ]
    inside = date_bound("2023-06-01", "", end=False)
    taken = np.array([inside, inside, inside, inside, NO_DATE, date_bound("2024", "", end=False)], np.int64)
    mask = where.mask(paths, np.array([photo_type(p) for p in paths]), taken)
    assert mask.tolist() == [True, False, True, False, False, False]
    assert not PhotoFilter.of() and PhotoFilter.of(types="png")
    assert ancestors("/photos/2023/a.jpg") == ["/photos/2023", "/photos", "/"]
    assert PhotoFilter.of(["~/x"]).folders == (os.path.expanduser("~/x"),)
    assert PhotoFilter.of(["rel"]).folders == (os.path.abspath("rel"),)

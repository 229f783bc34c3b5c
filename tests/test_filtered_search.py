"""Combined queries and filters on real photos: the API, the CLI and both stores (the built-in gallery and
an embedded Qdrant), with dates written into copies' EXIF by Pillow; and galleries indexed before dates
were kept learning them on their next index run, without encoding a photo again."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from cli_support import SELF_SCORE, assert_one_line_error, assoc, ok, ok_json
from dated_photos import DOG, PHOTOS, PNG, PNG_TIME, TAKEN, instant, make_library

import assoc as assoc_api
from assoc.runtime.search.filters import PhotoFilter


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven real photos in three folders, six with an EXIF date and offset, one PNG with only a file time."""
    return make_library(tmp_path_factory.mktemp("filtered") / "photos")


@pytest.fixture(scope="module")
def stores(library: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, ...]]:
    """The library indexed into both stores; each store's command-line options."""
    root = tmp_path_factory.mktemp("stores")
    options = {
        "builtin": ("--gallery", str(root / "gallery"), "--device", "cpu"),
        "qdrant": ("--store", "qdrant", "--qdrant-path", str(root / "qdrant"), "--device", "cpu"),
    }
    for store in options.values():
        assert ok_json("index", library, *store)["photos"] == PHOTOS
    return options


def query(store: tuple[str, ...], *args: str | Path) -> list[dict]:
    return ok_json("query", *args, "-k", "50", *store)


def names(hits: list[dict]) -> list[str]:
    return [Path(hit["path"]).name for hit in hits]


def test_dates_taken_are_read_at_index_time(stores: dict[str, tuple[str, ...]], library: Path) -> None:
    expected = {str(library / folder / name): instant(stamp, offset) for name, (folder, stamp, offset) in TAKEN.items()}
    expected[str(library / "winter" / PNG)] = int(PNG_TIME.timestamp())
    for spec in (
        assoc_api.StoreSpec.builtin(stores["builtin"][1]),
        assoc_api.StoreSpec.qdrant(path=stores["qdrant"][3]),
    ):
        with assoc_api.Searcher(store=spec, device="cpu") as searcher:
            assert {path: record.taken for path, record in searcher.records(list(expected)).items()} == expected


@pytest.mark.parametrize(
    ("filters", "wanted"),
    [
        (("--in", "summer"), {DOG, "000000078499.jpg", "000000107438.jpg", "000000129648.jpg"}),
        (
            ("--in", "summer/beach", "--in", "winter"),
            {"000000129648.jpg", "000000174375.jpg", "000000196393.jpeg", PNG},
        ),
        # 23:30 at +00:00 on the 14th, and 10:00 at +02:00: both on 2019-07-14 in UTC
        (("--since", "2019-07-14T00:00Z", "--until", "2019-07-14T23:59:59Z"), {DOG, "000000078499.jpg"}),
        (
            ("--since", "2019-07-15T00:00+00:00", "--until", "2019-12-31T00:00+00:00"),
            {"000000107438.jpg", "000000129648.jpg"},
        ),
        (("--until", "2018-12-31T00:00Z"), {PNG}),  # the file time of a photo without EXIF
        (("--type", "png"), {PNG}),
        (("--type", "JPG", "--in", "winter"), {"000000174375.jpg", "000000196393.jpeg"}),
        (("--in", "nowhere"), set()),  # a folder nothing was indexed under: no photo, no error
    ],
)
def test_filters_pick_the_same_photos_in_both_stores(
    stores: dict[str, tuple[str, ...]], library: Path, monkeypatch: pytest.MonkeyPatch, filters: tuple, wanted: set
) -> None:
    monkeypatch.chdir(library)  # relative folders are taken from the working folder
    found = {name: query(store, "a dog", *filters) for name, store in stores.items()}
    assert set(names(found["builtin"])) == wanted
    assert found["builtin"] == found["qdrant"]
    everything = query(stores["builtin"], "a dog")
    assert [h for h in everything if Path(h["path"]).name in wanted] == found["builtin"]  # same scores, same order


def test_a_combined_score_is_its_terms_weighed(stores: dict[str, tuple[str, ...]]) -> None:
    """Each hit's score is (2·s(a dog) + s(the woods) − s(a beach)) / 3 of the three terms searched alone,
    and its JSON carries each term's own score."""
    combined = query(stores["builtin"], "2:a dog", "+", "the woods", "-", "a beach", "--exact")
    alone = {
        term: {h["path"]: h["score"] for h in query(stores["builtin"], term, "--exact")}
        for term in ("a dog", "the woods", "a beach")
    }
    assert len(combined) == PHOTOS
    for hit in combined:
        own = [alone[term][hit["path"]] for term in ("a dog", "the woods", "a beach")]
        assert [t["score"] for t in hit["terms"]] == pytest.approx(own, abs=1e-6)
        assert hit["score"] == pytest.approx((2 * own[0] + own[1] - own[2]) / 3, abs=1e-6)
        assert [(t["term"], t["kind"], t["weight"]) for t in hit["terms"]] == [
            ("a dog", "words", 2.0),
            ("the woods", "words", 1.0),
            ("a beach", "words", -1.0),
        ]
    scores = [h["score"] for h in combined]
    assert scores == sorted(scores, reverse=True)
    assert query(stores["builtin"], "2:a dog + the woods - a beach", "--exact") == combined  # one string, same query
    assert query(stores["qdrant"], "2:a dog + the woods - a beach", "--exact") == combined
    assert query(stores["qdrant"], "2:a dog + the woods - a beach") == query(
        stores["builtin"], "2:a dog + the woods - a beach"
    )


def test_a_photo_is_a_term_and_the_api_takes_terms_written_out(
    stores: dict[str, tuple[str, ...]], library: Path
) -> None:
    dog = library / "summer" / DOG
    hits = query(stores["builtin"], dog, "-", "a dog", "--in", library / "summer")
    photo_term, words_term = next(h["terms"] for h in hits if Path(h["path"]).name == DOG)
    assert (photo_term["term"], photo_term["kind"], words_term["kind"]) == (str(dog), "photo", "words")
    assert photo_term["score"] == pytest.approx(SELF_SCORE, abs=2e-3)  # the photo itself
    spec = assoc_api.StoreSpec.builtin(stores["builtin"][1])
    with assoc_api.Searcher(store=spec, device="cpu") as searcher:
        written = searcher.search([(dog, 1.0), ("a dog", -1.0)], k=50, where=PhotoFilter.of([library / "summer"]))
        assert [hit.to_dict() for hit in written] == hits
        record = searcher.records([str(dog)])[str(dog)]
        by_hash = searcher.search([(assoc_api.IndexedPhoto(record.content_hash), 1.0), ("a dog", -1.0)], k=50)
        assert [h.score for h in by_hash if Path(h.path).is_relative_to(library / "summer")] == [
            h["score"] for h in hits
        ]
        one = searcher.search([("a dog", 3.0)], k=3)  # one plus term: its plain ranking, whatever its weight
        assert one == searcher.search("a dog", k=3) and one[0].terms == ()


def test_explain_shows_each_term_and_the_words_of_each_text_term(stores: dict[str, tuple[str, ...]]) -> None:
    out = ok("query", "2:a dog", "+", "the woods", "-k", "2", "--explain", *stores["builtin"]).stdout
    lines = out.splitlines()
    assert lines[0].startswith("1. ")
    assert "+2:a dog" in lines[1] and "+the woods" in lines[1]  # each term's score under the hit
    assert [line.strip() for line in lines if line.strip() in ("a dog", "the woods")] == ["a dog", "the woods"] * 2
    assert sum(1 for line in lines if line.split()[:1] == ["dog"]) == 2  # the word tables, per hit


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("dog", "--since", "last week"), "is not a date"),
        (("dog", "--until", "2019-02-30"), "not a date on the calendar"),
        (("dog", "--since", "2020", "--until", "2019"), "is after until"),
        (("dog", "--type", "jpg,docx"), "'docx' is not a kind of photo"),
        (("dog", "+"), "nothing follows the last operator"),
        (("dog", "+", "-", "cat"), "two operators in a row"),
        (("-", "dog"), "a term to look for"),
        (("0:dog",), "must be more than 0"),
    ],
)
def test_bad_queries_and_filters_are_one_line_and_exit_2(
    stores: dict[str, tuple[str, ...]], args: tuple[str, ...], fragment: str
) -> None:
    assert_one_line_error(assoc("query", *args, *stores["builtin"]), fragment)


def _shard_bytes(gallery: Path) -> str:
    digest = hashlib.blake2b()
    for path in sorted((gallery / "shards").iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def test_a_format_2_gallery_learns_its_dates_on_the_next_index_without_encoding(
    stores: dict[str, tuple[str, ...]], library: Path, tmp_path: Path
) -> None:
    gallery = tmp_path / "old"
    shutil.copytree(stores["builtin"][1], gallery)
    with sqlite3.connect(gallery / "gallery.sqlite") as conn:  # as format 2 left it: no dates column
        conn.execute("ALTER TABLE photos DROP COLUMN taken")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'format_version'")
    conn.close()
    old = ("--gallery", gallery, "--device", "cpu")
    assert query(old, "a dog", "--since", "2000") == []  # upgraded to format 4: no photo's date is known yet
    before = _shard_bytes(gallery)  # its shards as the upgrade rewrote them (int8)
    report = ok_json("index", library, *old)
    assert (report["added"], report["updated"], report["reused"], report["unchanged"]) == (0, 0, 0, PHOTOS)
    assert report["dated"] == PHOTOS
    assert _shard_bytes(gallery) == before  # no grid encoded or written again
    with sqlite3.connect(gallery / "gallery.sqlite") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone() == ("5",)
    conn.close()
    assert query(old, "a dog", "--in", library / "summer", "--since", "2019-07-15T00:00Z") == query(
        stores["builtin"], "a dog", "--in", library / "summer", "--since", "2019-07-15T00:00Z"
    )
    assert ok_json("index", library, *old)["dated"] == 0  # learnt once


def test_a_qdrant_collection_learns_its_filter_fields_on_the_next_index(
    stores: dict[str, tuple[str, ...]], library: Path, tmp_path: Path
) -> None:
    from assoc.runtime.stores.qdrant import QdrantStore, point_id

    folder = tmp_path / "qdrant"
    shutil.copytree(stores["qdrant"][3], folder)
    spec = assoc_api.StoreSpec.qdrant(path=folder)
    with assoc_api.Searcher(store=spec, device="cpu") as searcher:
        bundle = searcher.bundle
    store = QdrantStore(bundle.bundle_id, bundle.config.embed_dim, path=folder, create=False)
    try:  # points as a collection made before filters holds them
        ids = [point_id(path) for path in store.records()]
        store._client.delete_payload(store.collection, ["taken", "folders", "type"], points=ids, wait=True)
    finally:
        store.close()
    old = ("--store", "qdrant", "--qdrant-path", folder, "--device", "cpu")
    assert query(old, "a dog", "--in", library / "summer") == []
    report = ok_json("index", library, *old)
    assert (report["added"], report["updated"], report["dated"]) == (0, 0, PHOTOS)
    for filters in (("--in", library / "summer"), ("--type", "png"), ("--until", "2019-07-20")):
        assert query(old, "a dog", *filters) == query(stores["builtin"], "a dog", *filters)

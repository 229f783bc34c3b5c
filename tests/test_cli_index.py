"""`assoc index` end to end: real photos, the real bundle on ONNX Runtime, a real SQLite gallery."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_support import assert_one_line_error, assoc, copy_photos, ok, ok_json
from PIL import Image


@pytest.fixture()
def sources(flickr8k: Path) -> list[Path]:
    return sorted((flickr8k / "images").glob("*.jpg"))[:10]


def counts(summary: dict) -> tuple[int, int, int, int, int, int]:
    keys = ("added", "updated", "reused", "removed", "unchanged")
    return (*(summary[k] for k in keys), len(summary["skipped"]))


def test_incremental_reindex_counts_each_kind_of_change(tmp_path: Path, sources: list[Path]) -> None:
    library, gallery = tmp_path / "library", tmp_path / "gallery"
    photos = copy_photos(sources[:8], library)
    common = ("--gallery", gallery, "--device", "cpu", "--batch-size", "3", "--workers", "2")

    first = ok_json("index", library, *common)
    assert counts(first) == (8, 0, 0, 0, 0, 0) and first["photos"] == 8
    assert counts(ok_json("index", library, *common)) == (0, 0, 0, 0, 8, 0)

    shutil.copyfile(sources[8], library / "new.jpg")  # added
    with Image.open(photos[0]) as img:  # modified: new content under the same name
        img.rotate(90).save(photos[0], quality=90)
    photos[1].unlink()  # removed
    photos[2].rename(library / "renamed.jpg")  # reused (its grid), and its old path removed
    again = ok_json("index", library, *common)
    assert counts(again) == (1, 1, 1, 2, 5, 0)
    assert again["photos"] == 8

    listed = ok("query", "a dog", "-k", "20", "--paths-only", "--gallery", gallery, "--device", "cpu").stdout
    expected = {str(library / "new.jpg"), str(library / "renamed.jpg"), *map(str, [photos[0], *photos[3:]])}
    assert set(listed.splitlines()) == expected


def test_bad_files_are_skipped_with_reasons_and_the_rest_indexed(tmp_path: Path, sources: list[Path]) -> None:
    library = tmp_path / "library"
    copy_photos(sources[:3], library)
    (library / "corrupt.jpg").write_bytes(sources[3].read_bytes()[:2000])  # a real JPEG, cut short
    (library / "empty.jpg").write_bytes(b"")
    (library / "notes.jpg").write_text("not a photo at all\n")
    result = ok("index", library, "--gallery", tmp_path / "g", "--device", "cpu")
    table = result.stdout
    for name, reason in (("corrupt.jpg", "cannot decode"), ("empty.jpg", "empty file"), ("notes.jpg", "not a")):
        line = next(line for line in table.splitlines() if name in line)
        assert reason in line
    summary = ok_json("index", library, "--gallery", tmp_path / "g", "--device", "cpu")
    # Skipped files are tried again each run (they may have been repaired); the good ones are unchanged.
    assert counts(summary) == (0, 0, 0, 0, 3, 3) and summary["photos"] == 3
    assert {s["path"] for s in summary["skipped"]} == {
        str(library / n) for n in ("corrupt.jpg", "empty.jpg", "notes.jpg")
    }


def test_exclude_and_single_files(tmp_path: Path, sources: list[Path]) -> None:
    library = tmp_path / "library"
    photos = copy_photos(sources[:4], library)
    summary = ok_json(
        "index", library, "--exclude", photos[0].name, "--exclude", "*/" + photos[1].name,
        "--gallery", tmp_path / "g", "--device", "cpu",
    )  # fmt: skip
    assert summary["added"] == 2
    assert ok_json("index", photos[0], "--gallery", tmp_path / "g", "--device", "cpu")["photos"] == 3


def test_an_emptied_folder_keeps_its_photos_with_a_warning(tmp_path: Path, sources: list[Path]) -> None:
    library, gallery = tmp_path / "library", tmp_path / "gallery"
    photos = copy_photos(sources[:3], library)
    common = ("--gallery", gallery, "--device", "cpu")
    ok_json("index", library, *common)
    for photo in photos:  # what an unmounted disk looks like: the mount point is there, empty
        photo.unlink()
    result = ok("index", library, *common, "--json")
    summary = json.loads(result.stdout)
    assert (summary["removed"], summary["photos"]) == (0, 3)
    assert summary["kept_in_empty"] == [{"path": str(library), "photos": 3}]
    assert result.stderr.splitlines() == [
        f"assoc: warning: {library} is empty (an unmounted disk or share?); its 3 indexed photos were kept"
    ]
    table = ok("index", library, *common)
    assert "assoc: warning:" in table.stderr and "warning" not in table.stdout

    (library / "notes.txt").write_text("the folder still holds something: the photos really are gone\n")
    summary = ok_json("index", library, *common)
    assert (summary["removed"], summary["photos"], summary["kept_in_empty"]) == (3, 0, [])


def test_missing_path_is_one_line_error(tmp_path: Path) -> None:
    result = assoc("index", tmp_path / "nowhere", "--gallery", tmp_path / "g", "--device", "cpu")
    assert_one_line_error(result, "no such file or folder", "nowhere")
    assert not (tmp_path / "g").exists()


def test_verbose_prints_each_stage_time_on_stderr(tmp_path: Path, sources: list[Path]) -> None:
    """--verbose: one stderr line with the seconds of walk, read, encode and write, in that order; the
    API's report holds the same stages. A second run encodes nothing, so it has no encode stage."""
    import assoc as api

    library, gallery = tmp_path / "library", tmp_path / "gallery"
    copy_photos(sources[:4], library)
    result = ok("index", library, "--gallery", gallery, "--device", "cpu", "--verbose")
    (line,) = [text for text in result.stderr.splitlines() if "stages:" in text]
    stages = [part.split()[0] for part in line.split("stages: ")[1].split(", ")]
    assert stages == ["walk", "read", "encode", "write"]
    seconds = {part.split()[0]: float(part.split()[1]) for part in line.split("stages: ")[1].split(", ")}
    assert seconds["encode"] > 0 and all(value >= 0 for value in seconds.values())
    assert "stages:" not in ok("index", library, "--gallery", gallery, "--device", "cpu").stderr
    with api.Searcher(store=api.StoreSpec.builtin(gallery), device="cpu") as searcher:
        again = searcher.index([library])
    assert again.unchanged == 4 and "encode" not in again.seconds and again.seconds["walk"] >= 0

"""Duplicate finding on real photos: originals, their edited copies (re-encoded, resized, cropped, an exact
copy), and distinct photos that merely look alike; through the API, the CLI on both stores, and the web
app in a real server and headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from cli_support import assert_one_line_error, assoc, ok, ok_json
from PIL import Image

import assoc as assoc_api
from assoc.runtime.search import duplicates

pytestmark = pytest.mark.slow  # indexes a library once per module

ORIGINALS = ("coco-boxes/images/000000054718.jpg", "coco-boxes/images/000000063217.jpg")  # elephants, a boat
FULLRES = ("flickr8k/fullres/106514190_bae200f463.jpg", "flickr8k/fullres/116409198_0fe0c94f3b.jpg")  # snow, snow
# Distinct Flickr8k photos whose captions are the same words (none is a copy of another): "a dog runs through
# the grass", "a dog runs through the snow", two greyhound races.
LOOKALIKES = (
    "2180480870_dcaf5ac0df.jpg",
    "2565237642_bdd46d7cef.jpg",
    "96973080_783e375945.jpg",
    "3189307452_aebc12380b.jpg",
    "2903469015_a1e7d969c2.jpg",
    "2924483864_cfdb900a13.jpg",
)
EDITS = ("recode", "half", "crop")


def edit(source: Path, kind: str, target: Path) -> Path:
    image = Image.open(source).convert("RGB")
    if kind == "half":
        image = image.resize((image.width // 2, image.height // 2), Image.LANCZOS)
    elif kind == "crop":
        dx, dy = round(image.width * 0.04), round(image.height * 0.04)
        image = image.crop((dx, dy, image.width - dx, image.height - dy))
    image.save(target, quality=35 if kind == "recode" else 90)
    return target


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, list[set[str]]]:
    """The photos and the groups they must form: each original with its three edits (and one with an
    exact copy of its file, under another name)."""
    root = tmp_path_factory.mktemp("duplicates") / "photos"
    (root / "edits").mkdir(parents=True)
    expected = []
    for relative in ORIGINALS + FULLRES:
        source = shared_data / relative
        original = Path(shutil.copyfile(source, root / source.name))
        group = {str(original)} | {str(edit(source, kind, root / "edits" / f"{kind}-{source.name}")) for kind in EDITS}
        expected.append(group)
    twin = Path(shutil.copyfile(root / Path(ORIGINALS[0]).name, root / "edits" / "same bytes.jpg"))
    expected[0].add(str(twin))
    for name in LOOKALIKES:
        shutil.copyfile(shared_data / "flickr8k" / "images" / name, root / name)
    return root, expected


@pytest.fixture(scope="module")
def gallery(library: tuple[Path, list[set[str]]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gallery") / "g"
    with assoc_api.Searcher(store=assoc_api.StoreSpec.builtin(folder), device="cpu") as searcher:
        assert searcher.index([library[0]]).photos == 4 * 4 + 1 + len(LOOKALIKES)
    return folder


def groups_of(found: assoc_api.Duplicates) -> list[set[str]]:
    return [{photo.path for photo in group.photos} for group in found.groups]


def test_copies_are_grouped_and_look_alikes_are_not(gallery: Path, library: tuple[Path, list[set[str]]]) -> None:
    root, expected = library
    with assoc_api.Searcher(store=assoc_api.StoreSpec.builtin(gallery), device="cpu") as searcher:
        found = searcher.duplicates()
        assert found.threshold == duplicates.DEFAULT_THRESHOLD and found.photos == 23
        assert sorted(groups_of(found), key=min) == sorted(expected, key=min)
        for group in found.groups:
            first = group.photos[0]
            assert all(first.width * first.height >= p.width * p.height for p in group.photos)
            assert Path(first.path).parent == root  # the original (or its exact copy): the largest
            assert all(duplicates.DEFAULT_THRESHOLD <= p.similarity <= 1.0 for p in group.photos)
            assert duplicates.DEFAULT_THRESHOLD <= group.similarity <= min(p.similarity for p in group.photos)
        twins = [p for p in found.groups[0].photos if p.similarity == 1.0]
        assert {Path(p.path).name for p in twins} == {Path(ORIGINALS[0]).name, "same bytes.jpg"}
        assert len({p.content_hash for p in twins}) == 1
        only_identical = searcher.duplicates(threshold=1.0)  # the same content only: one grid
        assert groups_of(only_identical) == [{p.path for p in twins}]


def test_both_stores_give_the_same_groups(gallery: Path, library: tuple[Path, list[set[str]]], tmp_path: Path) -> None:
    pytest.importorskip("qdrant_client")
    qdrant = ("--store", "qdrant", "--qdrant-path", tmp_path / "qdrant", "--collection", "photos", "--device", "cpu")
    assert ok_json("index", library[0], *qdrant)["photos"] == 4 * 4 + 1 + len(LOOKALIKES)
    for threshold in (str(duplicates.DEFAULT_THRESHOLD), "0.7"):
        in_qdrant = ok_json("duplicates", "--threshold", threshold, *qdrant)
        in_gallery = ok_json("duplicates", "--threshold", threshold, "--gallery", gallery, "--device", "cpu")
        assert [[p["path"] for p in g["photos"]] for g in in_qdrant["groups"]] == [
            [p["path"] for p in g["photos"]] for g in in_gallery["groups"]
        ]
        for mine, theirs in zip(in_qdrant["groups"], in_gallery["groups"], strict=True):
            assert mine["similarity"] == pytest.approx(theirs["similarity"], abs=1e-5)
            assert [p["similarity"] for p in mine["photos"]] == pytest.approx(
                [p["similarity"] for p in theirs["photos"]], abs=1e-5
            )


def test_cli_json_and_table(gallery: Path, library: tuple[Path, list[set[str]]]) -> None:
    found = ok_json("duplicates", "--gallery", gallery, "--device", "cpu")
    assert set(found) == {"threshold", "photos", "groups"}
    assert (found["threshold"], found["photos"], len(found["groups"])) == (duplicates.DEFAULT_THRESHOLD, 23, 4)
    photo = found["groups"][0]["photos"][0]
    assert set(photo) == {"path", "content_hash", "width", "height", "size", "similarity"}
    assert (photo["width"], photo["height"]) == (640, 480) and len(photo["content_hash"]) == 32
    table = ok("duplicates", "--gallery", gallery, "--device", "cpu").stdout
    assert "group 1: 5 photos" in table and "640x480" in table
    assert table.rstrip().splitlines()[-1].startswith("4 groups, 13 copies besides the largest of each, among 23")


@pytest.mark.parametrize("threshold", ["1.5", "0", "-0.2", "nan"])
def test_a_threshold_out_of_range_is_one_line(gallery: Path, threshold: str) -> None:
    result = assoc("duplicates", "--threshold", threshold, "--gallery", gallery, "--device", "cpu")
    assert_one_line_error(result, "the duplicate threshold must be a number above 0 and at most 1")
    assert_one_line_error(assoc("duplicates", "--threshold", "many", "--gallery", gallery), "--threshold")


def test_small_memory_budgets_give_the_same_answer(gallery: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verification in many passes over the store and candidates in blocks of a few rows agree with one."""
    from assoc.runtime.stores.gallery import Gallery

    with Gallery.open(gallery, create=False) as store:
        records = store.records()
        contents = duplicates.read_contents(store.open_view(), records)
        floor = duplicates.DEFAULT_THRESHOLD - duplicates.CANDIDATE_MARGIN
        pairs = duplicates.candidate_pairs(contents.pooled, floor)
        similarity = duplicates.verify_pairs(store.open_view(), contents, pairs)
        monkeypatch.setattr(duplicates, "BLOCK_SCORES", 3 * len(contents.paths))  # three rows a block
        monkeypatch.setattr(duplicates, "GRID_BYTES", 2 * 10 * 10 * 256 * 4)  # two grids a pass (float32, as read)
        assert np.array_equal(duplicates.candidate_pairs(contents.pooled, floor), pairs)
        assert np.array_equal(duplicates.verify_pairs(store.open_view(), contents, pairs), similarity)
    assert len(pairs) and np.isfinite(similarity).all()


def test_the_web_page_lists_the_groups_with_thumbnails(browser: object, gallery: Path, tmp_path: Path) -> None:
    pytest.importorskip("uvicorn", reason="assoc serve needs the serve extra: pip install 'assoc[serve]'")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from web_support import Server, get_json, request, wait

    served = Server("--gallery", gallery, "--device", "cpu", cache=tmp_path / "cache")
    try:
        api = get_json(f"{served.base}/api/duplicates")
        cli = ok_json("duplicates", "--gallery", gallery, "--device", "cpu")
        assert api == cli
        status, _, body = request(f"{served.base}/api/duplicates?{urlencode({'threshold': '2'})}")
        assert status == 400 and b"at most 1" in body and b"\n" not in body.strip()
        browser.get(served.base + "/duplicates")
        groups = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".dup-group"))
        assert len(groups) == 4
        wait(
            browser,
            lambda b: b.execute_script(
                "return [...document.querySelectorAll('.dup-tile img')].every(i => i.complete && i.naturalWidth > 0)"
            ),
        )
        names = [t.get_attribute("title").split("\n")[0] for t in groups[0].find_elements(By.CSS_SELECTOR, ".dup-tile")]
        assert names == [p["path"] for p in api["groups"][0]["photos"]]
        box = browser.find_element(By.ID, "threshold")
        assert box.get_attribute("value") == f"{duplicates.DEFAULT_THRESHOLD:g}"
        box.clear()
        box.send_keys("1", Keys.ENTER)  # only the exact copy and its original are one grid
        wait(
            browser,
            lambda b: "threshold=1" in b.current_url and len(b.find_elements(By.CSS_SELECTOR, ".dup-group")) == 1,
        )
        assert len(browser.find_elements(By.CSS_SELECTOR, ".dup-tile")) == 2
        browser.back()
        wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, ".dup-group")) == 4)
        problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert problems == []
    finally:
        served.stop()

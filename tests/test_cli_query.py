"""`assoc query` on a real gallery of real photos, indexed once for the module."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_support import SELF_SCORE, assert_one_line_error, assoc, copy_photos, ok, ok_json, strip_ansi
from PIL import Image

import assoc as assoc_api

QUERY = "a dog runs on the grass"
EXPLAIN_ROW = re.compile(r"^\s*(\S+)\s+\((\d+), (\d+)\)\s+\((\d+), (\d+)\)\s+(\d+\.\d+)\s*$")


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path, coco_boxes: Path) -> tuple[Path, list[Path]]:
    """12 photos of three sizes (224x224 squashed Flickr8k, full-size Flickr8k, COCO) in one gallery."""
    root = tmp_path_factory.mktemp("query")
    sources = [
        *sorted((flickr8k / "images").glob("*.jpg"))[:7],
        *sorted((flickr8k / "fullres").glob("*.jpg"))[:2],
        *sorted((coco_boxes / "images").glob("*.jpg"))[:3],
    ]
    library = root / "[red] my photos"  # a path with a space and what rich would take for markup
    photos = copy_photos(sources, library)
    ok("index", library, "--gallery", root / "gallery", "--device", "cpu")
    return root / "gallery", photos


def search(gallery: Path, *args: str | Path) -> list[dict]:
    return ok_json("query", *args, "--gallery", gallery, "--device", "cpu")


def test_json_is_a_ranked_list_of_path_and_score(indexed: tuple[Path, list[Path]]) -> None:
    gallery, photos = indexed
    hits = search(gallery, QUERY)
    assert len(hits) == 10  # the default -k
    assert all(set(hit) == {"path", "score"} for hit in hits)
    assert {hit["path"] for hit in hits} <= {str(p) for p in photos}
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True)
    everything = search(gallery, QUERY, "-k", "50")
    assert len(everything) == len(photos) and everything[:10] == hits


def test_top_k_min_score_and_paths_only(indexed: tuple[Path, list[Path]]) -> None:
    gallery, _ = indexed
    ranked = search(gallery, QUERY, "-k", "50")
    assert search(gallery, QUERY, "-k", "3") == ranked[:3]
    threshold = (ranked[3]["score"] + ranked[4]["score"]) / 2
    assert search(gallery, QUERY, "-k", "50", "--min-score", str(threshold)) == ranked[:4]

    common = ("--gallery", gallery, "--device", "cpu")
    lines = ok("query", QUERY, "-k", "5", "--paths-only", *common).stdout
    assert lines.splitlines() == [hit["path"] for hit in ranked[:5]] and lines.endswith("\n")
    nul = ok("query", QUERY, "-k", "5", "--paths-only", "-0", *common).stdout
    assert nul.split("\0") == [hit["path"] for hit in ranked[:5]] + [""]

    table = ok("query", QUERY, "-k", "3", *common).stdout.splitlines()
    assert table[0].split() == ["#", "score", "path"]
    for rank, (line, hit) in enumerate(zip(table[1:], ranked[:3], strict=True), 1):
        assert line.rstrip().split(maxsplit=2) == [str(rank), f"{hit['score']:.4f}", hit["path"]]


def test_photo_as_query_ranks_itself_first(indexed: tuple[Path, list[Path]], tmp_path: Path) -> None:
    gallery, photos = indexed
    for photo in (photos[0], photos[-1]):
        hits = search(gallery, photo, "-k", "3")
        assert hits[0]["path"] == str(photo)
        assert hits[0]["score"] == pytest.approx(SELF_SCORE, abs=2e-3)  # MaxSim 1, cosine 1; float16
        assert hits[1]["score"] < hits[0]["score"]
    # A photo outside the gallery is encoded: a re-compressed copy finds its original.
    copy = tmp_path / "copy.jpg"
    with Image.open(photos[-1]) as img:
        img.save(copy, quality=80)
    hits = search(gallery, copy, "-k", "3")
    assert hits[0]["path"] == str(photos[-1]) and hits[0]["score"] > hits[1]["score"]


def test_explain_shows_the_stored_grid_as_the_api_explains_it(indexed: tuple[Path, list[Path]]) -> None:
    """--explain reads each hit's stored grid (Searcher.explain, smoothed maps), not localize's finer one."""
    gallery, _ = indexed
    common = ("--gallery", gallery, "--device", "cpu")
    ranked = search(gallery, QUERY, "-k", "2")
    lines = ok("query", QUERY, "-k", "2", "--explain", *common).stdout.splitlines()
    heads = [k for k, line in enumerate(lines) if re.match(r"^\d+\. ", line)]
    assert [lines[k].split(maxsplit=2)[1:] for k in heads] == [[f"{h['score']:.4f}", h["path"]] for h in ranked]

    rows = [m.groups() for line in lines[heads[0] : heads[1]] if (m := EXPLAIN_ROW.match(line))]
    with assoc_api.open(store=assoc_api.StoreSpec.builtin(gallery), device="cpu") as searcher:
        explained = searcher.explain(ranked[0]["path"], QUERY)
        grid = searcher.bundle.config.visual.grid
    assert explained is not None and explained.grid == grid
    assert [r[0] for r in rows] == [w.word for w in explained.words] == QUERY.split()
    for k, ((_, i, j, x, y, score), word) in enumerate(zip(rows, explained.words, strict=True)):
        assert (int(i), int(j)) == explained.heatmaps.word_peak(k)
        assert (int(x), int(y)) == word.peak
        assert float(score) == pytest.approx(word.score, abs=1e-4)
    localized = ok_json("localize", ranked[0]["path"], QUERY, *common)  # the same words, on a finer grid
    assert [w["word"] for w in localized["words"]] == QUERY.split()
    assert localized["grid"][0] >= grid[0] and localized["grid"][1] >= grid[1]


def test_preview_draws_a_heatmap_per_hit(indexed: tuple[Path, list[Path]], monkeypatch: pytest.MonkeyPatch) -> None:
    gallery, _ = indexed
    monkeypatch.setenv("FORCE_COLOR", "1")  # draw as on a terminal
    out = strip_ansi(ok("query", "dog", "-k", "2", "--preview", "--gallery", gallery, "--device", "cpu").stdout)
    assert out.count("\u2580") > 2 * 100  # two pictures of half blocks
    assert [line for line in out.splitlines() if line.strip() == "dog"] == ["dog", "dog"]
    monkeypatch.delenv("FORCE_COLOR")
    piped = ok("query", "dog", "-k", "2", "--preview", "--gallery", gallery, "--device", "cpu").stdout
    assert "\u2580" not in piped and "drawn only on a terminal" in piped.splitlines()[0]
    assert [line.split()[0] for line in piped.splitlines()[1:]] == ["1.", "2."]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("",), "the query is empty"),
        (("   ",), "the query is empty"),
        (("dog", "--explain", "--json"), "--explain"),
        (("dog", "-0"), "-0 goes with --paths-only"),
        (("holiday/IMG_0042.jpg",), "no such photo"),
    ],
)
def test_bad_queries_are_one_line_errors(
    indexed: tuple[Path, list[Path]], args: tuple[str, ...], fragment: str
) -> None:
    gallery, _ = indexed
    assert_one_line_error(assoc("query", *args, "--gallery", gallery, "--device", "cpu"), fragment)


def test_missing_gallery_is_one_line_error(tmp_path: Path) -> None:
    result = assoc("query", "dog", "--gallery", tmp_path / "none", "--device", "cpu")
    assert_one_line_error(result, "no gallery at")
    assert not (tmp_path / "none").exists()
    (tmp_path / "empty").mkdir()
    assert_one_line_error(assoc("query", "dog", "--gallery", tmp_path / "empty", "--device", "cpu"), "no gallery at")
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_sentence_longer_than_a_file_name_is_a_query(indexed: tuple[Path, list[Path]]) -> None:
    gallery, _ = indexed
    sentence = "dog " * 64  # 256 bytes: deciding whether it names a photo must not ask the OS about it
    hits = ok_json("query", sentence, "-k", "2", "--gallery", gallery, "--device", "cpu")
    assert len(hits) == 2

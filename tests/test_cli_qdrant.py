"""The same commands on a Qdrant store (qdrant-client's embedded mode: a real Qdrant in a folder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import assert_one_line_error, assoc, copy_photos, ok, ok_json

pytest.importorskip("qdrant_client")


def test_index_query_localize_info_on_qdrant(tmp_path: Path, flickr8k: Path, coco_boxes: Path) -> None:
    photos = copy_photos(
        [*sorted((flickr8k / "images").glob("*.jpg"))[:5], *sorted((coco_boxes / "images").glob("*.jpg"))[:2]],
        tmp_path / "library",
    )
    qdrant = ("--store", "qdrant", "--qdrant-path", tmp_path / "qdrant", "--collection", "photos", "--device", "cpu")
    builtin = ("--gallery", tmp_path / "gallery", "--device", "cpu")
    for store in (qdrant, builtin):
        assert ok_json("index", tmp_path / "library", *store)["added"] == 7
    assert ok_json("index", tmp_path / "library", *qdrant)["unchanged"] == 7

    for query in ("a dog runs on the grass", str(photos[-1])):
        in_qdrant = ok_json("query", query, "-k", "7", *qdrant)
        in_gallery = ok_json("query", query, "-k", "7", *builtin)
        assert [h["path"] for h in in_qdrant] == [h["path"] for h in in_gallery]
        assert [h["score"] for h in in_qdrant] == pytest.approx([h["score"] for h in in_gallery], abs=1e-4)
    assert ok_json("query", str(photos[-1]), "-k", "1", *qdrant)[0]["path"] == str(photos[-1])

    # Both stores hold the same float16 grid, and localize takes it from either.
    assert ok_json("localize", photos[-1], "a person", *qdrant) == ok_json("localize", photos[-1], "a person", *builtin)
    explained = ok("query", "a dog", "-k", "1", "--explain", *qdrant).stdout
    assert "dog" in explained

    facts = ok_json("info", *qdrant[:-2])["store"]
    assert (facts["kind"], facts["photos"], facts["matches_bundle"]) == ("qdrant", 7, True)
    assert facts["size_on_disk"] > 0


def test_qdrant_needs_a_place(tmp_path: Path) -> None:
    assert_one_line_error(assoc("query", "dog", "--store", "qdrant", "--device", "cpu"), "--qdrant-url")
    both = assoc("query", "dog", "--store", "qdrant", "--qdrant-url", "http://localhost:1", "--qdrant-path", tmp_path)
    assert_one_line_error(both, "not both")


def test_read_only_commands_never_create_a_collection(tmp_path: Path, flickr8k: Path) -> None:
    (photo,) = copy_photos(sorted((flickr8k / "images").glob("*.jpg"))[:1], tmp_path / "library")
    where = tmp_path / "qdrant"
    qdrant = ("--store", "qdrant", "--qdrant-path", where, "--collection", "photos")
    missing = assoc("query", "a dog", *qdrant, "--device", "cpu")
    assert_one_line_error(missing, "no local Qdrant", "index some photos into it first")
    assert not where.exists()

    ok_json("index", photo, "--store", "qdrant", "--qdrant-path", where, "--collection", "other", "--device", "cpu")
    missing_collection = assoc("query", "a dog", *qdrant, "--device", "cpu")
    assert_one_line_error(missing_collection, "no collection 'photos'", "index some photos")
    assert ok_json("localize", photo, "a dog", *qdrant, "--device", "cpu")["words"]  # encodes the photo itself
    facts = ok_json("info", *qdrant)["store"]
    assert (facts["exists"], facts["photos"], facts["bundle_id"]) == (False, 0, None)
    assert ok_json("info", "--store", "qdrant", "--qdrant-path", where, "--collection", "other")["store"]["exists"]

    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(where))
    assert [c.name for c in client.get_collections().collections] == ["other"]
    client.close()

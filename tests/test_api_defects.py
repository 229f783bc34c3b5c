"""Defects a review found in the API, each pinned by a test that failed before its fix."""

from __future__ import annotations

import shutil
import typing
from pathlib import Path

import pytest

import assoc
from assoc.api import searcher as searcher_module

PHOTOS = 6


@pytest.fixture(scope="module")
def searcher(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path) -> assoc.Searcher:
    library = tmp_path_factory.mktemp("library")
    for src in sorted((flickr8k / "images").glob("*.jpg"))[:PHOTOS]:
        shutil.copy(src, library / src.name)
    opened = assoc.open(store=assoc.StoreSpec.builtin(tmp_path_factory.mktemp("g") / "gallery"), device="cpu")
    opened.index([library])
    yield opened
    opened.close()


def test_hashing_and_encoding_a_query_photo_run_outside_the_lock(
    searcher: assoc.Searcher, flickr8k: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module docstring promises that only store calls hold the Searcher's one lock."""
    held: list[str] = []
    real_hash, encoder = searcher_module.hash_content, searcher.image_encoder
    real_encode = encoder.encode

    def hashing(path: Path) -> str:
        if searcher._lock._is_owned():
            held.append(f"hash {path.name}")
        return real_hash(path)

    def encoding(images: list) -> object:
        if searcher._lock._is_owned():
            held.append("encode")
        return real_encode(images)

    monkeypatch.setattr(searcher_module, "hash_content", hashing)
    monkeypatch.setattr(encoder, "encode", encoding)
    indexed = sorted(searcher.records([str(p) for p in searcher._open_store().records()]).values(), key=str)[0]
    unseen = tmp_path / "unseen.jpg"
    shutil.copy(sorted((flickr8k / "images").glob("*.jpg"))[PHOTOS + 3], unseen)
    assert searcher.search(Path(indexed.path), k=1)[0].path == indexed.path
    assert len(searcher.search(unseen, k=2)) == 2
    searcher.region_words(unseen, at=(10, 10))
    assert held == []


def test_public_methods_return_exported_types(searcher: assoc.Searcher) -> None:
    hints = {name: typing.get_type_hints(getattr(assoc.Searcher, name)) for name in ("check", "info")}
    assert hints["check"]["return"] is assoc.CheckReport
    assert hints["info"]["return"] is assoc.Info
    report = searcher.check()
    assert isinstance(report, assoc.CheckReport) and report.photos == PHOTOS and report.damaged == []
    record = next(iter(searcher.records([p for p in searcher._open_store().records()]).values()))
    assert isinstance(record, assoc.PhotoRecord)
    info = searcher.info()
    assert isinstance(info.store, assoc.StoreFacts) and isinstance(info.bundle, assoc.BundleFacts)
    assert (info.store.photos, info.store.matches_bundle, info.bundle.grid) == (PHOTOS, True, (10, 10))
    assert info.to_dict()["bundle"]["grid"] == [10, 10]
    assert issubclass(assoc.GalleryNotEmptyError, assoc.GalleryError)


def test_importing_assoc_leaves_pillow_and_warning_filters_as_they_were(tmp_path: Path, flickr8k: Path) -> None:
    """A library must not change its user's process: Pillow's pixel guard and the warning filters stay."""
    import subprocess
    import sys
    import textwrap

    photo = sorted((flickr8k / "images").glob("*.jpg"))[0]
    code = textwrap.dedent(
        f"""
        import warnings
        import numpy  # numpy adds filters of its own when imported
        from PIL import Image
        before = (Image.MAX_IMAGE_PIXELS, list(warnings.filters))
        import assoc
        from assoc.runtime.imaging.images import load_image
        assert load_image({str(photo)!r}).width > 0
        after = (Image.MAX_IMAGE_PIXELS, list(warnings.filters))
        assert before == after, (before, after)
        print("unchanged")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "unchanged", out.stderr

"""The public API (`import assoc`) on real photos, the shipped bundle and real stores."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

import assoc
from assoc.api.stores import StoreSpec
from assoc.cli.errors import one_line
from assoc.runtime.stores.gallery import Gallery

PHOTOS = 10


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path) -> Path:
    folder = tmp_path_factory.mktemp("library")
    for src in sorted((flickr8k / "images").glob("*.jpg"))[:PHOTOS]:
        shutil.copy(src, folder / src.name)
    return folder


@pytest.fixture(scope="module")
def searcher(library: Path, tmp_path_factory: pytest.TempPathFactory) -> assoc.Searcher:
    spec = assoc.StoreSpec.builtin(tmp_path_factory.mktemp("g") / "gallery")
    opened = assoc.open(store=spec, device="cpu")
    report = opened.index([library])
    assert (report.added, report.photos) == (PHOTOS, PHOTOS)
    yield opened
    opened.close()


def test_public_surface_is_curated() -> None:
    assert {"Searcher", "StoreSpec", "open", "Hit", "Localization", "Info", "IndexReport", "AssocError"} <= set(
        assoc.__all__
    )
    assert all(hasattr(assoc, name) for name in assoc.__all__)


def test_opening_loads_no_encoder_and_words_never_load_the_image_encoder(library: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        import assoc
        searcher = assoc.open(store=assoc.StoreSpec.builtin({str(tmp_path / "g")!r}), device="cpu")
        assert "onnxruntime" not in sys.modules, "opening a searcher started ONNX Runtime"
        searcher.index([{str(library)!r}])
        searcher.close()
        searcher = assoc.open(store=assoc.StoreSpec.builtin({str(tmp_path / "g")!r}), device="cpu")
        hits = searcher.search("a dog running", k=3)
        assert len(hits) == 3 and searcher._image is None, "a search by words made an image encoder"
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_photo_queries_find_the_photo_itself(searcher: assoc.Searcher, library: Path) -> None:
    photo = sorted(library.glob("*.jpg"))[3]
    by_path = searcher.search(photo, k=3)
    by_text = searcher.search(str(photo), k=3)
    by_image = searcher.search(Image.open(photo), k=3)
    itself = 1.0  # MaxSim 1 and the global cosine 1, mixed by λ
    assert by_path[0].path == str(photo) and by_path[0].score == pytest.approx(itself, abs=2e-3)
    assert [h.path for h in by_text] == [h.path for h in by_path]
    assert by_image[0].path == str(photo) and by_image[0].score > 0.95
    assert by_path[0].to_dict() == {"path": str(photo), "score": by_path[0].score}


def test_a_long_sentence_is_words_not_a_file_name(searcher: assoc.Searcher) -> None:
    text = "a dog " * 60  # 360 bytes: longer than any file name the OS allows
    assert len(searcher.search(text, k=2)) == 2
    with pytest.raises(assoc.QueryError, match="no such photo"):
        searcher.search("IMG_0042.jpg")


def test_localize_encodes_finer_and_explain_reads_the_stored_grid(
    searcher: assoc.Searcher, library: Path, tmp_path: Path
) -> None:
    photo = sorted(library.glob("*.jpg"))[0]
    found = searcher.localize(photo, "a dog on the grass")
    copy = tmp_path / "elsewhere.jpg"
    shutil.copy(photo, copy)
    again = searcher.localize(copy, "a dog on the grass")
    assert [w.word for w in found.words] == ["a", "dog", "on", "the", "grass"]
    assert (again.peak, [w.peak for w in again.words]) == (found.peak, [w.peak for w in found.words])
    assert again.to_dict()["image"] == str(copy) and found.photo is not None
    explained = searcher.explain(str(photo), "a dog on the grass")
    config = searcher.bundle.config
    stride = config.visual.image_size[0] // config.visual.grid[0]
    assert explained is not None and explained.photo is None and explained.grid == config.visual.grid
    assert found.grid == (config.localize_size[0] // stride, config.localize_size[1] // stride)
    assert searcher.explain("/not/indexed.jpg", "dog") is None


def test_localize_at_the_input_size_reuses_the_stored_grid(
    searcher: assoc.Searcher, library: Path, tmp_path: Path, bundle_dir: Path
) -> None:
    """A bundle that localizes at its input size (its config.json says no larger size) reuses the grid
    the store holds for the photo's content, under any name: its scores are the stored grid's, exactly."""
    bundle = tmp_path / "bundle"
    shutil.copytree(bundle_dir, bundle)
    raw = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    raw["localize"] = {"smooth": 3}
    (bundle / "config.json").write_text(json.dumps(raw), encoding="utf-8")  # the bundle id stays the same
    photo = sorted(library.glob("*.jpg"))[1]
    copy = tmp_path / "renamed.jpg"
    shutil.copy(photo, copy)
    with assoc.open(model=bundle, store=searcher.store_spec, device="cpu") as plain:
        found = plain.localize(copy, "a dog on the grass")
        explained = plain.explain(str(photo), "a dog on the grass")
    assert explained is not None and found.grid == explained.grid
    assert [w.score for w in found.words] == [w.score for w in explained.words]
    assert found.peak == explained.peak


def test_one_searcher_serves_many_threads(searcher: assoc.Searcher, library: Path) -> None:
    queries = ["a dog", "children playing", "a man on a bike", "water"] * 4
    photos = sorted(library.glob("*.jpg"))[:4]
    serial = [[(h.path, h.score) for h in searcher.search(q, k=5)] for q in queries]
    serial_photos = [searcher.search(p, k=3)[0].path for p in photos]
    with ThreadPoolExecutor(max_workers=6) as pool:
        threaded = list(pool.map(lambda q: [(h.path, h.score) for h in searcher.search(q, k=5)], queries))
        threaded_photos = list(pool.map(lambda p: searcher.search(p, k=3)[0].path, photos))
        infos = list(pool.map(lambda _: searcher.info().to_dict()["store"]["photos"], range(4)))
    assert threaded == serial and threaded_photos == serial_photos == [str(p) for p in photos]
    assert infos == [PHOTOS] * 4


def test_info_says_whether_store_and_model_belong_together(searcher: assoc.Searcher) -> None:
    facts = searcher.info().to_dict()
    assert facts["store"]["photos"] == PHOTOS and facts["store"]["matches_bundle"] is True
    assert facts["bundle"]["bundle_id"] == searcher.bundle.bundle_id


def test_errors_carry_facts_and_the_cli_adds_flags(tmp_path: Path) -> None:
    folder = tmp_path / "other"
    Gallery.open(folder, "someone-elses-model-0123456789ab", 256).close()
    with (
        assoc.open(store=assoc.StoreSpec.builtin(folder), device="cpu") as searcher,
        pytest.raises(assoc.ModelMismatchError) as err,
    ):
        searcher.search("a dog")
    assert (err.value.stored, err.value.wanted) == ("someone-elses-model-0123456789ab", searcher.bundle.bundle_id)
    assert "--" not in str(err.value) and "--gallery" in one_line(err.value)
    with pytest.raises(assoc.NoGalleryError):
        assoc.open(store=assoc.StoreSpec.builtin(tmp_path / "nothing"), device="cpu").search("a dog")
    assert not (tmp_path / "nothing").exists()  # a search creates nothing


def test_store_spec_environment_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSOC_GALLERY", str(tmp_path / "from-env"))
    assert StoreSpec().resolved().gallery == tmp_path / "from-env"
    assert StoreSpec.builtin(tmp_path / "named").resolved().gallery == tmp_path / "named"
    monkeypatch.delenv("ASSOC_QDRANT_URL", raising=False)
    with pytest.raises(assoc.StoreConfigError):
        StoreSpec.qdrant().resolved()
    with pytest.raises(assoc.StoreConfigError, match="not both"):
        StoreSpec.qdrant(url="http://localhost:6333", path=tmp_path).resolved()
    monkeypatch.setenv("ASSOC_QDRANT_URL", "http://localhost:6333")
    monkeypatch.setenv("ASSOC_QDRANT_API_KEY", "secret")
    resolved = StoreSpec.qdrant(collection="photos").resolved()
    assert (resolved.qdrant_url, resolved.qdrant_api_key, resolved.collection) == (
        "http://localhost:6333",
        "secret",
        "photos",
    )
    assert StoreSpec.qdrant(path=tmp_path).resolved().qdrant_api_key is None  # a local folder takes no key


def test_json_names_odd_files_exactly_in_every_front_end() -> None:
    import base64
    import json
    import os

    from assoc.api.json_text import dumps

    name = os.fsdecode(b"/photos/caf\xe9 \x1b[2J.jpg")  # Latin-1 byte and an escape sequence
    text = dumps([assoc.Hit(name, 0.5).to_dict()])
    text.encode("utf-8")  # strict UTF-8: no lone surrogate left in the text
    (back,) = json.loads(text)
    assert back["path"] == name and os.fsencode(back["path"]) == b"/photos/caf\xe9 \x1b[2J.jpg"
    assert base64.b64decode(back["path_bytes"]) == b"/photos/caf\xe9 \x1b[2J.jpg"
    assert "path_bytes" not in json.loads(dumps({"path": "/photos/plain.jpg"}))
    pytest.importorskip("starlette", reason="the web app needs the serve extra")
    from assoc.web.app import JSONResponse

    assert json.loads(JSONResponse([back]).body)[0]["path"] == name

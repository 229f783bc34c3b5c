"""`assoc localize` on real photos: the JSON contract, overlay files, EXIF rotation, indexed photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_support import assert_one_line_error, assoc, ok, ok_json, strip_ansi
from PIL import Image

from assoc.api.results import Localization
from assoc.runtime.encoding.bundle import load_bundle
from assoc.runtime.encoding.encoders import ImageEncoder, TextEncoder
from assoc.runtime.imaging.images import load_image
from assoc.runtime.scoring.heatmap import compute_heatmaps
from assoc.runtime.stores.gallery import Gallery

LANDSCAPE = "10815824_2997e03d76.jpg"  # 500 x 333
TEXT = "a dog on the grass"


@pytest.fixture()
def photo(flickr8k: Path, tmp_path: Path) -> Path:
    return Path(shutil.copyfile(flickr8k / "fullres" / LANDSCAPE, tmp_path / LANDSCAPE))


def localize_json(*args: str | Path, gallery: Path) -> dict:
    return ok_json("localize", *args, "--gallery", gallery, "--device", "cpu")


def expected(path: Path, grid: np.ndarray, bundle_dir: Path) -> dict:
    """What localize must say from this grid: its word maps smoothed as the bundle says."""
    bundle = load_bundle(bundle_dir)
    maps = compute_heatmaps(grid, TextEncoder(bundle, "cpu").encode_one(TEXT), bundle.config.localize.smooth)
    loaded = load_image(path)
    return Localization.from_heatmaps(str(path), (loaded.width, loaded.height), maps).to_dict()


def test_json_contract_for_a_photo_in_no_gallery(photo: Path, tmp_path: Path, bundle_dir: Path) -> None:
    result = localize_json(photo, TEXT, gallery=tmp_path / "no-gallery")
    assert list(result) == ["image", "width", "height", "grid", "peak", "words"]
    assert (result["image"], result["width"], result["height"]) == (str(photo), 500, 333)
    config = load_bundle(bundle_dir).config
    stride = config.visual.image_size[0] // config.visual.grid[0]
    assert result["grid"] == [side // stride for side in config.localize_size]
    assert [w["word"] for w in result["words"]] == TEXT.split()
    for point in [result["peak"], *(w["peak"] for w in result["words"])]:
        assert 0 <= point[0] < 500 and 0 <= point[1] < 333
    assert all(list(w) == ["word", "score", "peak"] for w in result["words"])
    # Encoded directly: exactly what the image encoder gives for the fully decoded photo at the localize size.
    encoded = ImageEncoder(load_bundle(bundle_dir), "cpu").encode_for_localizing(load_image(photo).image)
    assert result == expected(photo, encoded, bundle_dir)
    assert not (tmp_path / "no-gallery").exists()


def test_an_indexed_photo_localizes_as_it_did_before_indexing(photo: Path, tmp_path: Path, bundle_dir: Path) -> None:
    """The shipped bundle localizes at a larger size than it indexes: the stored grid does not serve
    localize (query --explain reads it), so indexing changes no localize answer, under any name."""
    before = localize_json(photo, TEXT, gallery=tmp_path / "no-gallery")
    gallery = tmp_path / "gallery"
    ok("index", photo, "--gallery", gallery, "--device", "cpu")
    assert localize_json(photo, TEXT, gallery=gallery) == before
    twin = Path(shutil.copyfile(photo, tmp_path / "twin.jpg"))
    assert localize_json(twin, TEXT, gallery=gallery) == {**before, "image": str(twin)}
    with Gallery.open(gallery) as g:
        stored = g.get_grid(str(photo))
    assert stored.shape[:2] == load_bundle(bundle_dir).config.visual.grid


def test_overlay_sheet_and_terminal_pictures(photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # draw as on a terminal
    out = tmp_path / "maps" / "overlay.png"
    out.parent.mkdir()
    shown = ok(
        "localize", photo, "red ball", "--out", out, "--per-word", "--gallery", tmp_path / "g", "--device", "cpu"
    )
    with Image.open(out) as overlay, Image.open(photo) as original:
        assert overlay.size == original.size == (500, 333)
        assert overlay.convert("RGB").tobytes() != original.convert("RGB").tobytes()
    with Image.open(out.with_name("overlay.words.png")) as sheet:
        panel_width = round(240 * 500 / 333)
        assert sheet.size == (3 * panel_width, 240 + 20)  # red, ball, phrase
    plain = strip_ansi(shown.stdout)
    captions = [line.split()[0] for line in plain.splitlines() if "\u2580" not in line]
    assert captions == ["red", "ball", "phrase:"]
    assert plain.count("\u2580") > 3 * 100


def test_pipe_gets_peaks_not_pictures(photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    shown = ok("localize", photo, "red ball", "--gallery", tmp_path / "g", "--device", "cpu").stdout
    found = localize_json(photo, "red ball", gallery=tmp_path / "g")
    expected = [f"{w['word']}  {w['score']:.4f}  peak (x, y) ({w['peak'][0]}, {w['peak'][1]})" for w in found["words"]]
    assert shown.splitlines()[:-1] == expected
    assert shown.splitlines()[-1].startswith("phrase: red ball  ")
    assert shown.splitlines()[-1].endswith(f"peak (x, y) ({found['peak'][0]}, {found['peak'][1]})")
    assert "\u2580" not in shown and "\x1b" not in shown


def test_exif_rotated_photo_uses_displayed_orientation(photo: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.jpg"
    with Image.open(photo) as img:
        exif = img.getexif()
        exif[0x0112] = 6  # stored landscape, displayed portrait (rotate 90 degrees clockwise)
        img.save(rotated, exif=exif, quality=95)
    with Image.open(rotated) as raw:
        assert raw.size == (500, 333)
    out = tmp_path / "rotated-overlay.png"
    result = localize_json(rotated, TEXT, "--out", out, gallery=tmp_path / "g")
    assert (result["width"], result["height"]) == (333, 500)
    for point in [result["peak"], *(w["peak"] for w in result["words"])]:
        assert 0 <= point[0] < 333 and 0 <= point[1] < 500
    with Image.open(out) as overlay:
        assert overlay.size == (333, 500)


@pytest.mark.parametrize("kind", ["text", "missing", "folder"])
def test_unreadable_image_is_one_line_error(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "photo.jpg"
    if kind == "text":
        target.write_text("not a photo\n")
    elif kind == "folder":
        target.mkdir()
    result = assoc("localize", target, "dog", "--gallery", tmp_path / "g", "--device", "cpu")
    assert_one_line_error(result, str(target))

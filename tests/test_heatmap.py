"""Heatmaps on real photos: planted grids, then the shipped bundle on an EXIF-rotated photo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from assoc.api.render import colorize, overlay, per_word_sheet
from assoc.api.results import Localization
from assoc.runtime.encoding.encoders import EncodedQuery
from assoc.runtime.imaging.images import load_image
from assoc.runtime.scoring.heatmap import cell_to_pixel, compute_heatmaps, normalize, upsample
from assoc.runtime.scoring.matchmap import matchmap

GRID = (7, 10)
DIM = 32
LANDSCAPE = "10815824_2997e03d76.jpg"  # 500 x 333


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.fixture()
def photo(flickr8k: Path) -> Image.Image:
    return load_image(flickr8k / "fullres" / LANDSCAPE).image


@pytest.fixture()
def planted() -> tuple[np.ndarray, EncodedQuery]:
    """A random unit grid where cell (2, 5) is 'dog' and cell (4, 1) is the mean of 'skate'+'board'."""
    rng = np.random.default_rng(0)
    grid = _unit(rng.normal(size=(*GRID, DIM))).astype(np.float32) * 0.3
    dog, skate, board = _unit(rng.normal(size=(3, DIM))).astype(np.float32)
    grid[2, 5] = dog
    grid[4, 1] = _unit(skate + board)
    query = EncodedQuery(
        text="dog skateboard",
        vectors=np.stack([dog, skate, board]),
        token_word=np.array([0, 1, 1]),
        words=["dog", "skateboard"],
    )
    return grid, query


def test_word_maps_find_planted_cells(planted: tuple[np.ndarray, EncodedQuery]) -> None:
    grid, query = planted
    maps = compute_heatmaps(grid, query)
    mm = matchmap(grid, query.vectors)
    assert maps.word_maps.shape == (2, *GRID) and maps.grid == GRID
    np.testing.assert_allclose(maps.word_maps[0], mm[..., 0], rtol=1e-6)
    np.testing.assert_allclose(maps.word_maps[1], mm[..., 1:].mean(axis=-1), rtol=1e-6)
    np.testing.assert_allclose(maps.phrase_map, maps.word_maps.mean(axis=0), rtol=1e-6)
    assert maps.word_peak(0) == (2, 5) and maps.word_peak(1) == (4, 1)
    assert maps.word_scores[0] == pytest.approx(1.0, abs=1e-5)
    assert maps.word_scores[1] == pytest.approx(maps.word_maps[1, 4, 1])
    assert maps.score == pytest.approx(maps.word_scores.mean())


def test_localization_json_in_photo_pixels(planted: tuple[np.ndarray, EncodedQuery], flickr8k: Path) -> None:
    path = flickr8k / "fullres" / LANDSCAPE
    loaded = load_image(path)
    assert (loaded.width, loaded.height) == (500, 333)
    maps = compute_heatmaps(*planted)
    loc = Localization.from_heatmaps(str(path), (loaded.width, loaded.height), maps)
    out = json.loads(json.dumps(loc.to_dict()))
    assert list(out) == ["image", "width", "height", "grid", "peak", "words"]
    assert out["grid"] == [7, 10] and (out["width"], out["height"]) == (500, 333)
    # cell (2, 5) spans x 250..300 and y 95.1..118.9 of a 500 x 333 photo; its centre is (275, 118.9)
    assert out["words"][0] == {"word": "dog", "score": pytest.approx(1.0, abs=1e-5), "peak": [275, 118]}
    assert out["words"][1]["peak"] == [int(1.5 * 50), int(4.5 * 333 / 7)]
    assert out["peak"] in ([275, 118], [75, 214])
    assert all(isinstance(v, int) for w in out["words"] for v in w["peak"])


def test_cell_to_pixel_stays_inside_photo() -> None:
    assert cell_to_pixel((6, 9), GRID, (10, 7)) == (9, 6)
    assert cell_to_pixel((0, 0), GRID, (500, 333)) == (25, 23)


def test_upsample_places_cells_at_their_centres(planted: tuple[np.ndarray, EncodedQuery]) -> None:
    grid_map = compute_heatmaps(*planted).phrase_map
    up = upsample(grid_map, (30, 21))  # 3 x 3 pixels per cell: pixel (3i+1, 3j+1) is a cell centre
    assert up.shape == (21, 30) and up.dtype == np.float32
    np.testing.assert_allclose(up[1::3, 1::3], grid_map, rtol=1e-5)
    # same convention as Pillow's bilinear upscaling of a float image
    big = upsample(grid_map, (500, 333))
    pil = np.asarray(Image.fromarray(grid_map, "F").resize((500, 333), Image.BILINEAR))
    assert big.shape == (333, 500)
    np.testing.assert_allclose(big, pil, atol=1e-4)
    y, x = np.unravel_index(np.argmax(big), big.shape)
    assert 250 <= x < 300 and 95 <= y < 119  # inside cell (2, 5)


def test_normalize_and_colormap() -> None:
    values = normalize(np.array([[2.0, 4.0], [3.0, 6.0]]))
    np.testing.assert_allclose(values, [[0.0, 0.5], [0.25, 1.0]])
    assert not normalize(np.full((3, 4), 0.7)).any()  # a flat map has no hot spot
    lut = colorize(np.linspace(0.0, 1.0, 256))
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    luma = lut @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(luma) > -0.5) and luma[0] < 5 and luma[-1] > 230  # dark to light


def test_overlay_blends_over_the_photo(photo: Image.Image, planted: tuple[np.ndarray, EncodedQuery]) -> None:
    grid_map = compute_heatmaps(*planted).word_maps[0]
    half = overlay(photo, grid_map)
    assert half.mode == "RGB" and half.size == photo.size
    assert np.array_equal(np.asarray(overlay(photo, grid_map, alpha=0.0)), np.asarray(photo))
    heat = np.asarray(overlay(photo, grid_map, alpha=1.0)).astype(int)
    luma = heat @ [299, 587, 114]
    y, x = np.unravel_index(np.argmax(luma), luma.shape)
    assert 250 <= x < 300 and 95 <= y < 119  # the hottest colour sits in cell (2, 5)
    assert luma[118, 275] >= colorize(np.array(0.95)) @ [299, 587, 114]
    expected = (np.asarray(photo).astype(int) + heat) / 2
    assert np.abs(np.asarray(half).astype(int) - expected).max() <= 1


def test_per_word_sheet_has_a_labelled_panel_per_word(
    photo: Image.Image, planted: tuple[np.ndarray, EncodedQuery]
) -> None:
    maps = compute_heatmaps(*planted)
    sheet = per_word_sheet(photo, maps, panel_height=120)
    panel_width = round(120 * 500 / 333)
    assert sheet.size == (3 * panel_width, 120 + 20)
    arr = np.asarray(sheet)
    panels = [arr[:120, k * panel_width : (k + 1) * panel_width] for k in range(3)]
    assert not np.array_equal(panels[0], panels[1])
    for k in range(3):
        label = arr[120:, k * panel_width : (k + 1) * panel_width]
        assert (label < 100).any()  # dark text on the white strip


def test_real_bundle_peak_follows_exif_rotation(bundle_dir: Path, flickr8k: Path, tmp_path: Path) -> None:
    from assoc.runtime.encoding.bundle import load_bundle
    from assoc.runtime.encoding.encoders import ImageEncoder, TextEncoder

    bundle = load_bundle(bundle_dir)
    images, texts = ImageEncoder(bundle, device="cpu"), TextEncoder(bundle, device="cpu")
    upright_path = flickr8k / "fullres" / LANDSCAPE
    upright = load_image(upright_path)
    # Stored rotated 90 degrees counter-clockwise, tagged Orientation=6: a viewer turns it back upright.
    rotated_path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.image.transpose(Image.Transpose.ROTATE_90).save(rotated_path, quality=95, exif=exif)
    with Image.open(rotated_path) as raw:
        stored = np.asarray(raw.convert("RGB"), dtype=int)  # the pixels as stored, not as shown
    assert stored.shape[:2] == (upright.width, upright.height)
    shown = load_image(rotated_path)
    assert (shown.width, shown.height) == (upright.width, upright.height)
    diff = np.abs(np.asarray(shown.image, dtype=int) - np.asarray(upright.image, dtype=int))
    assert diff.mean() < 8  # displayed upright again, up to JPEG re-encoding

    query = texts.encode_one("a girl and her horse stand by a fire")
    locs = []
    for path, loaded in ((upright_path, upright), (rotated_path, shown)):
        maps = compute_heatmaps(images.encode([loaded.image])[0], query)
        locs.append(Localization.from_heatmaps(str(path), (loaded.width, loaded.height), maps))
    a, b = locs
    h, w = a.grid
    cell = (a.width / w, a.height / h)
    assert (b.width, b.height) == (a.width, a.height)
    # JPEG re-encoding may move the peak to a neighbouring cell (points are cell centres rounded to pixels)
    assert abs(a.peak[0] - b.peak[0]) <= cell[0] + 1 and abs(a.peak[1] - b.peak[1]) <= cell[1] + 1
    # the displayed peak (x, y) sits at stored pixel (y, W-1-x): the same content in the sideways file
    x, y = b.peak
    patch_shown = np.asarray(upright.image, dtype=int)[y - 2 : y + 3, x - 2 : x + 3]
    patch_stored = stored[a.width - 1 - x - 2 : a.width - 1 - x + 3, y - 2 : y + 3][::-1].transpose(1, 0, 2)
    assert np.abs(patch_shown - patch_stored).mean() < 12

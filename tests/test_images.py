"""Photo decoding as real libraries need it, on real photos converted into awkward forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from assoc.runtime.errors import ImageLoadError
from assoc.runtime.imaging.images import load_image


@pytest.fixture(scope="module")
def photo(flickr8k: Path) -> Image.Image:
    path = sorted((flickr8k / "fullres").glob("*.jpg"))[0]
    return Image.open(path).convert("RGB")


def test_exif_orientation_is_applied(photo: Image.Image, tmp_path: Path) -> None:
    stored = photo.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways stores
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert (loaded.width, loaded.height) == photo.size == loaded.image.size
    diff = np.abs(np.asarray(loaded.image, np.int16) - np.asarray(photo, np.int16)).mean()
    assert diff < 6.0  # JPEG noise only: the displayed photo, not a rotated one


def test_draft_mode_decodes_small_but_reports_the_full_size(photo: Image.Image, tmp_path: Path) -> None:
    big = photo.resize((photo.width * 4, photo.height * 4))
    path = tmp_path / "big.jpg"
    big.save(path, quality=90)
    loaded = load_image(path, min_size=(224, 224))
    assert (loaded.width, loaded.height) == big.size
    assert min(loaded.image.size) >= 224 and loaded.image.width < big.width


@pytest.mark.parametrize("mode", ["P", "CMYK", "L", "LA", "RGBA", "I;16"])
def test_every_mode_becomes_rgb(photo: Image.Image, tmp_path: Path, mode: str) -> None:
    if mode == "I;16":
        arr = (np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16)
        img = Image.fromarray(arr)  # uint16 -> mode I;16
        path = tmp_path / "deep.png"
    else:
        img = photo.convert(mode)
        path = tmp_path / f"{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
    img.save(path)
    loaded = load_image(path)
    assert loaded.image.mode == "RGB" and loaded.image.size == photo.size
    grey = np.asarray(loaded.image.convert("L"), np.float32)
    assert abs(grey.mean() - np.asarray(photo.convert("L"), np.float32).mean()) < 12


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 255, 255))
    img.save(tmp_path / "a.png")
    rgb = load_image(tmp_path / "a.png").image
    assert rgb.getpixel((5, 5)) == (255, 255, 255) and rgb.getpixel((0, 0)) == (0, 0, 255)


def test_bad_files_are_one_line_errors(photo: Image.Image, tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not a photo\n")
    photo.save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    for name in ("empty.jpg", "notes.jpg", "cut.jpg", "missing.jpg"):
        with pytest.raises(ImageLoadError) as err:
            load_image(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)


def test_megapixel_cap_refuses_before_decoding(photo: Image.Image, tmp_path: Path) -> None:
    photo.save(tmp_path / "p.jpg")
    with pytest.raises(ImageLoadError, match="megapixel"):
        load_image(tmp_path / "p.jpg", max_megapixels=0.1)


def test_heic_photos_open_through_pillow_heif(photo: Image.Image, tmp_path: Path) -> None:
    pytest.importorskip("pillow_heif", reason="HEIC needs assoc[heic]")
    photo.save(tmp_path / "phone.heic")
    loaded = load_image(tmp_path / "phone.heic")
    assert loaded.image.size == photo.size
    diff = np.abs(np.asarray(loaded.image, np.int16) - np.asarray(photo, np.int16)).mean()
    assert diff < 8.0

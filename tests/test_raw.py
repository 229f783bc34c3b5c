"""RAW photos (assoc[raw]) on real DNG files written here from real photos: a Bayer mosaic of the photo
with the DNG tags LibRaw reads, with or without an embedded JPEG preview, with an orientation flag.
Decoded pixels are compared with the photo they were made from."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_support import ok_json
from PIL import Image

from assoc.runtime.errors import ImageLoadError
from assoc.runtime.imaging.images import load_image
from assoc.runtime.indexing.walk import walk

rawpy = pytest.importorskip("rawpy", reason="RAW photos need assoc[raw]")
tifffile = pytest.importorskip("tifffile", reason="the tests write their DNG files with tifffile (assoc[test])")

PHOTO = "000000054718.jpg"  # coco-boxes: 640 x 480, muddy elephants by rocks
OTHERS = ("000000063217.jpg", "000000100667.jpg", "000000187334.jpg")  # a boat, three men, a sheep
WHITE = 4095  # 12-bit sensor values
XYZ_TO_SRGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))
MISSING_RAWPY = "import sys; sys.modules['rawpy'] = None; from assoc.cli.app import main; sys.argv[0] = 'assoc'; main()"


def write_dng(
    path: Path,
    photo: Image.Image,
    *,
    orientation: int = 1,
    preview: Image.Image | None = None,
    preview_orientation: int | None = None,
) -> Path:
    """A DNG whose sensor saw `photo`: its linear-light values sampled through an RGGB Bayer filter, one
    sensor value per pixel, with a colour matrix that makes the camera's space linear sRGB. `preview`
    is embedded as a baseline JPEG in IFD 0 (the raw image then goes to a SubIFD, as Adobe's converter
    writes them), optionally with an EXIF orientation of its own."""
    width, height = photo.width - photo.width % 2, photo.height - photo.height % 2
    srgb = np.asarray(photo.convert("RGB").crop((0, 0, width, height)), np.float64) / 255
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    mosaic = np.empty((height, width), np.uint16)
    for (dy, dx), channel in (((0, 0), 0), ((0, 1), 1), ((1, 0), 1), ((1, 1), 2)):
        mosaic[dy::2, dx::2] = np.round(linear[dy::2, dx::2, channel] * WHITE)
    rationals = [x for value in np.ravel(XYZ_TO_SRGB) for x in (round(value * 10000), 10000)]
    camera = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "assoc test camera", True),  # UniqueCameraModel
        (50721, "2i", 9, rationals, True),  # ColorMatrix1: XYZ -> camera
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
        (274, "H", 1, orientation, True),
        (271, "s", 0, "assoc", True),
        (272, "s", 0, "test camera", True),
    ]
    cfa = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50714, "H", 1, 0, True),  # BlackLevel
        (50717, "H", 1, WHITE, True),  # WhiteLevel
    ]
    with tifffile.TiffWriter(path) as tif:
        if preview is None:
            tif.write(mosaic, photometric="cfa", subfiletype=0, extratags=camera + cfa, metadata=None)
            return path
        jpeg = io.BytesIO()
        exif = Image.Exif()
        if preview_orientation is not None:
            exif[0x0112] = preview_orientation
        preview.convert("RGB").save(jpeg, "JPEG", quality=92, exif=exif)
        data = jpeg.getvalue()
        pw, ph = preview.size
        # tifffile writes encoded JPEG strips only through imagecodecs: the bytes go in as an uncompressed
        # strip (padded to its size), and the tags are made to say what they are below.
        tif.write(
            iter([data.ljust(pw * ph * 3, b"\0")]),
            shape=(ph, pw, 3),
            dtype=np.uint8,
            photometric="rgb",
            rowsperstrip=ph,
            subfiletype=1,
            subifds=1,
            extratags=camera,
            metadata=None,
        )
        tif.write(mosaic, photometric="cfa", subfiletype=0, extratags=cfa, metadata=None)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tags = tif.pages[0].tags
        tags[259].overwrite(7)  # Compression: JPEG
        tags[262].overwrite(6)  # PhotometricInterpretation: YCbCr
        tags[279].overwrite(len(data))  # StripByteCounts
    return path


def likeness(image: Image.Image, reference: Image.Image) -> tuple[float, float]:
    """(correlation, mean absolute difference in 0-255) of two photos' pixels at the image's size."""
    ours = np.asarray(image.convert("RGB"), np.float64)
    theirs = np.asarray(reference.convert("RGB").resize(image.size, Image.BILINEAR), np.float64)
    return float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]), float(np.abs(ours - theirs).mean())


@pytest.fixture(scope="module")
def photo(coco_boxes: Path) -> Image.Image:
    return Image.open(coco_boxes / "images" / PHOTO).convert("RGB")


def test_without_a_preview_the_half_size_demosaic_matches_the_photo(photo: Image.Image, tmp_path: Path) -> None:
    loaded = load_image(write_dng(tmp_path / "plain.dng", photo))
    assert (loaded.width, loaded.height) == (640, 480)  # the sensor's size
    assert loaded.image.size == (320, 240) and loaded.image.mode == "RGB"  # half of it, never more
    correlation, difference = likeness(loaded.image, photo)
    assert correlation > 0.95 and difference < 25, (correlation, difference)


def test_a_preview_that_is_large_enough_is_read_instead(photo: Image.Image, tmp_path: Path) -> None:
    large = write_dng(tmp_path / "large.dng", photo, preview=photo.resize((480, 360)))
    small = write_dng(tmp_path / "small.dng", photo, preview=photo.resize((160, 120)))
    for min_size in (None, (320, 320)):  # whole: the demosaic's size is enough; or what the model takes
        loaded = load_image(large, min_size=min_size)
        assert loaded.image.size == (480, 360) and (loaded.width, loaded.height) == (640, 480)
        correlation, difference = likeness(loaded.image, photo)
        assert correlation > 0.98 and difference < 8, (correlation, difference)
    assert load_image(large, min_size=(100, 100)).image.size == (240, 180)  # JPEG DCT scaling, as for any JPEG
    demosaic = load_image(small, min_size=(320, 320))  # the preview is too small: the sensor's data
    assert demosaic.image.size == (320, 240)
    assert likeness(demosaic.image, photo)[0] > 0.95
    assert load_image(small, min_size=(150, 110)).image.size == (160, 120)  # but enough for a thumbnail


@pytest.mark.parametrize(
    "case",
    ["demosaic", "preview turned by the RAW", "preview turned by its own EXIF", "preview stored turned"],
)
def test_the_photo_is_turned_as_the_camera_recorded(photo: Image.Image, tmp_path: Path, case: str) -> None:
    """Stored as the sensor saw it (landscape), orientation 6: shown turned a quarter clockwise."""
    kwargs: dict = {}
    if case == "preview turned by the RAW":
        kwargs = {"preview": photo.resize((480, 360))}
    elif case == "preview turned by its own EXIF":
        kwargs = {"preview": photo.resize((480, 360)), "preview_orientation": 6}
    elif case == "preview stored turned":  # some cameras store it upright already, with no EXIF of its own
        kwargs = {"preview": photo.resize((480, 360)).transpose(Image.Transpose.ROTATE_270)}
    loaded = load_image(write_dng(tmp_path / "turned.dng", photo, orientation=6, **kwargs))
    assert (loaded.width, loaded.height) == (480, 640)
    assert loaded.image.width < loaded.image.height
    upright = photo.transpose(Image.Transpose.ROTATE_270)  # a quarter turn clockwise
    wrong_way = photo.transpose(Image.Transpose.ROTATE_90)
    assert likeness(loaded.image, upright)[0] > 0.95
    assert likeness(loaded.image, wrong_way)[0] < 0.6


def test_files_that_are_not_raw_are_one_line_errors(photo: Image.Image, tmp_path: Path, coco_boxes: Path) -> None:
    jpeg = tmp_path / "renamed.nef"
    jpeg.write_bytes((coco_boxes / "images" / PHOTO).read_bytes())
    with pytest.raises(ImageLoadError, match=r"renamed\.nef: not a RAW file LibRaw can read$"):
        load_image(jpeg)
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "missing.cr2")
    whole = write_dng(tmp_path / "whole.dng", photo).read_bytes()
    cut = tmp_path / "cut.dng"
    cut.write_bytes(whole[:5000])
    with pytest.raises(ImageLoadError) as caught:
        load_image(cut)
    assert str(caught.value).startswith(f"{cut}: ") and "\n" not in str(caught.value)


def test_a_raw_beside_a_jpeg_of_the_same_name_is_left_out(photo: Image.Image, tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    write_dng(library / "IMG_0001.DNG", photo)
    photo.save(library / "IMG_0001.JPG")
    write_dng(library / "IMG_0002.dng", photo)
    write_dng(library / "IMG_0003.dng", photo)
    photo.save(library / "IMG_0003.dng.jpg")  # another name: not a sibling
    found = [Path(f.path).name for f in walk([library]).files]
    assert found == ["IMG_0001.JPG", "IMG_0002.dng", "IMG_0003.dng", "IMG_0003.dng.jpg"]
    assert [Path(f.path).name for f in walk([library], exclude=["*.JPG"]).files] == [
        "IMG_0001.DNG",  # its JPEG is not indexed: the RAW is the photo
        "IMG_0002.dng",
        "IMG_0003.dng",
        "IMG_0003.dng.jpg",
    ]
    named = walk([library / "IMG_0001.DNG"])  # a RAW the user names is indexed, JPEG or not
    assert [Path(f.path).name for f in named.files] == ["IMG_0001.DNG"]


@pytest.mark.slow
def test_raw_photos_are_indexed_found_localized_and_thumbnailed(
    photo: Image.Image, tmp_path: Path, coco_boxes: Path
) -> None:
    import assoc
    from assoc.web.photos import Photos

    library = tmp_path / "library"
    library.mkdir()
    raw = write_dng(library / "camera.dng", photo, orientation=6, preview=photo.resize((480, 360)))
    for name in OTHERS:
        Image.open(coco_boxes / "images" / name).save(library / name)
    upright = tmp_path / "upright.jpg"  # the photo as a viewer shows the RAW: the query
    photo.transpose(Image.Transpose.ROTATE_270).save(upright, quality=92)
    gallery = tmp_path / "gallery"
    with assoc.Searcher(store=assoc.StoreSpec.builtin(gallery), device="cpu") as searcher:
        report = searcher.index([library])
        assert (report.added, report.skipped, report.photos) == (4, [], 4)
        hits = searcher.search(upright, k=4)
        assert hits[0].path == str(raw) and hits[0].score > hits[1].score + 0.1
        record = searcher.records([str(raw)])[str(raw)]
        assert (record.width, record.height) == (480, 640)
        stored = searcher.explain(str(raw), "a photo")
        assert (stored.width, stored.height) == (480, 640)
        photos = Photos(searcher, [tmp_path / "thumbnails"])
        thumbnail = Image.open(io.BytesIO(photos.thumbnail_jpeg(photos.get(record.content_hash))))
        assert thumbnail.width < thumbnail.height
        assert likeness(thumbnail, photo.transpose(Image.Transpose.ROTATE_270))[0] > 0.95
    where = ok_json("localize", raw, "a photo", "--gallery", gallery, "--device", "cpu")
    assert (where["width"], where["height"]) == (480, 640)


@pytest.mark.slow
def test_without_rawpy_a_raw_file_is_skipped_with_one_line_naming_the_extra(
    photo: Image.Image, tmp_path: Path, coco_boxes: Path
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    raw = write_dng(library / "camera.dng", photo)
    (library / OTHERS[0]).write_bytes((coco_boxes / "images" / OTHERS[0]).read_bytes())
    command = [sys.executable, "-c", MISSING_RAWPY, "index", str(library), "--gallery", str(tmp_path / "gallery")]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ASSOC_")}, "COLUMNS": "250"}
    run = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    report = json.loads(run.stdout)
    assert report["added"] == 1 and report["photos"] == 1
    assert report["skipped"] == [{"path": str(raw), "reason": "RAW photos need rawpy: pip install 'assoc[raw]'"}]
    table = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    lines = [line for line in table.stdout.splitlines() if "camera.dng" in line]
    assert len(lines) == 1 and lines[0].strip().endswith("camera.dng: RAW photos need rawpy: pip install 'assoc[raw]'")
    assert "Traceback" not in table.stderr and table.returncode == 0

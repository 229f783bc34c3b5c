"""localize's recipe (LocalizeConfig): a finer grid from a larger input, smoothed maps, raw word scores;
checked on planted grids, on bundle configs, and with the shipped bundle on real COCO photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_support import ok_json

import assoc
from assoc.runtime.encoding.bundle import BundleConfig, LocalizeConfig, load_bundle, sha256_file
from assoc.runtime.encoding.encoders import EncodedQuery, ImageEncoder
from assoc.runtime.errors import BundleError
from assoc.runtime.scoring.heatmap import compute_heatmaps, smooth_map

# Photos of ../shared/data/coco-boxes with one box of the category, off the photo's centre (so pointing
# at the centre misses it); the two are also example photos (examples/ATTRIBUTION.md).
KNOWN_BOXES = [("000000196393.jpg", "cat"), ("000000107438.jpg", "bicycle")]


def test_smooth_map_is_the_neighbourhood_mean() -> None:
    grid_map = np.random.default_rng(0).normal(size=(6, 9)).astype(np.float32)
    smoothed = smooth_map(grid_map, 3)
    padded = np.pad(grid_map, 1, mode="edge")
    expected = np.array([[padded[i : i + 3, j : j + 3].mean() for j in range(9)] for i in range(6)])
    np.testing.assert_allclose(smoothed, expected, rtol=1e-5)
    np.testing.assert_array_equal(smooth_map(grid_map, 1), grid_map)


def test_a_backed_peak_beats_a_lone_cell_and_scores_stay_raw() -> None:
    """A lone best cell at (0, 8) against a 3x3 block of slightly lower cells around (4, 2)."""
    dim = 16
    word = np.eye(dim, dtype=np.float32)[0]
    other = np.eye(dim, dtype=np.float32)[1]
    grid = np.tile(other, (7, 10, 1))
    grid[0, 8] = word
    grid[3:6, 1:4] = 0.9 * word + np.sqrt(1 - 0.81) * other
    query = EncodedQuery("cat", word[None], np.array([0]), ["cat"])
    raw, smoothed = compute_heatmaps(grid, query), compute_heatmaps(grid, query, smooth=3)
    assert raw.phrase_peak == (0, 8) and smoothed.phrase_peak == (4, 2)
    assert raw.word_scores[0] == smoothed.word_scores[0] == pytest.approx(1.0)
    assert smoothed.score == raw.score  # the score search ranks by is not smoothed


def test_localize_settings_in_config_json(bundle_dir: Path) -> None:
    raw = json.loads((bundle_dir / "config.json").read_text(encoding="utf-8"))
    config = BundleConfig.from_dict(raw)
    height, width = config.visual.image_size
    assert config.localize_size == (2 * height, 2 * width)  # the shipped bundle: twice its input size
    assert BundleConfig.from_dict(json.loads(config.to_json())) == config
    older = {k: v for k, v in raw.items() if k != "localize"}  # written before localize settings existed
    assert BundleConfig.from_dict(older).localize == LocalizeConfig()
    assert BundleConfig.from_dict(older).localize_size == config.visual.image_size
    for bad in ({"smooth": 2}, {"smooth": 0}, {"image_size": [0, 640]}):
        with pytest.raises(BundleError, match="localize"):
            BundleConfig.from_dict({**raw, "localize": bad})


def test_a_fixed_size_visual_model_cannot_localize_larger(bundle_dir: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    model = onnx.load(str(copy / "visual" / "model.onnx"))
    height, width = load_bundle(bundle_dir).config.visual.image_size
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim[2:], (height, width), strict=True):
        dim.dim_value = value  # as bundles exported before localize settings existed
    onnx.save(model, str(copy / "visual" / "model.onnx"))
    raw = json.loads((copy / "config.json").read_text(encoding="utf-8"))
    raw["localize"] = {"image_size": [2 * height, 2 * width], "smooth": 3}
    raw["files"]["visual/model.onnx"] = sha256_file(copy / "visual" / "model.onnx")
    (copy / "config.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(BundleError, match=f"takes only {height}x{width} inputs"):
        ImageEncoder(load_bundle(copy), device="cpu")
    raw["localize"] = {"smooth": 3}  # at its input size it localizes as before
    (copy / "config.json").write_text(json.dumps(raw), encoding="utf-8")
    assert ImageEncoder(load_bundle(copy), device="cpu").localize_size == (height, width)


@pytest.mark.parametrize(("name", "category"), KNOWN_BOXES)
def test_localize_points_into_the_known_box(coco_boxes: Path, tmp_path: Path, name: str, category: str) -> None:
    record = next(
        r for r in json.loads((coco_boxes / "manifest.json").read_text(encoding="utf-8"))["images"]
        if r["file"] == f"images/{name}"
    )
    (x, y, w, h), = (b["bbox_xywh"] for b in record["boxes"] if b["category"] == category)
    with assoc.open(store=assoc.StoreSpec.builtin(tmp_path / "gallery"), device="cpu") as searcher:
        found = searcher.localize(coco_boxes / record["file"], category).to_dict()
        config = searcher.bundle.config
    stride = config.visual.image_size[0] // config.visual.grid[0]
    assert found["grid"] == [config.localize_size[0] // stride, config.localize_size[1] // stride]
    px, py = found["peak"]
    assert x <= px <= x + w and y <= py <= y + h, (found["peak"], (x, y, w, h))
    cx, cy = record["width"] / 2, record["height"] / 2
    assert not (x <= cx <= x + w and y <= cy <= y + h)  # the centre baseline misses this box


def test_pointing_game_scores_localize_own_peaks(coco_boxes: Path, tmp_path: Path) -> None:
    """`assoc pointing` on a slice of coco-boxes: each trial's hit is decided by the peak that
    `Searcher.localize` reports for the category name, so its figure is the one users see."""
    manifest = json.loads((coco_boxes / "manifest.json").read_text(encoding="utf-8"))
    records = manifest["images"][:6]
    (tmp_path / "images").mkdir()
    for record in records:
        (tmp_path / record["file"]).symlink_to(coco_boxes / record["file"])
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "images": records}), encoding="utf-8")
    result = ok_json("pointing", tmp_path, "--device", "cpu")
    assert set(result) == {"trials", "hit_rate", "gallery_grid_hit_rate", "centre_baseline", "categories"}

    hits = trials = 0
    with assoc.open(store=assoc.StoreSpec.builtin(tmp_path / "gallery"), device="cpu") as searcher:
        for record in records:
            boxes: dict[str, list[list[float]]] = {}
            for box in record["boxes"]:
                if not box.get("iscrowd"):
                    boxes.setdefault(box["category"], []).append(box["bbox_xywh"])
            for category, found in boxes.items():
                px, py = searcher.localize(tmp_path / record["file"], category).peak
                trials += 1
                hits += any(x <= px <= x + w and y <= py <= y + h for x, y, w, h in found)
    assert result["trials"] == trials
    assert result["hit_rate"] == round(100.0 * hits / trials, 2)
    assert 0 <= result["gallery_grid_hit_rate"] <= 100 and 0 <= result["centre_baseline"] <= 100

"""A short real training run on Flickr8k, then export, parity, quantisation and ONNX Runtime evaluation.

One module-scoped run serves every test here; it is the slowest part of the suite (about a minute).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from assoc.cli.app import app
from assoc.evaluation.retrieval import evaluate_bundle
from assoc.export.bundle_export import export_bundle
from assoc.export.parity import measure_parity
from assoc.export.quantize import quantize_textual
from assoc.models.datasets import five_caption_eval_set, load_split
from assoc.models.evaluate import evaluate
from assoc.models.model import load_checkpoint
from assoc.runtime.encoding.bundle import load_bundle

pytestmark = pytest.mark.slow

DEV_IMAGES = 100  # chance Recall@10 text->image is 10%


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path) -> Path:
    out = tmp_path_factory.mktemp("run")
    settings = out / "settings.toml"
    settings.write_text(
        f'data = "{flickr8k}"\nlimit_images = 600\nlimit_dev_images = {DEV_IMAGES}\n'
        "epochs = 3\nbatch_size = 100\nembed_dim = 128\ntrain_layers = 1\ntrain_stages = 1\nwarmup_steps = 5\n"
        "word_dropout = 0.1\naugment_views = 2\nflip_views = true\n"  # view 2 mirrored, its captions' sides swapped
        "fine_views = 1\n"  # one more view at localize's size (twice the grid), trained in batches of its own
    )
    result = CliRunner().invoke(app, ["train", "--config", str(settings), "--out", str(out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    return out


def test_training_lowers_the_loss_and_beats_chance(trained: Path) -> None:
    log = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3
    assert log[-1]["loss"] < log[0]["loss"]
    best = max(row["dev"]["text_to_image"]["R@10"] for row in log)
    assert best >= 30.0, f"dev R@10 {best} is not well above the 10% of chance"
    assert log[-1]["dev"]["images"] == DEV_IMAGES and log[-1]["dev"]["captions"] == 5 * DEV_IMAGES
    assert sum(row["fine_batches"] for row in log) > 0


def test_fine_views_are_cached_at_localize_size(trained: Path) -> None:
    cached = [np.load(path, mmap_mode="r").shape for path in (trained / "cache").glob("image-*.npy")]
    train = {shape for shape in cached if shape[0] == 600}
    assert len(train) == 2  # three views at the run's size, one at twice it: a grid twice as fine
    (n, c, h, w), (_, c2, h2, w2) = sorted(train, key=lambda shape: shape[2])
    assert (c2, h2, w2) == (c, 2 * h, 2 * w)


def test_resume_continues_from_the_last_epoch(trained: Path, tmp_path: Path) -> None:
    settings = (trained / "settings.toml").read_text().replace("epochs = 3", "epochs = 4")
    (trained / "settings.toml").write_text(settings)
    result = CliRunner().invoke(
        app, ["train", "--config", str(trained / "settings.toml"), "--out", str(trained), "--resume"]
    )
    assert result.exit_code == 0, result.output
    epochs = [json.loads(line)["epoch"] for line in (trained / "log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]


def test_export_parity_quantisation_and_onnx_runtime_recall(
    trained: Path, flickr8k: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle_dir = tmp_path / "bundle"
    export_bundle(trained / "best.pt", bundle_dir)
    model, _ = load_checkpoint(trained / "best.pt")
    photos = sorted((flickr8k / "fullres").glob("*.jpg"))[:3]
    captions = ["a brown dog runs through the grass", "a man in a red shirt climbs a rock ."]
    parity = measure_parity(model, bundle_dir, photos, captions)
    parity.check(visual_bound=1e-4, textual_bound=1e-4)

    # The bundle is plain ONNX: onnxruntime alone runs it with dynamic batch and length.
    visual = ort.InferenceSession(str(bundle_dir / "visual/model.onnx"), providers=["CPUExecutionProvider"])
    (grid,) = visual.run(None, {"pixels": np.zeros((2, 3, 224, 224), np.float32)})
    assert grid.shape == (2, 7, 7, 128)
    np.testing.assert_allclose(np.linalg.norm(grid, axis=-1), 1.0, atol=1e-4)
    # ... and free height and width: localize runs it at twice the input size, a grid twice as fine
    assert load_bundle(bundle_dir).config.localize_size == (448, 448)
    (fine,) = visual.run(None, {"pixels": np.zeros((1, 3, 448, 448), np.float32)})
    assert fine.shape == (1, 14, 14, 128)
    textual = ort.InferenceSession(str(bundle_dir / "textual/model.onnx"), providers=["CPUExecutionProvider"])
    ids = np.array([[101, 1037, 3899, 102, 0], [101, 2417, 3608, 2006, 102]], dtype=np.int64)
    (tokens,) = textual.run(None, {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64)})
    assert tokens.shape == (2, 5, 128)

    items, _ = load_split(flickr8k, "dev")
    images, caps, index = five_caption_eval_set(items[:40])
    torch_metrics = evaluate(model, images, caps, index)
    onnx_metrics = evaluate_bundle(load_bundle(bundle_dir), images, caps, index, device="cpu")
    assert onnx_metrics["text_to_image"] == pytest.approx(torch_metrics["text_to_image"], abs=0.5)

    config = load_bundle(bundle_dir).config
    assert config.embed_dim == 128 and config.visual.grid == (7, 7) and config.score == "misa"
    assert config.training["dev_metrics"]["images"] == DEV_IMAGES
    with caplog.at_level(logging.WARNING):
        quantize_textual(bundle_dir)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # no advice lines for the user
    quantized = load_bundle(bundle_dir)
    assert quantized.config.textual.quantized
    assert quantized.config.files["textual/model.onnx"] != config.files["textual/model.onnx"]
    q_metrics = evaluate_bundle(quantized, images, caps, index, device="cpu")
    assert abs(q_metrics["text_to_image"]["R@10"] - onnx_metrics["text_to_image"]["R@10"]) <= 10.0


def test_eval_cli_prints_the_stable_json_form(trained: Path, flickr8k: Path, tmp_path: Path) -> None:
    data = tmp_path / "f8k"
    (data / "images").mkdir(parents=True)
    dev = (flickr8k / "Flickr_8k.devImages.txt").read_text().split()[:20]
    for name in dev:
        (data / "images" / name).symlink_to(flickr8k / "images" / name)
    (data / "Flickr_8k.devImages.txt").write_text("\n".join(dev) + "\n")
    tokens = [line for line in (flickr8k / "Flickr8k.token.txt").read_text().splitlines() if line.split("#")[0] in dev]
    (data / "Flickr8k.token.txt").write_text("\n".join(tokens) + "\n")
    runner = CliRunner()
    for source in (["--checkpoint", str(trained / "best.pt")], []):
        result = runner.invoke(app, ["eval", "--data", str(data), "--split", "dev", "--json", *source])
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert set(out) == {"text_to_image", "image_to_text", "images", "captions"}
        assert set(out["text_to_image"]) == {"R@1", "R@5", "R@10", "median_rank"}
        assert out["images"] == 20 and out["captions"] == 100

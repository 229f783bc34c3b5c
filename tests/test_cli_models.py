"""Which model and which gallery: `assoc info`, `--version`, and the one-line errors for wrong bundles."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from cli_support import assert_one_line_error, assoc, copy_photos, ok, ok_json, strip_ansi

from assoc.runtime.encoding.bundle import CONFIG_NAME, TOKENIZER_FILE, load_bundle


def linked_bundle(source: Path, target: Path, model_name: str | None = None, tamper: str | None = None) -> Path:
    """A bundle folder of links to the shipped files; optionally renamed (a new bundle id) or with one
    file copied and a byte appended (so it no longer matches its sha256)."""
    files = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file() and p.name != CONFIG_NAME]
    for name in files:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        if name == tamper:
            (target / name).write_bytes((source / name).read_bytes() + b"\0")
        else:
            os.symlink(source / name, target / name)
    config = json.loads((source / CONFIG_NAME).read_text())
    if model_name is not None:
        config["model_name"] = model_name
    (target / CONFIG_NAME).write_text(json.dumps(config))
    return target


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path) -> Path:
    root = tmp_path_factory.mktemp("models")
    copy_photos(sorted((flickr8k / "images").glob("*.jpg"))[:3], root / "library")
    ok("index", root / "library", "--gallery", root / "gallery", "--device", "cpu")
    return root / "gallery"


def test_info_describes_gallery_and_bundle(indexed: Path, bundle_dir: Path, tmp_path: Path) -> None:
    bundle = load_bundle(bundle_dir)
    facts = ok_json("info", "--gallery", indexed)
    assert facts["bundle"] == {
        "path": str(bundle_dir),
        "bundle_id": bundle.bundle_id,
        "model_name": bundle.config.model_name,
        "embed_dim": bundle.config.embed_dim,
        "grid": list(bundle.config.visual.grid),
        "image_size": list(bundle.config.visual.image_size),
        "score": bundle.config.score,
        "quantized_text": bundle.config.textual.quantized,
    }
    store = facts["store"]
    assert (store["kind"], store["location"], store["exists"], store["photos"]) == ("builtin", str(indexed), True, 3)
    assert store["bundle_id"] == bundle.bundle_id and store["matches_bundle"] is True
    shard_bytes = 3 * bundle.config.visual.grid[0] * bundle.config.visual.grid[1] * bundle.config.embed_dim * 2
    assert store["size_on_disk"] > shard_bytes

    empty = ok_json("info", "--gallery", tmp_path / "none")["store"]
    assert (empty["exists"], empty["photos"], empty["bundle_id"]) == (False, 0, None)
    table = ok("info", "--gallery", indexed).stdout
    assert "store photos" in table and bundle.bundle_id in table


def test_version() -> None:
    assert ok("--version").stdout.startswith("assoc ")


def test_gallery_of_another_model(indexed: Path, bundle_dir: Path, tmp_path: Path) -> None:
    other = linked_bundle(bundle_dir, tmp_path / "other", model_name="another-model")
    for args in (("query", "dog"), ("index", indexed.parent / "library")):
        result = assoc(*args, "--gallery", indexed, "--model", other, "--device", "cpu")
        assert_one_line_error(result, "was indexed with model", load_bundle(bundle_dir).bundle_id)
    facts = ok_json("info", "--gallery", indexed, "--model", other)
    assert facts["store"]["matches_bundle"] is False
    # localize does not need the gallery: it encodes the photo itself.
    photo = next((indexed.parent / "library").iterdir())
    assert ok_json("localize", photo, "dog", "--gallery", indexed, "--model", other, "--device", "cpu")["words"]


def test_bundle_errors(indexed: Path, bundle_dir: Path, tmp_path: Path) -> None:
    no_config = tmp_path / "no-config"
    shutil.copytree(bundle_dir / "textual", no_config / "textual", symlinks=True)
    tampered = linked_bundle(bundle_dir, tmp_path / "tampered", tamper=TOKENIZER_FILE)
    cases = [
        (no_config, ["has no config.json"]),
        (tmp_path / "nowhere", ["not a folder"]),
        (tampered, [TOKENIZER_FILE, "does not match its sha256"]),
    ]
    for model, fragments in cases:
        for args in (("query", "dog"), ("localize", str(bundle_dir / "none.jpg"), "dog"), ("info",)):
            result = assoc(*args, "--gallery", indexed, "--model", model)
            assert_one_line_error(result, *fragments)


def test_every_training_setting_is_a_train_option() -> None:
    from dataclasses import fields

    from assoc.models.config import TrainConfig

    shown = strip_ansi(ok("train", "--help").stdout)
    missing = [f.name for f in fields(TrainConfig) if f"--{f.name.replace('_', '-')} " not in shown]
    assert not missing, missing

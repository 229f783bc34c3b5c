"""The model bundle: the contract between training (torch) and search (ONNX Runtime).

A bundle is a folder laid out like the CLIP-ONNX convention::

    config.json            everything needed to preprocess images and queries (this schema)
    visual/model.onnx      pixels (N, 3, H, W) float32 -> patch grid (N, h, w, D), L2-normalised
    textual/model.onnx     input_ids, attention_mask (N, L) int64 -> token vectors (N, L, D), L2-normalised
    textual/tokenizer.json a Hugging Face `tokenizers` file

The runtime never guesses a mean, an image size or a tokenizer setting: they are all read from here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BundleError

BUNDLE_FORMAT = "assoc-bundle"
BUNDLE_FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
VISUAL_MODEL = "visual/model.onnx"
TEXTUAL_MODEL = "textual/model.onnx"
TOKENIZER_FILE = "textual/tokenizer.json"
SCORE_KINDS = ("misa", "sisa", "mima")


@dataclass(frozen=True)
class VisualConfig:
    """How a photo becomes the visual encoder's input, and what comes out."""

    image_size: tuple[int, int]  # (height, width) the whole frame is resized to (aspect not kept)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    grid: tuple[int, int]  # (h, w) of the patch grid for image_size
    stride: int  # pixels of the model input per grid cell
    input_name: str = "pixels"
    output_name: str = "patches"


@dataclass(frozen=True)
class TextualConfig:
    """How a query becomes token ids for the textual encoder."""

    max_length: int
    lowercase: bool
    input_names: tuple[str, str] = ("input_ids", "attention_mask")
    output_name: str = "tokens"
    quantized: bool = False


@dataclass(frozen=True)
class BundleConfig:
    model_name: str
    embed_dim: int
    score: str
    visual: VisualConfig
    textual: TextualConfig
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    training: dict[str, Any] = field(default_factory=dict)  # data, settings, metrics (informative)
    format: str = BUNDLE_FORMAT
    format_version: int = BUNDLE_FORMAT_VERSION

    @property
    def bundle_id(self) -> str:
        """A short id that changes whenever any model file changes; galleries record it."""
        digest = hashlib.sha256()
        for name in sorted(self.files):
            digest.update(f"{name}={self.files[name]};".encode())
        return f"{self.model_name}-{digest.hexdigest()[:12]}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BundleConfig:
        if raw.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"not an assoc bundle config (format={raw.get('format')!r})")
        version = raw.get("format_version")
        if version != BUNDLE_FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {version!r} is not supported (this assoc reads {BUNDLE_FORMAT_VERSION})"
            )
        try:
            v, t = raw["visual"], raw["textual"]
            visual = VisualConfig(
                image_size=_pair(v["image_size"]),
                mean=tuple(float(x) for x in v["mean"]),
                std=tuple(float(x) for x in v["std"]),
                grid=_pair(v["grid"]),
                stride=int(v["stride"]),
                input_name=str(v.get("input_name", "pixels")),
                output_name=str(v.get("output_name", "patches")),
            )
            textual = TextualConfig(
                max_length=int(t["max_length"]),
                lowercase=bool(t["lowercase"]),
                input_names=tuple(t.get("input_names", ("input_ids", "attention_mask"))),
                output_name=str(t.get("output_name", "tokens")),
                quantized=bool(t.get("quantized", False)),
            )
            config = cls(
                model_name=str(raw["model_name"]),
                embed_dim=int(raw["embed_dim"]),
                score=str(raw["score"]),
                visual=visual,
                textual=textual,
                files=dict(raw.get("files", {})),
                training=dict(raw.get("training", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"bundle config.json is malformed: {exc!r}") from None
        if config.score not in SCORE_KINDS:
            raise BundleError(f"bundle score {config.score!r} is not one of {', '.join(SCORE_KINDS)}")
        if len(visual.mean) != 3 or len(visual.std) != 3:
            raise BundleError("bundle config.json: visual mean and std need three values each")
        return config


def _pair(value: Any) -> tuple[int, int]:
    a, b = value
    return int(a), int(b)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    root: Path
    config: BundleConfig

    @property
    def visual_path(self) -> Path:
        return self.root / VISUAL_MODEL

    @property
    def textual_path(self) -> Path:
        return self.root / TEXTUAL_MODEL

    @property
    def tokenizer_path(self) -> Path:
        return self.root / TOKENIZER_FILE

    @property
    def bundle_id(self) -> str:
        return self.config.bundle_id


def load_bundle(root: str | Path, verify: bool = True) -> Bundle:
    """Read and check a bundle folder; every problem is a one-line BundleError."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BundleError(f"model bundle not found: {root} is not a folder")
    config_path = root / CONFIG_NAME
    if not config_path.is_file():
        raise BundleError(f"model bundle {root} has no {CONFIG_NAME}")
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"model bundle {root}: {CONFIG_NAME} is not readable JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"model bundle {root}: {CONFIG_NAME} is not a JSON object")
    config = BundleConfig.from_dict(raw)
    for required in (VISUAL_MODEL, TEXTUAL_MODEL, TOKENIZER_FILE):
        if required not in config.files:
            raise BundleError(f"model bundle {root}: config.json records no hash for {required}")
    for name, expected in config.files.items():
        path = root / name
        if not path.is_file():
            raise BundleError(f"model bundle {root} is missing {name}")
        if verify and sha256_file(path) != expected:
            raise BundleError(f"model bundle {root}: {name} does not match its sha256 in config.json")
    return Bundle(root=root, config=config)


def write_config(root: Path, config: BundleConfig) -> BundleConfig:
    """Hash the model files under root into config.files and write config.json; return the result."""
    files = {name: sha256_file(root / name) for name in (VISUAL_MODEL, TEXTUAL_MODEL, TOKENIZER_FILE)}
    final = BundleConfig(**{**config.__dict__, "files": files})
    (root / CONFIG_NAME).write_text(final.to_json(), encoding="utf-8")
    return final

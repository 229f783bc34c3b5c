"""Training settings: one dataclass, filled from defaults, a TOML/YAML file, then command-line flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import tomllib

# The names a setting may take, here so that the CLI can list them without importing torch.
LITE_TRUNKS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
TRUNKS = (*LITE_TRUNKS, "resnet50", "convnext_tiny", "mobilenet_v3_large")
LOSSES = ("sampled", "semihard", "hardest", "infonce", "infonce_semihard")


@dataclass
class TrainConfig:
    data: str = "../shared/data/flickr8k"
    train_split: str = "train"
    dev_split: str = "dev"
    out: str = "runs/default"
    cache: str | None = None  # feature cache folder (default OUT/cache); runs with the same frozen parts share it
    # image branch
    trunk: str = "efficientnet-lite0"
    trunk_weights: str | None = None
    image_size: int = 224
    train_stages: int = 0  # trailing trunk stages trained (0 = frozen trunk, features cached)
    # text branch
    text_model: str | None = None  # a local Hugging Face BERT folder; None = packaged all-MiniLM-L6-v2
    train_layers: int = 0  # top transformer layers trained
    max_length: int = 32
    # matchmap and objective
    embed_dim: int = 512
    score: str = "misa"
    loss: str = "infonce"  # sampled | semihard | hardest | infonce
    margin: float = 0.2
    pooled_weight: float = 0.0  # weight of an auxiliary InfoNCE on mean-pooled vectors (Qdrant's first stage)
    # > 0: the training score softens each word's max over patches (softmax weights, a learned temperature
    # starting here); evaluation and search still rank by the hard score. 0 = hard max in training too.
    soft_max_temperature: float = 0.0
    # Each scoring word piece of a training caption is left out of the score with this probability (a
    # caption keeps at least one): MISA cannot lean on one word. The transformer still reads it all.
    word_dropout: float = 0.0
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3  # new layers (projections, temperature)
    backbone_lr: float = 5e-5  # unfrozen pretrained stages and layers
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    seed: int = 0
    eval_every: int = 1  # evaluate on dev every N epochs (and always after the last)
    augment_views: int = 0  # augmented views per training photo, cached beside the plain one
    device: str = "auto"
    limit_images: int | None = None  # train on the first N images (smoke runs)
    limit_dev_images: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], strict: bool = True) -> TrainConfig:
        """strict=False drops unknown keys: settings saved by an older assoc that no longer shape a model."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown and strict:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**{k: v for k, v in raw.items() if k in known})

    @classmethod
    def from_file(cls, path: Path) -> TrainConfig:
        text = Path(path).read_text(encoding="utf-8")
        if Path(path).suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raw = tomllib.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a table of settings")
        return cls.from_dict(raw)

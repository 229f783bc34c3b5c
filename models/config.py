"""Training settings: one dataclass, filled from defaults, a TOML/YAML file, then command-line flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..runtime.scoring.matchmap import SCORES

# The names a setting may take, here so that the CLI can list them without importing torch.
LITE_TRUNKS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
TRUNKS = (*LITE_TRUNKS, "resnet50", "convnext_tiny", "mobilenet_v3_large")
LOSSES = ("sampled", "semihard", "hardest", "infonce", "infonce_semihard", "infonce_hardest")
TOKEN_WEIGHTINGS = ("uniform", "idf")
# `assoc localize` encodes a photo at this multiple of the training input size: a grid twice as fine. On
# the pointing game (bench/localize_cost.py) 1.6x to 2.8x the 320 px input all beat it by 5-10 points with
# 3x3 smoothing; 2x is the middle of that plateau at about three times the encoder's cost for one photo.
# Fine views (TrainConfig.fine_views) are cached at it, so training sees the grid localize reads.
LOCALIZE_SCALE = 2


def _setting(default: Any, help: str) -> Any:
    """A field whose help text is also its `assoc train` flag's help (cli/model_cmds.py reads it)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every setting of a training run; each field is also an `assoc train` flag, its help in the metadata."""

    data: str = _setting("../shared/data/flickr8k", "Captions: a Flickr8k folder, Karpathy/COCO JSON, jsonl or csv.")
    train_split: str = "train"
    dev_split: str = "dev"
    out: str = _setting("runs/default", "Run folder (checkpoints, log, feature cache).")
    cache: str | None = _setting(None, "Feature cache folder (default OUT/cache); runs may share one.")
    # image branch
    trunk: str = _setting("efficientnet-lite0", " | ".join(TRUNKS))
    trunk_weights: str | None = _setting(None, "Local weights file for the trunk.")
    image_size: int = 224
    train_stages: int = _setting(0, "Trailing trunk stages to train (0 = frozen trunk, features cached).")
    # text branch
    text_model: str | None = _setting(None, "Local Hugging Face BERT folder (default: packaged all-MiniLM-L6-v2).")
    train_layers: int = _setting(0, "Top text layers to train.")
    max_length: int = 32
    # matchmap and objective
    embed_dim: int = _setting(512, "D: bytes per photo = grid cells x D x 2.")
    score: str = _setting("misa", " | ".join(SCORES))
    loss: str = _setting("infonce", " | ".join(LOSSES))
    margin: float = 0.2
    margin_warmup: int = _setting(0, "Epochs of InfoNCE alone before infonce_hardest's margin term joins.")
    pooled_weight: float = _setting(0.0, "Weight of an auxiliary loss on mean-pooled vectors (search's first stage).")
    region_weight: float = _setting(0.0, "Weight of the word-to-region contrast in true pairs (sees location).")
    region_smooth: int = _setting(1, "Cells (odd) the region contrast's word maps are averaged over; 1 = none.")
    # > 0: the training score softens each word's max over patches (softmax weights, a learned temperature
    # starting here); evaluation and search still rank by the hard score. 0 = hard max in training too.
    soft_max_temperature: float = 0.0
    # Each scoring word piece of a training caption is left out of the score with this probability (a
    # caption keeps at least one): MISA cannot lean on one word. The transformer still reads it all.
    word_dropout: float = _setting(0.0, "Chance that a caption word is left out of a training score.")
    # "idf": each scoring token counts in MISA (and the pooled loss) by an IDF prior computed from the
    # training captions (assoc.runtime.scoring.token_weights); the bundle carries the table. "uniform": all 1.
    token_weights: str = _setting("uniform", " | ".join(TOKEN_WEIGHTINGS) + ": how much each caption word counts.")
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    lr: float = _setting(1e-3, "Learning rate of the new layers (projections, temperature).")
    backbone_lr: float = _setting(5e-5, "Learning rate of the unfrozen pretrained stages and layers.")
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    seed: int = 0
    eval_every: int = _setting(1, "Evaluate on dev every N epochs (and after the last).")
    augment_views: int = _setting(0, "Augmented views cached per photo, beside the plain one.")
    flip_views: bool = _setting(False, "Mirror every second augmented view, left and right swapped in its captions.")
    fine_views: int = _setting(0, "Augmented views cached at localize's size (2x image_size); a batch is one size.")
    device: str = _setting("auto", "auto | cpu | cuda")
    limit_images: int | None = _setting(None, "Train on the first N images only (smoke runs).")
    limit_dev_images: int | None = _setting(None, "Evaluate on the first N dev images only.")

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
            raw = _toml_loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a table of settings")
        return cls.from_dict(raw)


def _toml_loads(text: str) -> Any:
    """TOML through the standard library (3.11+) or tomli (3.10), imported only when a TOML file is read,
    so that loading this module (as the CLI does for the setting names) needs neither."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)

"""How a bundle ranks: its token weights (an IDF prior of captions) and its fused global weight.

Torch-free. Writes BUNDLE/textual/token_weights.npy and the "ranking" entry of config.json; every other
byte of config.json stays. Ranking is not part of the bundle id (assoc.runtime.encoding.bundle
RankingConfig): galleries indexed with the bundle stay valid and are simply ranked the new way.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..runtime.encoding.bundle import CONFIG_NAME, RankingConfig, load_bundle, sha256_file
from ..runtime.encoding.tokenizer import QueryTokenizer
from ..runtime.errors import AssocError
from ..runtime.scoring.token_weights import TOKEN_WEIGHTS_FILE, idf_weights


def caption_idf(bundle_dir: Path, data: Path, split: str = "train") -> tuple[np.ndarray, int]:
    """IDF weights of one split's captions, split into tokens as the bundle's tokenizer splits a query;
    and how many captions they came from."""
    from ..models.datasets import load_split  # torch-free: caption files only

    bundle = load_bundle(bundle_dir, check_vocabulary=False)
    items, _ = load_split(Path(data), split)
    captions = [caption for item in items for caption in item.captions]
    if not captions:
        raise AssocError(f"{data} ({split}) holds no captions to weigh words by")
    tokenizer = QueryTokenizer(bundle.tokenizer_path, bundle.config.textual.max_length)
    size = tokenizer.vocab_size
    ids = []
    for start in range(0, len(captions), 1024):
        batch = tokenizer(captions[start : start + 1024])
        ids += [batch.input_ids[row][batch.word_mask[row]] for row in range(len(batch.input_ids))]
    return idf_weights(ids, size), len(captions)


def write_ranking(bundle_dir: Path, token_weights: np.ndarray | None, global_weight: float) -> RankingConfig:
    """Store the table (None: every token alike, and any old table is removed) and declare both."""
    root = Path(bundle_dir)
    path = root / TOKEN_WEIGHTS_FILE
    if token_weights is None:
        declared = RankingConfig(global_weight=float(global_weight))
        path.unlink(missing_ok=True)
    else:
        staged = path.with_name(path.name + ".tmp")
        with open(staged, "wb") as fh:
            np.save(fh, np.asarray(token_weights, np.float32), allow_pickle=False)
        os.replace(staged, path)
        declared = RankingConfig(TOKEN_WEIGHTS_FILE, sha256_file(path), float(global_weight))
    RankingConfig.from_dict(asdict(declared))  # the checks a reader makes
    raw = json.loads((root / CONFIG_NAME).read_text(encoding="utf-8"))
    raw["ranking"] = asdict(declared)
    staged = root / (CONFIG_NAME + ".tmp")
    staged.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(staged, root / CONFIG_NAME)
    load_bundle(root).read_token_weights()  # what was written reads back
    return declared

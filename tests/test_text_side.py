"""The text branch: tokenizer word masks and the BERT loader, on the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from assoc.models.bert import load_bert
from assoc.models.model import default_text_model
from assoc.runtime.encoding.tokenizer import QueryTokenizer


def test_word_mask_drops_special_tokens_padding_and_punctuation() -> None:
    tok = QueryTokenizer(default_text_model() / "tokenizer.json", max_length=32)
    batch = tok(["A skateboarder jumps .", "red ball"])
    assert batch.words == [["A", "skateboarder", "jumps"], ["red", "ball"]]
    # [CLS] and [SEP] and the final "." never score; "skateboarder" is several word pieces of one word.
    first = batch.word_index[0][batch.word_mask[0]]
    assert first[0] == 0 and first[-1] == 2 and (first == 1).sum() >= 2
    assert not batch.word_mask[0][0] and not batch.word_mask[1][batch.attention_mask[1] == 0].any()
    assert batch.input_ids.shape == batch.attention_mask.shape == batch.word_mask.shape


def test_truncation_keeps_max_length() -> None:
    tok = QueryTokenizer(default_text_model() / "tokenizer.json", max_length=8)
    batch = tok(["a dog " * 20])
    assert batch.input_ids.shape == (1, 8)


def _sentence(model, tok, texts: list[str]) -> torch.Tensor:
    b = tok(texts)
    mask = torch.from_numpy(b.attention_mask)
    with torch.no_grad():
        h = model(torch.from_numpy(b.input_ids), mask)
    pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return F.normalize(pooled, dim=-1)


def test_pretrained_minilm_weights_are_really_loaded() -> None:
    """Mean-pooled MiniLM (what it was trained for) puts paraphrases close and unrelated text far."""
    model = load_bert(default_text_model()).eval()
    tok = QueryTokenizer(default_text_model() / "tokenizer.json", max_length=32)
    a, b, c = _sentence(model, tok, ["a dog runs on the grass", "a puppy running across a lawn", "stock prices fell"])
    assert float(a @ b) > 0.5 > float(a @ c)

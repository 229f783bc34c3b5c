"""Query text -> token ids, plus which tokens are words that take part in a score.

The same wrapper serves training (assoc.models) and search, so special tokens, padding and bare
punctuation are excluded from scores in exactly the same way on both sides.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ..errors import BundleError


@dataclass(frozen=True)
class TokenBatch:
    input_ids: np.ndarray  # (N, L) int64
    attention_mask: np.ndarray  # (N, L) int64
    word_mask: np.ndarray  # (N, L) bool: tokens that take part in a score
    word_index: np.ndarray  # (N, L) int64: index of the word a token belongs to, -1 if none
    words: list[list[str]]  # per text, the words (as typed) that word_index points into


def _is_punctuation(text: str) -> bool:
    return bool(text) and all(unicodedata.category(ch).startswith("P") for ch in text)


class QueryTokenizer:
    """A Hugging Face `tokenizers` file with truncation to max_length and batch padding."""

    def __init__(self, path: str | Path, max_length: int) -> None:
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the tokenizers library raises plain Exception subclasses
            raise BundleError(f"tokenizer {path} cannot be read ({exc})") from None
        self.max_length = max_length
        self._tok.no_padding()
        self._tok.enable_truncation(max_length)
        self.pad_id = self._tok.token_to_id("[PAD]") or 0

    def __call__(self, texts: list[str]) -> TokenBatch:
        encodings = self._tok.encode_batch(list(texts))
        length = max(1, max(len(e.ids) for e in encodings))
        n = len(encodings)
        ids = np.full((n, length), self.pad_id, dtype=np.int64)
        attention = np.zeros((n, length), dtype=np.int64)
        word_mask = np.zeros((n, length), dtype=bool)
        word_index = np.full((n, length), -1, dtype=np.int64)
        all_words: list[list[str]] = []
        for row, (text, enc) in enumerate(zip(texts, encodings, strict=True)):
            k = len(enc.ids)
            ids[row, :k] = enc.ids
            attention[row, :k] = enc.attention_mask
            words: list[str] = []
            seen: dict[int, int] = {}
            for col, (special, wid) in enumerate(zip(enc.special_tokens_mask, enc.word_ids, strict=True)):
                if special or wid is None:
                    continue
                if wid not in seen:
                    word = _word_span(text, enc, wid)
                    if _is_punctuation(word):
                        continue
                    seen[wid] = len(words)
                    words.append(word)
                word_mask[row, col] = True
                word_index[row, col] = seen[wid]
            all_words.append(words)
        return TokenBatch(ids, attention, word_mask, word_index, all_words)


def _word_span(text: str, enc, word_id: int) -> str:
    span = enc.word_to_chars(word_id)
    return text[span[0] : span[1]] if span is not None else ""

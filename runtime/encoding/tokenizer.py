"""Query text -> token ids, plus which tokens are words that take part in a score.

The same wrapper serves training (assoc.models) and search, so special tokens, padding and bare
punctuation are excluded from scores in exactly the same way on both sides.

Training cuts a caption at max_length tokens (`__call__`). A search query is never cut: `windows`
splits a longer one into windows of max_length tokens, each with its own special tokens, overlapping
by a quarter of a window so that every token is encoded with words on both sides; each token scores
once, from the window where it sits furthest from an edge, and indexes the whole query's words.
"""

from __future__ import annotations

import functools
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

    def __init__(self, path: str | Path, max_length: int, source: str = "") -> None:
        """source, when given, says where max_length comes from in a message ("model bundle X: config.json")."""
        self._path = str(path)
        try:
            self._windowed = Tokenizer.from_file(self._path)
        except Exception as exc:  # the tokenizers library raises plain Exception subclasses
            raise BundleError(f"tokenizer {path} cannot be read ({exc})") from None
        specials = self._windowed.num_special_tokens_to_add(False)
        if max_length <= specials:
            raise BundleError(
                f"{source + ' ' if source else ''}textual max_length {max_length} leaves no room for words beside"
                f" the tokenizer's {specials} special tokens"
            )
        self.max_length = max_length
        self.pad_id = self._windowed.token_to_id("[PAD]") or 0
        self.overlap = (max_length - specials) // 4  # content tokens each window repeats from the last
        self._windowed.no_padding()
        self._windowed.enable_truncation(max_length, stride=self.overlap)

    @functools.cached_property
    def _cutting(self) -> Tokenizer:
        """A second tokenizer that cuts at max_length (training's captions): truncation settings are a
        tokenizer's state, and one QueryTokenizer may serve many threads. Made on first use, so that a
        search (windows only) reads the file once."""
        tok = Tokenizer.from_file(self._path)
        tok.no_padding()
        tok.enable_truncation(self.max_length)
        return tok

    @property
    def vocab_size(self) -> int:
        """Token ids run from 0 to vocab_size - 1."""
        return self._windowed.get_vocab_size(with_added_tokens=True)

    def __call__(self, texts: list[str]) -> TokenBatch:
        encodings = self._cutting.encode_batch(list(texts))
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

    def windows(self, texts: list[str]) -> QueryWindows:
        """Texts of any length as windows of at most max_length tokens (see the module docstring)."""
        rows: list[range] = []
        lengths: list[int] = []
        encodings = []
        owned: list[list[bool]] = []  # per window row, per column: whether this window scores that token
        all_words: list[list[str]] = []
        index_of: list[dict[int, int]] = []  # per text: word id -> index into its words
        for text, first in zip(texts, self._windowed.encode_batch(list(texts)), strict=True):
            parts = [first, *first.overflowing]
            rows.append(range(len(encodings), len(encodings) + len(parts)))
            encodings += parts
            head = self.overlap // 2  # of each overlap, these tokens score in the earlier window
            spans: dict[int, tuple[int, int]] = {}  # word id -> its characters, over all windows
            order: dict[int, None] = {}  # word ids in the order their scored tokens come
            count = 0
            for k, enc in enumerate(parts):
                content = [col for col, special in enumerate(enc.special_tokens_mask) if not special]
                skip_front = head if k > 0 else 0
                skip_back = self.overlap - head if k < len(parts) - 1 else 0
                keep = set(content[skip_front : len(content) - skip_back])
                count += len(keep)
                owned.append([col in keep for col in range(len(enc.ids))])
                for col, wid in enumerate(enc.word_ids):
                    if wid is None or enc.special_tokens_mask[col]:
                        continue
                    start, end = enc.offsets[col]
                    old = spans.get(wid)
                    spans[wid] = (start, end) if old is None else (min(old[0], start), max(old[1], end))
                    if col in keep:
                        order.setdefault(wid)
            lengths.append(count)
            words: list[str] = []
            seen: dict[int, int] = {}
            for wid in order:
                word = text[spans[wid][0] : spans[wid][1]]
                if _is_punctuation(word):
                    continue
                seen[wid] = len(words)
                words.append(word)
            all_words.append(words)
            index_of.append(seen)
        n = len(encodings)
        length = max(1, max((len(e.ids) for e in encodings), default=1))
        ids = np.full((n, length), self.pad_id, dtype=np.int64)
        attention = np.zeros((n, length), dtype=np.int64)
        word_mask = np.zeros((n, length), dtype=bool)
        word_index = np.full((n, length), -1, dtype=np.int64)
        row_words: list[list[str]] = []
        for t, span in enumerate(rows):
            for row in span:
                enc = encodings[row]
                k = len(enc.ids)
                ids[row, :k] = enc.ids
                attention[row, :k] = enc.attention_mask
                for col, wid in enumerate(enc.word_ids):
                    if owned[row][col] and wid in index_of[t]:
                        word_mask[row, col] = True
                        word_index[row, col] = index_of[t][wid]
                row_words.append(all_words[t])
        return QueryWindows(TokenBatch(ids, attention, word_mask, word_index, row_words), rows, lengths)


@dataclass(frozen=True)
class QueryWindows:
    """Texts as windows: `tokens` has one row per window (its `words` are the whole text's words, which
    `word_index` points into); `rows` gives each text's rows, in order; `lengths` each text's tokens,
    special tokens not counted."""

    tokens: TokenBatch
    rows: list[range]
    lengths: list[int]


def _word_span(text: str, enc, word_id: int) -> str:
    span = enc.word_to_chars(word_id)
    return text[span[0] : span[1]] if span is not None else ""

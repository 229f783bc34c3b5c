"""open_clip's SimpleTokenizer (CLIP's BPE) as a Hugging Face `tokenizers` file the runtime can load.

open_clip cleans a text (ftfy.fix_text, html.unescape twice, whitespace collapsed, lower-cased),
splits it with CLIP's regex (contractions, runs of letters, single digits, runs of other symbols),
maps each piece's UTF-8 bytes to printable characters and merges them by BPE with a `</w>` suffix on
the last piece of each word, between <start_of_text> and <end_of_text>, cut at the context length
(75 content tokens, the end token kept) and zero-padded. The file written here does the same with
the library's own parts, with the vocabulary and merges read from the open_clip tokenizer itself.

ftfy cannot be a `tokenizers` normaliser. Its character-by-character fixes are: C1 controls read as
Windows-1252, Latin ligatures taken apart, full- and half-width forms made normal width, curly quotes
made straight, line separators made line breaks, control characters removed, then NFC. Those become
one Replace per replacement, built by running ftfy's own fixers on every character they touch, so
they match by construction. What is not mirrored: ftfy's repair of mojibake (text decoded with the
wrong codec, which needs context), its removal of terminal escape sequences, and HTML entities other
than HTML_ENTITIES (open_clip unescapes all of HTML5's). tests/test_open_clip_export.py counts how
often the ids differ on real captions.
"""

from __future__ import annotations

import html
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

if TYPE_CHECKING:
    from open_clip import SimpleTokenizer

START, END = "<start_of_text>", "<end_of_text>"
# CLIP's split (open_clip.tokenizer.SimpleTokenizer.pat, without its special tokens, which are added tokens here).
CLIP_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
# The entities unescaped here (open_clip unescapes twice, so "&amp;quot;" is a quotation mark too).
HTML_ENTITIES = ("&quot;", "&#34;", "&#39;", "&apos;", "&lt;", "&gt;", "&nbsp;")


def clip_tokenizer(source: SimpleTokenizer) -> Tokenizer:
    """The `tokenizers` form of an open_clip SimpleTokenizer (clean="lower", no reduction)."""
    special = [source.decoder[i] for i in source.all_special_ids]
    if special != [START, END]:
        raise ValueError(f"the tokenizer's special tokens are {special}, not {[START, END]}")
    merges = sorted(source.bpe_ranks, key=source.bpe_ranks.get)
    vocab = {token: i for token, i in source.encoder.items() if token not in special}
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", continuing_subword_prefix="", fuse_unk=False)
    )
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in special])
    if [tokenizer.token_to_id(t) for t in special] != list(source.all_special_ids):
        raise ValueError("the special tokens did not keep their ids")
    tokenizer.normalizer = normalizers.Sequence(
        [
            *_ftfy_characters(),
            normalizers.NFC(),
            *_entities(),
            *_entities(),
            normalizers.Replace(Regex(r"\s+"), " "),
            normalizers.Strip(),
            normalizers.Lowercase(),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    start, end = source.all_special_ids
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{START} $A {END}", special_tokens=[(START, start), (END, end)]
    )
    return tokenizer


def write_clip_tokenizer(source: SimpleTokenizer, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clip_tokenizer(source).save(str(path))
    return path


def _ftfy_characters() -> list[normalizers.Replace]:
    """ftfy's per-character fixes, in its order, as one Replace per distinct result."""
    from ftfy import chardata, fixes

    steps = [
        fixes.fix_c1_controls,
        fixes.fix_latin_ligatures,
        fixes.fix_character_width,
        fixes.uncurl_quotes,
        fixes.fix_line_breaks,
        fixes.remove_control_chars,
    ]
    touched = {
        *range(0x80, 0xA0),  # C1 controls
        *chardata.LIGATURES,
        *chardata.WIDTH_MAP,
        *chardata.CONTROL_CHARS,
        0x02BC,
        *range(0x2018, 0x2020),  # the quotes uncurl_quotes straightens
        0x2028,
        0x2029,
    }
    by_result: dict[str, list[str]] = defaultdict(list)
    for point in sorted(touched):
        char = chr(point)
        fixed = char
        for step in steps:
            fixed = step(fixed)
        fixed = unicodedata.normalize("NFC", fixed)
        if fixed != char:
            by_result[fixed].append(char)
    return [
        normalizers.Replace(Regex("[" + "".join(_class_member(c) for c in chars) + "]"), result)
        for result, chars in sorted(by_result.items())
    ]


def _class_member(char: str) -> str:
    """A character written so that it stands for itself inside a regex character class."""
    return f"\\x{{{ord(char):x}}}"


def _entities() -> list[normalizers.Replace]:
    """One round of html.unescape for "&amp;" and HTML_ENTITIES ("&amp;" last, as one round leaves it)."""
    return [normalizers.Replace(entity, html.unescape(entity)) for entity in HTML_ENTITIES] + [
        normalizers.Replace("&amp;", "&")
    ]


__all__ = ["CLIP_SPLIT", "HTML_ENTITIES", "clip_tokenizer", "write_clip_tokenizer"]

"""Combined queries: several terms (words or photos), each with a weight, some subtracted.

    assoc query "2:golden retriever" + ./pool.jpg - fruit

The score. Each term i is ranked as it would be alone: sᵢ(photo) is the bundle's score of
search/query.py, (1 - λ)·MISA + λ·cos, of that term's Query (words: their vectors and sentence
vector; a photo: its patches as query vectors and its global vector as the sentence vector). With
wᵢ > 0 the weight of plus term i and wⱼ > 0 that of minus term j,

    score(photo) = (Σ_plus wᵢ·sᵢ(photo) − Σ_minus wⱼ·sⱼ(photo)) / Σ_plus wᵢ

The division only rescales (the order is that of the plain weighted sum): a photo scores on the
scale of a one-term query, so --min-score and the self-score of a photo query (1) mean what they
mean for one term. A query of one plus term is that term's plain Query, whatever its weight.

The score is computed in one place, CombinedQuery.combine, on the exact per-term scores the shared
rerank (rerank.py) computes chunk by chunk from what every store keeps alike, so `exact` is exact
for it and every store gives the same answer. exact=True scores every photo.

The first stage (pipeline.py: the store's own, over its first-stage vectors) ranks by an estimate of
the combined score, CombinedQuery.estimate, one Query whose
- sentence vector is Σ factorᵢ·(term i's unit sentence vector) over every term, minus terms
  included (factorᵢ = ±wᵢ / Σ_plus w): a photo's global vector dotted with it is exactly the weighted
  sum of its global cosines with the terms, the pooled stage's estimate for each;
- vectors are the plus terms' vectors, term i's scaled by factorᵢ·(vectors of all plus terms) /
  (vectors of term i): MISA (and SISA) over them is exactly Σ_plus factorᵢ·MISAᵢ, the centroid
  stage's estimate (a max cannot subtract, so minus terms count in the pooled stage only).
It keeps the plan's candidates, as many as a plain query's, which the shared rerank scores exactly.
Proposing each plus term's own candidates instead and scoring their union keeps less of the exact
top 10 at any budget (bench/filtered_query.py measures both on real photos: with a first stage
scaled to a 10k gallery, 0.92 of it for two plus terms against 0.72 for the union of twice as
many candidates).

The syntax (parse_query for one string: the API, the web app, a single CLI argument;
parse_arguments for a command line's several arguments):
- Terms are separated by the operators "+" and "-", each a word of its own: a "+" or "-" with
  whitespace (or the string's start or end) on both sides. Inside a word they are letters:
  "t-shirt", "c++", "-5" are words. The first term is a plus term unless an operator precedes it.
- "W:" before a term weighs it (W a number over 0, such as 2 or 0.5; the default is 1), when the
  character after the colon is not a digit: "2:golden retriever" weighs 2, "10:30 train" is words.
- Double quotes make what they enclose literal: operators, weight prefixes and the spaces inside
  stay part of the term ("salt + pepper", "./my photos/pool.jpg"); the quotes themselves go. A quote
  without a partner is an ordinary character.
- Several command-line arguments: each argument that is exactly "+" or "-" is an operator; every
  other argument is literal (the shell has already quoted it), and consecutive ones form one term
  joined by spaces (`assoc query golden retriever + pool.jpg`). A single argument is one string.
- Which terms are photos is the API's call (assoc.api.searcher: a term naming an existing photo
  file is that photo; the web app's terms are always words).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import QueryError
from .query import Query

OPERATORS = {"+": 1.0, "-": -1.0}
_WEIGHT = re.compile(r"(\d+(?:\.\d*)?|\.\d+):(?!\d)")


@dataclass(frozen=True)
class TermText:
    """One term as written: its text and its signed weight (negative: a minus term)."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class Term:
    query: Query
    weight: float  # signed: a minus term's is negative


@dataclass(frozen=True)
class CombinedQuery:
    """Two or more terms and their weights, of one score kind; build it with CombinedQuery.of."""

    terms: tuple[Term, ...]
    factors: tuple[np.float32, ...] = field(init=False, repr=False)  # wᵢ / Σ_plus w, signed
    transposed: np.ndarray = field(init=False, repr=False)  # (D, ΣT): every term's vectors, for one pass
    columns: tuple[slice, ...] = field(init=False, repr=False)  # each term's columns of `transposed`
    codes: np.ndarray = field(init=False, repr=False)  # (D, ΣT) int8: every term's Query.codes
    word_scales: np.ndarray = field(init=False, repr=False)  # (ΣT,): every term's Query.word_scales

    def __post_init__(self) -> None:
        plus = sum(t.weight for t in self.terms if t.weight > 0)
        object.__setattr__(self, "factors", tuple(np.float32(t.weight / plus) for t in self.terms))
        ends = np.cumsum([0] + [len(t.query.vectors) for t in self.terms])
        object.__setattr__(self, "columns", tuple(slice(a, b) for a, b in zip(ends[:-1], ends[1:], strict=True)))
        object.__setattr__(
            self, "transposed", np.ascontiguousarray(np.concatenate([t.query.transposed for t in self.terms], 1))
        )
        object.__setattr__(self, "codes", np.ascontiguousarray(np.concatenate([t.query.codes for t in self.terms], 1)))
        object.__setattr__(self, "word_scales", np.concatenate([t.query.word_scales for t in self.terms]))

    @property
    def kind(self) -> str:
        return self.terms[0].query.kind

    @property
    def estimate(self) -> Query:
        """What the first stage ranks by (the module docstring): one Query for the whole combination."""
        plus = [(t.query, f) for t, f in zip(self.terms, self.factors, strict=True) if t.weight > 0]
        count = sum(len(query.vectors) for query, _ in plus)
        vectors = np.concatenate([query.vectors * (factor * count / len(query.vectors)) for query, factor in plus])
        sentence = sum(factor * t.query.pooled for t, factor in zip(self.terms, self.factors, strict=True))
        every_global = all(t.query.global_only for t in self.terms)
        return Query(
            vectors.astype(np.float32), self.kind, 1.0 if every_global else 0.0, np.asarray(sentence, np.float32)
        )

    @classmethod
    def of(cls, terms: Sequence[tuple[Query, float]]) -> Query | CombinedQuery:
        """The query for some (Query, signed weight) terms: one plus term alone is its own Query."""
        checked = [Term(query, check_weight(weight)) for query, weight in terms]
        if len({t.query.kind for t in checked}) > 1 or len({t.query.vectors.shape[1] for t in checked}) > 1:
            raise QueryError("a combined query's terms must be ranked alike: one score kind, one dimension")
        if not any(t.weight > 0 for t in checked):
            raise QueryError("a query needs a term to look for: every term is subtracted ('-')")
        if len(checked) == 1:
            return checked[0].query
        return cls(tuple(checked))

    def combine(self, scores: np.ndarray) -> np.ndarray:
        """(n,) combined scores from (n, terms) per-term scores (the module docstring's formula),
        summed in the terms' order, one float32 operation at a time: the same bits in every store."""
        total = np.zeros(scores.shape[0], np.float32)
        for i, factor in enumerate(self.factors):
            total += factor * scores[:, i]
        return total


def check_weight(weight: float) -> float:
    """A term's signed weight: a finite number other than 0."""
    try:
        value = float(weight)
    except (TypeError, ValueError):
        raise QueryError(f"a term's weight must be a number, not {weight!r}") from None
    if not math.isfinite(value) or value == 0:
        raise QueryError(f"a term's weight must be a finite number other than 0, not {weight!r}")
    return value


def parse_query(text: str) -> list[TermText]:
    """The terms of one query string (the module docstring's syntax)."""
    return _terms(_words(text), text)


def parse_arguments(args: Sequence[str]) -> list[TermText]:
    """The terms of a command line's QUERY arguments: one argument is one string (parse_query)."""
    if len(args) == 1:
        return parse_query(args[0])
    return _terms([(arg, arg) for arg in args], " ".join(args))


Word = tuple[str, str]  # (its text, the part of it before any double quote: where an operator or weight is read)


def _words(text: str) -> list[Word]:
    """Words split at whitespace outside double quotes; a quoted span is literal and joins the word it
    touches; a quote without a partner is a character."""
    words: list[Word] = []
    current: list[str] = []
    head: str | None = None  # the word's text before its first quote, once one is met
    started = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == '"' and text.find('"', i + 1) > 0:
            end = text.index('"', i + 1)
            if head is None:
                head = "".join(current)
            current.append(text[i + 1 : end])
            started = True
            i = end + 1
            continue
        if char.isspace():
            if started:
                word = "".join(current)
                words.append((word, word if head is None else head))
            current, head, started = [], None, False
        else:
            current.append(char)
            started = True
        i += 1
    if started:
        word = "".join(current)
        words.append((word, word if head is None else head))
    return words


def _terms(words: list[Word], written: str) -> list[TermText]:
    """Terms from words: a "+" or "-" standing alone, unquoted, is an operator; runs of other words
    are terms."""
    terms: list[TermText] = []
    sign: float | None = None
    run: list[Word] = []

    def close() -> None:
        nonlocal sign
        if run:
            terms.append(_weighed(run, 1.0 if sign is None else sign))
            run.clear()
            sign = None

    for text, head in words:
        if text == head and text in OPERATORS:
            if run:
                close()
            elif sign is not None:
                raise QueryError(f"two operators in a row in {written!r}: put a term between them")
            sign = OPERATORS[text]
        else:
            run.append((text, head))
    if sign is not None and not run:
        raise QueryError(f"nothing follows the last operator in {written!r}")
    close()
    if not terms:
        raise QueryError("the query is empty")
    return terms


def _weighed(run: list[Word], sign: float) -> TermText:
    """A term from its words: "W:" at the start of its first word, outside quotes, is its weight."""
    weight = 1.0
    first, head = run[0]
    prefix = _WEIGHT.match(head)
    if prefix is not None and (prefix.end() < len(head) or head != first or len(run) > 1):
        weight = float(prefix.group(1))
        if weight == 0:
            raise QueryError(f"the weight in {first!r} must be more than 0")
        rest = first[prefix.end() :].lstrip()
        run = ([(rest, rest)] if rest else []) + run[1:]
    elif prefix is not None:
        raise QueryError(f"{first!r} weighs nothing: write the term right after the weight")
    return TermText(" ".join(text for text, _ in run), sign * weight)

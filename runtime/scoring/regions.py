"""The matchmap read the other way: which words a region of a photo matches, and what is where.

A region is a set of grid cells. A point names the cell that holds it; a box names the cells whose
centres lie inside it (at least the cell that holds the box's centre, so a box smaller than a cell is
the same region as a point at its centre). A word's score in a region is its best cell there: the
MISA word term restricted to the region, so ranking words in the whole photo is ranking them as a
search would.

Labelling a photo picks peaks greedily: the best (cell, word) pair among the cells still free, then a
rectangle of cells grown around that peak while the word stays strong (each added row or column
scores at least halfway between the word's median over the photo and its peak). The rectangle's cells
are taken, and the word is used up with every other form of it (its family: "dog" and "dogs", "man"
and "men"), so labels never overlap and never name one thing twice.

Points and boxes are in the photo's displayed pixels (after EXIF orientation), as in heatmap.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import QueryError
from .matchmap import matchmap

# Words that name no region: articles, pronouns, prepositions, conjunctions, auxiliaries and numbers.
# They are left out of a bundle's vocabulary and passed over when naming a region from a phrase.
FUNCTION_WORDS = frozenset(
    """
    a an the this that these those some any each every all both either neither no not nor other another such
    i me my mine we us our ours you your yours he him his she her hers it its they them their theirs
    myself yourself himself herself itself ourselves themselves one ones someone something somebody anyone
    who whom whose which what where when why how whoever whatever there here
    and or but if then than so because while though although as until unless whether yet
    of in on at by for with from to into onto upon out off over under about above below across after against
    along amid among around before behind beneath beside besides between beyond despite down during except
    inside near nearby outside past since through throughout toward towards underneath up via within without
    next front
    is are was were be been being am isn aren wasn weren do does did doing done have has had having
    can could will would shall should may might must
    very too also just only even still really quite almost much many more most less least few several
    s t
    two three four five six seven eight nine ten eleven twelve first second third
    """.split()  # noqa: SIM905 - a word list reads best as words
)
# Plurals that are not the plural of a word: "shorts" are not several shorts, "glasses" not glasses of water.
NOT_PLURALS = frozenset(
    ["shorts", "glasses", "sunglasses", "goggles", "pants", "trousers", "jeans", "tights", "clothes", "woods", "news"]
)
IRREGULAR_PLURALS = {
    "men": "man", "women": "woman", "people": "person", "children": "child", "feet": "foot", "teeth": "tooth",
    "mice": "mouse", "geese": "goose", "oxen": "ox", "knives": "knife", "leaves": "leaf", "wolves": "wolf",
    "shelves": "shelf", "loaves": "loaf", "scarves": "scarf", "calves": "calf", "halves": "half", "wives": "wife",
    "lives": "life",
}  # fmt: skip
GROW_FRACTION = 0.5  # a label's rectangle keeps rows/columns scoring above median + this x (peak - median)


@dataclass(frozen=True)
class Label:
    """One labelled region: word k of the candidates, its best cell, and the rectangle of cells it holds."""

    word: int
    score: float
    cell: tuple[int, int]  # (i, j)
    cells: tuple[int, int, int, int]  # (top, left, bottom, right) inclusive cell rows and columns


def word_maps(grid: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Patch grid (h, w, D) and word vectors (n, D) -> (n, h, w) maps, one per word."""
    return np.moveaxis(matchmap(grid, vectors), -1, 0)


def point_cells(point: tuple[float, float], grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(h, w) bool mask of the one cell holding point (x, y) of a photo of size (W, H)."""
    x, y = point
    width, height = size
    if not (0 <= x < width and 0 <= y < height):
        raise QueryError(f"the point ({x:g}, {y:g}) is outside the photo ({width} x {height} pixels)")
    h, w = grid
    mask = np.zeros(grid, dtype=bool)
    mask[min(int(y * h / height), h - 1), min(int(x * w / width), w - 1)] = True
    return mask


def box_cells(box: tuple[float, float, float, float], grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(h, w) bool mask of the cells whose centres lie in box (x, y, w, h); at least the centre's cell."""
    x, y, bw, bh = box
    width, height = size
    if bw <= 0 or bh <= 0:
        raise QueryError(f"the box ({x:g}, {y:g}, {bw:g}, {bh:g}) has no area")
    if x >= width or y >= height or x + bw <= 0 or y + bh <= 0:
        raise QueryError(f"the box ({x:g}, {y:g}, {bw:g}, {bh:g}) is outside the photo ({width} x {height} pixels)")
    h, w = grid
    centres_x = (np.arange(w) + 0.5) * width / w
    centres_y = (np.arange(h) + 0.5) * height / h
    mask = np.outer((centres_y >= y) & (centres_y <= y + bh), (centres_x >= x) & (centres_x <= x + bw))
    if not mask.any():
        centre = (min(max(x + bw / 2, 0), width - 1), min(max(y + bh / 2, 0), height - 1))
        mask = point_cells(centre, grid, size)
    return mask


def region_scores(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, h, w) word maps and an (h, w) region -> (n,) each word's best cell inside the region."""
    return maps[:, mask].max(axis=1)


def mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) inclusive rows and columns of the cells a mask holds."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def cells_to_box(
    cells: tuple[int, int, int, int], grid: tuple[int, int], size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Inclusive cell rectangle (top, left, bottom, right) -> the pixels it covers, (x, y, w, h)."""
    top, left, bottom, right = cells
    (h, w), (width, height) = grid, size
    x0, y0 = round(left * width / w), round(top * height / h)
    x1, y1 = round((right + 1) * width / w), round((bottom + 1) * height / h)
    return x0, y0, x1 - x0, y1 - y0


def word_families(words: list[str]) -> np.ndarray:
    """(n,) each word's family: the index of its singular when that is in the list too, else its own.

    English plurals by rule ("dogs", "benches", "puppies", "teddy bears": the last word decides) and a
    few irregular ones ("men", "people", "knives"); NOT_PLURALS keeps words such as "shorts" apart.
    """
    where = {word: k for k, word in enumerate(words)}
    families = np.arange(len(words))
    for k, word in enumerate(words):
        head, _, last = word.rpartition(" ")
        prefix = f"{head} " if head else ""
        for singular in _singulars(last):
            if prefix + singular in where:
                families[k] = where[prefix + singular]
                break
    return families


def _singulars(word: str) -> list[str]:
    """What `word` is the plural of, most likely first (empty when it reads as no plural)."""
    if word in NOT_PLURALS or len(word) < 3 or not word.endswith("s") or word.endswith("ss"):
        return [IRREGULAR_PLURALS[word]] if word in IRREGULAR_PLURALS else []
    out = [word[:-3] + "y"] if word.endswith("ies") else []
    if word.endswith(("ses", "xes", "zes", "ches", "shes", "oes")):
        out.append(word[:-2])
    return [*out, word[:-1]]


def pick_labels(maps: np.ndarray, top: int, families: np.ndarray | None = None) -> list[Label]:
    """Up to `top` non-overlapping labels from (n, h, w) word maps, best first (see the module doc);
    families (word_families) uses up every form of a word with it."""
    families = np.arange(len(maps)) if families is None else families
    free = np.ones(maps.shape[1:], dtype=bool)
    candidates = np.array(maps, dtype=np.float32)  # taken cells and used words become -inf
    labels: list[Label] = []
    while len(labels) < top:
        k, i, j = (int(v) for v in np.unravel_index(int(np.argmax(candidates)), candidates.shape))
        if not np.isfinite(candidates[k, i, j]):
            break
        peak, median = float(maps[k, i, j]), float(np.median(maps[k]))
        cells = _grow(maps[k], free, (i, j), median + GROW_FRACTION * (peak - median))
        top_, left, bottom, right = cells
        free[top_ : bottom + 1, left : right + 1] = False
        candidates[:, top_ : bottom + 1, left : right + 1] = -np.inf
        candidates[families == families[k]] = -np.inf
        labels.append(Label(k, peak, (i, j), cells))
    return labels


def _grow(word_map: np.ndarray, free: np.ndarray, cell: tuple[int, int], floor: float) -> tuple[int, int, int, int]:
    """The rectangle of free cells grown one row or column at a time from `cell`, always taking the
    strongest side whose new strip is all free and averages at least `floor`."""
    h, w = word_map.shape
    top, left = bottom, right = cell
    while True:
        sides = {
            "top": (top - 1, top - 1, left, right) if top > 0 else None,
            "bottom": (bottom + 1, bottom + 1, left, right) if bottom < h - 1 else None,
            "left": (top, bottom, left - 1, left - 1) if left > 0 else None,
            "right": (top, bottom, right + 1, right + 1) if right < w - 1 else None,
        }
        best, best_mean = None, floor
        for side, strip in sides.items():
            if strip is None:
                continue
            r0, r1, c0, c1 = strip
            if not free[r0 : r1 + 1, c0 : c1 + 1].all():
                continue
            mean = float(word_map[r0 : r1 + 1, c0 : c1 + 1].mean())
            if mean >= best_mean:
                best, best_mean = side, mean
        if best is None:
            return top, left, bottom, right
        if best == "top":
            top -= 1
        elif best == "bottom":
            bottom += 1
        elif best == "left":
            left -= 1
        else:
            right += 1

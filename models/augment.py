"""Augmentation that keeps captions true: a mild random crop and colour jitter, and mirrored views
whose captions say "right" where they said "left".

A mirrored photo with its caption as written would teach the model wrong words, so a flip always
travels with swap_sides on the caption it is trained against (models.train). Augmentation wraps the
runtime's preprocessing: it changes the PIL image before the one shared preprocess step.
"""

from __future__ import annotations

import math
import re

import numpy as np
from PIL import Image, ImageEnhance

_SIDES = re.compile(r"\b(left|right)(most|ward|wards|hand)?\b", re.IGNORECASE)
_OTHER_SIDE = {"left": "right", "right": "left"}


def augment(img: Image.Image, rng: np.random.Generator, flip: bool = False) -> Image.Image:
    """A crop of 60-100% of the area (aspect 3:4 to 4:3), then brightness, contrast and saturation +-20%;
    mirrored left to right after that when `flip`."""
    w, h = img.size
    area = w * h * rng.uniform(0.6, 1.0)
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw = min(w, round(math.sqrt(area * ratio)))
    ch = min(h, round(math.sqrt(area / ratio)))
    x = int(rng.integers(0, w - cw + 1))
    y = int(rng.integers(0, h - ch + 1))
    img = img.crop((x, y, x + cw, y + ch))
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhancer(img).enhance(float(rng.uniform(0.8, 1.2)))
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else img


def flipped_view(view: int, flips: bool) -> bool:
    """Whether cached view `view` is mirrored: every second augmented view (2, 4, ...) of a run with flips."""
    return flips and view > 0 and view % 2 == 0


def swap_sides(caption: str) -> str:
    """The caption of the mirrored photo: "left" and "right" (and leftmost, right-hand, ...) swapped,
    their capitals kept."""

    def other(match: re.Match[str]) -> str:
        word, rest = match.group(1), match.group(2) or ""
        swapped = _OTHER_SIDE[word.lower()]
        if word.isupper():
            swapped = swapped.upper()
        elif word[0].isupper():
            swapped = swapped.capitalize()
        return swapped + rest

    return _SIDES.sub(other, caption)

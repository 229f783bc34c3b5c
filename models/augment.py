"""Augmentation that keeps captions true: a mild random crop and colour jitter, never a flip.

Captions say "left" and "right", so a mirrored photo would teach the model wrong words. Augmentation
wraps the runtime's preprocessing: it changes the PIL image before the one shared preprocess step.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageEnhance


def augment(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A crop of 60-100% of the area (aspect 3:4 to 4:3), then brightness, contrast and saturation +-20%."""
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
    return img

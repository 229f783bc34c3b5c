"""The one definition of how a photo becomes model input; training calls it too.

The whole frame is resized to the model's input size without keeping the aspect ratio (as the
Flickr8k photos were prepared), so grid cell (i, j) always covers the same fraction of the photo and a
heatmap maps back to the photo's pixels by a plain resize.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..encoding.bundle import VisualConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The resize first reduces by whole factors while the image stays over this many times the target
# (fast box averaging), then resamples; load_image does that reduction early to hold less in memory.
REDUCING_GAP = 3.0


def image_to_array(
    img: Image.Image,
    image_size: tuple[int, int],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> np.ndarray:
    """RGB PIL image -> float32 (3, H, W), resized to image_size=(H, W) and normalised."""
    height, width = image_size
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.BICUBIC, reducing_gap=REDUCING_GAP)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def preprocess(img: Image.Image, visual: VisualConfig) -> np.ndarray:
    """Bundle-driven form of image_to_array."""
    return image_to_array(img, visual.image_size, visual.mean, visual.std)

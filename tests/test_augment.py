"""Augmentation keeps captions true: a view is mirrored only with its caption's sides swapped, and a view
is repeatable from its seed."""

from __future__ import annotations

import numpy as np
from PIL import Image

from assoc.models.augment import augment, flipped_view, swap_sides
from assoc.models.train import with_sides_swapped


def _left_red_right_blue() -> Image.Image:
    arr = np.zeros((120, 160, 3), np.uint8)
    arr[:, :80, 0] = 200
    arr[:, 80:, 2] = 200
    return Image.fromarray(arr)


def test_left_stays_left() -> None:
    img = _left_red_right_blue()
    for seed in range(50):
        out = np.asarray(augment(img, np.random.default_rng(seed)), np.float32)
        left, right = out[:, :4], out[:, -4:]
        # A crop may show only one side, but red is never to the right of blue.
        assert not (left[..., 2].mean() > left[..., 0].mean() and right[..., 0].mean() > right[..., 2].mean())


def test_views_are_repeatable_and_differ() -> None:
    img = _left_red_right_blue()
    a = np.asarray(augment(img, np.random.default_rng(7)))
    b = np.asarray(augment(img, np.random.default_rng(7)))
    c = np.asarray(augment(img, np.random.default_rng(8)))
    assert np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)
    assert a.shape[0] * a.shape[1] >= 0.55 * 120 * 160


def test_a_flipped_view_puts_left_on_the_right() -> None:
    img = _left_red_right_blue()
    for seed in range(20):
        plain = np.asarray(augment(img, np.random.default_rng(seed)), np.float32)
        mirrored = np.asarray(augment(img, np.random.default_rng(seed), flip=True), np.float32)
        assert np.array_equal(mirrored, plain[:, ::-1])  # the same crop and colours, mirrored


def test_every_second_augmented_view_is_flipped_when_asked() -> None:
    assert [flipped_view(v, True) for v in range(5)] == [False, False, True, False, True]
    assert not any(flipped_view(v, False) for v in range(5))  # the plain view 0 never is


def test_captions_of_mirrored_views_swap_left_and_right() -> None:
    assert swap_sides("A dog on the left, a man to the Right.") == "A dog on the right, a man to the Left."
    assert (
        swap_sides("LEFT lane, the right-hand side, leftmost chair")
        == "RIGHT lane, the left-hand side, rightmost chair"
    )
    assert swap_sides("a bright light, a cleft rock, copyright") == "a bright light, a cleft rock, copyright"
    captions = ["a dog runs left", "two cats", "right here"]
    rows_of, mirror = with_sides_swapped(captions)
    assert rows_of == [*captions, "a dog runs right", "left here"]
    assert mirror.tolist() == [3, 1, 4]

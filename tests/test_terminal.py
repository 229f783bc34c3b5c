"""Terminal images from real photos: half blocks, Kitty and Sixel escapes decoded back, detection on a pty."""

from __future__ import annotations

import base64
import fcntl
import io
import os
import re
import struct
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from rich.text import Text

from assoc.cli.terminal import (
    KITTY_CHUNK,
    InlineImage,
    cell_pixels,
    detect_protocol,
    halfblock,
    kitty_escape,
    render,
    sixel_escape,
)
from assoc.runtime.imaging.images import load_image

SGR_RUN = re.compile(r"\x1b\[([0-9;]*)m(\u2580+)\x1b\[0m")


@pytest.fixture()
def photo(flickr8k: Path) -> Image.Image:
    return load_image(flickr8k / "fullres" / "10815824_2997e03d76.jpg").image  # 500 x 333


@pytest.fixture()
def tty() -> Iterator[TextIO]:
    """The slave side of a real pseudo-terminal, 80 x 24 cells of 10 x 20 pixels."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 800, 480))
    stream = open(slave, "w")  # noqa: SIM115 - closed below
    try:
        yield stream
    finally:
        stream.close()
        os.close(master)


def _truecolor(force_terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, color_system="truecolor", force_terminal=force_terminal, width=120), out


def test_halfblock_cells_carry_the_pixels(photo: Image.Image) -> None:
    text = halfblock(photo, 30)
    rows = round(30 * 333 / 500 / 2)  # 10
    assert text.plain.split("\n") == ["\u2580" * 30] * rows
    console, out = _truecolor(force_terminal=True)
    console.print(text)
    pixels = np.asarray(photo.resize((30, 2 * rows), Image.BILINEAR))
    lines = out.getvalue().rstrip("\n").split("\n")
    assert len(lines) == rows
    for r, line in enumerate(lines):
        cells = []
        for codes, blocks in SGR_RUN.findall(line):
            m = re.fullmatch(r"38;2;(\d+);(\d+);(\d+);48;2;(\d+);(\d+);(\d+)", codes)
            assert m, codes
            cells += [tuple(int(v) for v in m.groups())] * len(blocks)
        assert len(cells) == 30
        expected = [(*top, *bottom) for top, bottom in zip(pixels[2 * r], pixels[2 * r + 1], strict=True)]
        assert cells == [tuple(int(v) for v in e) for e in expected]


def test_kitty_escape_decodes_to_the_same_image(photo: Image.Image) -> None:
    escape = kitty_escape(photo, 40, 13)
    chunks = re.findall(r"\x1b_G([^;]*);([^\x1b]*)\x1b\\", escape)
    assert "".join(f"\x1b_G{k};{d}\x1b\\" for k, d in chunks) == escape
    assert len(chunks) > 1 and all(len(d) <= KITTY_CHUNK for _, d in chunks)
    keys = [dict(kv.split("=") for kv in k.split(",")) for k, _ in chunks]
    assert keys[0] | {"m": "1"} == {"a": "T", "f": "100", "q": "2", "c": "40", "r": "13", "m": "1"}
    assert [k["m"] for k in keys] == ["1"] * (len(chunks) - 1) + ["0"]
    decoded = Image.open(io.BytesIO(base64.b64decode("".join(d for _, d in chunks))))
    assert decoded.format == "PNG" and np.array_equal(np.asarray(decoded), np.asarray(photo))


def _decode_sixel(escape: str) -> tuple[dict[int, tuple[int, int, int]], np.ndarray]:
    """A small Sixel reader: the colour registers (percent RGB) and the register painted at each pixel."""
    m = re.fullmatch(r'\x1bP0;1;0q"1;1;(\d+);(\d+)(.*)\x1b\\', escape, re.S)
    assert m, escape[:40]
    width, height, data = int(m[1]), int(m[2]), m[3]
    tokens = re.compile(r"#(\d+)(?:;2;(\d+);(\d+);(\d+))?|!(\d+)([?-~])|([?-~])|(\$)|(-)")
    palette: dict[int, tuple[int, int, int]] = {}
    painted = np.full((height, width), -1)
    x = band = 0
    color = -1
    pos = 0
    for t in tokens.finditer(data):
        assert t.start() == pos, data[pos : pos + 20]
        pos = t.end()
        reg, r, g, b, count, run_ch, ch, cr, nl = t.groups()
        if reg is not None and r is not None:
            assert all(0 <= int(v) <= 100 for v in (r, g, b))
            palette[int(reg)] = (int(r), int(g), int(b))
        elif reg is not None:
            color = int(reg)
        elif cr:
            x = 0
        elif nl:
            x, band = 0, band + 1
        else:
            n, bits = (int(count), ord(run_ch) - 63) if count else (1, ord(ch) - 63)
            for k in range(6):
                if bits >> k & 1:
                    assert (painted[band * 6 + k, x : x + n] == -1).all()  # each pixel painted once
                    painted[band * 6 + k, x : x + n] = color
            x += n
    assert pos == len(data)
    return palette, painted


def test_sixel_escape_decodes_to_the_quantized_image(photo: Image.Image) -> None:
    small = photo.resize((120, 80), Image.BILINEAR)
    small.paste((20, 120, 220), (10, 10, 70, 40))  # a flat patch, so there are runs to compress
    escape = sixel_escape(small)
    assert "!" in escape
    palette, painted = _decode_sixel(escape)
    assert 2 <= len(palette) <= 256 and (painted >= 0).all()
    quantized = small.quantize(colors=256, dither=Image.Dither.NONE)
    assert np.array_equal(painted, np.asarray(quantized))
    rgb = np.array([palette[i] for i in range(len(palette))]) * 255 / 100
    reference = np.asarray(quantized.getpalette()[: 3 * len(palette)]).reshape(-1, 3)
    assert np.abs(rgb - reference).max() <= 1.3
    shown = rgb[painted]
    assert np.abs(shown[10:40, 10:70] - (20, 120, 220)).max() <= 2
    assert np.abs(shown - np.asarray(small)).mean() < 6  # 256 colours stay close to the photo


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TERM": "xterm-kitty"}, "kitty"),
        ({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "3"}, "kitty"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm"}, "sixel"),
        ({"TERM": "foot"}, "sixel"),
        ({"TERM": "xterm-256color", "ASSOC_SIXEL": "1"}, "sixel"),
        ({"TERM": "xterm-256color"}, "halfblock"),
        ({"TERM": "xterm-kitty", "TMUX": "/tmp/tmux-1/default,1,0"}, "halfblock"),
    ],
)
def test_detect_protocol_from_env_on_a_tty(tty: TextIO, env: dict[str, str], expected: str) -> None:
    assert detect_protocol(env, tty) == expected


def test_no_graphics_when_not_a_tty(photo: Image.Image) -> None:
    assert detect_protocol({"TERM": "xterm-kitty"}, io.StringIO()) == "halfblock"
    assert isinstance(render(photo, 20, "auto", {"TERM": "xterm-kitty"}, io.StringIO()), Text)
    inline = render(photo, 20, "kitty", {}, io.StringIO())
    assert isinstance(inline, InlineImage)
    console, out = _truecolor(force_terminal=False)
    console.print(inline)  # a file gets half blocks, never an escape
    assert "\x1b_G" not in out.getvalue() and out.getvalue().count("\u2580") == 20 * 7


def test_render_graphics_to_a_terminal(photo: Image.Image, tty: TextIO) -> None:
    assert cell_pixels(tty) == (10, 20)
    sixel = render(photo, 16, "auto", {"TERM": "foot"}, tty)
    assert isinstance(sixel, InlineImage)
    assert sixel.escape.startswith('\x1bP0;1;0q"1;1;160;107')  # 16 cells of 10 px, aspect kept
    kitty = render(photo, 16, "auto", {"TERM": "xterm-kitty"}, tty)
    console, out = _truecolor(force_terminal=True)
    console.print(kitty)
    assert out.getvalue() == kitty.escape + "\n" and ",c=16,r=5," in kitty.escape
    with pytest.raises(ValueError, match="protocol"):
        render(photo, 16, "iterm")

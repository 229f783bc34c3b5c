"""Images in the terminal: truecolor half blocks everywhere, Kitty graphics or Sixel where supported.

Support is read from the environment only; nothing is asked of the terminal, so a terminal that does
not answer can never hang a search. Inline graphics go out only to a real terminal: rendered to a
file or a pipe, every protocol falls back to half blocks.
"""

from __future__ import annotations

import base64
import io
import os
import re
import sys
from collections.abc import Mapping
from typing import TextIO

import numpy as np
from PIL import Image
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import ControlType, Segment
from rich.style import Style
from rich.text import Text

PROTOCOLS = ("auto", "halfblock", "kitty", "sixel")
SIXEL_ENV = "ASSOC_SIXEL"  # set to 1 to use Sixel in a terminal not recognised below
SIXEL_TERMINALS = ("wezterm", "mlterm", "foot", "contour")  # TERM_PROGRAM or TERM prefixes
KITTY_CHUNK = 4096
DEFAULT_CELL_PIXELS = (10, 20)  # (width, height) of a text cell when the tty does not say
UPPER_HALF = "\u2580"


def detect_protocol(env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> str:
    """The best protocol this terminal is known to support, from env vars alone.

    Inside tmux or screen graphics escapes do not reach the outer terminal, so half blocks are used.
    """
    env = os.environ if env is None else env
    stream = sys.stdout if stream is None else stream
    if not _isatty(stream) or env.get("TMUX") or env.get("TERM", "").startswith("screen"):
        return "halfblock"
    term = env.get("TERM", "").lower()
    if "kitty" in term or env.get("KITTY_WINDOW_ID"):
        return "kitty"
    program = env.get("TERM_PROGRAM", "").lower()
    if env.get(SIXEL_ENV, "") not in ("", "0") or any(
        name.startswith(known) for name in (program, term) for known in SIXEL_TERMINALS
    ):
        return "sixel"
    return "halfblock"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def cell_pixels(stream: TextIO | None = None) -> tuple[int, int]:
    """Pixel size (width, height) of one text cell, from the tty's window size (an ioctl, not a query)."""
    stream = sys.stdout if stream is None else stream
    try:
        import fcntl
        import struct
        import termios

        raw = fcntl.ioctl(stream.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        rows, cols, xpix, ypix = struct.unpack("HHHH", raw)
        if rows and cols and xpix and ypix:
            return xpix // cols, ypix // rows
    except (ImportError, OSError, AttributeError, ValueError, io.UnsupportedOperation):
        pass
    return DEFAULT_CELL_PIXELS


def rows_for(size: tuple[int, int], width_cells: int) -> int:
    """Text rows that show an image of size (W, H) at width_cells; a cell is about twice as tall as wide."""
    width, height = size
    return max(1, round(width_cells * height / width / 2))


def halfblock(image: Image.Image, width_cells: int) -> Text:
    """Each cell is '▀' with the upper pixel as foreground and the lower pixel as background."""
    rows = rows_for(image.size, width_cells)
    pixels = np.asarray(image.convert("RGB").resize((width_cells, 2 * rows), Image.BILINEAR))
    text = Text(no_wrap=True, overflow="crop")
    styles: dict[tuple[int, ...], Style] = {}
    for r in range(rows):
        if r:
            text.append("\n")
        for top, bottom in zip(pixels[2 * r].tolist(), pixels[2 * r + 1].tolist(), strict=True):
            key = (*top, *bottom)
            style = styles.get(key)
            if style is None:
                style = styles[key] = Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom))
            text.append(UPPER_HALF, style)
    return text


def kitty_escape(image: Image.Image, width_cells: int, rows: int) -> str:
    """Kitty graphics protocol: a PNG, base64 in chunks of at most 4096 bytes, scaled to cols x rows.

    q=2 silences the terminal's replies, which would otherwise arrive as typed input.
    """
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    data = base64.standard_b64encode(buf.getvalue()).decode("ascii")
    chunks = [data[k : k + KITTY_CHUNK] for k in range(0, len(data), KITTY_CHUNK)] or [""]
    out = []
    for k, chunk in enumerate(chunks):
        more = int(k < len(chunks) - 1)
        keys = f"a=T,f=100,q=2,c={width_cells},r={rows},m={more}" if k == 0 else f"m={more}"
        out.append(f"\x1b_G{keys};{chunk}\x1b\\")
    return "".join(out)


def sixel_escape(image: Image.Image, colors: int = 256) -> str:
    """DEC Sixel: palette of at most `colors` registers, bands of six rows, runs of 4+ as '!count'."""
    quantized = image.convert("RGB").quantize(colors=colors, dither=Image.Dither.NONE)
    index = np.asarray(quantized, dtype=np.int64)
    height, width = index.shape
    palette = np.asarray(quantized.getpalette()[: 3 * (int(index.max()) + 1)], dtype=np.int64).reshape(-1, 3)
    out = [f'\x1bP0;1;0q"1;1;{width};{height}'.encode()]
    for n, (r, g, b) in enumerate(palette.tolist()):
        out.append(f"#{n};2;{round(r * 100 / 255)};{round(g * 100 / 255)};{round(b * 100 / 255)}".encode())
    weights = (1 << np.arange(6, dtype=np.int64))[:, None]
    for top in range(0, height, 6):
        band = index[top : top + 6]
        colours = np.unique(band)
        # per colour present in the band, one sixel per column: bit k set where row k has that colour
        bits = ((band[None] == colours[:, None, None]) * weights[: len(band)]).sum(axis=1)
        chars = (bits + 63).astype(np.uint8)
        lines = [
            b"#%d%s" % (n, _compress(row.tobytes())) for n, row in zip(colours.tolist(), chars, strict=True)
        ]
        out.append(b"$".join(lines) + (b"-" if top + 6 < height else b""))
    out.append(b"\x1b\\")
    return b"".join(out).decode("ascii")


_SIXEL_RUN = re.compile(rb"([?-~])\1{3,}")


def _compress(sixels: bytes) -> bytes:
    """Run-length encode one colour's sixels; trailing empty sixels ('?') are left out."""
    return _SIXEL_RUN.sub(lambda m: b"!%d%c" % (len(m[0]), m[1][0]), sixels.rstrip(b"?"))


class InlineImage:
    """A rich renderable that writes a graphics escape to a terminal, or half blocks to anything else."""

    # Rich has no control type for images; any code marks the segment as zero-width and terminal-only.
    _CONTROL = ((ControlType.CURSOR_MOVE_TO_COLUMN, 0),)

    def __init__(self, escape: str, fallback: Text, width_cells: int) -> None:
        self.escape = escape
        self.fallback = fallback
        self.width_cells = width_cells

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not console.is_terminal:
            yield self.fallback
            return
        yield Segment(self.escape, None, self._CONTROL)
        yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.width_cells, self.width_cells)


def render(
    image: Image.Image,
    width_cells: int,
    protocol: str = "auto",
    env: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> Text | InlineImage:
    """A rich renderable showing image width_cells wide; 'auto' picks the protocol from env alone."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown terminal image protocol {protocol!r}; expected one of {PROTOCOLS}")
    if protocol == "auto":
        protocol = detect_protocol(env, stream)
    fallback = halfblock(image, width_cells)
    if protocol == "halfblock":
        return fallback
    # Sixel has no scaling and Kitty scales to c x r cells itself: either way send the pixels that
    # width_cells covers (never more than the image has, for Kitty).
    cell_w, cell_h = cell_pixels(stream)
    pixel_width = width_cells * cell_w
    rows = max(1, round(pixel_width * image.height / image.width / cell_h))
    if protocol == "kitty":
        pixel_width = min(pixel_width, image.width)
    target = (pixel_width, max(1, round(pixel_width * image.height / image.width)))
    if target != image.size:
        image = image.resize(target, Image.LANCZOS)
    escape = kitty_escape(image, width_cells, rows) if protocol == "kitty" else sixel_escape(image)
    return InlineImage(escape, fallback, width_cells)

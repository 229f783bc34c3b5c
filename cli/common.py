"""Options and output helpers that several commands share.

stdout carries results (tables, JSON, paths, pictures); progress and notes go to stderr, so
`assoc query --json ... | jq` and `assoc index ... > log` both do what one expects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import typer
from PIL import Image
from rich.console import Console, Group
from rich.text import Text

from ..api.json_text import dumps

PICTURE_CELLS = 48  # terminal columns of one heatmap picture (narrower if the terminal is)


def out_console() -> Console:
    """Results go to stdout; made per call so a test runner's captured stdout is the one written to."""
    return Console(highlight=False)


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def echo_json(value: Any) -> None:
    """JSON on stdout, naming every file exactly (see assoc.api.json_text)."""
    typer.echo(dumps(value))


def heatmap_picture(photo: Image.Image, grid_map: np.ndarray, caption: str, console: Console) -> Group:
    """A photo with a heatmap blended over it, drawn for this terminal, with a caption underneath."""
    from ..api.render import overlay
    from .terminal import render

    width = max(8, min(PICTURE_CELLS, console.width - 2))
    return Group(render(overlay(photo, grid_map), width), Text(caption, style="bold"))

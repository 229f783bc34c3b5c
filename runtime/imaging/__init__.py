"""Photos from disk to the encoder's input: decoding, EXIF orientation, limits, preprocessing."""

import warnings


def quiet_pillow_warnings() -> None:
    """For a front end's own process (the CLI, and the web server it starts): Pillow's warnings are about
    the file at hand and would print Pillow's source paths on stderr; assoc's pixel cap stands in for its
    DecompressionBombWarning. A library leaves the user's warning filters alone, so importing assoc
    does not call this (and it imports no Pillow)."""
    warnings.filterwarnings("ignore", module=r"PIL\.")

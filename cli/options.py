"""Where the bundle and the gallery come from, the same way for every command."""

from __future__ import annotations

import os
from pathlib import Path

from ..runtime.bundle import Bundle, load_bundle
from ..runtime.default_model import default_bundle_path
from ..runtime.errors import BundleError


def resolve_bundle(model: Path | None) -> Bundle:
    """--model DIR, else ASSOC_MODEL, else the bundle shipped with assoc."""
    path = model if model is not None else default_bundle_path()
    if path is None:
        raise BundleError("no model bundle: pass --model DIR or set ASSOC_MODEL (none ships with this install)")
    return load_bundle(path)


def resolve_gallery(gallery: Path | None) -> Path:
    """--gallery DIR, else ASSOC_GALLERY, else the per-user data folder."""
    if gallery is not None:
        return gallery.expanduser()
    env = os.environ.get("ASSOC_GALLERY")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("assoc")) / "gallery"

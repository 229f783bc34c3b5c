"""Every default that comes from the environment, resolved here and nowhere else.

    ASSOC_MODEL           a bundle folder (else the bundle shipped with assoc)
    ASSOC_GALLERY         the built-in gallery's folder (else the per-user data folder)
    ASSOC_QDRANT_URL      a Qdrant server, when a Qdrant store names no server and no local folder
    ASSOC_QDRANT_API_KEY  its API key
"""

from __future__ import annotations

import os
from pathlib import Path

from ..runtime.encoding.bundle import Bundle, load_bundle
from ..runtime.encoding.default_model import shipped_bundle_path
from ..runtime.errors import BundleError

ENV_MODEL = "ASSOC_MODEL"
ENV_GALLERY = "ASSOC_GALLERY"
ENV_QDRANT_URL = "ASSOC_QDRANT_URL"
ENV_QDRANT_API_KEY = "ASSOC_QDRANT_API_KEY"


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def default_model_path() -> Path | None:
    env = _env(ENV_MODEL)
    return Path(env).expanduser() if env else shipped_bundle_path()


def resolve_bundle(model: str | Path | Bundle | None = None, *, rehash: bool = False) -> Bundle:
    """A loaded bundle: the one given, else ASSOC_MODEL, else the shipped one. rehash: every file of a
    bundle loaded here is hashed in full (see load_bundle)."""
    if isinstance(model, Bundle):
        return model
    path = Path(model).expanduser() if model is not None else default_model_path()
    if path is None:
        raise BundleError(f"no model bundle: name one, or set {ENV_MODEL} (none ships with this install)")
    return load_bundle(path, rehash=rehash)


def default_gallery() -> Path:
    env = _env(ENV_GALLERY)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("assoc")) / "gallery"


def default_qdrant_url() -> str | None:
    return _env(ENV_QDRANT_URL)


def default_qdrant_api_key() -> str | None:
    return _env(ENV_QDRANT_API_KEY)

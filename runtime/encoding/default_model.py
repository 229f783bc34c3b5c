"""The bundle that ships inside assoc, used when nothing names another (see assoc.api.settings)."""

from __future__ import annotations

from pathlib import Path

SHIPPED_BUNDLE = Path(__file__).resolve().parent.parent / "default_bundle"


def shipped_bundle_path() -> Path | None:
    """The package's own bundle folder, or None in an install that carries no bundle."""
    return SHIPPED_BUNDLE if (SHIPPED_BUNDLE / "config.json").is_file() else None

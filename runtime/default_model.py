"""Where the bundle comes from when the user names none: --model, then ASSOC_MODEL, then the shipped one."""

from __future__ import annotations

import os
from pathlib import Path

SHIPPED_BUNDLE = Path(__file__).resolve().parent / "default_bundle"


def default_bundle_path() -> Path | None:
    env = os.environ.get("ASSOC_MODEL")
    if env:
        return Path(env).expanduser()
    return SHIPPED_BUNDLE if (SHIPPED_BUNDLE / "config.json").is_file() else None

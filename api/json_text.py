"""JSON text for results that name files: exact whatever bytes a name holds.

File names are bytes; os.fsdecode keeps a byte that is not UTF-8 as a lone surrogate, which no UTF-8
encoder accepts. Every front end (the CLI's --json, the web app's /api/) writes results with dumps().
"""

from __future__ import annotations

import base64
import json
import os
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
_PATH_KEYS = ("path", "image")  # the JSON keys that hold a file's name


def dumps(value: Any) -> str:
    """JSON text that names every file exactly.

    A name that is not valid UTF-8 is written with \\udcXX escapes for its odd bytes (what Python's
    json.loads and os.fsencode, or open(), turn back into the very bytes), and beside its "path" (or
    "image") key a "path_bytes" ("image_bytes") key holds the name's raw bytes in base64, for any
    other language.
    """
    text = json.dumps(_with_name_bytes(value), ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _with_name_bytes(value: Any) -> Any:
    if isinstance(value, list):
        return [_with_name_bytes(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {key: _with_name_bytes(v) for key, v in value.items()}
    for key in _PATH_KEYS:
        name = value.get(key)
        if isinstance(name, str) and _SURROGATE.search(name):
            out[f"{key}_bytes"] = base64.b64encode(os.fsencode(name)).decode("ascii")
    return out

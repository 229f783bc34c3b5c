"""The content hash that recognises a photo renamed, copied or touched.

The hash covers the whole file (blake2b-128, streamed), so a photo edited in place keeps no stale grid
whatever it kept of its size, head and tail. It is read only for new and changed files (an unchanged
size and mtime cost nothing), and those are decoded in full anyway.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..imaging.files import open_regular


def hash_content(path: str | Path) -> str:
    """Hex blake2b-128 of a regular file's whole content."""
    digest = hashlib.blake2b(digest_size=16)
    with open_regular(path) as fh:  # hashlib.file_digest does this from Python 3.11 on
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

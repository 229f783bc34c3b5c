"""The file walk and the content hash, on real folders, links and permissions."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assoc.runtime.indexing.fileinfo import hash_content
from assoc.runtime.indexing.walk import walk

POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX links and permission bits")


@pytest.fixture
def photo(flickr8k: Path) -> Path:
    return flickr8k / "images" / "1000268201_693b08cb0e.jpg"


def put(root: Path, relative: str, source: Path) -> Path:
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def paths(result) -> list[str]:
    return [f.path for f in result.files]


def test_photos_by_suffix_sorted_absolute_with_stat(
    tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("b/z.JPG", "a.jpeg", "b/a.png", "c.Webp", "notes.txt", "raw.CR2", "b/c/d/e.tif", "x.dng.txt"):
        put(tmp_path, name, photo)
    monkeypatch.chdir(tmp_path)
    result = walk(["."])
    expected = [str(tmp_path / p) for p in ("a.jpeg", "b/a.png", "b/c/d/e.tif", "b/z.JPG", "c.Webp", "raw.CR2")]
    assert paths(result) == expected
    st = os.stat(tmp_path / "a.jpeg")
    assert (result.files[0].size, result.files[0].mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert result.folders == [str(tmp_path)] and result.skipped == []


def test_hidden_entries_and_metadata_folders_are_skipped(tmp_path: Path, photo: Path) -> None:
    keep = ["2019/beach.jpg", "2019/sub/dog.jpg"]
    drop = [
        ".hidden.jpg",
        "2019/._beach.jpg",
        ".cache/x.jpg",
        "@eaDir/beach.jpg/SYNOPHOTO_THUMB_XL.jpg",
        "2019/@eaDir/t.jpg",
        "#recycle/old.jpg",
        "#snapshot/daily/a.jpg",
        "$RECYCLE.BIN/a.jpg",
        "System Volume Information/a.jpg",
        "__MACOSX/2019/beach.jpg",
        ".thumbnails/normal/a.png",
        "@EADIR/upper.jpg",
    ]
    for name in keep + drop:
        put(tmp_path, name, photo)
    assert paths(walk([tmp_path])) == [str(tmp_path / p) for p in keep]

    with_hidden = paths(walk([tmp_path], include_hidden=True))
    assert str(tmp_path / ".hidden.jpg") in with_hidden and str(tmp_path / ".cache/x.jpg") in with_hidden
    assert not any("@eaDir" in p or "#recycle" in p or ".thumbnails" in p for p in with_hidden)

    # A path the user names is walked even if it is hidden or a metadata folder.
    assert paths(walk([tmp_path / ".cache"])) == [str(tmp_path / ".cache/x.jpg")]


def test_exclude_globs_match_names_and_paths(tmp_path: Path, photo: Path) -> None:
    for name in ("a.jpg", "a.png", "raw/b.jpg", "2020/raw/c.jpg", "2020/d.jpg", "drafts/e.jpg"):
        put(tmp_path, name, photo)
    result = walk([tmp_path], exclude=["*.png", "*/raw/*", "drafts"])
    assert paths(result) == [str(tmp_path / "2020/d.jpg"), str(tmp_path / "a.jpg")]


@POSIX
def test_symlink_loops_end_and_links_keep_their_path(tmp_path: Path, photo: Path) -> None:
    library = tmp_path / "library"
    put(library, "2019/a.jpg", photo)
    (library / "2019" / "again").symlink_to(library)  # a loop back to the top
    (library / "self.jpg").symlink_to(library / "self.jpg")  # a link to itself
    (library / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    elsewhere = tmp_path / "elsewhere"
    put(elsewhere, "b.jpg", photo)
    (library / "linked").symlink_to(elsewhere)
    (library / "linked.jpg").symlink_to(elsewhere / "b.jpg")

    result = walk([library])
    assert paths(result) == [
        str(library / "2019/a.jpg"),
        str(library / "linked.jpg"),
        str(library / "linked/b.jpg"),  # not resolved to elsewhere/b.jpg
    ]
    reasons = dict(result.skipped)
    assert reasons[str(library / "gone.jpg")] == "broken link"
    assert str(library / "self.jpg") in reasons

    # A folder reached twice (overlapping roots) is walked once.
    assert paths(walk([library, library / "2019", library / "linked"])) == paths(result)


def test_named_files_and_missing_paths(tmp_path: Path, photo: Path) -> None:
    one = put(tmp_path, "one.JPG", photo)
    notes = tmp_path / "notes.txt"
    notes.write_text("hi")
    result = walk([one, notes, tmp_path / "missing", tmp_path / "missing.jpg"])
    assert paths(result) == [str(one)]
    assert dict(result.skipped) == {
        str(notes): "not a photo file type",
        str(tmp_path / "missing"): "no such file or folder",
        str(tmp_path / "missing.jpg"): "no such file or folder",
    }
    assert result.folders == []
    assert not result.covers(str(tmp_path / "missing" / "a.jpg"))


def test_named_folders_with_nothing_visible_are_listed_as_empty(tmp_path: Path, photo: Path) -> None:
    for name in ("bare", "dotted", "with-folder/sub", "with-file"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "dotted" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "with-file" / "notes.txt").write_text("hi")
    one = put(tmp_path, "photos/one.jpg", photo)
    names = ["bare", "dotted", "with-folder", "with-file", "photos"]
    result = walk([tmp_path / n for n in names] + [one])
    assert result.empty == [str(tmp_path / "bare"), str(tmp_path / "dotted")]
    assert result.empty_folder_of(str(tmp_path / "dotted" / "2020" / "a.jpg")) == str(tmp_path / "dotted")
    assert result.empty_folder_of(str(tmp_path / "with-file" / "a.jpg")) is None
    assert result.empty_folder_of(str(tmp_path / "bare-not" / "a.jpg")) is None


WALK_AS_CHILD = """
import json, sys
from assoc.runtime.indexing.walk import walk
result = walk([sys.argv[1]])
print(json.dumps({"files": [f.path for f in result.files], "skipped": result.skipped,
                  "covers": [result.covers(p) for p in sys.argv[2:]]}))
"""


def _without_root_file_powers() -> None:
    """In the child before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH for good, so that
    permission bits bind even for root (tests here often run as root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused")


PR_CAPBSET_DROP = 24


@POSIX
def test_unreadable_folder_is_skipped_with_a_reason(tmp_path: Path, photo: Path) -> None:
    library = tmp_path / "library"
    put(library, "open/a.jpg", photo)
    put(library, "locked/b.jpg", photo)
    (library / "locked").chmod(0o000)
    probes = [str(library / "locked/b.jpg"), str(library / "open/gone.jpg"), str(tmp_path / "other.jpg")]
    command = [sys.executable, "-c", WALK_AS_CHILD, str(library), *probes]
    drop = _without_root_file_powers if os.geteuid() == 0 else None
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True, preexec_fn=drop)
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot walk without root's file permissions here: {exc}")
    finally:
        (library / "locked").chmod(0o755)
    result = json.loads(out.stdout)
    assert result["files"] == [str(library / "open/a.jpg")]
    assert result["skipped"] == [[str(library / "locked"), "permission denied"]]
    # Photos under the unreadable folder are not taken for deleted; the open folder's are.
    assert result["covers"] == [False, True, False]


def test_content_hash_sees_every_byte(tmp_path: Path, photo: Path) -> None:
    copy = put(tmp_path, "copy.jpg", photo)
    assert hash_content(copy) == hash_content(photo)
    assert len(hash_content(photo)) == 32

    data = bytearray(os.urandom(300_000))
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    first = hash_content(big)
    for offset in (10, len(data) // 2, len(data) - 10):  # the head, the middle (an edit in place), the tail
        changed = bytearray(data)
        changed[offset] ^= 0xFF
        big.write_bytes(changed)
        assert hash_content(big) != first
    big.write_bytes(data + b"\0")
    assert hash_content(big) != first

    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert hash_content(empty) != hash_content(big)

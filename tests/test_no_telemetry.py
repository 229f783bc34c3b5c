"""assoc sends nothing anywhere: ONNX Runtime's own telemetry (1.29 and later, on Linux too) is switched
off before it loads (assoc.runtime), checked on real processes by what ONNX Runtime leaves in the cache
folder when it is on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import assoc_command

TELEMETRY_FOLDER = Path("Microsoft") / "DeveloperTools" / ".onnxruntime"  # ONNX Runtime's device id and events


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSOC_", "ORT_"))}
    return env | {"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"), "ASSOC_STANDBY": "0"}


def test_a_search_leaves_no_telemetry(tmp_path: Path, bundle_dir: Path, flickr8k: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-c", "import onnxruntime"], env=_env(bare), check=True)
    if not (bare / "cache" / TELEMETRY_FOLDER).exists():
        pytest.skip("this ONNX Runtime keeps no telemetry folder: nothing to tell apart")
    home = tmp_path / "home"
    photo = sorted((flickr8k / "images").glob("*.jpg"))[0]
    for command in (["localize", str(photo), "a dog", "--json"], ["info", "--json"]):
        done = subprocess.run([*assoc_command(), *command], env=_env(home), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert (home / "cache" / "assoc").is_dir()  # the processes ran ONNX Runtime and kept their own files
    assert not (home / "cache" / TELEMETRY_FOLDER).exists()


def test_the_users_own_setting_stays() -> None:
    switch = "os.environ['ORT_DISABLE_TELEMETRY']"
    code = f"import os; {switch} = '0'; import assoc.runtime; print({switch})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0"

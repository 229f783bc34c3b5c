"""Helpers for the CLI tests: run `assoc` in-process (Typer's CliRunner) or as a real process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from assoc.cli.app import app

# Wide enough that rich never folds a temporary path in a table.
RUNNER = CliRunner(env={"COLUMNS": "250", "ASSOC_GALLERY": None, "ASSOC_MODEL": None, "ASSOC_QDRANT_URL": None})
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def assoc(*args: str | Path) -> Result:
    """`assoc ARGS` in this process; an exception that escapes the app (a traceback) fails the test."""
    return RUNNER.invoke(app, [str(a) for a in args], catch_exceptions=False)


def strip_ansi(text: str) -> str:
    """Output drawn for a terminal (FORCE_COLOR=1) without its colour codes."""
    return ANSI.sub("", text)


def ok(*args: str | Path) -> Result:
    result = assoc(*args)
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def ok_json(*args: str | Path) -> Any:
    return json.loads(ok(*args, "--json").stdout)


def assert_one_line_error(result: Result | subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, exactly one line on stderr (starting 'assoc: error:'), no traceback, nothing on stdout."""
    code = result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code
    stderr, stdout = result.stderr, result.stdout
    assert code == 2, f"exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("assoc: error: "), stderr
    assert "Traceback" not in stderr and stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assoc_command() -> list[str]:
    """The installed console script, or the same entry point through this interpreter."""
    script = shutil.which("assoc", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-c", "from assoc.cli.app import main; main()"]


def run_process(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ASSOC_GALLERY", "ASSOC_MODEL", "ASSOC_QDRANT_URL")}
    return subprocess.run(
        [*assoc_command(), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "COLUMNS": "250"},
    )


def copy_photos(sources: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(src, folder / src.name)) for src in sources]


# What an indexed photo scores as its own query: MaxSim 1 and a global cosine of 1, mixed by any λ (up to
# float16 rounding of the stored vectors).
SELF_SCORE = 1.0

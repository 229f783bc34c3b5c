"""`assoc standby`: a process with assoc loaded that runs `query`, `localize` and `info` for the console
script, each in a fork of its own; checked with real processes, a real Unix socket and real photos
against the same commands run without it (ASSOC_STANDBY=0)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import assert_one_line_error, assoc_command, copy_photos, ok

from assoc.cli import standby_link, standby_server

pytestmark = pytest.mark.skipif(not standby_link.supported(), reason="standby needs Linux")
QUERY = "a dog runs on the grass"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path) -> tuple[Path, Path]:
    """Three real photos indexed with the shipped bundle: (gallery, one of the photos)."""
    root = tmp_path_factory.mktemp("standby")
    photos = copy_photos(sorted((flickr8k / "images").glob("*.jpg"))[:3], root / "library")
    ok("index", root / "library", "--gallery", root / "gallery", "--device", "cpu")
    return root / "gallery", photos[0]


@pytest.fixture()
def runtime_dir() -> Iterator[Path]:
    """A session runtime folder of this test's own (short: a socket's path is at most 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="sb-", dir="/tmp"))
    yield folder
    run(folder, "standby", "--stop")
    shutil.rmtree(folder, ignore_errors=True)


def run(folder: Path, *args: str | Path, standby: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSOC_")}
    env |= {"XDG_RUNTIME_DIR": str(folder), "COLUMNS": "250", "ASSOC_STANDBY": "1" if standby else "0"}
    return subprocess.run(
        [*assoc_command(), *(str(a) for a in args)], capture_output=True, text=True, timeout=120, env=env
    )


def status(folder: Path) -> dict | None:
    done = run(folder, "standby", "--status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["standing_by"]


def start(folder: Path, *args: str) -> dict:
    done = run(folder, "standby", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["standing_by"]


def test_served_commands_answer_as_fresh_processes_do(gallery: tuple[Path, Path], runtime_dir: Path) -> None:
    store, photo = gallery
    server = start(runtime_dir)
    assert Path(server["socket"]).parent == runtime_dir / "assoc" and server["served"] == 0
    assert (runtime_dir / "assoc").stat().st_mode & 0o777 == 0o700
    commands = [
        ("query", QUERY, "--gallery", store, "--json", "--device", "cpu"),
        ("query", QUERY, "--gallery", store, "-k", "2"),  # a table, as drawn for a pipe
        ("query", photo, "--gallery", store, "--paths-only"),
        ("localize", photo, "dog", "--json"),
        ("info", "--gallery", store, "--json"),
        ("query", QUERY, "--gallery", store.parent / "none", "--json"),  # an error: one line, exit 2
        ("query", "--gallery", store),  # a usage error
    ]
    for command in commands:
        served, here = run(runtime_dir, *command), run(runtime_dir, *command, standby=False)
        assert (served.returncode, served.stdout, served.stderr) == (here.returncode, here.stdout, here.stderr), command
    assert json.loads(run(runtime_dir, *commands[0]).stdout)[0]["path"]
    assert_one_line_error(run(runtime_dir, *commands[5]), "no gallery at")
    # the served ones were served, each in a child of the server; none was run without it
    assert status(runtime_dir)["served"] == len(commands) + 2
    assert status(runtime_dir)["pid"] == server["pid"]
    children = Path(f"/proc/{server['pid']}/task/{server['pid']}/children")
    assert children.read_text().split() == []  # every child reaped, none left a zombie


def test_commands_that_change_things_and_the_unserved_run_here(gallery: tuple[Path, Path], runtime_dir: Path) -> None:
    store, _ = gallery
    start(runtime_dir)
    assert run(runtime_dir, "check", "--gallery", store).returncode == 0
    assert run(runtime_dir, "--version").returncode == 0
    assert status(runtime_dir)["served"] == 0
    assert run(runtime_dir, "standby", "--json").returncode == 0  # already standing by: the same one
    assert status(runtime_dir)["served"] == 0


def test_stop_idle_and_a_killed_server(gallery: tuple[Path, Path], runtime_dir: Path) -> None:
    store, _ = gallery
    query = ("query", QUERY, "--gallery", store, "--json", "--device", "cpu")
    expected = run(runtime_dir, *query, standby=False).stdout
    server = start(runtime_dir)
    assert json.loads(run(runtime_dir, "standby", "--stop", "--json").stdout)["stopped"] == server["pid"]
    _gone(server["pid"])
    assert status(runtime_dir) is None and not Path(server["socket"]).exists()

    server = start(runtime_dir)
    os.kill(server["pid"], signal.SIGKILL)  # it leaves its socket behind, and nobody listening
    _gone(server["pid"])
    assert Path(server["socket"]).exists()
    assert run(runtime_dir, *query).stdout == expected  # run here
    assert status(runtime_dir) is None

    server = start(runtime_dir, "--idle", "1")  # over the stale socket
    assert run(runtime_dir, *query).stdout == expected
    _gone(server["pid"], within=20)
    assert status(runtime_dir) is None and not Path(server["socket"]).exists()


def test_ctrl_c_reaches_the_served_command(gallery: tuple[Path, Path], runtime_dir: Path) -> None:
    store, _ = gallery
    server = start(runtime_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSOC_")} | {"XDG_RUNTIME_DIR": str(runtime_dir)}
    client = subprocess.Popen(
        [*assoc_command(), "query", QUERY, "--gallery", str(store), "--json", "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    children = Path(f"/proc/{server['pid']}/task/{server['pid']}/children")
    deadline = time.monotonic() + 60
    while not (forked := children.read_text().split()) and time.monotonic() < deadline:
        pass
    child = int(forked[0])
    os.kill(child, signal.SIGSTOP)  # held where it is, so that the interrupt comes before the answer
    time.sleep(0.3)  # the client has its pid by now: it was sent before the child could run
    client.send_signal(signal.SIGINT)
    time.sleep(0.3)
    os.kill(child, signal.SIGCONT)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 130 and out == ""  # as a fresh process interrupted, wherever it was
    assert "interrupted" in err or "KeyboardInterrupt" in err


def test_a_folder_others_can_enter_is_not_used(gallery: tuple[Path, Path], runtime_dir: Path) -> None:
    store, _ = gallery
    (runtime_dir / "assoc").mkdir(mode=0o755)
    (runtime_dir / "assoc").chmod(0o755)
    assert_one_line_error(run(runtime_dir, "standby"), "not a private folder")
    done = run(runtime_dir, "query", QUERY, "--gallery", store, "--json")
    assert done.returncode == 0 and json.loads(done.stdout)


def test_a_server_whose_loaded_code_changed_is_stale(tmp_path: Path) -> None:
    module = tmp_path / "assoc_standby_probe.py"
    module.write_text("VALUE = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        __import__("assoc_standby_probe")
        loaded = standby_server.stamp()
        assert str(module) in loaded and standby_server.unchanged(loaded)
        module.write_text("VALUE = 22\n")  # an upgrade: other bytes
        assert not standby_server.unchanged(loaded)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("assoc_standby_probe", None)


def test_the_key_names_what_a_fresh_process_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    before = standby_link.server_key()
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "7")
    assert standby_link.server_key() != before
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    monkeypatch.setenv("ASSOC_GALLERY", "/elsewhere")  # read by the command itself, in the child
    assert standby_link.server_key() == before


def _gone(pid: int, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":  # ended, not yet reaped by its parent
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs")

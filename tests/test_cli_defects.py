"""The `assoc` command where it met a hostile setting: a Python without tomllib (3.10) or click, bad flags,
non-finite numbers, stdout that is full, closed or cannot encode a name, an --out that is the photo
itself, messages whose advice did not fit, help text eaten by rich markup, and colour that FORCE_COLOR
did not force. Real photos, real processes where the process is the point; nothing mocked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import assert_one_line_error, assoc, assoc_command, copy_photos, ok, run_process

NO_SPACE = "assoc: error: cannot write the output: No space left on device\n"


def python(
    code: str, *, env: dict[str, str] | None = None, stdout: object = subprocess.PIPE
) -> subprocess.CompletedProcess:
    """`python -c CODE` with this interpreter (the assoc under test importable), as text."""
    return subprocess.run(
        [sys.executable, "-c", code], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=180, env=env
    )


def process_env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ASSOC_GALLERY", "ASSOC_MODEL", "ASSOC_QDRANT_URL")}
    env["COLUMNS"] = "250"
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path) -> tuple[Path, Path]:
    """A gallery of three Flickr8k photos, one of them named café.jpg; (gallery, that photo)."""
    root = tmp_path_factory.mktemp("defects")
    sources = sorted((flickr8k / "images").glob("*.jpg"))[:3]
    copy_photos(sources[:2], root / "library")
    accented = Path(shutil.copyfile(sources[2], root / "library" / "caf\u00e9.jpg"))
    ok("index", root / "library", "--gallery", root / "gallery", "--device", "cpu")
    return root / "gallery", accented


@pytest.fixture()
def photo(tmp_path: Path, flickr8k: Path) -> Path:
    return copy_photos(sorted((flickr8k / "fullres").glob("*.jpg"))[:1], tmp_path / "photos")[0]


# 1. Python 3.10 has no tomllib: the CLI must start without it (and read TOML settings through tomli).


@pytest.mark.slow
def test_the_cli_starts_without_tomllib_or_tomli() -> None:
    code = (
        "import sys\n"
        "sys.modules['tomllib'] = sys.modules['tomli'] = None  # as on Python 3.10 before tomli is installed\n"
        "from assoc.cli.app import app\n"
        "for args in (['--help'], ['query', '--help'], ['train', '--help']):\n"
        "    try:\n"
        "        app(args, prog_name='assoc')\n"
        "    except SystemExit as done:\n"
        "        assert done.code in (0, None), (args, done.code)\n"
        "print('started')\n"
    )
    done = python(code, env=process_env())
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "Usage: assoc train" in done.stdout and done.stdout.rstrip().endswith("started")


@pytest.mark.slow
def test_toml_settings_are_read_through_tomli_where_there_is_no_tomllib(tmp_path: Path) -> None:
    settings = tmp_path / "run.toml"
    settings.write_text('epochs = 3\ntrunk = "efficientnet-lite1"\n', encoding="utf-8")
    code = (
        "import sys, tomllib\n"
        "sys.modules['tomli'] = tomllib  # tomli's API is tomllib's; it stands in for the 3.10 dependency\n"
        "sys.modules['tomllib'] = None\n"
        "from assoc.models.config import TrainConfig\n"
        f"config = TrainConfig.from_file({str(settings)!r})\n"
        "print(config.epochs, config.trunk)\n"
    )
    done = python(code, env=process_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "efficientnet-lite1"]


@pytest.mark.slow
def test_the_cli_starts_without_click() -> None:
    """Typer 0.2x carries its own click and no longer installs click: a search-only install has none."""
    code = "import sys\nsys.modules['click'] = None\nfrom assoc.cli.app import main\nsys.argv = ['assoc', '--help']\n"
    code += "main()\n"
    done = python(code, env=process_env())
    assert done.returncode == 0 and "Usage: assoc" in done.stdout, done.stderr


# 2. A bad flag or argument is one line on stderr, exit 2, naming it and pointing to --help.


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("query", "dog", "--frobnicate"), ("no such option: --frobnicate (see assoc query --help)",)),
        (("query",), ("missing argument 'QUERY'", "(see assoc query --help)")),
        (("query", "dog", "-k", "many"), ("'-k' / '--top'", "(see assoc query --help)")),
        (("query", "dog", "-k", "0"), ("'-k' / '--top'", "(see assoc query --help)")),
        (("localize",), ("missing argument 'IMG'", "(see assoc localize --help)")),
        (("index", "x", "--batch-size", "lots"), ("--batch-size", "(see assoc index --help)")),
        (("frobnicate",), ("no such command 'frobnicate'", "(see assoc --help)")),
        (("--frobnicate",), ("no such option: --frobnicate (see assoc --help)",)),
        (("vocab", "bundle", "--data", "captions", "--min-count", "0"), ("--min-count", "(see assoc vocab --help)")),
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    assert_one_line_error(assoc(*args), *fragments)


@pytest.mark.slow
def test_usage_errors_are_one_line_from_the_installed_command() -> None:
    done = run_process("query", "dog", "--frobnicate")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "assoc: error: no such option: --frobnicate (see assoc query --help)\n"


def test_bare_assoc_still_shows_the_help() -> None:
    result = assoc()
    assert "Usage: assoc" in result.stdout and "assoc: error" not in result.stderr


# 3. --min-score takes finite numbers only (the web API's min_score refuses the rest too).


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_min_score_must_be_finite(indexed: tuple[Path, Path], value: str) -> None:
    gallery, _ = indexed
    result = assoc("query", "dog", "--min-score", value, "--gallery", gallery, "--device", "cpu")
    assert_one_line_error(result, "'--min-score'", "finite number", "(see assoc query --help)")
    assert ok("query", "dog", "--min-score", "-1", "--gallery", gallery, "--device", "cpu", "--json").stdout


# 4. stdout that is full, closed, or cannot encode a name.


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize(
    "args", [("query", "dog"), ("query", "dog", "--json"), ("query", "dog", "--paths-only"), ("--help",)]
)
def test_a_full_stdout_is_one_error_line(indexed: tuple[Path, Path], args: tuple[str, ...]) -> None:
    gallery, _ = indexed
    where = ("--gallery", str(gallery), "--device", "cpu") if args[0] == "query" else ()
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [*assoc_command(), *args, *where], stdout=full, stderr=subprocess.PIPE, text=True, env=process_env()
        )
    assert (done.returncode, done.stderr) == (2, NO_SPACE)


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(indexed: tuple[Path, Path]) -> None:
    """`assoc query ... | head -1` where head has gone: no traceback, no message (Typer's exit 1)."""
    gallery, _ = indexed
    for args in (("query", "dog"), ("query", "dog", "--json"), ("--help",)):
        read, write = os.pipe()
        os.close(read)
        where = ("--gallery", str(gallery), "--device", "cpu") if args[0] == "query" else ()
        try:
            done = subprocess.run(
                [*assoc_command(), *args, *where], stdout=write, stderr=subprocess.PIPE, text=True, env=process_env()
            )
        finally:
            os.close(write)
        assert (done.returncode, done.stderr) == (1, ""), args


@pytest.mark.slow
def test_names_stdout_cannot_encode_are_escaped(indexed: tuple[Path, Path]) -> None:
    gallery, accented = indexed
    where = ("--gallery", gallery, "--device", "cpu")
    env = process_env(PYTHONIOENCODING="ascii")

    def run(*args: str | Path) -> subprocess.CompletedProcess:
        done = subprocess.run([*assoc_command(), *map(str, args)], capture_output=True, env=env, timeout=180)
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()
        return done

    assert b"caf\\xe9.jpg" in run("query", "dog", "-k", "3", *where).stdout  # as a table escapes an odd name
    hits = json.loads(run("query", "dog", "-k", "3", *where, "--json").stdout.decode("ascii"))  # still JSON
    assert str(accented) in {hit["path"] for hit in hits}
    assert os.fsencode(accented) in run("query", "dog", "-k", "3", *where, "--paths-only").stdout.splitlines()
    found = json.loads(run("localize", accented, "dog", "--json", "--device", "cpu").stdout)
    assert found["image"] == str(accented)


# 5. --out (or --per-word's sheet) that is the photo itself is refused, the photo untouched.


def test_out_that_is_the_photo_itself_is_refused(photo: Path, tmp_path: Path) -> None:
    original = photo.read_bytes()
    (tmp_path / "link.jpg").symlink_to(photo)
    os.link(photo, tmp_path / "hard.jpg")
    for out in (
        photo,
        photo.parent / ".." / photo.parent.name / photo.name,
        tmp_path / "link.jpg",
        tmp_path / "hard.jpg",
    ):
        result = assoc("localize", photo, "dog", "--out", out, "--device", "cpu")
        assert_one_line_error(result, "is the photo itself", "--out")
        assert photo.read_bytes() == original
    sheet_named = Path(shutil.copyfile(photo, tmp_path / "dog.words.png"))  # a JPEG, named as the sheet would be
    result = assoc("localize", sheet_named, "dog", "--out", tmp_path / "dog.png", "--per-word", "--device", "cpu")
    assert_one_line_error(result, "--per-word", "is the photo itself")
    assert sheet_named.read_bytes() == original and not (tmp_path / "dog.png").exists()
    ok("localize", sheet_named, "dog", "--out", tmp_path / "dog.png", "--device", "cpu")  # no sheet: no collision
    assert sheet_named.read_bytes() == original and (tmp_path / "dog.png").is_file()


# 6. Messages: the advice that fits, every word, and extras named literally in --help.


@pytest.mark.parametrize(
    ("out", "fragments"),
    [
        ("folder", ("is a folder", "overlay.png")),
        ("overlay", ("ending .png",)),
        ("overlay.xyz", ("ending .png",)),
        ("missing/overlay.png", ("no folder",)),
    ],
)
def test_out_that_cannot_be_written_says_what_to_give(
    photo: Path, tmp_path: Path, out: str, fragments: tuple[str, ...]
) -> None:
    (tmp_path / "folder").mkdir()
    result = assoc("localize", photo, "dog", "--out", tmp_path / out, "--device", "cpu")
    assert_one_line_error(result, "--out", *fragments)
    assert "unknown file extension" not in result.stderr


def test_vocab_messages_give_advice_about_vocab(tmp_path: Path, bundle_dir: Path, flickr8k: Path) -> None:
    copy = Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))
    result = assoc("vocab", copy, "--data", flickr8k, "--min-count", "1000000")
    assert_one_line_error(result, "at least 1000000 times", "--min-count")
    assert "--model" not in result.stderr
    result = assoc("vocab", tmp_path / "no-bundle", "--data", flickr8k)
    assert_one_line_error(result, "BUNDLE")
    assert "--model" not in result.stderr


@pytest.mark.slow
def test_heic_without_pillow_heif_names_the_extra(photo: Path, tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif", reason="making a HEIC photo needs pillow-heif")
    from PIL import Image

    pillow_heif.register_heif_opener()
    heic = tmp_path / "phone.heic"
    Image.open(photo).save(heic)
    code = (
        "import sys\n"
        "sys.modules['pillow_heif'] = None  # an install without assoc[heic]\n"
        f"sys.argv = ['assoc', 'localize', {str(heic)!r}, 'dog', '--device', 'cpu']\n"
        "from assoc.cli.app import main\n"
        "main()\n"
    )
    assert_one_line_error(python(code, env=process_env()), "phone.heic", "assoc[heic]")


def test_help_names_extras_literally() -> None:
    """Typer reads help as rich markup, where [ray] is a tag: `assoc[ray]` must not print as `assoc`."""
    assert "assoc[ray]" in ok("index", "--help").stdout


# 7. What README says holds.


@pytest.mark.slow
@pytest.mark.parametrize("term", [None, "xterm"])
def test_force_color_draws_in_truecolour(photo: Path, term: str | None) -> None:
    env = process_env(FORCE_COLOR="1", TERM=term, COLORTERM=None, NO_COLOR=None)
    done = subprocess.run(
        [*assoc_command(), "localize", str(photo), "dog", "--device", "cpu"], capture_output=True, env=env, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(b"\x1b[38;2;") > 100  # 24-bit colours, not 16 greys
    env["TERM"] = "xterm-256color"  # a TERM that names its depth keeps it
    done = subprocess.run(
        [*assoc_command(), "localize", str(photo), "dog", "--device", "cpu"], capture_output=True, env=env, timeout=180
    )
    assert b"\x1b[38;2;" not in done.stdout and b"\x1b[38;5;" in done.stdout


@pytest.mark.slow
def test_avif_opens_without_the_heic_extra(photo: Path, tmp_path: Path) -> None:
    from PIL import Image, features

    if not features.check("avif"):
        pytest.skip("this Pillow was built without AVIF")
    avif = tmp_path / "photo.avif"
    Image.open(photo).save(avif)
    code = (
        "import sys\n"
        "sys.modules['pillow_heif'] = None  # no assoc[heic]\n"
        f"sys.argv = ['assoc', 'localize', {str(avif)!r}, 'dog', '--json', '--device', 'cpu']\n"
        "from assoc.cli.app import main\n"
        "main()\n"
    )
    done = python(code, env=process_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["image"] == str(avif)


def test_serve_help_says_what_readme_says_about_loopback_and_tokens() -> None:
    shown = " ".join(ok("serve", "--help").stdout.split())
    assert "Loopback answers only requests addressed to localhost" in shown
    assert "every request, on loopback too" in shown

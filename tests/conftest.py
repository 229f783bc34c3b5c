"""Shared fixtures: real data from ../shared/data and a real model bundle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assoc.runtime.encoding.bundle import Bundle, load_bundle
from assoc.runtime.encoding.encoders import ImageEncoder

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ASSOC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA} (set ASSOC_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def flickr8k(shared_data: Path) -> Path:
    return shared_data / "flickr8k"


@pytest.fixture(scope="session")
def coco_boxes(shared_data: Path) -> Path:
    return shared_data / "coco-boxes"


@pytest.fixture(scope="session")
def bundle_dir() -> Path:
    """The model bundle that ships with assoc (package data of assoc.runtime)."""
    from assoc.api.settings import default_model_path

    path = default_model_path()
    if path is None:
        pytest.fail("no default bundle is shipped (runtime/default_bundle) and ASSOC_MODEL is unset")
    return path


@pytest.fixture(scope="session")
def bundle(bundle_dir: Path) -> Bundle:
    """The shipped bundle, loaded (and its hashes checked) once."""
    return load_bundle(bundle_dir)


@pytest.fixture(scope="session")
def encoder(bundle: Bundle) -> ImageEncoder:
    """The shipped bundle's image encoder on ONNX Runtime's CPU provider."""
    return ImageEncoder(bundle, device="cpu")


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201 - a Selenium driver, imported only where a test asks for one
    """A headless Chromium for the web app's browser tests (web_support.chromium skips where there is none)."""
    from web_support import chromium

    driver = chromium()
    yield driver
    driver.quit()

"""assoc: search your photos with words, and see where in each photo the words land.

The API in one breath (the README has a runnable example):

    with assoc.open(store=assoc.StoreSpec.builtin("~/gallery")) as searcher:
        searcher.index(["~/Pictures"], progress=lambda done, total: ...)
        for hit in searcher.search("a dog on grass", k=5):
            print(hit.score, hit.path)
        where = searcher.localize("~/Pictures/dog.jpg", "dog on grass")   # .peak, .words, .to_dict()
        facts = searcher.info().to_dict()

Importing assoc loads nothing heavy: each name below comes from its module the first time it is used
(`assoc.Searcher` loads numpy; Pillow loads with the first photo, ONNX Runtime with the first encoder),
so a command such as `assoc query --json` imports only what it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api.results import (
        BundleFacts,
        DuplicateGroup,
        DuplicatePhoto,
        Duplicates,
        Hit,
        IndexReport,
        Info,
        Localization,
        PhotoLabels,
        RegionLabel,
        RegionWord,
        RegionWords,
        StoreFacts,
        TermScore,
        WordLocalization,
    )
    from .api.searcher import IndexedPhoto, Searcher, open
    from .api.stores import StoreSpec
    from .runtime.errors import (
        AssocError,
        BundleError,
        DatabaseDamagedError,
        DeviceError,
        DiskFullError,
        GalleryBusyError,
        GalleryDamagedError,
        GalleryError,
        GalleryNotEmptyError,
        GalleryReadOnlyError,
        ImageLoadError,
        ModelMismatchError,
        NoGalleryError,
        QueryError,
        StoreConfigError,
    )
    from .runtime.search.filters import PhotoFilter
    from .runtime.stores.base import CheckReport, DamagedPhoto, PhotoRecord

__version__ = "0.1.0"

# Each public name and the module it lives in (imported by __getattr__ on first use).
_HOMES = {
    **dict.fromkeys(
        (
            "BundleFacts",
            "DuplicateGroup",
            "DuplicatePhoto",
            "Duplicates",
            "Hit",
            "IndexReport",
            "Info",
            "Localization",
            "PhotoLabels",
            "RegionLabel",
            "RegionWord",
            "RegionWords",
            "StoreFacts",
            "TermScore",
            "WordLocalization",
        ),
        ".api.results",
    ),
    **dict.fromkeys(("IndexedPhoto", "Searcher", "open"), ".api.searcher"),
    "PhotoFilter": ".runtime.search.filters",
    "StoreSpec": ".api.stores",
    **dict.fromkeys(
        (
            "AssocError",
            "BundleError",
            "DatabaseDamagedError",
            "DeviceError",
            "DiskFullError",
            "GalleryBusyError",
            "GalleryDamagedError",
            "GalleryError",
            "GalleryNotEmptyError",
            "GalleryReadOnlyError",
            "ImageLoadError",
            "ModelMismatchError",
            "NoGalleryError",
            "QueryError",
            "StoreConfigError",
        ),
        ".runtime.errors",
    ),
    **dict.fromkeys(("CheckReport", "DamagedPhoto", "PhotoRecord"), ".runtime.stores.base"),
}

__all__ = [
    "AssocError",
    "BundleError",
    "BundleFacts",
    "CheckReport",
    "DamagedPhoto",
    "DatabaseDamagedError",
    "DeviceError",
    "DiskFullError",
    "DuplicateGroup",
    "DuplicatePhoto",
    "Duplicates",
    "GalleryBusyError",
    "GalleryDamagedError",
    "GalleryError",
    "GalleryNotEmptyError",
    "GalleryReadOnlyError",
    "Hit",
    "ImageLoadError",
    "IndexedPhoto",
    "IndexReport",
    "Info",
    "Localization",
    "ModelMismatchError",
    "NoGalleryError",
    "PhotoFilter",
    "PhotoLabels",
    "PhotoRecord",
    "QueryError",
    "RegionLabel",
    "RegionWord",
    "RegionWords",
    "Searcher",
    "StoreConfigError",
    "StoreFacts",
    "StoreSpec",
    "TermScore",
    "WordLocalization",
    "open",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

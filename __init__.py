"""assoc: search your photos with words, and see where in each photo the words land.

The API in one breath (the README has a runnable example):

    with assoc.open(store=assoc.StoreSpec.builtin("~/gallery")) as searcher:
        searcher.index(["~/Pictures"], progress=lambda done, total: ...)
        for hit in searcher.search("a dog on grass", k=5):
            print(hit.score, hit.path)
        where = searcher.localize("~/Pictures/dog.jpg", "dog on grass")   # .peak, .words, .to_dict()
        facts = searcher.info().to_dict()

Importing assoc loads numpy and Pillow, not ONNX Runtime: encoders start on first use.
"""

from .api.results import (
    Hit,
    IndexReport,
    Info,
    Localization,
    PhotoLabels,
    RegionLabel,
    RegionWord,
    RegionWords,
    WordLocalization,
)
from .api.searcher import Searcher, open
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
    GalleryReadOnlyError,
    ImageLoadError,
    ModelMismatchError,
    NoGalleryError,
    QueryError,
    StoreConfigError,
)

__version__ = "0.1.0"

__all__ = [
    "AssocError",
    "BundleError",
    "DatabaseDamagedError",
    "DeviceError",
    "DiskFullError",
    "GalleryBusyError",
    "GalleryDamagedError",
    "GalleryError",
    "GalleryReadOnlyError",
    "Hit",
    "ImageLoadError",
    "IndexReport",
    "Info",
    "Localization",
    "ModelMismatchError",
    "NoGalleryError",
    "PhotoLabels",
    "QueryError",
    "RegionLabel",
    "RegionWord",
    "RegionWords",
    "Searcher",
    "StoreConfigError",
    "StoreSpec",
    "WordLocalization",
    "open",
]

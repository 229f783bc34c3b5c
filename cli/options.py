"""The options that say which model and which store a command works on, declared once.

`@searcher_options` adds --gallery, --model, --device, --store, --qdrant-url, --qdrant-path and
--collection to a command and hands it one `SearcherOptions` instead; `.open()` gives the
assoc.api Searcher they describe. Environment defaults are resolved by assoc.api.settings, not here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer

from ..api.settings import ENV_MODEL, ENV_QDRANT_URL
from ..api.stores import DEFAULT_COLLECTION, STORE_KINDS, StoreSpec
from ..runtime.encoding.devices import DEVICES

if TYPE_CHECKING:
    from ..api.searcher import Searcher

StoreKind = Enum("StoreKind", {kind: kind for kind in STORE_KINDS}, type=str)  # the API's kinds, for Typer


ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", help=f"Model bundle folder (default: ${ENV_MODEL}, else the bundle shipped with assoc)."),
]
# The choices are checked by assoc.runtime.encoding.providers (not imported here: it loads onnxruntime).
DeviceOpt = Annotated[str, typer.Option("--device", help=f"ONNX Runtime device: {' | '.join(DEVICES)}.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]

_STORE_PARAMS = {
    "gallery": (
        Annotated[
            Path | None,
            typer.Option(
                "--gallery",
                help="Gallery folder of the built-in store (default: $ASSOC_GALLERY, else the per-user data folder).",
                show_default=False,
            ),
        ],
        None,
    ),
    "model": (ModelOpt, None),
    "device": (DeviceOpt, "auto"),
    "store": (Annotated[StoreKind, typer.Option("--store", help="Where the patch grids live.")], StoreKind.builtin),
    "qdrant_url": (
        Annotated[
            str | None,
            typer.Option("--qdrant-url", help=f"Qdrant server, e.g. http://localhost:6333 (default ${ENV_QDRANT_URL})"),
        ],
        None,
    ),
    "qdrant_path": (
        Annotated[Path | None, typer.Option("--qdrant-path", help="Folder of an embedded Qdrant, not a server.")],
        None,
    ),
    "collection": (Annotated[str, typer.Option("--collection", help="Qdrant collection name.")], DEFAULT_COLLECTION),
}


@dataclass(frozen=True)
class SearcherOptions:
    """What the model and store options of one command said."""

    gallery: Path | None
    model: Path | None
    device: str
    store: StoreKind
    qdrant_url: str | None
    qdrant_path: Path | None
    collection: str

    @property
    def store_spec(self) -> StoreSpec:
        if self.store is StoreKind.qdrant:
            return StoreSpec.qdrant(self.qdrant_url, self.qdrant_path, self.collection)
        return StoreSpec.builtin(self.gallery)

    def open(self, *, rehash: bool = False) -> Searcher:
        """The Searcher; rehash: the bundle's files are hashed in full, not taken from the record of
        files verified before (assoc.runtime.encoding.bundle.VerifiedHashes)."""
        from ..api import settings
        from ..api.searcher import Searcher

        model = settings.resolve_bundle(self.model, rehash=True) if rehash else self.model
        return Searcher(model, self.store_spec, self.device)


def searcher_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give `command` the model and store options; it receives them as `target: SearcherOptions`."""
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=hint, default=default)
        for name, (hint, default) in _STORE_PARAMS.items()
    ]
    return with_options(command, added, "target", lambda values: SearcherOptions(**values))


def with_options(
    command: Callable[..., Any],
    added: list[inspect.Parameter],
    receiver: str,
    collect: Callable[[dict[str, Any]], Any],
) -> Callable[..., Any]:
    """A wrapper that Typer sees with `command`'s own parameters (less `receiver`) plus `added`.

    The added options' values are taken out of the call, turned into one value by `collect`, and
    passed to `command` as its keyword `receiver`: one declaration serves many commands.
    """
    hints = get_type_hints(command, include_extras=True)
    own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(command).parameters.values()]
    params = [p for p in own if p.name != receiver] + added

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {p.name: kwargs.pop(p.name) for p in added}
        return command(*args, **{receiver: collect(values)}, **kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # Typer must read the signature above, not the command's own
    return wrapper

"""`assoc vocab BUNDLE --data CAPTIONS`: give a model bundle a vocabulary, the words that name photo regions.

Torch-free: the words come from one split of a caption data set (any format `assoc train` reads), their
vectors from the bundle's own ONNX text encoder (assoc.export.vocabulary). The files go into
BUNDLE/vocabulary/ and are declared in its config.json; the bundle id does not change, so galleries
indexed with the bundle stay valid. Running it again replaces the vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..runtime.errors import AssocError, BundleError
from .options import DeviceOpt, JsonOpt


def vocab(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="Model bundle folder to add the vocabulary to.")],
    data: Annotated[
        Path, typer.Option("--data", help="Captions: a Flickr8k folder, Karpathy/COCO JSON, jsonl or csv.")
    ],
    split: Annotated[str, typer.Option("--split", help="Which split's captions to count.")] = "train",
    min_count: Annotated[int, typer.Option("--min-count", min=1, help="Keep words seen at least this often.")] = 5,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Add (or replace) a bundle's vocabulary: content words of its training captions, with their vectors."""
    from ..export.vocabulary import build_vocabulary
    from ..runtime.encoding.bundle import load_bundle

    try:
        declared = build_vocabulary(bundle, data, split=split, min_count=min_count, device=device)
    except OSError as exc:
        raise AssocError(f"cannot write the vocabulary into {bundle}: {exc.strerror or exc}") from None
    except BundleError as exc:  # BUNDLE is the argument here: the usual advice about --model does not apply
        raise AssocError(f"{exc}; give BUNDLE a complete model bundle folder (as `assoc export` writes)") from None
    bundle_id = load_bundle(bundle).bundle_id
    if as_json:
        facts = {"bundle": str(bundle), "bundle_id": bundle_id, "words": declared.count, **declared.built}
        typer.echo(json.dumps(facts))
        return
    typer.echo(
        f"{bundle}: vocabulary of {declared.count} words (seen at least {min_count} times in "
        f"{declared.built['captions']} {split} captions of {data}); bundle id {bundle_id}"
    )


def register(app: typer.Typer) -> None:
    app.command()(vocab)

"""`assoc ranking BUNDLE`: how a model bundle ranks photos (token weights and the fused global weight).

Torch-free (assoc.export.ranking). `--data CAPTIONS` weighs each token by its IDF over one split of a
caption set (a word in every caption counts least); `--uniform` weighs all tokens alike; `--global-weight`
sets λ of score = (1 − λ) · MISA + λ · cos(photo's global vector, query's sentence vector), 0 to 1 (1: the
global cosine alone, CLIP's own score for a converted bundle). Neither changes the bundle id: galleries
indexed with the bundle stay valid. Without options it prints the bundle's ranking.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..runtime.errors import AssocError, BundleError
from .options import JsonOpt


def ranking(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="Model bundle folder.")],
    data: Annotated[
        Path | None, typer.Option("--data", help="Captions to weigh tokens by (IDF): Flickr8k, JSON, jsonl, csv.")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Which split's captions to count.")] = "train",
    uniform: Annotated[bool, typer.Option("--uniform", help="Weigh every token alike (drop the table).")] = False,
    global_weight: Annotated[
        float | None,
        typer.Option(
            "--global-weight", min=0.0, max=1.0, help="λ of the fused score, 0 to 1 (0: plain MISA; 1: global cosine)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set (or show) how a bundle ranks: per-token weights and the fused global weight."""
    from ..export.ranking import caption_idf, write_ranking
    from ..runtime.encoding.bundle import load_bundle

    if data is not None and uniform:
        raise AssocError("give --data CAPTIONS (IDF weights) or --uniform, not both")
    try:
        current = load_bundle(bundle)
        table, captions = current.read_token_weights(), None
        if data is not None:
            table, captions = caption_idf(bundle, data, split)
        elif uniform:
            table = None
        weight = current.config.ranking.global_weight if global_weight is None else global_weight
        if data is not None or uniform or global_weight is not None:
            declared = write_ranking(bundle, table, weight)
        else:
            declared = current.config.ranking
    except OSError as exc:
        raise AssocError(f"cannot write the ranking into {bundle}: {exc.strerror or exc}") from None
    except BundleError as exc:  # BUNDLE is the argument here: the usual advice about --model does not apply
        raise AssocError(f"{exc}; give BUNDLE a complete model bundle folder (as `assoc export` writes)") from None
    weights = "IDF of captions" if declared.token_weights else "all tokens alike"
    if as_json:
        facts = {"bundle": str(bundle), "token_weights": declared.token_weights}
        facts["global_weight"] = declared.global_weight
        typer.echo(json.dumps({**facts, **({"captions": captions} if captions else {})}))
        return
    source = f" ({captions} {split} captions of {data})" if captions else ""
    typer.echo(f"{bundle}: token weights: {weights}{source}; global weight {declared.global_weight}")


def register(app: typer.Typer) -> None:
    app.command()(ranking)

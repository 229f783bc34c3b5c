"""`assoc train`, `export`, `eval` and `pointing`: the model's side. torch is imported only inside train,
export and checkpoint evaluation; bundle evaluation runs on ONNX Runtime."""

from __future__ import annotations

import importlib.util
import inspect
import json
from collections.abc import Callable
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, get_args, get_type_hints

import typer
from rich.console import Console
from rich.table import Table

from ..export.clip import DEFAULT_DENSE, DENSE_VARIANTS  # torch-free: the export's choices
from ..models.config import TrainConfig  # torch-free: the settings and their names
from ..runtime.errors import AssocError
from .options import DeviceOpt, with_options

_console = Console(stderr=True)


def _needs_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        raise AssocError("this command needs the training extras: pip install 'assoc[train]'")




def train_settings(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give `train` one option per TrainConfig field (--embed-dim for embed_dim, ...), derived from the
    dataclass so a new setting is a flag without a second declaration; set ones reach it as `overrides`."""
    hints = get_type_hints(TrainConfig)
    added = []
    for f in fields(TrainConfig):
        kind = next((t for t in get_args(hints[f.name]) if t is not type(None)), hints[f.name])
        option = typer.Option(f"--{f.name.replace('_', '-')}", help=f.metadata.get("help", ""), show_default=False)
        hint = Annotated[kind | None, option]
        added.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hint, default=None))
    return with_options(
        command, added, "overrides", lambda values: {k: v for k, v in values.items() if v is not None}
    )


@train_settings
def train(
    config: Annotated[Path | None, typer.Option(help="TOML or YAML file of settings; flags override it.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
    *,
    overrides: dict[str, Any],
) -> None:
    """Train a matchmap model on captioned photos; the best dev checkpoint is OUT/best.pt."""
    _needs_torch()
    from ..models.train import train as run_training

    try:
        settings = TrainConfig.from_file(config) if config else TrainConfig()
    except (OSError, ValueError) as exc:
        raise AssocError(f"cannot read settings {config}: {exc}") from None
    for name, value in overrides.items():
        setattr(settings, name, value)
    result = run_training(settings, resume=resume, console=_console)
    _console.print(f"best epoch {result.best_epoch}; checkpoint {result.out / 'best.pt'}")
    typer.echo(json.dumps({"best_epoch": result.best_epoch, "dev": result.best_metrics}))


ExportFrom = Enum("ExportFrom", {"assoc": "assoc", "open_clip": "open-clip"}, type=str)  # what `export` reads
DenseKind = Enum("DenseKind", {kind: kind for kind in DENSE_VARIANTS}, type=str)


def export(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            metavar="CHECKPOINT|ARCH",
            help="A checkpoint written by assoc train; with --from open-clip, an OpenCLIP architecture (ViT-B-32).",
        ),
    ],
    out: Annotated[Path | None, typer.Argument(help="New bundle folder (or --out).")] = None,
    quantize: Annotated[bool, typer.Option("--quantize", help="int8 text encoder.")] = False,
    parity_data: Annotated[
        Path | None, typer.Option(help="Folder of photos for the parity check (default: a few of DATA).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name recorded in config.json.")] = None,
    origin: Annotated[
        ExportFrom, typer.Option("--from", help="What CHECKPOINT|ARCH is: an assoc checkpoint, or OpenCLIP's.")
    ] = ExportFrom.assoc,
    pretrained: Annotated[
        str | None,
        typer.Option(
            "--pretrained",
            metavar="TAG_OR_FILE",
            help="--from open-clip: the weights, a file or one of ARCH's tags already in your open_clip cache"
            " (nothing is downloaded).",
        ),
    ] = None,
    dense: Annotated[
        DenseKind | None,
        typer.Option(
            "--dense",
            help=f"--from open-clip: patch vectors from the last block's output (plain) or its value path (value,"
            f" MaskCLIP-style). Default {DEFAULT_DENSE}: on eight published segmentation benchmarks CLIP's plain"
            " patch tokens average 14.1% mIoU, value-path variants of its last block up to 38.2% (SCLIP, ECCV"
            " 2024); assoc has not measured either.",
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size",
            help="--from open-clip: input side in pixels, a multiple of the patch size (position embeddings"
            " interpolated): a finer grid.",
        ),
    ] = None,
    out_option: Annotated[Path | None, typer.Option("--out", help="New bundle folder.")] = None,
) -> None:
    """Export a checkpoint to an ONNX model bundle and check it against PyTorch; with --from open-clip,
    an OpenCLIP model (per-patch and per-word vectors plus CLIP's own image and sentence embeddings)."""
    if (out is None) == (out_option is None):
        raise AssocError("give the new bundle folder once: OUT or --out DIR")
    out = out if out is not None else out_option
    if origin is ExportFrom.open_clip:
        _export_open_clip(str(checkpoint), out, pretrained, dense, image_size, quantize, parity_data, name)
        return
    if pretrained is not None or dense is not None or image_size is not None:
        raise AssocError("--pretrained, --dense and --image-size go with --from open-clip")
    _needs_torch()
    from ..export.bundle_export import export_bundle
    from ..export.parity import measure_parity
    from ..models.model import load_checkpoint

    if not checkpoint.is_file():
        raise AssocError(f"checkpoint not found: {checkpoint}")
    try:
        export_bundle(checkpoint, out, name)
    except FileExistsError as exc:
        raise AssocError(str(exc)) from None
    model, _ = load_checkpoint(checkpoint)
    photos = _parity_photos(parity_data or Path(model.config.data))
    captions = ["a dog runs across the grass", "two children play on the beach ."]
    parity = measure_parity(model, out, photos, captions)
    _console.print(
        f"parity on {len(photos)} photos: visual max |diff| {parity.visual_max_abs:.2e}, "
        f"textual {parity.textual_max_abs:.2e}"
    )
    try:
        parity.check(visual_bound=1e-3, textual_bound=1e-3)
    except AssertionError as exc:
        raise AssocError(str(exc)) from None
    if quantize:
        from ..export.quantize import quantize_textual

        size = quantize_textual(out)
        quantized = measure_parity(model, out, photos, captions)
        _console.print(f"int8 text encoder: {size / 1e6:.1f} MB, max |diff| {quantized.textual_max_abs:.2e}")
    typer.echo(str(out))


def _export_open_clip(
    arch: str,
    out: Path,
    pretrained: str | None,
    dense: Enum | None,
    image_size: int | None,
    quantize: bool,
    parity_data: Path | None,
    name: str | None,
) -> None:
    """`assoc export --from open-clip ARCH --pretrained TAG_OR_FILE --out DIR` (assoc.export.clip)."""
    _needs_torch()
    if importlib.util.find_spec("open_clip") is None:
        raise AssocError("--from open-clip needs the clip extras: pip install 'assoc[clip]'")
    if pretrained is None:
        raise AssocError("--from open-clip needs --pretrained TAG_OR_FILE: a weights file, or a tag in your cache")
    if quantize:
        raise AssocError("--quantize is for assoc checkpoints: a converted CLIP bundle keeps float32, to rank as CLIP")
    from ..export.clip.bundle import export_open_clip

    photos = _parity_photos(parity_data) if parity_data is not None else []
    result = export_open_clip(
        arch,
        pretrained,
        out,
        dense=dense.value if dense is not None else DEFAULT_DENSE,
        image_size=image_size,
        name=name,
        parity_photos=photos,
    )
    checked = f"{len(photos)} photos" if photos else "noise images"
    _console.print(f"parity with open_clip on {checked}, max |diff|: {result.parity.summary()}")
    typer.echo(str(out))


def _parity_photos(folder: Path, count: int = 4) -> list[Path]:
    from ..runtime.imaging.images import PHOTO_SUFFIXES

    for candidate in (folder / "images", folder):
        if candidate.is_dir():
            photos = sorted(p for p in candidate.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)[:count]
            if photos:
                return photos
    raise AssocError(f"no photos for the parity check in {folder}; pass --parity-data DIR")


def evaluate(
    data: Annotated[Path, typer.Option(help="Flickr8k-layout folder (or other caption source).")],
    split: Annotated[str, typer.Option(help="Split to evaluate, e.g. dev.")] = "dev",
    model: Annotated[Path | None, typer.Option(help="Bundle folder (default: the shipped bundle).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Evaluate a torch checkpoint instead.")] = None,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Recall@1/5/10 and median rank, both directions, 5 captions per image."""
    from ..models.datasets import five_caption_eval_set, load_split

    items, report = load_split(data, split)
    eval_set = five_caption_eval_set(items)
    if not eval_set.images:
        raise AssocError(f"{data} split {split!r} has no image with 5 captions")
    if not as_json:
        _console.print(f"{split}: {report.summary()}")
    if checkpoint is not None:
        _needs_torch()
        from ..models.evaluate import evaluate as evaluate_checkpoint
        from ..models.model import load_checkpoint

        if not checkpoint.is_file():
            raise AssocError(f"checkpoint not found: {checkpoint}")
        torch_model, _ = load_checkpoint(checkpoint)
        result = evaluate_checkpoint(torch_model, *eval_set)
    else:
        from ..api.settings import resolve_bundle
        from ..evaluation.retrieval import evaluate_bundle

        result = evaluate_bundle(resolve_bundle(model), *eval_set, device=device)
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"{data} · {split}: {result['images']} images, {result['captions']} captions")
    table.add_column("direction")
    for key in ("R@1", "R@5", "R@10", "median_rank"):
        table.add_column(key, justify="right")
    for direction in ("text_to_image", "image_to_text"):
        row = result[direction]
        table.add_row(direction.replace("_", " "), *(f"{row[k]:g}" for k in ("R@1", "R@5", "R@10", "median_rank")))
    Console().print(table)


def pointing(
    data: Annotated[Path, typer.Argument(help="Folder with manifest.json of photos and object boxes (COCO).")],
    model: Annotated[Path | None, typer.Option(help="Bundle folder (default: the shipped bundle).")] = None,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Pointing game: how often a category's heatmap peak lands in a box of it, against the centre point."""
    from ..api.settings import resolve_bundle
    from ..evaluation.pointing import pointing_game

    result = pointing_game(resolve_bundle(model), data, device).to_dict()
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(
        f"pointing game on {result['trials']} (photo, category) pairs, {result['categories']} categories: "
        f"localize's peak {result['hit_rate']}%, the gallery grid's {result['gallery_grid_hit_rate']}%,"
        f" the centre point {result['centre_baseline']}%"
    )


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(export)
    app.command("eval")(evaluate)
    app.command()(pointing)

"""The training loop: frozen parts cached once, trainable tops trained with a ranking loss.

An epoch shows every training image once, each with one of its captions drawn at random, so a batch
never holds the same image twice (which would make a true pair an "impostor").
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ..runtime.scoring.token_weights import idf_weights
from .augment import flipped_view, swap_sides
from .config import LOCALIZE_SCALE, TrainConfig
from .datasets import five_caption_eval_set, load_split
from .evaluate import evaluate_features, prepare_eval
from .features import image_features, text_features
from .model import MatchmapModel, load_checkpoint, save_checkpoint


@dataclass
class TrainResult:
    best_epoch: int
    best_metrics: dict[str, Any]
    out: Path


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def selection_score(metrics: dict[str, Any]) -> float:
    """Model selection on dev: the sum of the six recalls."""
    return sum(metrics[d][k] for d in ("text_to_image", "image_to_text") for k in ("R@1", "R@5", "R@10"))


def train(config: TrainConfig, resume: bool = False, console: Console | None = None) -> TrainResult:
    console = console or Console(stderr=True)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    device = pick_device(config.device)

    train_items, report = load_split(Path(config.data), config.train_split)
    console.print(f"train ({config.train_split}): {report.summary()}")
    dev_items, dev_report = load_split(Path(config.data), config.dev_split)
    console.print(f"dev ({config.dev_split}): {dev_report.summary()}")
    train_items = train_items[: config.limit_images] if config.limit_images else train_items
    dev_images, dev_captions, dev_index = five_caption_eval_set(dev_items)
    if config.limit_dev_images:
        n = config.limit_dev_images
        keep = [i for i, img in enumerate(dev_index) if img < n]
        dev_images, dev_captions, dev_index = dev_images[:n], [dev_captions[i] for i in keep], dev_index[: len(keep)]

    model = MatchmapModel(config)
    console.print(f"image trunk {config.trunk}: weights {model.trunk_weights_source}")
    console.print(f"text model: {model.text_model_path}")
    cache_dir = Path(config.cache) if config.cache else out / "cache"

    paths = [item.image for item in train_items]
    captions = [c for item in train_items for c in item.captions]
    first_caption = np.concatenate([[0], np.cumsum([len(item.captions) for item in train_items])])
    with _progress(console) as progress:
        views = 1 + config.augment_views
        total = (views + config.fine_views) * len(paths) + len(dev_images)
        task = progress.add_task("caching image features", total=total, info="")
        img_feats = torch.stack(
            [
                image_features(model, paths, cache_dir, view=v, on_batch=lambda n: progress.advance(task, n))
                for v in range(views)
            ]
        )  # (views, N, C, h, w)
        fine_size = LOCALIZE_SCALE * config.image_size
        fine_feats = [  # augmented views at localize's size, numbered after the others: (fine, N, C, 2h, 2w)
            image_features(
                model, paths, cache_dir, view=views + v, size=fine_size, on_batch=lambda n: progress.advance(task, n)
            )
            for v in range(config.fine_views)
        ]
        dev = prepare_eval(
            model, dev_images, dev_captions, dev_index, cache_dir, on_batch=lambda n: progress.advance(task, n)
        )
        progress.update(task, completed=total)
    mirrored = torch.tensor([flipped_view(v, config.flip_views) for v in range(views)])
    captions, mirror_row = with_sides_swapped(captions) if bool(mirrored.any()) else (captions, None)
    tokens, txt_feats = text_features(model, captions, cache_dir)
    attention = torch.from_numpy(tokens.attention_mask)
    word_mask = torch.from_numpy(tokens.word_mask)
    input_ids = torch.from_numpy(tokens.input_ids)
    if config.token_weights == "idf":  # from the captions as written (a swapped copy would count twice)
        ids = (tokens.input_ids[row][tokens.word_mask[row]] for row in range(int(first_caption[-1])))
        model.token_weight.copy_(torch.from_numpy(idf_weights(ids, len(model.token_weight))))

    model.to(device)
    optimizer = torch.optim.AdamW(model.parameter_groups(), weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(paths) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config.warmup_steps, total_steps))
    start_epoch, best, best_epoch = 0, -1.0, -1
    best_metrics: dict[str, Any] = {}
    if resume and (out / "last.pt").is_file():
        _, state = load_checkpoint(out / "last.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start_epoch, best, best_epoch = state["epoch"] + 1, state["best"], state["best_epoch"]
        best_metrics = state.get("best_metrics", {})
        torch.set_rng_state(state["rng"])
        console.print(f"resumed from {out / 'last.pt'} at epoch {start_epoch}")
    use_amp = device.type == "cuda"
    log_path = out / "log.jsonl"

    for epoch in range(start_epoch, config.epochs):
        model.train()
        model.loss.margin_active = epoch >= config.margin_warmup
        order = torch.randperm(len(paths))
        seen, loss_sum, started, fine_batches = 0, 0.0, time.perf_counter(), 0
        with _progress(console) as progress:
            task = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=len(paths), info="")
            for step in range(steps_per_epoch):
                idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                rows = idx.numpy()
                counts = torch.from_numpy(first_caption[rows + 1] - first_caption[rows])
                cap = torch.from_numpy(first_caption[rows]) + (torch.rand(len(idx)) * counts).long()
                if fine_feats and float(torch.rand(())) < len(fine_feats) / (views + len(fine_feats)):
                    feats = fine_feats[int(torch.randint(len(fine_feats), ()))][idx]  # a batch of one size
                    fine_batches += 1
                else:
                    view = torch.randint(views, (len(idx),))
                    feats = img_feats[view, idx]
                    if mirror_row is not None:  # a mirrored view is told its caption with left and right swapped
                        cap = torch.where(mirrored[view], mirror_row[cap], cap)
                width = int(attention[cap].sum(1).max())
                with torch.autocast(device.type, enabled=use_amp):
                    grids = model.image.from_features(feats.to(device).float())
                    words = model.text.from_features(
                        txt_feats[cap, :width].to(device).float(), attention[cap, :width].to(device)
                    )
                    scoring = drop_words(word_mask[cap, :width], config.word_dropout)
                    ids = input_ids[cap, :width].to(device)
                    weights = model.weigh(ids, scoring.to(device))
                    loss = model.objective(grids, words, weights, ids)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                seen += len(idx)
                loss_sum += loss.item() * len(idx)
                rate = seen / (time.perf_counter() - started)
                info = f"loss {loss_sum / seen:.4f}  {rate:.0f} pairs/s"
                progress.update(task, advance=len(idx), info=info)
                if not console.is_terminal and step % 10 == 0:
                    console.print(f"epoch {epoch + 1} step {step}/{steps_per_epoch}: {info}")
        row: dict[str, Any] = {"epoch": epoch + 1, "loss": loss_sum / seen}
        if fine_feats:
            row["fine_batches"] = fine_batches
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            metrics = evaluate_features(model, dev)
            row["dev"] = metrics
            if selection_score(metrics) > best:
                best, best_epoch, best_metrics = selection_score(metrics), epoch + 1, metrics
                save_checkpoint(out / "best.pt", model, {"epoch": epoch, "dev": metrics, "data": str(config.data)})
        console.print(_epoch_line(row))
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        save_checkpoint(
            out / "last.pt",
            model,
            {
                "epoch": epoch,
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "best": best,
                "best_epoch": best_epoch,
                "best_metrics": best_metrics,
                "rng": torch.get_rng_state(),
                "data": str(config.data),
            },
        )
    return TrainResult(best_epoch, best_metrics, out)


def with_sides_swapped(captions: list[str]) -> tuple[list[str], torch.Tensor]:
    """The captions, then a left/right-swapped copy of each that names a side; and for every caption the
    row of its swapped version (its own row when it names no side)."""
    rows = torch.arange(len(captions))
    extra: list[str] = []
    for i, caption in enumerate(captions):
        swapped = swap_sides(caption)
        if swapped != caption:
            rows[i] = len(captions) + len(extra)
            extra.append(swapped)
    return captions + extra, rows


def drop_words(word_mask: torch.Tensor, rate: float) -> torch.Tensor:
    """word_mask (B, L) with each scoring token left out with probability `rate`; a caption that would
    lose them all keeps its mask whole."""
    if rate <= 0:
        return word_mask
    kept = word_mask & (torch.rand(word_mask.shape) >= rate)
    empty = ~kept.any(dim=1, keepdim=True)
    return torch.where(empty, word_mask, kept)


def _epoch_line(row: dict[str, Any]) -> str:
    line = f"epoch {row['epoch']}: loss {row['loss']:.4f}"
    if "dev" in row:
        t2i, i2t = row["dev"]["text_to_image"], row["dev"]["image_to_text"]
        line += (
            f"  dev text->image R@1/5/10 {t2i['R@1']}/{t2i['R@5']}/{t2i['R@10']}"
            f"  image->text {i2t['R@1']}/{i2t['R@5']}/{i2t['R@10']}"
        )
    return line


def _warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
    )

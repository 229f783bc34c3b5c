"""Which OpenCLIP model to export: the architecture, its weights and its preprocessing.

--pretrained is a file, or one of open_clip's tags for the architecture, found only where open_clip
would have downloaded it before (the Hugging Face hub cache, ~/.cache/clip): nothing is fetched. Only
the architectures the graphs know are taken (open_clip's own ViT image tower, its causal text tower and
CLIP's tokenizer); anything else is refused in one line before a model is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...runtime.encoding.bundle import MAX_INPUT_SIDE
from ...runtime.errors import AssocError
from ..quantize import _quiet_root_logger

OPENAI_CACHE = Path("~/.cache/clip")  # where open_clip keeps weights it downloads from a URL
SUPPORTED = (
    "assoc exports OpenCLIP's own ViT image towers with CLIP's text tower and tokenizer (e.g. ViT-B-32, ViT-B-16)"
)


@dataclass(frozen=True)
class ClipSource:
    """An open_clip model ready to export, and what the bundle must record of it."""

    arch: str
    pretrained: str | None  # as given: a tag, a file, or None (random weights, for tests)
    checkpoint: Path | None  # the weights file read (None: random weights)
    model: Any  # open_clip CLIP / CustomTextCLIP, eval mode
    tokenizer: Any  # open_clip SimpleTokenizer
    image_size: int
    patch_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    quick_gelu: bool

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side

    @property
    def context_length(self) -> int:
        return int(self.tokenizer.context_length)


def load_open_clip(arch: str, pretrained: str | None, image_size: int | None = None, seed: int = 0) -> ClipSource:
    """Build the model (random weights with `seed` when pretrained is None); every refusal is one AssocError."""
    import open_clip
    import torch

    config = open_clip.get_model_config(arch)
    if config is None:
        raise AssocError(
            f"unknown OpenCLIP architecture {arch!r}; open_clip.list_models() names them (e.g. ViT-B-32, ViT-B-16)"
        )
    _check_config(arch, config)
    patch = int(config["vision_cfg"]["patch_size"])
    if image_size is not None and not (patch <= image_size <= MAX_INPUT_SIDE and image_size % patch == 0):
        raise AssocError(
            f"--image-size {image_size}: {arch} needs a multiple of its {patch}-pixel patches, up to {MAX_INPUT_SIDE}"
        )
    checkpoint, tag = _weights(arch, pretrained) if pretrained is not None else (None, {})
    preprocess = {k: tag[k] for k in ("mean", "std") if k in tag}
    quick_gelu = bool(tag.get("quick_gelu", False)) or bool(config.get("quick_gelu", False))
    torch.manual_seed(seed)
    with _quiet_root_logger():  # open_clip logs "initialized randomly", resized positions: the export reports
        try:
            model = open_clip.create_model(
                arch,
                pretrained=str(checkpoint) if checkpoint is not None else None,
                force_quick_gelu=quick_gelu,
                force_image_size=image_size,
                force_preprocess_cfg=preprocess or None,
            )
        except Exception as exc:  # torch.load and load_state_dict raise many kinds; each is one line here
            if checkpoint is None:
                raise
            if isinstance(exc, RuntimeError) and "state_dict" in str(exc):
                raise AssocError(f"{checkpoint} is not a {arch} checkpoint ({_first_problem(exc)})") from None
            reason = "not a PyTorch or safetensors file of weights" if _unpickling(exc) else _one_line(exc)
            raise AssocError(f"{checkpoint} cannot be read as an open_clip checkpoint ({reason})") from None
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    _check_model(arch, model, tokenizer)
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = model.visual.image_size
    if size[0] != size[1]:
        raise AssocError(f"{arch} takes {size[0]}x{size[1]} inputs; assoc exports square ones (--image-size)")
    return ClipSource(
        arch=arch,
        pretrained=pretrained,
        checkpoint=checkpoint,
        model=model,
        tokenizer=tokenizer,
        image_size=int(size[0]),
        patch_size=patch,
        mean=tuple(float(x) for x in cfg["mean"]),
        std=tuple(float(x) for x in cfg["std"]),
        quick_gelu=quick_gelu,
    )


def _check_config(arch: str, config: dict[str, Any]) -> None:
    """Refuse, from the architecture's config alone, what the graphs do not know (nothing is built)."""
    vision, text = config.get("vision_cfg", {}), config.get("text_cfg", {})
    problems = []
    if "timm_model_name" in vision:
        problems.append(f"its image tower is timm's {vision['timm_model_name']}")
    elif isinstance(vision.get("layers"), (list, tuple)):
        problems.append("its image tower is a ResNet")
    if "hf_model_name" in text or "hf_tokenizer_name" in text or "siglip" in arch.lower():
        problems.append(
            "its text tower or tokenizer comes from the Hugging Face hub, which an offline export cannot read"
        )
    if "multimodal_cfg" in config or vision.get("attentional_pool") or text.get("embed_cls"):
        problems.append("it pools by attention (CoCa)")
    if text.get("no_causal_mask") or text.get("pool_type", "argmax") != "argmax":
        problems.append("its text tower is not CLIP's causal one")
    kwargs = text.get("tokenizer_kwargs", {})
    if kwargs.get("clean", "lower") != "lower" or kwargs.get("reduction_mask"):
        problems.append("its tokenizer cleans text another way than CLIP's")
    if problems:
        raise AssocError(f"{arch}: {'; '.join(problems)}; {SUPPORTED}")


def _check_model(arch: str, model: Any, tokenizer: Any) -> None:
    """What the built model must be for the graphs (assoc.export.clip.graphs) to compute it exactly."""
    from open_clip import SimpleTokenizer
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    visual = model.visual
    text = getattr(model, "text", model)
    problems = []
    if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None:
        problems.append("its image tower is not a plain ViT")
    elif not all(isinstance(block, ResidualAttentionBlock) for block in visual.transformer.resblocks):
        problems.append("its ViT blocks are not standard attention blocks")
    if getattr(text, "attn_mask", None) is None or getattr(text, "cls_emb", None) is not None:
        problems.append("its text tower is not CLIP's causal one")
    if not isinstance(tokenizer, SimpleTokenizer):
        problems.append("its tokenizer is not CLIP's")
    if problems:
        raise AssocError(f"{arch}: {'; '.join(problems)}; {SUPPORTED}")


def _weights(arch: str, pretrained: str) -> tuple[Path, dict[str, Any]]:
    """The weights file for --pretrained and the tag's settings ({} for a file)."""
    import open_clip

    path = Path(pretrained).expanduser()
    if path.is_file():
        return path, {}
    tag = open_clip.get_pretrained_cfg(arch, pretrained)
    if not tag:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        known = ", ".join(tags[:6]) + (f" and {len(tags) - 6} more" if len(tags) > 6 else "") if tags else "none"
        raise AssocError(f"--pretrained {pretrained}: no such file, and not a tag of {arch} (its tags: {known})")
    found, looked = _cached(tag)
    if found is None:
        raise AssocError(
            f"--pretrained {pretrained}: the {arch} weights of that tag are not in the local cache ({looked});"
            " assoc never downloads: fetch them once with open_clip, or pass the weights file"
        )
    return found, tag


def _cached(tag: dict[str, Any]) -> tuple[Path | None, str]:
    """Where open_clip would have stored a tag's weights, if they are there; and where that was looked for."""
    from huggingface_hub import constants, try_to_load_from_cache
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    looked = []
    if tag.get("hf_hub"):  # "org/repo/" (open_clip's default file names) or "org/repo/file"
        repo, filename = os.path.split(tag["hf_hub"])
        stem, suffix = os.path.splitext(filename)
        if not filename:
            names = [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        else:
            names = [stem + ".safetensors", filename] if suffix in (".bin", ".pth") else [filename]
        for name in names:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found), ""
        looked.append(f"{repo} in {constants.HF_HUB_CACHE}")
    if tag.get("url"):
        candidate = OPENAI_CACHE.expanduser() / os.path.basename(tag["url"])
        if candidate.is_file():
            return candidate, ""
        looked.append(str(candidate))
    return None, "; ".join(looked)


def _first_problem(exc: BaseException) -> str:
    """The first line of torch's load_state_dict report that names a key ("size mismatch for ...")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next(
        (line for line in lines if "size mismatch" in line or "Missing key" in line), lines[0] if lines else ""
    )
    return detail.rstrip(".")[:300]


def _unpickling(exc: BaseException) -> bool:
    """torch.load's answer to a file that is no pickle or archive of tensors at all."""
    import pickle

    return isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in str(exc)


def _one_line(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]

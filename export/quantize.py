"""int8 dynamic quantisation of a bundle's text encoder (weights int8, activations quantised on the fly)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..runtime.encoding.bundle import TEXTUAL_MODEL, load_bundle, write_config
from .vocabulary import refresh_vocabulary


def quantize_textual(bundle_dir: Path) -> int:
    """Replace textual/model.onnx by its int8 form in place; return the new size in bytes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    bundle = load_bundle(bundle_dir)
    target = bundle.textual_path
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model.onnx"
        with _quiet_root_logger():
            quantize_dynamic(
                str(target),
                str(staged),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul", "Gather"],
                per_channel=True,
            )
        staged.replace(target)
    config = bundle.config
    textual = config.textual.__class__(**{**config.textual.__dict__, "quantized": True})
    write_config(Path(bundle_dir), config.__class__(**{**config.__dict__, "textual": textual}))
    refresh_vocabulary(Path(bundle_dir))  # its vectors came from the text encoder just replaced
    return (Path(bundle_dir) / TEXTUAL_MODEL).stat().st_size


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantizer warns on the root logger that shape pre-processing was skipped. Dynamic quantisation
    of MatMul/Gather weights does not need it, and the parity and recall checks measure the result."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)

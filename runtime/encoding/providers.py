"""Choosing an ONNX Runtime execution provider without error spam on machines that lack one."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from ..errors import BundleError, DeviceError
from .devices import DEVICES, PROVIDERS


def open_session(model: Path, device: str = "auto", threads: int | None = None) -> ort.InferenceSession:
    """An InferenceSession on the asked device.

    'auto' uses CUDA only when a session really starts on it: onnxruntime-gpu lists the CUDA provider
    even where the CUDA libraries are missing, logs errors, then falls back. The probe runs with the
    logger silenced and looks at the providers the session actually got.
    """
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}", device)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Worker threads that spin after a run take the cores from the numpy work that follows it (scoring,
    # the next decode): on 2 busy cores turning it off measured encoder 115 -> 84 ms, naming 163 -> 49 ms.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    available = ort.get_available_providers()
    wanted = ["cuda"] if device == "auto" else [device] if device != "cpu" else []
    for name in wanted:
        provider = PROVIDERS[name]
        if provider not in available:
            if device == "auto":
                continue
            raise DeviceError(f"device {name}: this onnxruntime build has no {provider}", name)
        session = _quiet_session(model, options, [provider, "CPUExecutionProvider"])
        if session is not None and provider in session.get_providers():
            return session
        if device != "auto":
            _cpu_session(model, options)  # a model that does not load at all is the bundle's fault
            raise DeviceError(f"device {name}: {provider} did not start (are its libraries installed?)", name)
    return _cpu_session(model, options)


def _cpu_session(model: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    """A CPU session; a model file ONNX Runtime cannot load (garbled, truncated, an unknown operator)
    is a BundleError, whatever its recorded hash says."""
    try:
        return ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped-by-hierarchy errors
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        reason = reason.rsplit(" : ", 1)[-1][:200]  # past "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF"
        raise BundleError(f"{model}: ONNX Runtime cannot load this model ({reason})") from None


def _quiet_session(model: Path, options: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession | None:
    ort.set_default_logger_severity(4)
    try:
        return ort.InferenceSession(str(model), sess_options=options, providers=providers)
    except Exception:  # noqa: BLE001 - any failure to start on the accelerator means: not usable
        return None
    finally:
        ort.set_default_logger_severity(2)

"""Choosing an ONNX Runtime execution provider without error spam on machines that lack one, and keeping
a model's optimised graph so that a new process need not optimise it again."""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from contextlib import suppress
from pathlib import Path

import onnxruntime as ort

from ..errors import BundleError, DeviceError
from .devices import DEVICES, PROVIDERS

OPTIMIZED_FOLDER = "optimized-models"  # in the per-user cache folder (platformdirs user_cache_dir)


def open_session(
    model: Path, device: str = "auto", threads: int | None = None, *, keep_optimized: str | None = None
) -> ort.InferenceSession:
    """An InferenceSession on the asked device.

    'auto' uses CUDA only when a session really starts on it: onnxruntime-gpu lists the CUDA provider
    even where the CUDA libraries are missing, logs errors, then falls back. The probe runs with the
    logger silenced and looks at the providers the session actually got; without the NVIDIA driver it
    is not run at all (_cuda_driver_loads).

    keep_optimized names the model (a key that changes with its bytes): a CPU session then keeps its
    optimised graph in the per-user cache folder and later sessions load that, unoptimised
    (_kept_session).
    """
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}", device)
    options = _options(threads)
    available = ort.get_available_providers()
    wanted = ["cuda"] if device == "auto" else [device] if device != "cpu" else []
    for name in wanted:
        provider = PROVIDERS[name]
        if provider not in available:
            if device == "auto":
                continue
            raise DeviceError(f"device {name}: this onnxruntime build has no {provider}", name)
        may_start = name != "cuda" or _cuda_driver_loads()
        session = _quiet_session(model, options, [provider, "CPUExecutionProvider"]) if may_start else None
        if session is not None and provider in session.get_providers():
            return session
        if device != "auto":
            _cpu_session(model, options)  # a model that does not load at all is the bundle's fault
            raise DeviceError(f"device {name}: {provider} did not start (are its libraries installed?)", name)
    if keep_optimized is not None:
        session = _kept_session(model, threads, keep_optimized)
        if session is not None:
            return session
    return _cpu_session(model, options)


def _options(threads: int | None, level: ort.GraphOptimizationLevel | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Worker threads that spin after a run take the cores from the numpy work that follows it (scoring,
    # the next decode): on 2 busy cores turning it off measured encoder 115 -> 84 ms, naming 163 -> 49 ms.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    if level is not None:
        options.graph_optimization_level = level
    return options


def optimized_path(key: str) -> Path:
    """Where the optimised graph of the model named `key` is kept, for this ONNX Runtime version."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("assoc")) / OPTIMIZED_FOLDER / f"{key}-ort{ort.__version__}.onnx"


def _kept_session(model: Path, threads: int | None, key: str) -> ort.InferenceSession | None:
    """A CPU session from the model's kept optimised graph, loaded with optimisations off; the first time
    (or when the kept copy does not match its recorded sha256, or does not load) the model is optimised
    here and the result kept. The graph is optimised and kept at the EXTENDED level: ALL adds only the
    layout changes for this CPU's vector units (NCHWc convolutions), which ONNX Runtime warns make a kept
    graph fit only the machine that made it; a graph without convolutions (a text encoder) gets nothing
    from them. Creating the shipped text encoder's session: ~80 -> ~55 ms on two busy cores, its vectors
    bitwise the same. None where nothing can be kept (a read-only cache folder): the caller makes a plain
    session."""
    from .bundle import sha256_file, verify_file

    levels = ort.GraphOptimizationLevel
    try:
        kept = optimized_path(key)
        digest_file = kept.with_name(kept.name + ".sha256")
        if kept.is_file() and digest_file.is_file():
            recorded = digest_file.read_text(encoding="ascii").strip()
            if verify_file(kept, recorded):
                unoptimised = _options(threads, levels.ORT_DISABLE_ALL)
                with suppress(Exception):  # a copy ONNX Runtime cannot load is made again below
                    return ort.InferenceSession(str(kept), sess_options=unoptimised, providers=["CPUExecutionProvider"])
        kept.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    making = kept.with_name(f".{kept.name}.{os.getpid()}.tmp")
    options = _options(threads, levels.ORT_ENABLE_EXTENDED)
    options.optimized_model_filepath = str(making)
    try:
        session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - the plain session says what is wrong with the model, if anything
        with suppress(OSError):
            making.unlink()
        return None
    try:  # the graph first, then its digest: a reader in between finds them disagree and makes its own
        digest = sha256_file(making)
        os.replace(making, kept)
        digest_making = digest_file.with_name(f".{digest_file.name}.{os.getpid()}.tmp")
        digest_making.write_text(digest + "\n", encoding="ascii")
        os.replace(digest_making, digest_file)
        for older in kept.parent.glob(f"{key}-ort*.onnx*"):  # what other ONNX Runtime versions kept
            if older.name not in (kept.name, digest_file.name):
                with suppress(OSError):
                    older.unlink()
    except OSError:
        for leftover in (making, digest_file.with_name(f".{digest_file.name}.{os.getpid()}.tmp")):
            with suppress(OSError):
                leftover.unlink()
    return session


@functools.cache
def _cuda_driver_loads() -> bool:
    """Whether the NVIDIA driver's library loads. Without it the CUDA provider cannot start, and finding
    that out by trying costs ~100 ms (onnxruntime-gpu loads its CUDA provider library first): a cold
    `assoc query --device auto` on a machine with no GPU paid it on every run."""
    for name in ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so"):
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


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

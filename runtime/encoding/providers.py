"""Choosing an ONNX Runtime execution provider without error spam on machines that lack one, and keeping
a model's optimised graph so that a new process need not optimise it again.

A kept graph is a folder in the per-user cache (optimized_path): the graph (KEPT_GRAPH) with its
weights beside it in one file (KEPT_WEIGHTS, ONNX external data), and the sha256 of both (KEPT_DIGESTS).
Weights kept apart load without being parsed out of the graph's protobuf: creating the shipped text
encoder's session measured ~76 -> ~41 ms on two busy cores (page faults ~14,800 -> ~3,800), its vectors
bitwise the same.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import shutil
import sys
import tempfile
from contextlib import suppress
from pathlib import Path

import onnxruntime as ort

from ..errors import BundleError, DeviceError
from .devices import DEVICES, PROVIDERS

OPTIMIZED_FOLDER = "optimized-models"  # in the per-user cache folder (platformdirs user_cache_dir)
KEPT_GRAPH = "model.onnx"  # the files of one kept graph's folder (optimized_path)
KEPT_WEIGHTS = "weights.bin"
KEPT_FILES = (KEPT_GRAPH, KEPT_WEIGHTS)
KEPT_DIGESTS = "sha256"  # one line per kept file: its sha256, two spaces, its name (as sha256sum writes)
# Smaller constants stay in the graph: ONNX Runtime opens, maps and resolves the path of the weights file
# once per constant kept there (the shipped text encoder: 146 at 1 KiB, 39 at 16 KiB, leaving 0.2 MB in
# the graph), ~2 ms of a session's ~19 ms of CPU on two busy cores.
KEPT_WEIGHT_MIN_BYTES = 16 << 10


def open_session(
    model: Path,
    device: str = "auto",
    threads: int | None = None,
    *,
    keep_optimized: str | None = None,
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
    """The folder where the optimised graph of the model named `key` is kept, for this ONNX Runtime
    version (see the module docstring)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("assoc")) / OPTIMIZED_FOLDER / f"{key}-ort{ort.__version__}"


def _kept_session(model: Path, threads: int | None, key: str) -> ort.InferenceSession | None:
    """A CPU session from the model's kept optimised graph, loaded with optimisations off; the first time
    (or when a kept file does not match its recorded sha256, or the graph does not load) the model is
    optimised here and the result kept. The graph is optimised and kept at the EXTENDED level: ALL adds
    only the layout changes for this CPU's vector units (NCHWc convolutions), which ONNX Runtime warns
    make a kept graph fit only the machine that made it; a graph without convolutions (a text encoder)
    gets nothing from them. None where nothing can be kept (a read-only cache folder): the caller makes a
    plain session."""
    levels = ort.GraphOptimizationLevel
    try:
        kept = optimized_path(key)
        if _kept_whole(kept):
            unoptimised = _options(threads, levels.ORT_DISABLE_ALL)
            with suppress(Exception):  # a copy ONNX Runtime cannot load is made again below
                return ort.InferenceSession(
                    str(kept / KEPT_GRAPH), sess_options=unoptimised, providers=["CPUExecutionProvider"]
                )
        kept.parent.mkdir(parents=True, exist_ok=True)
        making = Path(tempfile.mkdtemp(prefix=f".{kept.name}.", suffix=".tmp", dir=kept.parent))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    options = _options(threads, levels.ORT_ENABLE_EXTENDED)
    options.optimized_model_filepath = str(making / KEPT_GRAPH)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", KEPT_WEIGHTS)
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", str(KEPT_WEIGHT_MIN_BYTES)
    )
    try:
        session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - the plain session says what is wrong with the model, if anything
        shutil.rmtree(making, ignore_errors=True)
        return None
    _keep(making, kept, key)
    return session


def _kept_whole(kept: Path) -> bool:
    """Whether the kept folder holds every kept file, each matching its recorded sha256."""
    from .bundle import VerifiedHashes

    hashes = VerifiedHashes.default()
    try:
        lines = (kept / KEPT_DIGESTS).read_text(encoding="ascii").splitlines()
        recorded = {name: digest for digest, name in (line.split("  ", 1) for line in lines if "  " in line)}
        return sorted(recorded) == sorted(KEPT_FILES) and all(hashes.matches(kept / n, recorded[n]) for n in KEPT_FILES)
    except (OSError, UnicodeDecodeError):  # nothing kept yet, or a file of it gone
        return False
    finally:
        hashes.save()


def _keep(making: Path, kept: Path, key: str) -> None:
    """Put the folder just written in place of the kept one, with its files' digests, whole or not at all:
    the digests are written last, and the folder renamed into place at once. One kept before (damaged, or
    loading no more) is set aside first; where another process put its own there meanwhile, that one
    stays. Then what other ONNX Runtime versions kept for the same model is removed."""
    from .bundle import sha256_file

    try:
        if not (making / KEPT_WEIGHTS).is_file():  # a graph without weights to keep apart: an empty file
            (making / KEPT_WEIGHTS).write_bytes(b"")
        digests = "".join(f"{sha256_file(making / name)}  {name}\n" for name in KEPT_FILES)
        (making / KEPT_DIGESTS).write_text(digests, encoding="ascii")
        if kept.exists():
            stale = kept.with_name(f"{making.name}.old")
            os.replace(kept, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(making, kept)
    except OSError:  # a full disk, or another process's folder renamed into place first
        shutil.rmtree(making, ignore_errors=True)
        return
    for older in kept.parent.glob(f"{glob.escape(key)}-ort*"):  # what other ONNX Runtime versions kept
        if older.name != kept.name:
            with suppress(OSError):
                shutil.rmtree(older) if older.is_dir() else older.unlink()


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

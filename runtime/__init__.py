"""Torch-free inference: bundles, image loading, tokenizer, encoders, stores, MaxSim search, heatmaps.

This package is the ground floor: it never imports torch, assoc.models, assoc.export or assoc.cli.

ONNX Runtime (1.29 and later) sends usage telemetry from Linux and macOS as well: it keeps a device id
and an event cache in the user's cache folder and uploads from a thread of its own, unless
ORT_DISABLE_TELEMETRY is set before it loads. assoc searches people's own photos and sends nothing
anywhere, so that is set here, before any module of assoc can load ONNX Runtime; a value the user set
stays (a program that loads ONNX Runtime before assoc has made the choice itself).
"""

import os

TELEMETRY_SWITCH = "ORT_DISABLE_TELEMETRY"
os.environ.setdefault(TELEMETRY_SWITCH, "1")

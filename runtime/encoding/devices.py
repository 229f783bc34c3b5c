"""The devices a bundle's ONNX Runtime sessions can run on, by name (no onnxruntime import: help texts use it)."""

DEVICES = ("auto", "cpu", "cuda", "coreml")
PROVIDERS = {"cuda": "CUDAExecutionProvider", "coreml": "CoreMLExecutionProvider"}

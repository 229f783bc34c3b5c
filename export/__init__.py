"""PyTorch -> ONNX: writes model bundles from checkpoints and checks parity."""

"""The model bundle and its two encoders on ONNX Runtime: photos -> patch grids, queries -> word vectors."""

"""Measuring a bundle (torch-free, on ONNX Runtime): retrieval recall and the pointing game.

Beside training and export rather than under runtime/: nothing on the search path uses it.
"""

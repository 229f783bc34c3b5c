"""Torch-free inference: bundles, image loading, tokenizer, encoders, stores, MaxSim search, heatmaps.

This package is the ground floor: it never imports torch, assoc.models, assoc.export or assoc.cli.
"""

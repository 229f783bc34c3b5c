"""The PyTorch side: encoders, matchmap scores, losses, datasets, training and evaluation loops."""

"""assoc: search your photos with words, and see where in each photo the words land."""

__version__ = "0.1.0"

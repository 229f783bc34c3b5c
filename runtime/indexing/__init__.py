"""Bringing a store in line with photos on disk: the walk, file fingerprints and the indexer."""

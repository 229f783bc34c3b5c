"""Numbers from vectors: matchmaps, MaxSim and its siblings, per-word heatmaps and their peaks."""

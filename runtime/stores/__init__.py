"""Where patch grids live: the store protocol, the built-in gallery and the Qdrant back end."""

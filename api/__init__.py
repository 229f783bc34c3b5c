"""The public API behind `import assoc`: a Searcher over one model and one store, and what it returns.

The CLI, the web app and users' scripts all stand on this floor; it stands on assoc.runtime.
"""

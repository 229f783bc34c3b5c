"""Indexing on a Ray cluster (optional extra: ``pip install 'assoc[ray]'``).

The walk and the diff with the store happen once, on the driver, with the one-machine indexer's own
code (assoc.runtime.indexing.indexer); the cluster hashes, decodes and encodes the new and changed
photos; the driver writes the grids to the store. Nothing outside this package imports ray.
"""

from .cluster import LOCAL, connect
from .indexer import index_on_cluster

__all__ = ["LOCAL", "connect", "index_on_cluster"]

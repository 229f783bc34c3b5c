"""Ranking, one pipeline for every store: a query, a candidate source, one shared rerank."""

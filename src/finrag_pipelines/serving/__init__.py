"""Retrieval HTTP service (filled by the retrieval-server issue).

Kedro-free library package.
"""

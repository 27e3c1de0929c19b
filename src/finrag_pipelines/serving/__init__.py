"""Retrieval HTTP service, compatible with the Search-R1 / verl search-tool retriever API.

* :mod:`.settings`: the typed ``serving`` parameters group.
* :mod:`.backend`: :class:`SearchBackend` (BM25, dense, hybrid over checked indexes; no web imports).
* :mod:`.batching`: :class:`MicroBatcher`, gathering queries of concurrent requests into one batch.
* :mod:`.app`: the FastAPI app factory :func:`create_app`.
* :mod:`.cli`: ``finrag-serve`` (the only module here that imports Kedro).
* :mod:`.verl_tool`: a verl ``BaseTool`` that calls the server.
* :mod:`.tool_text`: that tool's text protocol (arguments, ``Doc i [doc id]`` passages), also read by the
  search-QA reward.

Kedro-free library package (except :mod:`.cli`).
"""

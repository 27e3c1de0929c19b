"""Encoders (Qwen3-Embedding style HF models, offline USE), the query instruction template, embedding cache.

Kedro-free library package.
"""

"""OpenAI-compatible LLM client, caching and parsing (filled by the query_distill issue).

Kedro-free library package.
"""

"""The search tool's text protocol, shared by the tool and the search-QA reward: the ``search`` call's
arguments, the passage format with document ids, and reading the ids back. No verl, no HTTP.

One query's hits read (Search-R1's format, plus the id in square brackets: issue 12's grounding contract,
answers cite ``[a123]``)::

    Doc 1 [a123] (Title: <title>)
    <text>

Several queries in one call come back as ``Results for: <query>`` blocks joined by :data:`QUERY_SEPARATOR`.

Kedro-free library module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

QUERY_SEPARATOR = "\n---\n"
PASSAGE_HEADER_RE = re.compile(r"^Doc (\d+) \[([^\[\]\s]+)\]", re.MULTILINE)
"""A passage header line: rank and document id (group 2). Ids hold no whitespace or square brackets."""


class ToolArgumentError(ValueError):
    """The model called the tool with unusable arguments (the message is shown to the model)."""


def parse_query_list(parameters: Mapping[str, Any], max_queries: int | None = None) -> list[str]:
    """The queries of a tool call: ``query_list`` (a list of strings) or a single ``query`` string.

    Raises:
        ToolArgumentError: Naming the argument and what is expected.
    """
    if not isinstance(parameters, Mapping):
        raise ToolArgumentError("the tool arguments must be a JSON object with 'query_list'.")
    raw = parameters.get("query_list")
    if raw is None and isinstance(parameters.get("query"), str):
        raw = [parameters["query"]]
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ToolArgumentError("'query_list' must be a non-empty list of query strings.")
    queries = []
    for i, query in enumerate(raw):
        if not isinstance(query, str) or not query.strip():
            raise ToolArgumentError(f"query_list[{i}] must be a non-empty string, got {query!r:.80}.")
        queries.append(query.strip())
    if max_queries is not None and len(queries) > max_queries:
        raise ToolArgumentError(f"at most {max_queries} queries per call, got {len(queries)}.")
    return queries


def _hit_document(hit: Mapping[str, Any]) -> tuple[str, str]:
    document = hit.get("document", hit)  # with scores: {"document": {...}, "score"}; without: the document
    contents = document.get("contents") if isinstance(document, Mapping) else None
    if not isinstance(contents, str):
        shown = json.dumps(hit, ensure_ascii=False)[:120]
        raise ValueError(f"a hit has no 'contents' string: {shown}")  # noqa: TRY004
    doc_id = document.get("id")
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or not str(doc_id).strip():
        raise ValueError(f"a hit has no document 'id': {json.dumps(hit, ensure_ascii=False)[:120]}")
    doc_id = str(doc_id).strip()
    if re.search(r"[\s\[\]]", doc_id):
        raise ValueError(
            f"document id {doc_id!r} holds whitespace or square brackets, so answers cannot cite it as [id]; "
            "give the corpus ids without them (corpus_prep keeps ids as they are in corpus.jsonl)."
        )
    return doc_id, contents


def passage_ids(text: str) -> list[str]:
    """The document ids of the passage headers in tool text, in order (repeats kept)."""
    return [match.group(2) for match in PASSAGE_HEADER_RE.finditer(text or "")]


def format_passages(hits: Sequence[Mapping[str, Any]], max_chars: int | None = None) -> str:
    """One query's hits as Search-R1 text with ids: ``Doc i [<id>] (Title: <first line>)\\n<rest>`` blocks.

    ``max_chars`` cuts each passage body (not its header) to that many characters, marked with ``…``.
    """
    blocks = []
    for i, hit in enumerate(hits, start=1):
        doc_id, contents = _hit_document(hit)
        title, _, text = contents.partition("\n")
        if max_chars is not None and len(text) > max_chars:
            text = text[:max_chars] + "…"
        head = f"Doc {i} [{doc_id}]"
        blocks.append(f"{head} (Title: {title})\n{text}" if title.strip() else f"{head}\n{text}")
    return "\n\n".join(blocks) if blocks else "No results found."


def format_response(payload: Mapping[str, Any], queries: Sequence[str], max_chars: int | None = None) -> str:
    """The server's ``{"result": [...]}`` as tool text, one block per query in query order.

    Raises:
        ValueError: If the payload is not a ``result`` list with one entry per query.
    """
    result = payload.get("result") if isinstance(payload, Mapping) else None
    if not isinstance(result, list) or len(result) != len(queries):
        raise ValueError(
            f"expected {{'result': [...]}} with {len(queries)} lists, "
            f"got {json.dumps(payload, ensure_ascii=False)[:200]}"
        )
    if len(queries) == 1:
        return format_passages(result[0], max_chars)
    # the echoed query is put on one line: a query holding "\nDoc 1 [id]" cannot forge a passage header
    return QUERY_SEPARATOR.join(
        f"Results for: {' '.join(query.split())}\n{format_passages(hits, max_chars)}"
        for query, hits in zip(queries, result, strict=True)
    )


def hit_ids(payload: Mapping[str, Any]) -> list[str]:
    """Every document id in a well-formed ``/retrieve`` answer (all queries, in order)."""
    return [_hit_document(hit)[0] for hits in payload["result"] for hit in hits]

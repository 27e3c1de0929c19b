"""Corpus records: validation and normalisation of BEIR and seed-format rows into searchable text.

Two input shapes are accepted, one per row:

* BEIR: ``{"_id", "title"?, "text"}``;
* the seed's corpus: ``{"id", "contents", "metadata"?}`` where ``contents`` is either a string (possibly
  starting with ``node id: <uuid> text:``) or a dict of structured finance fields (stock or fund rows),
  which is rendered as ``key：value`` lines so that names, codes and numbers are searchable.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class CorpusFormatError(ValueError):
    """A corpus, query or qrels row is malformed; the message names the file and line."""


@dataclass(frozen=True)
class SourceRow:
    """One parsed JSON line with its provenance (file and 1-based line number)."""

    source: str
    line: int
    data: Any

    @property
    def where(self) -> str:
        """``file:line`` for error messages."""
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Document:
    """A normalised corpus document."""

    doc_id: str
    title: str
    text: str
    metadata: str  # JSON object as a string ("{}" when absent)
    where: str


_NODE_PREFIX = re.compile(r"^\s*node id:\s*[0-9a-fA-F-]+\s*text:\s*", re.IGNORECASE)
_CONTROL = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b-\u200f\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_TITLE_KEYS = ("Title", "title", "标题")


def normalise_text(text: str) -> str:
    """NFKC-normalise (full-width ASCII → half-width), drop control characters, collapse spaces.

    Newlines are kept (single), since they separate fields of structured documents.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", text)
    text = _BLANK_LINES.sub("\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def render_structured(fields: Mapping[str, Any]) -> str:
    """Render a dict of structured fields (e.g. ``{"股票代码": "002851"}``) as ``key：value`` lines.

    Nested values are JSON-encoded; ``None`` values are skipped.
    """
    lines = []
    for key, value in fields.items():
        if value is None or value == "":
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        lines.append(f"{key}：{value}")
    return "\n".join(lines)


def _id_of(value: Any, field: str, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CorpusFormatError(f"{where}: field '{field}' must be a string or integer id, got {value!r}")
    doc_id = str(value).strip()
    if not doc_id:
        raise CorpusFormatError(f"{where}: field '{field}' is empty; every document needs an id")
    return doc_id


def parse_document(row: SourceRow) -> Document:
    """Validate one corpus row and normalise it into a :class:`Document`.

    Raises:
        CorpusFormatError: naming file and line when the row fits neither accepted shape.
    """
    data = row.data
    if not isinstance(data, dict):
        raise CorpusFormatError(f"{row.where}: expected a JSON object, got {type(data).__name__}")
    if "_id" in data:  # BEIR
        doc_id = _id_of(data["_id"], "_id", row.where)
        title, text = data.get("title") or "", data.get("text")
        if not isinstance(text, str):
            raise CorpusFormatError(
                f"{row.where}: BEIR row '{doc_id}' needs a string 'text', got {text!r:.80}"
            )
        if not isinstance(title, str):
            raise CorpusFormatError(f"{row.where}: 'title' must be a string, got {title!r:.80}")
        metadata = {k: v for k, v in data.items() if k not in ("_id", "title", "text")}
    elif "id" in data and "contents" in data:  # the seed's corpus
        doc_id = _id_of(data["id"], "id", row.where)
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise CorpusFormatError(f"{row.where}: 'metadata' must be an object, got {metadata!r:.80}")
        contents = data["contents"]
        if isinstance(contents, str):
            text = _NODE_PREFIX.sub("", contents)
        elif isinstance(contents, dict):
            text = render_structured(contents)
        else:
            raise CorpusFormatError(
                f"{row.where}: 'contents' must be a string or an object of fields, "
                f"got {type(contents).__name__}"
            )
        title = next((str(metadata[k]) for k in _TITLE_KEYS if metadata.get(k)), "")
    else:
        raise CorpusFormatError(
            f"{row.where}: unknown corpus row shape with keys {sorted(data)[:8]}; expected BEIR "
            "{'_id', 'title', 'text'} or {'id', 'contents', 'metadata'}"
        )
    return Document(
        doc_id=doc_id,
        title=normalise_text(title),
        text=normalise_text(text),
        metadata=json.dumps(metadata, ensure_ascii=False, sort_keys=True, default=str),
        where=row.where,
    )


def parse_documents(rows: Iterable[SourceRow]) -> list[Document]:
    """Parse every row; duplicate ids are an error naming both lines."""
    seen: dict[str, str] = {}
    docs = []
    for row in rows:
        doc = parse_document(row)
        if doc.doc_id in seen:
            raise CorpusFormatError(
                f"{doc.where}: duplicate document id '{doc.doc_id}' (first seen at {seen[doc.doc_id]}); "
                "ids must be unique — fix or drop one of the rows"
            )
        seen[doc.doc_id] = doc.where
        docs.append(doc)
    return docs


def parse_queries(rows: Iterable[SourceRow]) -> list[tuple[str, str]]:
    """Parse BEIR query rows ``{"_id", "text"}`` into ``(query_id, text)``;
    duplicates and blanks are errors."""
    seen: dict[str, str] = {}
    out = []
    for row in rows:
        data = row.data
        if not isinstance(data, dict) or "_id" not in data or not isinstance(data.get("text"), str):
            raise CorpusFormatError(
                f"{row.where}: a query row needs '_id' and a string 'text', got {data!r:.120}"
            )
        qid = _id_of(data["_id"], "_id", row.where)
        text = normalise_text(data["text"])
        if not text:
            raise CorpusFormatError(f"{row.where}: query '{qid}' has empty text")
        if qid in seen:
            raise CorpusFormatError(f"{row.where}: duplicate query id '{qid}' (first seen at {seen[qid]})")
        seen[qid] = row.where
        out.append((qid, text))
    return out


MAX_GRADE = 100
"""Largest relevance grade accepted (nDCG's gain ``2^grade - 1`` must stay a finite float)."""

_GRADE = re.compile(r"[0-9]+(?:\.0*)?")


def parse_grade(text: str, where: str) -> int:
    """A qrels score as a relevance grade: a non-negative integer, at most :data:`MAX_GRADE`.

    ``0`` is judged not relevant, higher is more relevant (BEIR writes ``1``). An integer written with a
    zero fraction (``2.0``) is read as that integer; anything else (``0.5``, ``-1``, ``inf``, ``nan``,
    ``1e3``, ``+1``) is an error rather than a truncated or invented grade.

    Raises:
        CorpusFormatError: Naming ``where`` (file:line), the value and the rule.
    """
    if _GRADE.fullmatch(text):
        whole = text.partition(".")[0].lstrip("0") or "0"
        if len(whole) <= len(str(MAX_GRADE)) and int(whole) <= MAX_GRADE:
            return int(whole)
        problem = f"is over {MAX_GRADE}"
    else:
        try:
            number = float(text)
        except ValueError:
            problem = "is not a number"
        else:
            if not math.isfinite(number):
                problem = "is not finite"
            elif number < 0:
                problem = "is negative"
            elif not number.is_integer():
                problem = "is a fraction (grades are not truncated)"
            else:
                problem = "is not written as an integer"
    shown = text if len(text) <= 40 else text[:40] + "…"
    raise CorpusFormatError(
        f"{where}: score {shown!r} {problem}; a grade is an integer 0..{MAX_GRADE} "
        "(0 = judged not relevant, 1 = relevant, higher = more relevant). Fix the qrels file."
    )


def parse_qrels(rows: Iterable[SourceRow]) -> list[tuple[str, str, int, str]]:
    """Parse BEIR ``qrels.tsv`` lines into ``(qid, doc_id, grade, where)``.

    The header ``query-id corpus-id score`` is recognised on line 1 only. Grades follow :func:`parse_grade`.
    """
    out: list[tuple[str, str, int, str]] = []
    seen: dict[tuple[str, str], str] = {}
    for row in rows:
        line = str(row.data).rstrip("\r\n")
        parts = line.split("\t")
        if row.line == 1 and parts[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue
        if len(parts) != 3:
            raise CorpusFormatError(
                f"{row.where}: expected 3 tab-separated columns query-id, corpus-id, score; got {line!r:.120}"
            )
        qid, did, grade_s = (p.strip() for p in parts)
        grade = parse_grade(grade_s, row.where)
        if not qid or not did:
            raise CorpusFormatError(f"{row.where}: empty query-id or corpus-id")
        if (qid, did) in seen:
            raise CorpusFormatError(
                f"{row.where}: duplicate judgement for ({qid}, {did}), first at {seen[qid, did]}"
            )
        seen[qid, did] = row.where
        out.append((qid, did, grade, row.where))
    return out


def index_text(title: str, text: str) -> str:
    """The one text that is indexed (BM25 and dense) for a document: title line, then body.

    A body that already starts with its title (common in news corpora) is not given the title twice.
    """
    return f"{title}\n{text}" if title and not text.startswith(title) else text


def corpus_hash(doc_ids: Sequence[str], texts: Sequence[str]) -> str:
    """A content hash of the indexed corpus (ids and texts, in order); indexes record it in ``meta.json``."""
    digest = hashlib.sha256()
    for doc_id, text in zip(doc_ids, texts, strict=True):
        digest.update(doc_id.encode("utf-8"))
        digest.update(b"\x00")
        digest.update(text.encode("utf-8"))
        digest.update(b"\x01")
    return digest.hexdigest()


def indexable(
    doc_ids: Sequence[str], titles: Sequence[str], texts: Sequence[str]
) -> tuple[list[str], list[str], str]:
    """The ids, indexed texts and corpus hash of a prepared corpus — the same at build and at query time."""
    ids = [str(d) for d in doc_ids]
    bodies = [index_text(t, x) for t, x in zip(titles, texts, strict=True)]
    return ids, bodies, corpus_hash(ids, bodies)

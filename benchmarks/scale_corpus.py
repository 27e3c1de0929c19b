"""Synthetic corpora for ``benchmarks/scale.py``, recombined from the bundled real texts, and a fast encoder.

Corpus: the clauses of the bundled FinTruthQA answers and DISC-FinLLM news (``data/01_raw/retrieval/*``) are
recombined into documents whose lengths are drawn from the real documents' lengths (FinTruthQA-like answers
and, ``news_share`` of the time, DISC-like news with a real headline as title); every run of digits is
redrawn, so documents differ in their numbers as real filings do. ``exact_share`` of the documents are exact
duplicates of an earlier one (whitespace, punctuation or case changed) and ``near_share`` near duplicates
(a few characters substituted). Queries are a clause of a random document (its positive).

Encoder: :class:`StandInEncoder` hashes a text's character bigrams into 2^14 buckets and maps the counts
through a fixed random low-rank map to ``dim`` dimensions (L2-normalised): deterministic, no model files,
~15k texts/s, and texts sharing bigrams get close vectors, so ANN recall is measured on structured, not
uniform random, vectors.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "answers": ROOT / "data/01_raw/retrieval/fintruthqa",
    "news": ROOT / "data/01_raw/retrieval/disc_finllm",
}
_CLAUSE = re.compile(r"[^，。！？；\n]+[，。！？；]?")
_DIGITS = re.compile(r"\d+")
_BUCKETS = 1 << 14


def _read(folder: Path) -> list[dict[str, Any]]:
    with (folder / "corpus.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class Generator:
    """Seeded document and query generator over the bundled texts' clauses and length distributions."""

    def __init__(self, seed: int, news_share: float = 0.1) -> None:
        self.rng = np.random.default_rng(seed)
        self.news_share = news_share
        self.clauses: list[str] = []
        self.lengths: dict[str, np.ndarray] = {}
        self.titles: list[str] = []
        for kind, folder in SOURCES.items():
            docs = _read(folder)
            self.lengths[kind] = np.array([len(d["text"]) for d in docs])
            for doc in docs:
                self.clauses.extend(c.strip() for c in _CLAUSE.findall(doc["text"]) if len(c.strip()) >= 4)
                if kind == "news" and doc.get("title"):
                    self.titles.append(doc["title"])
        self._digits = [str(d) for d in range(10)]

    def _renumber(self, text: str) -> str:
        draw = self.rng.integers

        def redraw(match: re.Match[str]) -> str:
            return "".join(self._digits[int(d)] for d in draw(0, 10, size=len(match.group())))

        return _DIGITS.sub(redraw, text)

    def document(self) -> tuple[str, str]:
        """``(title, text)`` of one new document."""
        news = self.rng.random() < self.news_share
        pool = self.lengths["news" if news else "answers"]
        target = int(pool[self.rng.integers(len(pool))])
        parts: list[str] = []
        size = 0
        while size < target or len(parts) < 2:
            clause = self._renumber(self.clauses[int(self.rng.integers(len(self.clauses)))])
            parts.append(clause)
            size += len(clause)
        title = self.titles[int(self.rng.integers(len(self.titles)))] if news else ""
        return title, "".join(parts)

    def exact_copy(self, text: str) -> str:
        """The same text for exact dedup (whitespace, punctuation and case ignored)."""
        return " " + text.replace("，", ",", 1).upper() + " 。"

    def near_copy(self, text: str) -> str:
        """The text with about one character in 60 substituted (at least one)."""
        chars = list(text)
        for _ in range(max(1, len(chars) // 60)):
            chars[int(self.rng.integers(len(chars)))] = "某"
        return "".join(chars)

    def query(self, text: str) -> str:
        """A query taken from a document: its longest clause, at most 24 characters."""
        clauses = [c for c in _CLAUSE.findall(text) if len(c) >= 4] or [text]
        return max(clauses, key=len)[:24]


def write_corpus(folder: Path, size: int, seed: int, exact_share: float, near_share: float) -> dict[str, Any]:
    """Write ``corpus.jsonl`` (BEIR rows) of ``size`` documents; return the counts injected."""
    gen = Generator(seed)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = gen.rng.random(size)
    made: list[tuple[str, str]] = []
    counts = {"documents": size, "exact_injected": 0, "near_injected": 0, "chars": 0}
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(size):
            if i > 100 and kinds[i] < exact_share + near_share:
                title, text = made[int(gen.rng.integers(len(made)))]
                exact = kinds[i] < exact_share
                text = gen.exact_copy(text) if exact else gen.near_copy(text)
                counts["exact_injected" if exact else "near_injected"] += 1
            else:
                title, text = gen.document()
                made.append((title, text))
            counts["chars"] += len(title) + len(text)
            handle.write(
                json.dumps({"_id": f"s{i}", "title": title, "text": text}, ensure_ascii=False) + "\n"
            )
    return counts


def make_queries(
    doc_ids: Sequence[str], texts: Sequence[str], n: int, seed: int
) -> list[tuple[str, str, str]]:
    """``(query_id, doc_id, query)`` for ``n`` documents drawn without replacement (fewer if the corpus is
    small)."""
    rng = np.random.default_rng(seed)
    gen = Generator.__new__(Generator)
    picks = rng.choice(len(doc_ids), size=min(n, len(doc_ids)), replace=False)
    return [(f"q{j}", doc_ids[i], gen.query(texts[i])) for j, i in enumerate(picks.tolist())]


class StandInEncoder:
    """Hashed character bigrams through a random low-rank map to ``dim`` dimensions; the Encoder protocol.

    ``h = tanh(3 · unit(C · P1))`` (``C``: bigram counts in ``2^14`` buckets, ``P1``: Gaussian with a
    decaying spectrum, rank ``latent``), ``v = unit(h · P2)``. The low-rank step gives the vectors the
    decaying spectrum of real sentence embeddings: a plain random projection of sparse counts is nearly
    isotropic, where graph ANN indexes reach recall@10 of only 0.68 at efSearch 128 (0.98 here).
    """

    query_task = None

    def __init__(self, dim: int, seed: int = 0, latent: int = 128) -> None:
        self.dim = dim
        self.seed = seed
        self.latent = latent
        self.name = f"standin-bigram-{dim}"
        rng = np.random.default_rng(seed)
        decay = np.arange(1, latent + 1, dtype=np.float32) ** np.float32(-0.5)
        self._to_latent = rng.standard_normal((_BUCKETS, latent), dtype=np.float32) * decay
        self._to_output = rng.standard_normal((latent, dim), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "standin",
            "dim": self.dim,
            "seed": self.seed,
            "buckets": _BUCKETS,
            "latent": self.latent,
            "query_task": None,
            "instruction_template": None,
        }

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()

    def _bigrams(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Counts of hashed character bigrams, one row per text (a text of one character: its unigram)."""
        codes = np.frombuffer("\x00".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        ids = (codes[:-1] * np.uint64(1_000_003) + codes[1:]) % np.uint64(_BUCKETS)
        keep = (codes[:-1] != 0) & (codes[1:] != 0)
        rows = np.repeat(np.arange(len(texts)), lengths + 1)[: ids.size][keep]
        single = np.flatnonzero(lengths == 1)  # no bigram: hash the character alone
        cols = np.concatenate([ids[keep], codes[starts[single]] % np.uint64(_BUCKETS)]).astype(np.int32)
        rows = np.concatenate([rows, single])
        order = np.argsort(rows, kind="stable")  # rows are already sorted except the single-character ones
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(texts)))])
        data = np.ones(cols.size, dtype=np.float32)
        return sparse.csr_matrix((data, cols[order], indptr), shape=(len(texts), _BUCKETS))

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        latent = np.asarray(self._bigrams(texts) @ self._to_latent, dtype=np.float32)
        latent = np.tanh(3 * latent / np.maximum(np.linalg.norm(latent, axis=1, keepdims=True), 1e-12))
        out = latent @ self._to_output
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.float32(1e-12))
        return out

    encode_queries = encode_documents


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)

"""Every index backend satisfies its declared Protocol; a member a backend cannot provide fails clearly.

Class-level checks (members present with the Protocol's kind and parameters) run without pymilvus; the
instances are checked with ``isinstance`` here (bm25s, FAISS) and in ``test_milvus.py`` (Milvus).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest

from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.dense import DenseIndex
from finrag_pipelines.retrieval.interfaces import (
    IndexCapabilityError,
    LexicalIndex,
    TermScoringIndex,
    VectorIndex,
    require_term_scores,
    unsupported,
)
from finrag_pipelines.retrieval.lucene.index import LuceneBM25Index
from finrag_pipelines.retrieval.milvus.bm25 import MilvusBM25Index
from finrag_pipelines.retrieval.milvus.connection import MilvusTarget
from finrag_pipelines.retrieval.milvus.dense import MilvusDenseIndex
from finrag_pipelines.retrieval.types import Retriever
from finrag_pipelines.text.tokenize import FinanceTokenizer

ENCODER_META = {"kind": "test", "dim": 8, "query_task": None, "fingerprint": "ab" * 32}

# (backend class, the Protocols it implements, the Protocols it must not claim)
BACKENDS = [
    (BM25Index, [LexicalIndex, TermScoringIndex], []),
    (MilvusBM25Index, [LexicalIndex], [TermScoringIndex]),
    (LuceneBM25Index, [LexicalIndex, TermScoringIndex], []),
    (DenseIndex, [VectorIndex], []),
    (MilvusDenseIndex, [VectorIndex], []),
]


def protocol_members(protocol: type) -> dict[str, Any]:
    """The Protocol's own members (attributes, properties, methods), inherited Protocols included."""
    members: dict[str, Any] = {}
    for klass in reversed(protocol.__mro__):
        if klass is object or not getattr(klass, "_is_protocol", False):
            continue
        for name in getattr(klass, "__annotations__", {}):
            members[name] = "attribute"
        for name, value in vars(klass).items():
            if isinstance(value, property) or (callable(value) and not name.startswith("_")):
                members[name] = value
    return members


def parameters(function: Any) -> list[tuple[str, Any]]:
    """Parameter names and kinds, without ``self``."""
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()][1:]


def conformance_problems(backend: type, protocol: type) -> list[str]:
    problems = []
    for name, expected in protocol_members(protocol).items():
        try:
            found = inspect.getattr_static(backend, name)
        except AttributeError:
            problems.append(f"{backend.__name__} has no {name!r}")
            continue
        if expected == "attribute":
            if not isinstance(found, property):
                problems.append(f"{backend.__name__}.{name} is not a property")
        elif isinstance(expected, property):
            if not isinstance(found, property):
                problems.append(f"{backend.__name__}.{name} is not a property")
        elif not callable(found):
            problems.append(f"{backend.__name__}.{name} is not a method")
        elif parameters(found) != parameters(expected):
            problems.append(
                f"{backend.__name__}.{name}{inspect.signature(found)} != {inspect.signature(expected)}"
            )
    return problems


@pytest.mark.parametrize(
    ("backend", "implements", "lacks"), BACKENDS, ids=lambda v: getattr(v, "__name__", "")
)
def test_each_backend_has_every_member_of_its_protocols(
    backend: type, implements: list[type], lacks: list[type]
) -> None:
    for protocol in implements:
        assert conformance_problems(backend, protocol) == []
    for protocol in lacks:
        assert conformance_problems(backend, protocol), f"{backend.__name__} claims nothing of {protocol}"


def test_a_member_a_backend_lacks_is_declared_with_what_to_use_instead() -> None:
    lacking = {name for name in protocol_members(TermScoringIndex) if not hasattr(MilvusBM25Index, name)}
    assert lacking == {"get_scores"}
    assert set(unsupported(MilvusBM25Index.__new__(MilvusBM25Index))) == lacking
    for backend, _, _ in BACKENDS:  # nothing declared unsupported that the backend in fact has
        declared = getattr(backend, "UNSUPPORTED", {})
        assert not [name for name in declared if hasattr(backend, name)]


@pytest.fixture(scope="module")
def bm25(disc_corpus: list[tuple[str, str]]) -> BM25Index:
    docs = disc_corpus[:30]
    return BM25Index.build(
        [d for d, _ in docs], [t for _, t in docs], FinanceTokenizer(), BM25Config(), corpus_hash="c"
    )


def test_bm25s_and_faiss_instances_satisfy_their_protocols(bm25: BM25Index) -> None:
    vectors = np.eye(8, dtype=np.float32)
    dense = DenseIndex.build([f"d{i}" for i in range(8)], vectors, ENCODER_META, corpus_hash="c")
    assert (
        isinstance(bm25, LexicalIndex) and isinstance(bm25, TermScoringIndex) and isinstance(bm25, Retriever)
    )
    assert isinstance(dense, VectorIndex) and not isinstance(dense, LexicalIndex)
    assert not isinstance(bm25, VectorIndex)
    assert require_term_scores(bm25, "mining") is bm25


def test_milvus_bm25_refuses_term_scores_naming_the_backend_and_the_alternative(bm25: BM25Index) -> None:
    # no collection needed: the check looks at the class (never at properties that would ask Milvus)
    milvus = MilvusBM25Index(None, MilvusTarget("m.db", "c_bm25"), bm25.tokenizer, dict(bm25.meta))
    with pytest.raises(IndexCapabilityError, match="does not provide") as caught:
        require_term_scores(milvus, "negative_mining's BM25 candidates")
    message = str(caught.value)
    assert "negative_mining's BM25 candidates needs get_scores" in message
    assert "MilvusBM25Index" in message and "c_bm25" in message
    assert "BM25IndexDataset" in message and "bm25.enabled: false" in message
    assert isinstance(caught.value, TypeError)

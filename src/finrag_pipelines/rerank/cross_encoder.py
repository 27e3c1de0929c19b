"""A BERT-style cross-encoder reranker: sequence classification of ``[CLS] query [SEP] passage [SEP]``.

The pair goes through the tokenizer as a text pair (its own special tokens; segment ids only when the
tokenizer returns them), truncated longest-first to ``max_length`` and right-padded, as sentence-transformers'
``CrossEncoder`` does. One label: ``sigmoid(logit)``; two labels: ``softmax(logits)[1]``. bge-reranker
(XLM-RoBERTa) and gte-reranker models have this shape; ms-swift trains it with ``--task_type reranker``.

ms-swift's reranker templates feed no segment ids; a tokenizer that returns ``token_type_ids`` (classic
BERT) is therefore scored here with segment ids it was not fine-tuned with by ``reranker_finetune``. The
tiny test model and XLM-R-based rerankers return none.

Kedro-free library module.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from finrag_pipelines.embedding.fingerprint import hash_model_folder, make_fingerprint
from finrag_pipelines.kernels import KernelChoice
from finrag_pipelines.rerank import loading
from finrag_pipelines.rerank.formats import TextPairInput
from finrag_pipelines.rerank.interfaces import check_pairs

logger = logging.getLogger(__name__)


class CrossEncoderReranker:
    """A local sequence-classification cross-encoder (BERT, XLM-RoBERTa, ModernBERT, ...).

    Args:
        model_path: Local folder with config.json, tokenizer files and weights.
        max_length: Tokens per pair, special tokens included.
        batch_size: Pairs per forward pass.
        dtype: "auto" (bfloat16 on CUDA, float32 on CPU), "float32", "bfloat16" or "float16".
        device: "auto" (CUDA when available), "cpu" or "cuda".
        name: Display name; defaults to the folder name.
        progress: Show a tqdm bar; ``None`` shows one for 512 pairs or more.

    Raises:
        FileNotFoundError: If ``model_path`` does not exist.
        ValueError: If the folder is not a classification model with 1 or 2 labels, or a setting is invalid.
    """

    kind = "cross_encoder"

    def __init__(
        self,
        model_path: str | Path,
        *,
        max_length: int = 512,
        batch_size: int = 32,
        dtype: str = "auto",
        device: str = "auto",
        name: str | None = None,
        progress: bool | None = None,
    ) -> None:
        from transformers import AutoConfig, AutoModelForSequenceClassification

        folder = Path(model_path).expanduser()
        loading.check_model_folder(folder)
        loading.check_sizes(max_length, batch_size)
        self.device, self.dtype = loading.resolve_device_dtype(device, dtype)
        self._folder = folder.resolve()
        self.max_length = max_length
        self.batch_size = batch_size
        self._name = name or self._folder.name
        self._progress = progress
        self._content_hash = hash_model_folder(self._folder)
        # flash-attn 2 on a GPU with bf16/fp16 weights when it imports, else sdpa; logged and in describe()
        self._kernels: KernelChoice = loading.choose_reranker_kernels(self._name, self.device, self.dtype)
        self._tokenizer = loading.load_tokenizer(self._folder, "right")
        self.pair_input = TextPairInput(self._tokenizer, max_length)
        self._labels = int(AutoConfig.from_pretrained(str(self._folder), local_files_only=True).num_labels)
        if self._labels not in (1, 2):
            raise ValueError(
                f"{self._folder} is a classifier with {self._labels} labels; a cross-encoder reranker has 1 "
                "(a relevance logit) or 2 (irrelevant, relevant)."
            )
        self._model = loading.load_model(
            self._folder,
            AutoModelForSequenceClassification,
            self.dtype,
            self.device,
            self._kernels.attn_implementation,
        )
        self._architecture = str(getattr(self._model.config, "model_type", type(self._model).__name__))
        logger.info(
            "loaded cross-encoder reranker %s (%s, %d label(s)) on %s as %s",
            self._folder, self._architecture, self._labels, self.device, self.dtype,
        )  # fmt: skip

    @property
    def name(self) -> str:
        """Display name (the model folder name unless set)."""
        return self._name

    @property
    def model_path(self) -> Path:
        """Resolved model folder."""
        return self._folder

    def describe(self) -> dict[str, Any]:
        """Everything that changes the scores (device and batch size do not)."""
        return {
            "kind": self.kind,
            "model_path": str(self._folder),
            "model_name": self._folder.name,
            "architecture": self._architecture,
            "num_labels": self._labels,
            "score": "sigmoid(logit)" if self._labels == 1 else "softmax(logits)[1]",
            "max_length": self.max_length,
            "truncation": "longest_first",
            "dtype": self.dtype,
            # which attention kernel ran (kernels.choose_kernels); recorded, not fingerprinted: flash-attn and
            # sdpa agree up to rounding
            "attn_implementation": self._kernels.attn_implementation,
        }

    @property
    def kernels(self) -> KernelChoice:
        """The attention kernel this reranker runs with, and why."""
        return self._kernels

    @property
    def fingerprint(self) -> str:
        """sha256 of describe() (minus the path and the attention kernel) and of the config, tokenizer and
        weight files as loaded."""
        described = {k: v for k, v in self.describe().items() if k != "attn_implementation"}
        return make_fingerprint(described, self._content_hash)

    def encode_pair(self, query: str, passage: str) -> dict[str, list[int]]:
        """The tokenizer's features of one pair (``input_ids``, and ``token_type_ids`` if it makes them)."""
        return self.pair_input.encode(query, passage)

    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Relevance probability of each ``(queries[i], passages[i])``, float32, in input order."""
        qs, ps = check_pairs(queries, passages)
        if not qs:
            return np.empty(0, dtype=np.float32)
        features = [self.encode_pair(q, p) for q, p in zip(qs, ps, strict=True)]
        show = self._progress if self._progress is not None else len(qs) >= 512
        return loading.score_in_batches(
            features,
            self.batch_size,
            self._forward,
            length=lambda f: len(f["input_ids"]),
            progress=show,
            desc=f"rerank {self._name}",
        )

    def _forward(self, batch: list[dict[str, list[int]]]) -> np.ndarray:
        import torch

        padded = self._tokenizer.pad(batch, padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = self._model(**{k: v.to(self.device) for k, v in padded.items()}).logits.float()
            if self._labels == 1:
                return torch.sigmoid(logits[:, 0]).cpu().numpy()
            return torch.softmax(logits, dim=1)[:, 1].cpu().numpy()

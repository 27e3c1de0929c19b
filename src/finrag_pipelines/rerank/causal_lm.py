"""A Qwen3-Reranker-style causal-LM reranker: P("yes") as the next token after the official prompt.

The prompt is Qwen3-Reranker's (its model card, and ms-swift's ``qwen3_reranker`` template that
``reranker_finetune`` trains with — a test checks the two give identical token ids)::

    <|im_start|>system
    Judge whether the Document meets the requirements based on the Query and the Instruct provided. Note that
    the answer can only be "yes" or "no".<|im_end|>
    <|im_start|>user
    <Instruct>: {instruction}
    <Query>: {query}
    <Document>: {document}<|im_end|>
    <|im_start|>assistant
    <think>

    </think>

    (an empty line ends the prompt)

The score is ``softmax([logit(no), logit(yes)])[1]`` at the last position. Batches are left-padded, so the
last column is every row's last prompt token; only that position's logits are computed (``logits_to_keep=1``).
A body longer than ``max_length`` minus the fixed prefix and suffix is cut from the right (the document's
tail), as the model card does; the prefix and suffix are never cut.

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
from finrag_pipelines.rerank.formats import BODY_TEMPLATE, PREFIX, SUFFIX, QwenRerankPrompt
from finrag_pipelines.rerank.interfaces import check_pairs

logger = logging.getLogger(__name__)


class CausalLMReranker:
    """A local Qwen3-Reranker-style model: yes/no next-token logits, left padding, batched.

    Args:
        model_path: Local folder with config.json, tokenizer files and weights (a causal LM whose tokenizer
            has ``yes`` and ``no`` as single tokens).
        instruction: The ``<Instruct>`` text (``None``: Qwen3-Reranker's default).
        max_length: Tokens per pair, prompt included.
        batch_size: Pairs per forward pass.
        dtype: "auto" (bfloat16 on CUDA, float32 on CPU), "float32", "bfloat16" or "float16".
        device: "auto" (CUDA when available), "cpu" or "cuda".
        name: Display name; defaults to the folder name.
        progress: Show a tqdm bar; ``None`` shows one for 512 pairs or more.

    Raises:
        FileNotFoundError: If ``model_path`` does not exist.
        ValueError: If the folder is not a model, lacks the answer tokens, or a setting is invalid.
    """

    kind = "qwen3"

    def __init__(
        self,
        model_path: str | Path,
        *,
        instruction: str | None = None,
        max_length: int = 1024,
        batch_size: int = 8,
        dtype: str = "auto",
        device: str = "auto",
        name: str | None = None,
        progress: bool | None = None,
    ) -> None:
        from transformers import AutoModelForCausalLM

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
        self._tokenizer = loading.load_tokenizer(self._folder, "left")
        self._yes, self._no = (self._answer_token(t) for t in ("yes", "no"))
        self.prompt = QwenRerankPrompt(self._tokenizer, instruction, max_length)
        self._model = loading.load_model(
            self._folder, AutoModelForCausalLM, self.dtype, self.device, self._kernels.attn_implementation
        )
        self._architecture = str(getattr(self._model.config, "model_type", type(self._model).__name__))
        logger.info(
            "loaded causal-LM reranker %s (%s) on %s as %s",
            self._folder,
            self._architecture,
            self.device,
            self.dtype,
        )

    def _answer_token(self, token: str) -> int:
        token_id = self._tokenizer.convert_tokens_to_ids(token)
        if (
            token_id is None
            or token_id == self._tokenizer.unk_token_id
            or self._tokenizer.convert_ids_to_tokens(token_id) != token
        ):
            raise ValueError(
                f"the tokenizer in {self._folder} has no single token {token!r}; a Qwen3-Reranker-style "
                "model answers with the tokens 'yes' and 'no' (use kind: cross_encoder for a classifier)."
            )
        return int(token_id)

    @property
    def name(self) -> str:
        """Display name (the model folder name unless set)."""
        return self._name

    @property
    def instruction(self) -> str:
        """The ``<Instruct>`` text."""
        return self.prompt.instruction

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
            "instruction": self.prompt.instruction,
            "prompt": {"prefix": PREFIX, "body": BODY_TEMPLATE, "suffix": SUFFIX},
            "answer_tokens": {"yes": self._yes, "no": self._no},
            "score": "softmax(no, yes)[yes] at the last position",
            "max_length": self.max_length,
            "padding_side": "left",
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

    def encode_pair(self, query: str, passage: str) -> list[int]:
        """The prompt's token ids for one pair (body cut from the right to fit ``max_length``)."""
        return self.prompt.encode(query, passage)

    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """P("yes") for each ``(queries[i], passages[i])``, float32, in input order."""
        qs, ps = check_pairs(queries, passages)
        if not qs:
            return np.empty(0, dtype=np.float32)
        token_ids = [self.encode_pair(q, p) for q, p in zip(qs, ps, strict=True)]
        cut = sum(1 for ids in token_ids if len(ids) == self.max_length)
        if cut:
            logger.debug("%d of %d pairs cut to max_length %d", cut, len(token_ids), self.max_length)
        show = self._progress if self._progress is not None else len(qs) >= 512
        return loading.score_in_batches(
            token_ids, self.batch_size, self._forward, length=len, progress=show, desc=f"rerank {self._name}"
        )

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        import torch

        input_ids, attention_mask = loading.pad_batch(batch, self._tokenizer.pad_token_id, "left")
        with torch.inference_mode():
            logits = self._model(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                logits_to_keep=1,
            ).logits[:, -1, :]
            pair = torch.stack([logits[:, self._no], logits[:, self._yes]], dim=1).float()
            return torch.softmax(pair, dim=1)[:, 1].cpu().numpy()

"""A local transformers model used Qwen3-Embedding style: last-token pooling, left padding, L2-normalised.

Kedro-free library module.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from finrag_pipelines.embedding.encoders import QUERY_TEMPLATE, check_texts, format_query
from finrag_pipelines.embedding.fingerprint import hash_model_folder, make_fingerprint
from finrag_pipelines.kernels import KernelChoice, choose_kernels

logger = logging.getLogger(__name__)

_DTYPES = ("auto", "float32", "bfloat16", "float16")
_DEVICES = ("auto", "cpu", "cuda")


class HFEncoder:
    """A local transformers model used Qwen3-Embedding style.

    Last-token pooling over left-padded batches, L2-normalised; queries are wrapped with
    :func:`format_query`, documents are not. Loads only from a local folder (no model hub).

    Args:
        model_path: Local folder with config.json, tokenizer files and weights.
        query_task: Instruction for queries, or ``None`` for none.
        max_length: Truncation length in tokens (the end-of-text token is kept).
        batch_size: Texts per forward pass at ``max_length`` tokens; shorter texts (queries) are batched up
            to the same token budget, ``batch_size x max_length`` padded tokens (:func:`length_batches`).
        dtype: "auto" (bfloat16 on CUDA, float32 on CPU), "float32", "bfloat16" or "float16".
        device: "auto" (CUDA when available), "cpu" or "cuda".
        name: Display name; defaults to the folder name.
        progress: Show a tqdm bar; ``None`` shows one for inputs of 512 texts or more.

    Raises:
        FileNotFoundError: If ``model_path`` does not exist.
        ValueError: If the folder is not a model or a setting is invalid.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        query_task: str | None = None,
        max_length: int = 512,
        batch_size: int = 16,
        dtype: str = "auto",
        device: str = "auto",
        name: str | None = None,
        progress: bool | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = Path(model_path).expanduser()
        _check_model_folder(folder)
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an int >= 2, got {max_length!r}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {_DTYPES}.")
        if device not in _DEVICES:
            raise ValueError(f"device {device!r} is not one of {_DEVICES}.")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                "device 'cuda' was requested but torch sees no CUDA device; set device: auto or cpu."
            )
        resolved_device = (
            "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
        )
        resolved_dtype = (
            dtype if dtype != "auto" else ("bfloat16" if resolved_device == "cuda" else "float32")
        )

        self._folder = folder.resolve()
        self._query_task = query_task or None
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = resolved_device
        self.dtype = resolved_dtype
        self._name = name or self._folder.name
        self._progress = progress
        self._device_setting = device
        self._prefix_caches: dict[str, tuple[list[int], Any] | None] = {}
        # flash-attn 2 on a GPU with bf16/fp16 weights when it imports, else sdpa; logged and in describe()
        self._kernels: KernelChoice = choose_kernels(
            f"encoder {self._name}", gpu=resolved_device == "cuda", dtype=resolved_dtype
        )
        # hashed before loading, so the fingerprint describes the files the weights come from
        self._content_hash = hash_model_folder(self._folder)

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(
                str(self._folder), local_files_only=True, padding_side="left"
            )
        except Exception as exc:  # transformers raises many types for broken folders
            raise ValueError(
                f"could not load a tokenizer from {self._folder} ({type(exc).__name__}: {exc}); "
                "the folder must hold a complete transformers model with its tokenizer files (see README)."
            ) from exc
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token is None:
            if self._tokenizer.eos_token is None:
                raise ValueError(
                    f"the tokenizer in {self._folder} has neither a pad nor an eos token; add pad_token to "
                    "its tokenizer_config.json."
                )
            logger.warning(
                "tokenizer in %s has no pad token; using eos %r", self._folder, self._tokenizer.eos_token
            )
            self._tokenizer.pad_token = self._tokenizer.eos_token
        probe = self._tokenizer("a")["input_ids"]
        if not probe or probe[-1] not in set(self._tokenizer.all_special_ids):
            logger.warning(
                "tokenizer in %s does not append an end-of-text token: last-token pooling will pool the "
                "last word instead (Qwen3-Embedding's tokenizer appends <|endoftext|>)",
                self._folder,
            )
        try:
            model = AutoModel.from_pretrained(
                str(self._folder),
                local_files_only=True,
                dtype=getattr(torch, resolved_dtype),
                attn_implementation=self._kernels.attn_implementation,
            )
        except Exception as exc:
            raise ValueError(
                f"could not load a model from {self._folder} ({type(exc).__name__}: {exc}); "
                "put a complete transformers model there (see README)."
            ) from exc
        self._model = model.to(resolved_device).eval()
        self._dim = int(model.config.hidden_size)
        self._architecture = str(getattr(model.config, "model_type", type(model).__name__))
        logger.info(
            "loaded HF encoder %s (%s, dim %d) on %s as %s",
            self._folder,
            self._architecture,
            self._dim,
            resolved_device,
            resolved_dtype,
        )

    @property
    def name(self) -> str:
        """Display name (the model folder name unless set)."""
        return self._name

    @property
    def dim(self) -> int:
        """Hidden size of the model, i.e. the vector dimension."""
        return self._dim

    @property
    def query_task(self) -> str | None:
        """Instruction put in front of queries."""
        return self._query_task

    @property
    def model_path(self) -> Path:
        """Resolved model folder."""
        return self._folder

    @property
    def config(self) -> dict[str, Any]:
        """The :func:`build_encoder` settings that rebuild this encoder elsewhere (e.g. in a Ray actor).

        ``dtype`` is the resolved one, so a copy built on another device computes the same vectors and
        has the same ``fingerprint``; ``device`` is the setting as given.
        """
        return {
            "kind": "hf",
            "model_path": str(self._folder),
            "query_task": self._query_task,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "device": self._device_setting,
            "name": self._name,
            "progress": self._progress,
        }

    def describe(self) -> dict[str, Any]:
        """Return everything that changes the vectors (device and batch size do not).

        Returns:
            A JSON-serialisable dict.
        """
        return {
            "kind": "hf",
            "model_path": str(self._folder),
            "model_name": self._folder.name,
            "architecture": self._architecture,
            "dim": self._dim,
            "query_task": self._query_task,
            "instruction_template": QUERY_TEMPLATE,
            "max_length": self.max_length,
            "pooling": "last_token",
            "padding_side": "left",
            "normalize": True,
            "dtype": self.dtype,
            # which attention kernel ran (kernels.choose_kernels); recorded, not fingerprinted: flash-attn and
            # sdpa agree up to rounding, as batches of different composition do
            "attn_implementation": self._kernels.attn_implementation,
        }

    @property
    def kernels(self) -> KernelChoice:
        """The attention kernel this encoder runs with, and why."""
        return self._kernels

    @property
    def fingerprint(self) -> str:
        """sha256 of describe() (minus the path and the attention kernel) and of the config, tokenizer and
        weight files as loaded."""
        described = {k: v for k, v in self.describe().items() if k != "attn_implementation"}
        return make_fingerprint(described, self._content_hash)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encode queries, each wrapped with ``format_query(query_task, q)``.

        Args:
            texts: Query strings.

        Returns:
            float32 array of shape ``(len(texts), dim)``, rows L2-normalised, in input order.
        """
        items = check_texts(texts, "queries")
        prefix = format_query(self._query_task, "") if self._query_task else None
        return self._encode([format_query(self._query_task, q) for q in items], prefix)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Encode documents as they are (no instruction).

        Args:
            texts: Document strings.

        Returns:
            float32 array of shape ``(len(texts), dim)``, rows L2-normalised, in input order.
        """
        return self._encode(check_texts(texts, "documents"))

    def _encode(self, texts: list[str], prefix: str | None = None) -> np.ndarray:
        """Tokenize, sort by length (longest first), run length-bucketed batches and restore input order.

        Texts whose tokens start with the tokens of ``prefix`` (the query instruction) are run on the
        prefix's cached keys and values (:meth:`_prefix_cache`): the instruction is computed once, not per
        query. Results equal the full computation up to float rounding (checked once per encoder).
        """
        import torch
        from tqdm.auto import tqdm

        out = np.empty((len(texts), self._dim), dtype=np.float32)
        if not texts:
            return out
        token_ids: list[list[int]] = self._tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=False, return_attention_mask=False
        )["input_ids"]
        empty = [i for i, ids in enumerate(token_ids) if not ids]
        if empty:
            # only tokenizers that add no special token produce these; feed the pad token instead
            logger.warning(
                "%d text(s) tokenize to nothing (first: index %d); encoding them as one pad token",
                len(empty),
                empty[0],
            )
            for i in empty:
                token_ids[i] = [int(self._tokenizer.pad_token_id)]
        cache = self._prefix_cache(prefix, token_ids) if prefix else None
        skip = len(cache[0]) if cache else 0
        after_prefix = [skip > 0 and len(ids) > skip and ids[:skip] == cache[0] for ids in token_ids]
        jobs: list[tuple[list[int], bool]] = []
        for cached in (False, True):
            order = sorted(
                (i for i in range(len(texts)) if after_prefix[i] == cached), key=lambda i: -len(token_ids[i])
            )
            lengths = [len(token_ids[i]) for i in order]
            budget = self.batch_size * self.max_length  # a full batch of the longest texts: the memory bound
            jobs.extend((order[a:b], cached) for a, b in length_batches(lengths, self.batch_size, budget))
        show = self._progress if self._progress is not None else len(texts) >= 512
        with torch.inference_mode():
            for rows, cached in tqdm(jobs, desc=f"encode {self._name}", unit="batch", disable=not show):
                if cached:
                    hidden = self._forward_after_prefix([token_ids[i][skip:] for i in rows], cache)
                else:
                    input_ids, attention_mask = self._left_pad([token_ids[i] for i in rows])
                    hidden = self._model(
                        input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
                    ).last_hidden_state
                pooled = torch.nn.functional.normalize(hidden[:, -1].float(), p=2, dim=-1)
                out[rows] = pooled.cpu().numpy()
        return out

    def _prefix_cache(self, prefix: str, token_ids: list[list[int]]) -> tuple[list[int], Any] | None:
        """The prefix's token ids and cached keys/values, or ``None`` when caching must not be used.

        Built once per encoder. Before first use, the first text that starts with the prefix is encoded
        both ways; caching stays off unless they agree within 1e-4 (a model that is not causal, e.g. a
        bidirectional encoder, would not), so it can only make queries faster, never different.
        """
        import torch

        if prefix in self._prefix_caches:
            return self._prefix_caches[prefix]
        ids = self._tokenizer(prefix, add_special_tokens=False)["input_ids"]
        probe = next((seq for seq in token_ids if len(seq) > len(ids) and seq[: len(ids)] == ids), None)
        if not ids or probe is None:
            return None  # nothing to check against yet; decide with a later batch
        state: tuple[list[int], Any] | None = None
        try:
            with torch.inference_mode():
                past = _layer_tensors(
                    self._model(
                        input_ids=torch.tensor([ids], device=self.device), use_cache=True
                    ).past_key_values
                )
                input_ids, attention_mask = self._left_pad([probe])
                full = self._model(
                    input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
                ).last_hidden_state[:, -1]
                cached = self._forward_after_prefix([probe[len(ids) :]], (ids, past))[:, -1]
            gap = float((full.float() - cached.float()).abs().max())
            state = (ids, past) if gap <= 1e-4 else None
        except (TypeError, ValueError, AttributeError, RuntimeError) as exc:  # model without a usable cache
            gap = float("nan")
            logger.info("encoder %s: no prefix cache (%s: %s)", self._name, type(exc).__name__, exc)
        logger.info(
            "encoder %s: query instruction (%d tokens) %s (cached vs full: max |diff| %.2g)",
            self._name,
            len(ids),
            "computed once and cached" if state else "recomputed per query",
            gap,
        )
        self._prefix_caches[prefix] = state
        return state

    def _forward_after_prefix(self, suffixes: list[list[int]], cache: tuple[list[int], Any]) -> Any:
        """Last hidden states of ``prefix + suffix`` for each suffix, the prefix taken from its cache.

        Suffixes are left-padded after the prefix; their positions continue the prefix's (``p, p+1, …``)
        and the padding is masked, so every token sees exactly what it sees in the unpadded text.
        """
        import torch
        from transformers import DynamicCache

        prefix_ids, past = cache
        skip, rows, width = len(prefix_ids), len(suffixes), max(len(seq) for seq in suffixes)
        input_ids = torch.full((rows, width), int(self._tokenizer.pad_token_id), dtype=torch.long)
        attention_mask = torch.zeros((rows, skip + width), dtype=torch.long)
        attention_mask[:, :skip] = 1
        position_ids = torch.zeros((rows, width), dtype=torch.long)
        for row, seq in enumerate(suffixes):
            input_ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            attention_mask[row, skip + width - len(seq) :] = 1
            position_ids[row, width - len(seq) :] = torch.arange(skip, skip + len(seq))
        batch_past = DynamicCache()
        for layer, (keys, values) in enumerate(past):  # views of the prefix's tensors, never written to
            batch_past.update(keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1), layer)
        return self._model(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            position_ids=position_ids.to(self.device),
            past_key_values=batch_past,
            use_cache=True,
        ).last_hidden_state

    def _left_pad(self, sequences: list[list[int]]) -> tuple[Any, Any]:
        """Left-pad token id lists into ``(input_ids, attention_mask)`` tensors.

        Left padding puts every text's last token (the appended end-of-text token) in the last
        column, which is what last-token pooling reads.
        """
        import torch

        width = max(len(seq) for seq in sequences)
        input_ids = torch.full((len(sequences), width), int(self._tokenizer.pad_token_id), dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            if seq:
                input_ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                attention_mask[row, width - len(seq) :] = 1
        return input_ids, attention_mask


def _layer_tensors(past: Any) -> list[tuple[Any, Any]]:
    """``(keys, values)`` per layer of a transformers cache (``DynamicCache.layers``, or the older
    ``key_cache`` / ``value_cache`` lists)."""
    layers = getattr(past, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return list(zip(past.key_cache, past.value_cache, strict=True))


def length_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int | None = None
) -> list[tuple[int, int]]:
    """``(start, stop)`` batches over token lengths sorted longest first.

    A batch holds at most ``batch_size`` texts and no text shorter than half its longest, so padding
    never takes more than half of a batch: a few long texts no longer make a whole batch of short ones
    pay for their length (a batch of 64 queries of 48 to 250 tokens becomes three forward passes of
    ~2x less work). At most ``log2(longest / shortest)`` batches more than fixed-size batching.

    With ``max_tokens`` a batch of short texts may hold more than ``batch_size`` of them, as many as fit
    ``max_tokens`` padded tokens (``count x longest``): the encoder passes ``batch_size x max_length``, the
    size of a full batch of the longest texts it accepts, so peak memory stays what ``batch_size`` allows
    while short queries share one forward pass instead of paying its fixed cost per 16.
    """
    batches: list[tuple[int, int]] = []
    start = 0
    for position, length in enumerate(lengths):
        room = batch_size if max_tokens is None else max(batch_size, max_tokens // max(lengths[start], 1))
        if position - start >= room or 2 * length < lengths[start]:
            batches.append((start, position))
            start = position
    if start < len(lengths):
        batches.append((start, len(lengths)))
    return batches


def _check_model_folder(folder: Path) -> None:
    """Raise a helpful error unless ``folder`` looks like a local transformers model."""
    if not folder.exists():
        raise FileNotFoundError(
            f"embedding model folder {folder} does not exist; put the model at {folder} (for example "
            "Qwen3-Embedding-0.6B copied from a machine with hub access, or a tiny test model from "
            "finrag_pipelines.embedding.tiny_model.build_tiny_qwen3); see README."
        )
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise ValueError(
            f"{folder} is not a transformers model folder (no config.json); put the model at {folder} "
            "with its config, tokenizer and weight files; see README."
        )

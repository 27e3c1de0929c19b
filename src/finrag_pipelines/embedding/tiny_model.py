"""A tiny random Qwen3 embedding model built locally, for tests and the CPU demo.

There is no model hub here, so tests cannot fetch Qwen3-Embedding. This builds a model with the
same shape of files: a byte-level BPE tokenizer with Qwen2's pre-tokenizer, trained on the given
texts, that appends ``<|endoftext|>`` to every text like Qwen3-Embedding's does, and a randomly
initialised ``Qwen3Model`` saved like the official embedding checkpoint (``Qwen3Model`` weights
without the ``model.`` prefix, ``architectures: ["Qwen3ForCausalLM"]``). ``AutoModel`` loads it as
``Qwen3Model`` and ``AutoModelForCausalLM`` (what ms-swift's ``qwen3_emb`` model type uses) loads
it with no missing keys, the output head being tied to the embeddings.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_tiny_qwen3(
    texts: Iterable[str],
    out_dir: str | Path,
    vocab_size: int = 4000,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Train a tokenizer on ``texts`` and save it with a random tiny Qwen3 model in ``out_dir``.

    The result loads with ``AutoTokenizer``/``AutoModel`` (``local_files_only=True``) and with
    :class:`finrag_pipelines.embedding.hf_encoder.HFEncoder`. Same texts and seed give the same files.

    Args:
        texts: Training texts for the tokenizer (a few hundred are plenty).
        out_dir: Folder to write; created if missing, existing model files are overwritten.
        vocab_size: Target BPE vocabulary size, special tokens included (the trainer may stop
            earlier on a small corpus; the model uses the real size).
        hidden_size: Model width; must be a multiple of 4 (4 attention heads, 2 key/value heads).
        num_layers: Number of decoder layers.
        seed: Seed for the random weights.

    Returns:
        The model folder.

    Raises:
        ValueError: If ``texts`` is empty or a size is invalid.
    """
    import torch
    from transformers import Qwen3Config, Qwen3Model

    corpus = [text for text in texts if isinstance(text, str) and text.strip()]
    if not corpus:
        raise ValueError(
            "build_tiny_qwen3 needs at least one non-empty training text; pass some corpus lines."
        )
    if hidden_size < 8 or hidden_size % 4:
        raise ValueError(f"hidden_size must be a multiple of 4 and >= 8, got {hidden_size}.")
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
    if vocab_size < 300:
        raise ValueError(f"vocab_size must be >= 300 (256 byte symbols + special tokens), got {vocab_size}.")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)

    hf_tokenizer = build_tiny_qwen_tokenizer(corpus, vocab_size)
    hf_tokenizer.save_pretrained(str(folder))
    _set_tokenizer_class(folder / "tokenizer_config.json", "Qwen2Tokenizer")
    eot_id = hf_tokenizer.convert_tokens_to_ids("<|endoftext|>")

    config = Qwen3Config(
        vocab_size=len(hf_tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        tie_word_embeddings=True,
        max_position_embeddings=32768,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
        # no pad_token_id, like Qwen3-Embedding: it would make <|endoftext|> a padding_idx row, zero and
        # frozen, and that row is exactly the one last-token pooling reads
        pad_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3Model(config)
    model.config.architectures = ["Qwen3ForCausalLM"]
    model.save_pretrained(str(folder))
    logger.info(
        "built tiny Qwen3 in %s: vocab %d, hidden %d, %d layers, seed %d",
        folder,
        len(hf_tokenizer),
        hidden_size,
        num_layers,
        seed,
    )
    return folder


def build_tiny_qwen_tokenizer(
    corpus: Sequence[str], vocab_size: int, *, append_end_of_text: bool = True
) -> Any:
    """A byte-level BPE tokenizer with Qwen2's normaliser and pre-tokenizer, trained on ``corpus``.

    Args:
        corpus: Training texts.
        vocab_size: Target vocabulary size, special tokens included.
        append_end_of_text: Append ``<|endoftext|>`` to every text (as Qwen3-Embedding's tokenizer does);
            False for a causal LM such as Qwen3-Reranker, whose tokenizer appends nothing.

    Returns:
        A ``PreTrainedTokenizerFast`` with pad ``<|endoftext|>``, eos ``<|im_end|>`` and a chat template.
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # Qwen2's normaliser and pre-tokenizer, so the saved tokenizer loads identically as Qwen2Tokenizer
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus), trainer)
    if append_end_of_text:
        eot_id = tokenizer.token_to_id("<|endoftext|>")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="$A:0 <|endoftext|>:0",
            pair="$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1",
            special_tokens=[("<|endoftext|>", eot_id)],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=32768,
        chat_template=CHAT_TEMPLATE,
    )


def _set_tokenizer_class(config_path: Path, class_name: str) -> None:
    """Point a saved tokenizer_config.json at ``class_name`` (as the official Qwen3 files do)."""
    settings = json.loads(config_path.read_text(encoding="utf-8"))
    settings["tokenizer_class"] = class_name
    config_path.write_text(json.dumps(settings, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

"""Tiny random rerankers built locally, for tests and the CPU demo (there is no model hub here).

* :func:`build_tiny_qwen3_reranker`: a Qwen3 causal LM shaped like Qwen3-Reranker: a byte-level BPE tokenizer
  trained on the given texts that appends nothing (like Qwen3's), with ``yes`` and ``no`` as single tokens,
  and a randomly initialised ``Qwen3ForCausalLM`` (output head tied to the embeddings).
* :func:`build_tiny_bert_cross_encoder`: a BERT cross-encoder: a WordPiece tokenizer (Chinese characters
  split one by one, as BERT's does) and a randomly initialised ``BertForSequenceClassification`` with one
  label, the shape of bge-reranker / sentence-transformers ``CrossEncoder`` models.

Both load with :func:`finrag_pipelines.rerank.factory.build_reranker` and with ms-swift. Same texts and seed
give the same files.

Kedro-free library module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

RERANK_TOKENS = ("yes", "no")
"""The answer tokens of a Qwen3-Reranker-style model; each must be one token of its tokenizer."""


def _corpus(texts: Iterable[str], what: str) -> list[str]:
    corpus = [text for text in texts if isinstance(text, str) and text.strip()]
    if not corpus:
        raise ValueError(f"{what} needs at least one non-empty training text; pass some corpus lines.")
    return corpus


def _check_sizes(hidden_size: int, num_layers: int) -> None:
    if hidden_size < 8 or hidden_size % 4:
        raise ValueError(f"hidden_size must be a multiple of 4 and >= 8, got {hidden_size}.")
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}.")


def _set_tokenizer_class(folder: Path, class_name: str) -> None:
    path = folder / "tokenizer_config.json"
    settings = json.loads(path.read_text(encoding="utf-8"))
    settings["tokenizer_class"] = class_name
    path.write_text(json.dumps(settings, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def build_tiny_qwen3_reranker(
    texts: Iterable[str],
    out_dir: str | Path,
    vocab_size: int = 4000,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Train a tokenizer on ``texts`` and save it with a random tiny ``Qwen3ForCausalLM`` in ``out_dir``.

    Args:
        texts: Training texts for the tokenizer (a few hundred lines are plenty).
        out_dir: Folder to write; created if missing.
        vocab_size: Target BPE vocabulary size (``yes`` and ``no`` are added when BPE did not learn them).
        hidden_size: Model width, a multiple of 4 (4 attention heads, 2 key/value heads).
        num_layers: Decoder layers.
        seed: Seed of the random weights.

    Returns:
        The model folder.

    Raises:
        ValueError: If ``texts`` is empty or a size is invalid.
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from finrag_pipelines.embedding.tiny_model import build_tiny_qwen_tokenizer

    corpus = _corpus(texts, "build_tiny_qwen3_reranker")
    _check_sizes(hidden_size, num_layers)
    if vocab_size < 300:
        raise ValueError(f"vocab_size must be >= 300 (256 byte symbols + special tokens), got {vocab_size}.")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_qwen_tokenizer(corpus, vocab_size, append_end_of_text=False)
    missing = [t for t in RERANK_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing)
    tokenizer.save_pretrained(str(folder))
    _set_tokenizer_class(folder, "Qwen2Tokenizer")
    eot_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        tie_word_embeddings=True,
        max_position_embeddings=32768,
        bos_token_id=eot_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    model.save_pretrained(str(folder))
    logger.info(
        "built tiny Qwen3 reranker in %s: vocab %d, hidden %d, %d layers, seed %d",
        folder, len(tokenizer), hidden_size, num_layers, seed,
    )  # fmt: skip
    return folder


def build_tiny_bert_cross_encoder(
    texts: Iterable[str],
    out_dir: str | Path,
    vocab_size: int = 3000,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Train a WordPiece tokenizer on ``texts`` and save it with a random tiny BERT cross-encoder.

    The tokenizer renders a pair as ``[CLS] query [SEP] document [SEP]`` and returns no segment ids (one token
    type, as XLM-R-based rerankers): ms-swift's reranker templates train without them.

    Args:
        texts: Training texts for the tokenizer.
        out_dir: Folder to write; created if missing.
        vocab_size: Target WordPiece vocabulary size.
        hidden_size: Model width, a multiple of 4 (4 attention heads).
        num_layers: Encoder layers.
        seed: Seed of the random weights.

    Returns:
        The model folder.

    Raises:
        ValueError: If ``texts`` is empty or a size is invalid.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    corpus = _corpus(texts, "build_tiny_bert_cross_encoder")
    _check_sizes(hidden_size, num_layers)
    if vocab_size < 100:
        raise ValueError(f"vocab_size must be >= 100, got {vocab_size}.")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        # no segment ids, like XLM-R-based rerankers: ms-swift's reranker templates train without them
        model_input_names=["input_ids", "attention_mask"],
    )
    hf_tokenizer.save_pretrained(str(folder))
    _set_tokenizer_class(folder, "BertTokenizer")
    config = BertConfig(
        vocab_size=len(hf_tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=512,
        type_vocab_size=1,
        num_labels=1,
        pad_token_id=hf_tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    model.save_pretrained(str(folder))
    logger.info(
        "built tiny BERT cross-encoder in %s: vocab %d, hidden %d, %d layers, seed %d",
        folder, len(hf_tokenizer), hidden_size, num_layers, seed,
    )  # fmt: skip
    return folder

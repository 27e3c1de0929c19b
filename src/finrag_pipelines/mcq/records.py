"""verl rows: SFT ``messages`` and RL ``prompt``/``reward_model``/``extra_info``, their schema checks,
and token-length limits.

The checks accept both freshly built rows and rows read back from parquet (lists come back as numpy
arrays, structs as dicts), i.e. what verl's ``MultiTurnSFTDataset`` and ``RLHFDataset`` see.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from finrag_pipelines.mcq.extract import normalise_letters
from finrag_pipelines.mcq.format import parse_options, render_prompt, render_target

logger = logging.getLogger(__name__)

DATA_SOURCE = "finrag_mcq"
"""``data_source`` of every RL row (the custom reward ignores it; verl groups metrics by it)."""
ABILITY = "finance_mcq"
SFT_COLUMNS: tuple[str, ...] = ("item_id", "messages")
RL_COLUMNS: tuple[str, ...] = ("data_source", "prompt", "ability", "reward_model", "extra_info")
EXTRA_INFO_KEYS: tuple[str, ...] = ("index", "item_id", "split", "kind", "options", "question", "source")


class RecordSchemaError(ValueError):
    """A verl row does not have the expected shape; the message names the row and field."""


def build_sft_rows(
    items: pd.DataFrame, *, target_style: str, missing_explanation: str
) -> tuple[pd.DataFrame, int]:
    """SFT rows (``item_id``, ``messages``) from items.

    Args:
        items: Items (``ITEM_COLUMNS``).
        target_style: ``think`` or ``plain`` (see ``format.render_target``).
        missing_explanation: ``answer_only`` (train on the answer line alone) or ``exclude``.

    Returns:
        ``(rows, n_excluded_without_explanation)``.
    """
    if missing_explanation not in ("answer_only", "exclude"):
        raise ValueError(
            f"missing_explanation must be 'answer_only' or 'exclude', got {missing_explanation!r}"
        )
    has = items["explanation"].notna()
    use = items if missing_explanation == "answer_only" else items[has]
    rows = [
        {
            "item_id": r.item_id,
            "messages": [
                {"role": "user", "content": render_prompt(r.question, r.options, r.kind)},
                {"role": "assistant", "content": render_target(r.explanation, r.answer, target_style)},
            ],
        }
        for r in use.itertuples(index=False)
    ]
    return pd.DataFrame(rows, columns=list(SFT_COLUMNS)), int(len(items) - len(use))


def build_rl_rows(items: pd.DataFrame, split: str) -> pd.DataFrame:
    """RL rows in verl's schema; ``extra_info`` carries what the reward needs (never the explanation)."""
    rows = []
    for index, r in enumerate(items.itertuples(index=False)):
        rows.append(
            {
                "data_source": DATA_SOURCE,
                "prompt": [{"role": "user", "content": render_prompt(r.question, r.options, r.kind)}],
                "ability": ABILITY,
                "reward_model": {"style": "rule", "ground_truth": r.answer},
                "extra_info": {
                    "index": index,
                    "item_id": r.item_id,
                    "split": split,
                    "kind": r.kind,
                    "options": r.options,
                    "question": r.question,
                    "source": r.source,
                },
            }
        )
    return pd.DataFrame(rows, columns=list(RL_COLUMNS))


def _messages(value: Any, where: str, roles: Sequence[str]) -> list[dict[str, Any]]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list) or len(value) != len(roles):
        raise RecordSchemaError(
            f"{where}: expected a list of {len(roles)} messages, got {type(value).__name__}"
        )
    for i, (msg, role) in enumerate(zip(value, roles)):
        if (
            not isinstance(msg, Mapping)
            or msg.get("role") != role
            or not isinstance(msg.get("content"), str)
            or not msg["content"].strip()
        ):
            raise RecordSchemaError(
                f"{where}[{i}]: expected {{'role': {role!r}, 'content': <non-empty str>}}, got {msg!r:.120}"
            )
    return value


def validate_sft_rows(rows: pd.DataFrame) -> None:
    """Check SFT rows: a ``messages`` column of [user, assistant] chats, unique ``item_id``.

    Raises:
        RecordSchemaError: Naming the first bad row and field.
    """
    missing = [c for c in SFT_COLUMNS if c not in rows.columns]
    if missing:
        raise RecordSchemaError(f"SFT rows lack column(s) {missing}; columns are {list(rows.columns)}")
    if rows["item_id"].duplicated().any():
        raise RecordSchemaError(
            f"SFT rows: duplicated item_id {rows.loc[rows['item_id'].duplicated(), 'item_id'].iloc[0]}"
        )
    for i, value in enumerate(rows["messages"]):
        _messages(value, f"SFT row {i} messages", ("user", "assistant"))


def validate_rl_rows(rows: pd.DataFrame) -> None:
    """Check RL rows against what verl's ``RLHFDataset`` and our reward read.

    Raises:
        RecordSchemaError: Naming the first bad row and field.
    """
    missing = [c for c in RL_COLUMNS if c not in rows.columns]
    if missing:
        raise RecordSchemaError(f"RL rows lack column(s) {missing}; columns are {list(rows.columns)}")
    for i, row in enumerate(rows.itertuples(index=False)):
        where = f"RL row {i}"
        if not isinstance(row.data_source, str) or not row.data_source:
            raise RecordSchemaError(f"{where} data_source: expected a non-empty string")
        _messages(row.prompt, f"{where} prompt", ("user",))
        rm = row.reward_model
        if (
            not isinstance(rm, Mapping)
            or rm.get("style") != "rule"
            or not isinstance(rm.get("ground_truth"), str)
        ):
            raise RecordSchemaError(
                f"{where} reward_model: expected {{'style': 'rule', 'ground_truth': str}}, got {rm!r}"
            )
        truth = rm["ground_truth"]
        info = row.extra_info
        if not isinstance(info, Mapping) or any(k not in info for k in EXTRA_INFO_KEYS):
            raise RecordSchemaError(
                f"{where} extra_info: expected keys {list(EXTRA_INFO_KEYS)}, got {info!r:.160}"
            )
        try:
            options = parse_options(info["options"])
        except ValueError as exc:
            raise RecordSchemaError(f"{where} extra_info.options: {exc}") from exc
        if normalise_letters(truth) != truth or not truth or set(truth) - set(options):
            raise RecordSchemaError(
                f"{where} reward_model.ground_truth {truth!r}: "
                f"not sorted letters among options {''.join(options)}"
            )


def load_tokenizer(path: str | None) -> Any:
    """A local HF tokenizer (no hub access), or ``None`` for character counts."""
    if path is None:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def chat_lengths(
    chats: Iterable[Any], tokenizer: Any | None, *, add_generation_prompt: bool
) -> tuple[np.ndarray, str]:
    """Length of each chat after the chat template: tokens with a tokenizer, else characters.

    Returns:
        ``(lengths, unit)`` with unit ``"tokens"`` or ``"characters"``.
    """
    chats = [[dict(m) for m in (c.tolist() if isinstance(c, np.ndarray) else c)] for c in chats]
    if tokenizer is None:
        return np.array([sum(len(m["content"]) for m in c) for c in chats], dtype=np.int64), "characters"
    lengths = []
    for chat in chats:
        ids = tokenizer.apply_chat_template(chat, tokenize=True, add_generation_prompt=add_generation_prompt)
        if isinstance(ids, Mapping):
            ids = ids["input_ids"]
        lengths.append(len(ids))
    return np.array(lengths, dtype=np.int64), "tokens"


def limit_lengths(
    rows: pd.DataFrame, lengths: np.ndarray, max_length: int, truncation: str
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Apply the length policy.

    ``drop`` removes over-long rows; ``right`` keeps them and counts them: verl cuts them at load time
    with ``data.truncation=right`` (a row is never cut here, so its answer line is never half-removed
    in a file). Returns the kept rows and ``{"n_in", "n_over", "n_dropped", "n_truncated_by_trainer"}``.
    """
    if truncation not in ("right", "drop"):
        raise ValueError(f"truncation must be 'right' or 'drop', got {truncation!r}")
    over = np.asarray(lengths) > max_length
    counts = {"n_in": len(rows), "n_over": int(over.sum()), "n_dropped": 0, "n_truncated_by_trainer": 0}
    if truncation == "drop":
        counts["n_dropped"] = int(over.sum())
        return rows[~over].reset_index(drop=True), counts
    counts["n_truncated_by_trainer"] = int(over.sum())
    return rows.reset_index(drop=True), counts


def describe_lengths(
    lengths: np.ndarray, unit: str, thresholds: Sequence[int] = (256, 512, 1024, 2048, 4096)
) -> dict[str, Any]:
    """Summary statistics of lengths (mean, percentiles, counts over thresholds)."""
    if len(lengths) == 0:
        return {"unit": unit, "n": 0}
    arr = np.asarray(lengths, dtype=float)
    stats: dict[str, Any] = {
        "unit": unit,
        "n": len(arr),
        "mean": round(float(arr.mean()), 1),
        "max": int(arr.max()),
    }
    stats.update({f"p{q}": float(np.percentile(arr, q)) for q in (50, 90, 95, 99)})
    stats["over"] = {str(t): int((arr > t).sum()) for t in thresholds}
    return stats


def tokenizer_name(path: str | None) -> str:
    return "characters (tokenizer_path is null)" if path is None else str(path)

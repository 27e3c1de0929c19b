"""The SFT mix: original explained items, distilled reasoning, calculation questions and grounded QA.

``sft_distill`` writes its verified rows in one table (:data:`DISTILL_COLUMNS`, ``mix_source`` naming the
part); ``sft`` renders them as chats next to its own, drops every row whose normalised question is in
``rl_train`` or ``eval`` (no training question may be an evaluation question), keeps one row per item across
sources (the first source in the configured order wins, so an item's distilled reasoning never doubles its own
explanation) and caps each source. An item is its normalised question and options (a free-text row: its
question), as in ``mcq_prep``'s dedup, so exam stems such as ``下列说法正确的是`` with other options stay
distinct. Multiple-choice rows use the project's one prompt and answer format (``format.py``); grounded QA
rows show the source passage and answer in free text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from finrag_pipelines.mcq.format import THINK_CLOSE, THINK_OPEN, render_prompt, render_target
from finrag_pipelines.mcq.split import item_key, question_key

MIX_SOURCES: tuple[str, ...] = ("original", "distilled_reasoning", "calc", "grounded_qa")
"""``original``: sft_train items with their own explanation (sft's chats); the rest come from sft_distill."""
DISTILL_COLUMNS: tuple[str, ...] = (
    "item_id",
    "mix_source",
    "source",
    "subject",
    "kind",
    "question",
    "options",
    "answer",
    "explanation",
    "context",
    "model",
    "prompt_hash",
)
"""``kind`` is ``single``/``multi``/``true_false`` (``options`` JSON, ``answer`` letters, ``explanation`` the
reasoning) or ``qa`` (``context`` the passage, ``answer`` the reference answer, no options)."""
MIX_COLUMNS: tuple[str, ...] = (
    "item_id",
    "messages",
    "question_key",
    "repeat_key",
    "has_explanation",
    "mix_source",
)

GROUNDED_INSTRUCTION = "请根据下面的资料回答问题。只依据资料作答，资料中没有的信息不要编造。"


def render_grounded_prompt(context: str, question: str) -> str:
    """The user message of a grounded QA row: instruction, passage, question."""
    return f"{GROUNDED_INSTRUCTION}\n\n【资料】\n{context.strip()}\n\n【问题】\n{question.strip()}"


def render_free_answer(answer: str, style: str) -> str:
    """The assistant message of a free-text answer: an empty think block first in ``think`` style (Qwen3)."""
    if style not in ("think", "plain"):
        raise ValueError(f"target style must be 'think' or 'plain', got {style!r}")
    return f"{THINK_OPEN}\n\n{THINK_CLOSE}\n\n{answer.strip()}" if style == "think" else answer.strip()


def distill_chats(items: pd.DataFrame, target_style: str) -> pd.DataFrame:
    """Chats (:data:`MIX_COLUMNS`) for sft_distill rows (:data:`DISTILL_COLUMNS`)."""
    rows = []
    for r in items.itertuples(index=False):
        if r.kind == "qa":
            user, assistant = (
                render_grounded_prompt(r.context, r.question),
                render_free_answer(r.answer, target_style),
            )
        else:
            user, assistant = (
                render_prompt(r.question, r.options, r.kind),
                render_target(r.explanation, r.answer, target_style),
            )
        rows.append(
            {
                "item_id": r.item_id,
                "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
                "question_key": question_key(r.question),
                "repeat_key": question_key(r.question) if r.kind == "qa" else item_key(r.question, r.options),
                "has_explanation": r.kind == "qa" or bool(r.explanation),
                "mix_source": r.mix_source,
            }
        )
    return pd.DataFrame(rows, columns=list(MIX_COLUMNS))


def mix_chats(
    chats: pd.DataFrame, order: Sequence[tuple[str, int | None]], held_out_keys: set[str], seed: int
) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """Keep the configured sources in order: drop held-out questions, then repeated items, then cap each.

    Args:
        chats: :data:`MIX_COLUMNS` rows of every source.
        order: ``(source, max_rows)`` in precedence order (``None``: no cap); sources not listed are left out.
        held_out_keys: ``question_key`` of every ``rl_train`` and ``eval`` item (matched by question).
        seed: Seeds the sample drawn when a source is capped.

    Returns:
        The kept rows (in source order) and per source ``{"available", "in_rl_or_eval", "repeated", "capped",
        "kept"}``.
    """
    counts: dict[str, dict[str, int]] = {}
    kept_parts, seen = [], set()
    for name, cap in order:
        part = chats[chats["mix_source"] == name]
        held = part["question_key"].isin(held_out_keys)
        rest = part[~held]
        repeat = rest["repeat_key"].isin(seen) | rest["repeat_key"].duplicated()
        rest = rest[~repeat]
        capped = 0
        if cap is not None and len(rest) > cap:
            keep = np.sort(np.random.default_rng(seed).choice(len(rest), size=cap, replace=False))
            capped, rest = len(rest) - cap, rest.iloc[keep]
        seen |= set(rest["repeat_key"])
        kept_parts.append(rest)
        counts[name] = {
            "available": len(part),
            "in_rl_or_eval": int(held.sum()),
            "repeated": int(repeat.sum()),
            "capped": capped,
            "kept": len(rest),
        }
    mixed = pd.concat([chats.iloc[:0], *kept_parts], ignore_index=True)
    return mixed, counts


def rl_and_eval_keys(mcq_splits: pd.DataFrame) -> set[str]:
    """``question_key`` of every item a model is trained on by RL or evaluated on."""
    return set(mcq_splits.loc[mcq_splits["split"].isin(["rl_train", "eval"]), "question_key"])


def empty_distill_items() -> pd.DataFrame:
    """A table with :data:`DISTILL_COLUMNS` and no rows."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in DISTILL_COLUMNS})


def check_distill_items(items: pd.DataFrame) -> None:
    """Raise ``ValueError`` naming the problem when sft_distill's table does not have the agreed shape."""
    missing = [c for c in DISTILL_COLUMNS if c not in items.columns]
    if missing:
        raise ValueError(f"sft_distill_items lacks column(s) {missing}; rerun sft_distill")
    unknown = sorted(set(items["mix_source"]) - set(MIX_SOURCES[1:]))
    if unknown:
        raise ValueError(f"sft_distill_items has mix_source {unknown}; expected {list(MIX_SOURCES[1:])}")

"""The one prompt and answer format shared by SFT targets, RL prompts, the extractor and the reward.

The final answer is written once, on its own line, as ``答案：\\boxed{AC}`` (letters in alphabetical
order, no separators). Everything that writes or reads that line uses the constants below.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

ANSWER_LABEL = "答案："
"""Label written before the boxed letters on the final line."""

BOX_OPEN = "\\boxed{"
BOX_CLOSE = "}"

ANSWER_STATEMENT_RE = re.compile(r"\\boxed\s*\{([^{}]*)\}")
"""One answer statement: ``\\boxed{...}`` (the label before it is recommended, not required)."""

FALLBACK_ANSWER_RE = re.compile(
    r"(?:最终)?答案\s*(?:是|为|应为|应该是)?\s*[:：]?\s*([A-Za-zＡ-Ｚａ-ｚ][A-Za-zＡ-Ｚａ-ｚ\s,，、;；和及与/]*)"
)
"""``答案：AC`` without a box: accepted by evaluation when asked, never counted as the stated format."""

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

KINDS: tuple[str, ...] = ("single", "multi", "true_false")
KIND_NAMES: dict[str, str] = {"single": "单项选择题", "multi": "多项选择题", "true_false": "判断题"}
KIND_RULES: dict[str, str] = {
    "single": "本题只有一个正确选项。",
    "multi": "本题有两个或以上正确选项，须全部选出。",
    "true_false": "请判断题干表述是否正确，并选择对应选项。",
}

INSTRUCTION = (
    "以下是一道金融领域的<kind_name>。<kind_rule>请先逐步推理，然后在最后单独一行写出最终答案，"
    "格式为："
    + ANSWER_LABEL
    + BOX_OPEN
    + "选项字母"
    + BOX_CLOSE
    + "（多个字母按字母顺序连写，例如 "
    + ANSWER_LABEL
    + BOX_OPEN
    + "AC"
    + BOX_CLOSE
    + "）。最终答案只写一次。"
)
"""The fixed Chinese instruction (filled with the kind's name and rule)."""


def answer_line(letters: str) -> str:
    """The final answer line, e.g. ``答案：\\boxed{AC}``."""
    return f"{ANSWER_LABEL}{BOX_OPEN}{''.join(sorted(letters))}{BOX_CLOSE}"


def parse_options(options: str | Mapping[str, Any]) -> dict[str, str]:
    """Options as a ``letter -> text`` dict, from the JSON string stored in tables or from a mapping.

    Raises:
        ValueError: If ``options`` is neither a JSON object string nor a mapping of letters.
    """
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"options must be a JSON object of letter -> text, got {options[:80]!r}"
            ) from exc
    if not isinstance(options, Mapping):
        raise ValueError(f"options must be a mapping of letter -> text, got {type(options).__name__}")  # noqa: TRY004 - callers catch ValueError
    return {str(k): ("" if v is None else str(v)) for k, v in sorted(options.items()) if v is not None}


def dump_options(options: Mapping[str, str]) -> str:
    """The canonical JSON string of options (sorted letters, Chinese unescaped) stored in tables."""
    return json.dumps(dict(sorted(options.items())), ensure_ascii=False)


def render_prompt(question: str, options: str | Mapping[str, Any], kind: str) -> str:
    """The user message: instruction, question, then one ``A. text`` line per option.

    Raises:
        ValueError: On an unknown kind or unusable options.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    opts = parse_options(options)
    lines = [
        INSTRUCTION.replace("<kind_name>", KIND_NAMES[kind]).replace("<kind_rule>", KIND_RULES[kind]),
        "",
        question.strip(),
        "",
    ]
    lines += [f"{letter}. {text.strip()}" for letter, text in opts.items()]
    return "\n".join(lines)


def render_target(explanation: str | None, letters: str, style: str) -> str:
    """The SFT assistant message: the explanation as reasoning, then the answer line.

    Args:
        explanation: Worked reasoning, or ``None``/empty for an answer-only target.
        letters: The correct letters.
        style: ``"think"`` wraps the reasoning in ``<think>…</think>`` (Qwen3 thinking mode);
            ``"plain"`` writes it as ordinary text.

    Raises:
        ValueError: On an unknown style.
    """
    if style not in ("think", "plain"):
        raise ValueError(f"target style must be 'think' or 'plain', got {style!r}")
    reasoning = explanation.strip() if isinstance(explanation, str) else ""  # None/NaN: answer only
    final = answer_line(letters)
    if style == "think":
        return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{final}"
    return f"{reasoning}\n\n{final}" if reasoning else final

"""Turning what an LLM actually writes into the values a pipeline needs.

Models wrap JSON in code fences, add a sentence before or after it, think out loud in ``<think>``
blocks, write Python dicts with single quotes, and vary key spellings (``Question_Type`` vs
``question type``). These helpers accept all of that and raise ``ValueError`` with a short reason for
anything else, which :func:`~finrag_pipelines.llm.batch.run_chat_batch` treats as an invalid output
(regenerate, then quarantine).
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_KEY_NOISE = re.compile(r"[\s_\-]+")
_QUOTE_PAIRS: tuple[tuple[str, str], ...] = (
    ('"', '"'),
    ("'", "'"),
    ("`", "`"),
    ("\u201c", "\u201d"),  # “ ”
    ("\u2018", "\u2019"),  # ‘ ’
    ("\u300c", "\u300d"),  # 「 」
    ("\u300e", "\u300f"),  # 『 』
)
# Labels a model puts before a free-text answer: a known English word ("Query:", "Final answer:") or an
# identifier with underscores ("Generated_Query:"), or a Chinese label from the list below. A fixed list
# keeps a query's own colon ("ETF：是什么？", "2023年营收：多少？").
_EN_LABEL = re.compile(
    r"^\s*\**\s*(?:[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+|"
    r"(?:generated |final |rewritten |search )?(?:query|question|answer|output|result|response|translation))"
    r"\s*\**\s*[:：]\s*\**\s*",
    re.IGNORECASE,
)
_ZH_LABELS = (
    "生成的查询",
    "生成查询",
    "查询问题",
    "检索问题",
    "改写后的查询",
    "查询",
    "问题",
    "提问",
    "答案",
    "回答",
    "输出",
    "结果",
    "中文译文",
    "中文翻译",
    "译文",
    "翻译",
)
_ZH_LABEL = re.compile(r"^\s*\**\s*(?:" + "|".join(map(re.escape, _ZH_LABELS)) + r")\s*\**\s*[:：]\s*\**\s*")
_MAX_SCAN_STARTS = 50


def _short(text: str, limit: int = 80) -> str:
    """``text`` on one line, cut to ``limit`` characters, for error messages."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 3] + "...")


def strip_thinking(text: str) -> str:
    """Remove reasoning text: ``<think>...</think>`` blocks, an unopened ``...</think>`` prefix, and an
    unclosed trailing ``<think>...`` (a generation cut off while thinking).

    Args:
        text: Raw model output.

    Returns:
        The answer part, stripped of surrounding whitespace.
    """
    out = _THINK_BLOCK.sub("", text)
    lowered = out.lower()
    close = lowered.rfind("</think>")
    if close != -1:  # Qwen3's template opens <think> in the prompt, so the output may only close it.
        out = out[close + len("</think>") :]
        lowered = out.lower()
    opened = lowered.find("<think>")
    if opened != -1:
        out = out[:opened]
    return out.strip()


def _fenced_blocks(text: str) -> list[str]:
    """Contents of Markdown code fences, ``json``-tagged ones first."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    return [body for lang, body in blocks if lang == "json"] + [
        body for lang, body in blocks if lang != "json"
    ]


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the ``}`` closing the ``{`` at ``start``, skipping braces inside strings."""
    depth = 0
    quote: str | None = None
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _load_object(candidate: str) -> dict[str, Any] | str:
    """Parse ``candidate`` as a JSON object, else a Python dict literal; a reason string on failure."""
    try:
        value = json.loads(candidate)
    except ValueError as exc:
        json_error = f"invalid JSON ({exc.msg} at char {getattr(exc, 'pos', '?')})"
        try:
            value = ast.literal_eval(candidate)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            repaired = re.sub(r",\s*([}\]])", r"\1", candidate)  # trailing commas
            if repaired == candidate:
                return json_error
            try:
                value = json.loads(repaired)
            except ValueError:
                return json_error
    if not isinstance(value, dict):
        return f"expected a JSON object, got {type(value).__name__}"
    return {str(k): v for k, v in value.items()}


def extract_json_object(text: str) -> dict[str, Any]:
    """Find and parse the first JSON object in an LLM response.

    Handles ``<think>`` blocks, Markdown code fences, prose before and after the object, braces inside
    string values, single-quoted Python dicts and trailing commas.

    Args:
        text: Raw model output.

    Returns:
        The object, with string keys.

    Raises:
        ValueError: With a short reason (no object, unbalanced braces, invalid JSON).
        TypeError: If ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected the response text as a string, got {type(text).__name__}")
    body = strip_thinking(text)
    if not body:
        raise ValueError("empty response (nothing left after removing thinking)")
    reason = f"no JSON object in the response: {_short(body)}"
    for source in [*_fenced_blocks(body), body]:
        start = source.find("{")
        tries = 0
        while start != -1 and tries < _MAX_SCAN_STARTS:
            tries += 1
            end = _balanced_end(source, start)
            if end is None:
                reason = f"unbalanced braces in the JSON object: {_short(source[start:])}"
            else:
                parsed = _load_object(source[start:end])
                if isinstance(parsed, dict):
                    return parsed
                reason = f"{parsed}: {_short(source[start:end])}"
            start = source.find("{", start + 1)
    raise ValueError(reason)


def normalise_key(key: Any) -> str:
    """A key's comparable form: case-folded, without spaces, underscores or hyphens.

    ``"Question_Type"``, ``"question type"`` and ``"questionType"`` all become ``"questiontype"``.
    """
    return _KEY_NOISE.sub("", str(key)).casefold()


def pick(obj: Any, names: Sequence[str], field: str) -> Any:
    """The value stored under any of ``names`` (compared with :func:`normalise_key`).

    Args:
        obj: A parsed JSON object.
        names: Accepted spellings, in order of preference.
        field: The field's name for the error message.

    Returns:
        The first value found.

    Raises:
        ValueError: If ``obj`` is not a mapping or holds none of the names.
    """
    if not isinstance(obj, Mapping):
        # ValueError, not TypeError: a model answering with a list is an invalid output, not a bug.
        raise ValueError(f"expected a JSON object holding '{field}', got {type(obj).__name__}")  # noqa: TRY004
    by_norm: dict[str, Any] = {}
    for key, value in obj.items():
        by_norm.setdefault(normalise_key(key), value)
    for name in names:
        norm = normalise_key(name)
        if norm in by_norm:
            return by_norm[norm]
    raise ValueError(f"missing field '{field}' (accepted keys {list(names)}; got keys {list(obj)[:10]})")


def one_of(value: Any, allowed: Sequence[str], field: str) -> str:
    """Match ``value`` to one of ``allowed`` ignoring case, spaces, underscores and hyphens.

    ``"Yes_Or_No"``, ``"yes or no"`` and ``" YES-OR-NO. "`` all match ``"yes_or_no"``.

    Args:
        value: The model's value.
        allowed: The canonical values.
        field: The field's name for the error message.

    Returns:
        The canonical spelling from ``allowed``.

    Raises:
        ValueError: Listing the allowed values.
    """
    if isinstance(value, str):
        norm = normalise_key(value.strip().strip("\"'`.。,，;；"))
        for candidate in allowed:
            if normalise_key(candidate) == norm:
                return candidate
    raise ValueError(f"{field} must be one of {list(allowed)}, got {_short(str(value), 40)}")


def _strip_quotes(text: str) -> str:
    changed = True
    while changed and len(text) >= 2:
        changed = False
        for left, right in _QUOTE_PAIRS:
            if text.startswith(left) and text.endswith(right) and len(text) > len(left) + len(right):
                inner = text[len(left) : -len(right)]
                if left not in inner and right not in inner:  # not '"a" and "b"'
                    text = inner.strip()
                    changed = True
                    break
    return text


def clean_text_output(text: str, *, keys: Sequence[str] = ()) -> str:
    """Clean a free-text answer (e.g. a generated query).

    Removes thinking, code fences, surrounding quotes and a leading label such as
    ``"Generated_Query:"`` or ``"查询："``. If the answer is a JSON object, the string under one of
    ``keys`` is taken, else its only (or first) string value.

    Args:
        text: Raw model output.
        keys: Preferred field names when the answer is a JSON object.

    Returns:
        The cleaned text (may be empty; callers decide whether that is invalid).
    """
    out = strip_thinking(text)
    blocks = _fenced_blocks(out)
    if blocks and out.lstrip().startswith("```"):
        out = blocks[0].strip()
    if out.startswith("{") and out.rstrip().endswith("}"):
        try:
            obj = extract_json_object(out)
        except ValueError:
            obj = None
        if obj is not None:
            chosen: Any = None
            if keys:
                try:
                    chosen = pick(obj, keys, keys[0])
                except ValueError:
                    chosen = None
            if not isinstance(chosen, str):
                strings = [v for v in obj.values() if isinstance(v, str) and v.strip()]
                chosen = strings[0] if strings else None
            if isinstance(chosen, str):
                out = chosen.strip()
    for _ in range(2):  # a label inside quotes, or quotes after a label
        before = out
        out = _ZH_LABEL.sub("", out, count=1)
        match = _EN_LABEL.match(out)
        if match and match.end() < len(out):
            out = out[match.end() :]
        out = _strip_quotes(out.strip()).strip()
        if out == before:
            break
    return out

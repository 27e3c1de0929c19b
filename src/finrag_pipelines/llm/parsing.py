"""Turning what an LLM actually writes into the values a pipeline needs.

Models wrap JSON in code fences, add a sentence before or after it, think out loud in ``<think>``
blocks, write Python dicts with single quotes, vary key spellings (``Question_Type`` vs
``question type``), and name an option by its text instead of its number (:func:`match_choice`). These
helpers accept all of that and raise ``ValueError`` with a short reason for anything else, which
:func:`~finrag_pipelines.llm.batch.run_chat_batch` treats as an invalid output (regenerate, then
quarantine). An answer that merely repeats its prompt is caught with :func:`prompt_echo_finder`.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
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


def _locate_json_object(text: str) -> tuple[dict[str, Any], str, str]:
    """``(object, its source text, the answer without thinking)`` for the first JSON object found."""
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
                    return parsed, source[start:end], body
                reason = f"{parsed}: {_short(source[start:end])}"
            start = source.find("{", start + 1)
    raise ValueError(reason)


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
    return _locate_json_object(text)[0]


def extract_json_object_and_rest(text: str) -> tuple[dict[str, Any], str]:
    """Like :func:`extract_json_object`, and also the answer's text around the object.

    The rest (thinking removed, the object's own text cut out) is what an echo check looks at: an answer
    that repeats the prompt carries the prompt's instructions around the example object it copied.

    Args:
        text: Raw model output.

    Returns:
        ``(object, rest)``.

    Raises:
        ValueError: As :func:`extract_json_object`.
        TypeError: If ``text`` is not a string.
    """
    obj, source, body = _locate_json_object(text)
    return obj, body.replace(source, " ", 1)


def json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object (or Python dict literal) that parses out of ``text``, outermost ones, in order.

    Used on a prompt's own text to find its example answers.
    """
    found: list[dict[str, Any]] = []
    start = text.find("{")
    while start != -1:
        end = _balanced_end(text, start)
        parsed = _load_object(text[start:end]) if end is not None else None
        if isinstance(parsed, dict):
            found.append(parsed)
            start = text.find("{", end)
        else:
            start = text.find("{", start + 1)
    return found


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


def normalise_text(text: str) -> str:
    """A choice's comparable form: NFKC, case-folded, letters and digits only (any script).

    Spaces, punctuation (``…`` included), quotes, underscores and hyphens go: ``"Yes_Or_No"``,
    ``" yes or no. "`` and ``"YES-OR-NO"`` all become ``"yesorno"``; ``"高中（水平）"`` becomes
    ``"高中水平"``.
    """
    folded = unicodedata.normalize("NFKC", str(text)).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LN")


# "2", "2.", "#2", "No. 2", "编号2", "编号：2", "候选人 2", "第2位", "(2)", "【2】" and "2. <text>":
# a candidate number
_NUMBER_LABELS = (
    "候选提问人",
    "候选人",
    "候选角色",
    "提问人",
    "角色",
    "编号",
    "序号",
    "选项",
    "character",
    "candidate",
    "persona",
    "option",
    "number",
    "no.",
    "no",
    "#",
)
_NUMBERED = re.compile(
    r"^(?:(?:" + "|".join(map(re.escape, _NUMBER_LABELS)) + r")\s*[:：#]?\s*)?(?:第\s*)?"
    r"[(\[（【]?\s*(\d{1,4})\s*[)\]）】]?\s*(?:号|位|个|名)?(?=$|[\s.、:：,，;；\-—)）\]】])",
    re.IGNORECASE,
)
_NUMBER_REST = " \t\n.、:：,，;；-—)）]】"
# "high_school（高中水平）", "高中 (high school)", "university: 需要基础的金融知识": parts that must agree
_BRACKETED = re.compile(r"^(.+?)\s*[（(]\s*(.+?)\s*[）)]\s*$", re.DOTALL)
_COLON = re.compile(r"^(.+?)\s*[:：]\s*(.+)$", re.DOTALL)


class _ChoiceTable:
    """Choices and their aliases, raw and normalised, for :func:`match_choice`."""

    def __init__(self, choices: Sequence[str], aliases: Mapping[str, Sequence[str]] | None) -> None:
        index = {name: i for i, name in enumerate(choices)}
        self.names: list[tuple[int, str]] = [(i, str(c).strip()) for i, c in enumerate(choices)]
        for name, extra in (aliases or {}).items():
            if name not in index:
                raise ValueError(f"alias key {name!r} is not one of the choices {list(choices)}")
            self.names.extend((index[name], str(a).strip()) for a in extra)
        self.normalised = [(i, normalise_text(n)) for i, n in self.names]
        self.size = len(choices)

    def hits(self, text: str, min_prefix_chars: int | None) -> set[int]:
        """Choices named by ``text``: exactly, else normalised, else (if allowed) as a normalised prefix."""
        exact = {i for i, n in self.names if n == text}
        if exact:
            return exact
        norm = normalise_text(text)
        if not norm:
            return set()
        equal = {i for i, n in self.normalised if n == norm}
        if equal or min_prefix_chars is None or len(norm) < min_prefix_chars:
            return equal
        return {i for i, n in self.normalised if n.startswith(norm)}


def _number_and_rest(text: str) -> tuple[int, str] | None:
    flat = unicodedata.normalize("NFKC", text)
    match = _NUMBERED.match(flat)
    return None if match is None else (int(match.group(1)), flat[match.end() :].strip(_NUMBER_REST))


def _resolve(text: str, table: _ChoiceTable, numbered: bool, min_prefix: int | None, field: str) -> set[int]:
    """The choices ``text`` names (empty: none; several: ambiguous).

    Raises ``ValueError`` on a number out of range, or a number contradicted by the text after it.
    """
    hits = table.hits(text, None)
    if hits:
        return hits
    number = _number_and_rest(text) if numbered else None
    if number is not None:
        value, rest = number
        if not 1 <= value <= table.size:
            raise ValueError(f"{field} {value} is not one of 1..{table.size}")
        named = table.hits(rest, min_prefix) if rest else set()
        if named and value - 1 not in named:
            others = ", ".join(str(i + 1) for i in sorted(named))
            raise ValueError(
                f"{field} {_short(text, 60)} names candidate {value} by number but {others} by text"
            )
        return {value - 1}
    parts: set[int] = set()
    for pattern in (_BRACKETED, _COLON):
        match = pattern.match(text)
        if match is not None:
            found = [_resolve(g.strip(), table, numbered, min_prefix, field) for g in match.groups()]
            found = [f for f in found if f]
            parts = set.intersection(*found) or set.union(*found) if found else set()
            if parts:
                break
    if len(parts) == 1:
        return parts
    whole = table.hits(text, min_prefix)
    return whole if len(whole) == 1 or not parts else parts


def match_choice(
    value: Any,
    choices: Sequence[str],
    field: str,
    *,
    numbered: bool = False,
    aliases: Mapping[str, Sequence[str]] | None = None,
    min_prefix_chars: int | None = None,
) -> int:
    """Which of ``choices`` an LLM's ``value`` names, the way models really name an option.

    Accepted, in this order:

    * the exact text of a choice or of one of its ``aliases``, then the same after
      :func:`normalise_text` (case, spaces, punctuation, underscores and hyphens ignored);
    * with ``numbered``, its 1-based number: ``2``, ``"2"``, ``"#2"``, ``"编号2"``, ``"候选人 2"``,
      ``"第2位"``, or ``"2. <text>"`` (the text, when it names a choice, must name the same one);
    * ``"name（别名）"``, ``"name (alias)"`` or ``"name: description"``: the parts that name a choice must
      all name the same one;
    * with ``min_prefix_chars``, a normalised prefix of at least that many characters that starts exactly
      one choice (``"A budget-conscious traveler…"``, ``"acquire"``).

    Args:
        value: The model's value (a string or, with ``numbered``, an integer).
        choices: The options in the order shown to the model (numbered from 1).
        field: The field's name for error messages.
        numbered: Whether the options were shown with numbers.
        aliases: Other names per choice, e.g. ``{"high_school": ["高中", "高中水平"]}``.
        min_prefix_chars: Shortest normalised prefix accepted; ``None`` accepts no prefixes.

    Returns:
        The 0-based index of the choice.

    Raises:
        ValueError: When ``value`` names no choice or several (the message says which), or a number is out
            of range; an alias key that is not a choice.
    """
    table = _ChoiceTable(choices, aliases)
    shown = _short(str(value), 60)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numbered and is_number and float(value).is_integer():
        value = str(int(value))
    hits: set[int] = set()
    if isinstance(value, str):
        text = _strip_quotes(value.strip()).strip()
        hits = _resolve(text, table, numbered, min_prefix_chars, field) if text else set()
    if len(hits) == 1:
        return hits.pop()
    if hits:
        if numbered:
            names = ", ".join(str(i + 1) for i in sorted(hits))
            raise ValueError(f"{field} {shown} matches several candidates ({names}); it must name one")
        named = [choices[i] for i in sorted(hits)]
        raise ValueError(f"{field} {shown} matches several of {named}; it must name one")
    if numbered:
        raise ValueError(
            f"{field} must be a candidate number 1..{len(choices)} or a candidate's text, got {shown} "
            "(it matches none of them)"
        )
    raise ValueError(f"{field} must be one of {list(choices)}, got {_short(str(value), 40)}")


def one_of(
    value: Any,
    allowed: Sequence[str],
    field: str,
    *,
    aliases: Mapping[str, Sequence[str]] | None = None,
    min_prefix_chars: int | None = None,
) -> str:
    """Match ``value`` to one of ``allowed`` (see :func:`match_choice`) and return its canonical spelling.

    ``"Yes_Or_No"``, ``"yes or no"`` and ``" YES-OR-NO. "`` all match ``"yes_or_no"``; with
    ``aliases={"high_school": ["高中"]}`` so does ``"高中"`` match ``"high_school"``.

    Args:
        value: The model's value.
        allowed: The canonical values.
        field: The field's name for the error message.
        aliases: Other names per canonical value.
        min_prefix_chars: Shortest unambiguous prefix accepted; ``None`` accepts no prefixes.

    Returns:
        The canonical spelling from ``allowed``.

    Raises:
        ValueError: Listing the allowed values, or the ones an ambiguous value matches.
    """
    return allowed[match_choice(value, allowed, field, aliases=aliases, min_prefix_chars=min_prefix_chars)]


def prompt_echo_finder(prompt_texts: Sequence[str], min_chars: int) -> Callable[[str], str | None]:
    """A check for answers that repeat a prompt instead of answering it.

    Args:
        prompt_texts: The prompt's own fixed text (e.g. :attr:`PromptTemplate.literal_texts`: the
            instructions without the per-request slots, so quoting a passage or a persona is no echo).
        min_chars: How many consecutive characters (whitespace runs count as one space) copied from
            ``prompt_texts`` make an echo.

    Returns:
        ``find(answer_text) -> the first copied run, or None``.

    Raises:
        ValueError: If ``min_chars`` is below 8 (short phrases repeat by chance).
    """
    if min_chars < 8:
        raise ValueError(f"min_chars must be at least 8 to tell an echo from a phrase, got {min_chars}")
    grams: set[str] = set()
    for text in prompt_texts:
        flat = " ".join(str(text).split())
        grams.update(flat[i : i + min_chars] for i in range(len(flat) - min_chars + 1))

    def find(answer: str) -> str | None:
        flat = " ".join(answer.split())
        for i in range(len(flat) - min_chars + 1):
            if flat[i : i + min_chars] in grams:
                return flat[i : i + min_chars]
        return None

    return find


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

"""The one answer extractor, shared by the GRPO reward and MCQ evaluation.

Rules (see ``format.py`` for the stated format ``答案：\\boxed{AC}``):

* Qwen3 thinking: only the text after the last ``</think>`` is searched for the answer. A ``<think>``
  that is never closed (generation cut off while thinking) gives no answer. An answer written only
  inside the think block does not count.
* Inside a box, full-width letters (``Ａ``), lower case, and separators (``,``, ``，``, ``、``, ``；``,
  ``：``, spaces, ``和``) are accepted; ``\\boxed{A、C}`` and ``\\boxed{ac}`` both mean ``AC``.
* More than one answer statement: the same letters → answer kept, flagged ``duplicated_answers``;
  different letters → no answer, ``conflicting_answers``.
* Letters not among the options → no answer, ``letters_not_in_options``.
* Without any box, ``答案：A`` is read only when ``allow_fallback`` is set (evaluation), and never
  counts as the stated format.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from finrag_pipelines.mcq.format import ANSWER_STATEMENT_RE, FALLBACK_ANSWER_RE, THINK_CLOSE, THINK_OPEN

_SEPARATORS = re.compile(r"[\s,，、;；:：/和及与.。]+")
_TRAILING_LABEL = re.compile(r"(?:最终)?答案\s*(?:是|为)?\s*[:：]?\s*$")
_THINK_OPEN_RE = re.compile(re.escape(THINK_OPEN), re.IGNORECASE)
_THINK_CLOSE_RE = re.compile(re.escape(THINK_CLOSE), re.IGNORECASE)

REASONS: tuple[str, ...] = (
    "ok",
    "duplicated_answers",
    "fallback_answer_phrase",
    "no_answer",
    "answer_only_in_think",
    "unterminated_think",
    "conflicting_answers",
    "letters_not_in_options",
    "empty_answer",
    "unparsable_answer",
)


@dataclass(frozen=True)
class Extraction:
    """What a response answered.

    Attributes:
        letters: The answered letters, sorted and unique (``"AC"``), or ``None`` when no usable answer.
        n_answer_statements: ``\\boxed{}`` statements after the think block.
        think: ``"none"`` (no tags), ``"closed"`` (``…</think>`` with or without the opening tag, as
            Qwen3's template opens it in the prompt) or ``"unterminated"``.
        format_ok: Exactly one answer statement, parsed, after a closed (or absent) think block.
        reasoning_ok: Non-empty reasoning: the think content, or text before the answer statement.
        reasoning: The reasoning text (think content, else the text before the first statement).
        via: ``"boxed"``, ``"fallback"`` or ``None``.
        raw: The raw content of the (first) answer statement, for reports.
        invalid_letters: Letters given that are not among the options.
        reason: One of :data:`REASONS`; ``"ok"`` only for a clean single boxed answer.
    """

    letters: str | None
    n_answer_statements: int
    think: str
    format_ok: bool
    reasoning_ok: bool
    reasoning: str
    via: str | None
    raw: str | None
    invalid_letters: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalise_letters(raw: str) -> str | None:
    """``"a、Ｃ"`` → ``"AC"``; ``""`` for an empty statement; ``None`` when it is not a list of letters."""
    text = unicodedata.normalize("NFKC", raw).strip().upper()
    text = text.replace("\\TEXT", "").replace("{", "").replace("}", "")
    text = _SEPARATORS.sub("", text)
    if not text:
        return ""
    if not re.fullmatch(r"[A-Z]+", text):
        return None
    return "".join(sorted(set(text)))


def _split_think(text: str) -> tuple[str, str, str]:
    """``(think_state, reasoning_inside_think, answer_region)``."""
    closes = list(_THINK_CLOSE_RE.finditer(text))
    if closes:
        last = closes[-1]
        inside = _THINK_OPEN_RE.sub("", _THINK_CLOSE_RE.sub("", text[: last.start()]))
        after = text[last.end() :]
        if _THINK_OPEN_RE.search(after):  # a second think block opened and never closed
            return "unterminated", inside.strip(), ""
        return "closed", inside.strip(), after
    if _THINK_OPEN_RE.search(text):
        return "unterminated", "", ""
    return "none", "", text


def extract_answer(
    text: str, valid_letters: Iterable[str] | str | None = None, *, allow_fallback: bool = False
) -> Extraction:
    """Read the answer letters from a model response.

    Args:
        text: The decoded response (verl decodes with ``skip_special_tokens=True``).
        valid_letters: The option letters (``"ABCD"`` or the options' keys); ``None`` accepts A–Z.
        allow_fallback: Also read an unboxed ``答案：A`` when there is no box (evaluation only).

    Returns:
        An :class:`Extraction`; it never raises on a malformed response.
    """
    text = text or ""
    valid = None if valid_letters is None else {str(v).upper() for v in valid_letters}
    think, inside, region = _split_think(text)
    if think == "unterminated":
        return Extraction(None, 0, think, False, bool(inside), inside, None, None, "", "unterminated_think")

    statements = list(ANSWER_STATEMENT_RE.finditer(region))
    n = len(statements)
    first = statements[0].start() if statements else None
    if first is None and allow_fallback:
        hit = FALLBACK_ANSWER_RE.search(region)
        first = hit.start() if hit else None
    before = _TRAILING_LABEL.sub("", region[:first] if first is not None else region).strip()
    reasoning = inside if inside else before
    reasoning_ok = bool(inside) or bool(re.sub(r"[\W_]+", "", before))

    def result(
        letters: str | None, reason: str, via: str | None, raw: str | None, invalid: str = ""
    ) -> Extraction:
        fmt = reason in ("ok",) and n == 1
        return Extraction(letters, n, think, fmt, reasoning_ok, reasoning, via, raw, invalid, reason)

    if not statements:
        if ANSWER_STATEMENT_RE.search(inside):
            return result(None, "answer_only_in_think", None, None)
        if allow_fallback:
            found = [m for m in FALLBACK_ANSWER_RE.finditer(region)]
            parsed = {normalise_letters(m.group(1)) for m in found} - {None, ""}
            if len(parsed) == 1:
                letters = parsed.pop()
                bad = "".join(sorted(set(letters) - valid)) if valid is not None else ""
                if bad:
                    return result(None, "letters_not_in_options", "fallback", found[0].group(1), bad)
                return result(letters, "fallback_answer_phrase", "fallback", found[0].group(1))
            if len(parsed) > 1:
                return result(None, "conflicting_answers", "fallback", found[0].group(1))
        return result(None, "no_answer", None, None)

    raws = [m.group(1) for m in statements]
    parsed_all = [normalise_letters(r) for r in raws]
    if any(p is None for p in parsed_all):
        return result(None, "unparsable_answer", "boxed", raws[0])
    if any(p == "" for p in parsed_all):
        return result(None, "empty_answer", "boxed", raws[0])
    distinct = set(parsed_all)
    if len(distinct) > 1:
        return result(None, "conflicting_answers", "boxed", raws[0])
    letters = parsed_all[0]
    bad = "".join(sorted(set(letters) - valid)) if valid is not None else ""
    if bad:
        return result(None, "letters_not_in_options", "boxed", raws[0], bad)
    return result(letters, "ok" if n == 1 else "duplicated_answers", "boxed", raws[0])

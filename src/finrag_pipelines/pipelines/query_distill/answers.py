"""How query_distill reads the LLM's answers: stage-1 plans and stage-2 queries.

Stage 1 accepts an option the way models really name it (``llm.parsing.match_choice``): a persona by
its number, its text, a shortened text or ``"2. <text>"``; a question type or difficulty by its name, an
alias from ``query_distill.answers.aliases`` (the seed prompt's Chinese names such as 高中/大学/博士) or
its description.
An answer that repeats the prompt's instructions (and so the prompt's own example object) is invalid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from finrag_pipelines.llm.parsing import (
    clean_text_output,
    extract_json_object_and_rest,
    json_objects,
    match_choice,
    one_of,
    pick,
    prompt_echo_finder,
    strip_thinking,
)
from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.pipelines.query_distill.params import AnswerParams, SpecParams

CHARACTER_KEYS = ("character", "characters", "persona", "角色", "提问人", "候选提问人")
TYPE_KEYS = ("question_type", "type", "问题类型")
DIFFICULTY_KEYS = ("difficulty", "level", "难度")


@dataclass(frozen=True)
class PromptEcho:
    """Tells an answer from a copy of its prompt: a long run of the template's fixed text is a copy.

    Attributes:
        find: ``text -> the copied run or None`` over the template's literal text.
        examples: The JSON objects written in the template (its example answers), named in the message.
    """

    find: Callable[[str], str | None]
    examples: tuple[dict[str, Any], ...]

    @classmethod
    def of(cls, prompt: PromptTemplate, min_chars: int) -> PromptEcho:
        """The echo check of one prompt template (its fixed text, not the per-document slots)."""
        literals = prompt.literal_texts
        return cls(
            prompt_echo_finder(literals, min_chars), tuple(o for t in literals for o in json_objects(t))
        )

    def check(self, text: str, obj: dict[str, Any] | None = None) -> None:
        """Raise ``ValueError`` when ``text`` (an answer, or the text around its JSON object) copies
        the prompt, or when the parsed object ``obj`` is exactly one of the prompt's example answers."""
        copied = self.find(text)
        if copied is not None:
            example = "; the JSON object in it is the prompt's own example" if obj in self.examples else ""
            raise ValueError(
                f"the answer repeats the prompt instead of answering (copies {copied!r}){example}"
            )
        if obj is not None and obj in self.examples:
            # the rule, literally: a model that returns the example object verbatim has not read the
            # document; it is retried (another attempt) and quarantined if it insists
            raise ValueError(f"the answer is the prompt's own example {obj!r}, not a plan for this document")


def _label_names(descriptions: dict[str, str], aliases: dict[str, list[str]]) -> dict[str, list[str]]:
    return {label: [*aliases.get(label, []), text] for label, text in descriptions.items()}


def stage1_validator(
    candidates: Sequence[str], spec: SpecParams, answers: AnswerParams, echo: PromptEcho
) -> Callable[[str], dict[str, Any]]:
    """Parse and check one document's stage-1 answer.

    Args:
        candidates: The persona texts shown to the model, in their numbered order.
        spec: The allowed question types and difficulties.
        answers: Prefix length, echo length and label aliases.
        echo: The stage-1 prompt's echo check.

    Returns:
        ``text -> {"character": 1-based number, "question_type", "difficulty"}``; ``ValueError`` when invalid.
    """
    types = list(spec.question_types)
    levels = list(spec.difficulties)
    type_names = _label_names(spec.question_types, answers.aliases.question_types)
    level_names = _label_names(spec.difficulties, answers.aliases.difficulties)
    prefix = answers.min_prefix_chars

    def validate(text: str) -> dict[str, Any]:
        obj, rest = extract_json_object_and_rest(text)
        echo.check(rest, obj)
        raw = pick(obj, CHARACTER_KEYS, "character")
        index = match_choice(raw, list(candidates), "character", numbered=True, min_prefix_chars=prefix)
        return {
            "character": index + 1,
            "question_type": one_of(
                pick(obj, TYPE_KEYS, "question_type"),
                types,
                "question_type",
                aliases=type_names,
                min_prefix_chars=prefix,
            ),
            "difficulty": one_of(
                pick(obj, DIFFICULTY_KEYS, "difficulty"),
                levels,
                "difficulty",
                aliases=level_names,
                min_prefix_chars=prefix,
            ),
        }

    return validate


def stage2_validator(max_chars: int, echo: PromptEcho | None) -> Callable[[str], str]:
    """Clean and check a stage-2 answer: one Chinese query, not longer than ``max_chars``, not the prompt."""

    def validate(text: str) -> str:
        if echo is not None:
            echo.check(strip_thinking(text))
        query = clean_text_output(text).strip()
        query = query.splitlines()[0].strip() if query else query
        if not query:
            raise ValueError("empty query")
        if not _has_han(query):
            raise ValueError(f"the query is not Chinese: {query!r:.40}")
        if len(query) > max_chars:
            raise ValueError(f"query of {len(query)} characters is longer than {max_chars}")
        return query

    return validate


def _has_han(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)

"""The ``keyword`` backend: an offline, deterministic stand-in for the LLM
(a documented baseline, not an LLM).

Stage 1 picks the persona (among the retrieved candidates), the question type and the difficulty by a
seeded hash of the document id, so the mix is balanced and reproducible. Stage 2 fills a question-type
template from conf with the document's jieba TF-IDF keywords.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from string import Template

import jieba.analyse

_USEFUL = re.compile(r"[\u4e00-\u9fffA-Za-z]")


def pick(seed: int, doc_id: str, what: str, options: Sequence[str]) -> str:
    """A deterministic, evenly spread choice among ``options`` for one document."""
    if not options:
        raise ValueError(f"nothing to choose for {what}")
    digest = hashlib.sha256(f"{seed}:{what}:{doc_id}".encode()).digest()
    return options[int.from_bytes(digest[:8], "big") % len(options)]


def keywords(text: str, top_k: int) -> list[str]:
    """The document's top TF-IDF keywords (jieba's IDF table), skipping pure numbers and symbols."""
    tags = jieba.analyse.extract_tags(text, topK=top_k * 3)
    return [t for t in tags if _USEFUL.search(t)][:top_k]


def fill_template(
    seed: int, doc_id: str, question_type: str, templates: Sequence[str], words: Sequence[str]
) -> str:
    """Fill the first template (in a seeded order) whose placeholders the keywords can cover.

    Raises:
        ValueError: when the document yields too few keywords for every template of this type.
    """
    slots = {f"k{i}": w for i, w in enumerate(words, start=1)}
    start = int(hashlib.sha256(f"{seed}:template:{doc_id}".encode()).hexdigest(), 16) % max(1, len(templates))
    for offset in range(len(templates)):
        template = Template(templates[(start + offset) % len(templates)])
        try:
            return template.substitute(slots)
        except KeyError:
            continue
    raise ValueError(f"only {len(words)} keyword(s) for the {question_type!r} templates")

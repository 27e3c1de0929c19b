"""Answer metrics: search recall, citation precision/recall against the qrels, character F1 and ROUGE-L.

Texts are compared as characters (Chinese has no spaces): NFKC, lower case, letters/digits/CJK only, with the
answer's ``[id]`` citations removed first. Against several gold documents the best match counts.

``None`` means "does not apply", never 0: ``closed_book`` searches nothing (no search recall, no citation
metrics); an answer that cites nothing has no citation precision. An abstention scores 0 for answer F1 and
ROUGE-L (it gives no answer) and citation recall 0.

Kedro-free library module.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from finrag_pipelines.rag.grounding import strip_citations
from finrag_pipelines.rag.records import AnswerRecord

PER_QUESTION_METRICS: tuple[str, ...] = (
    "search_recall",
    "citation_precision",
    "citation_recall",
    "answer_f1",
    "rouge_l",
    "judge_score",
)


def normalise_chars(text: str) -> str:
    """NFKC, lower case, letters and digits (CJK included) only."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text or "").lower() if ch.isalnum())


def char_f1(prediction: str, gold: str) -> float:
    """Character-level F1 (bag of characters) of two normalised strings; 0 when either is empty."""
    if not prediction or not gold:
        return 0.0
    common = sum((Counter(prediction) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence (bit-parallel, Allison–Dix / Hyyrö: O(len(a)·len(b)/w))."""
    if not a or not b:
        return 0
    if len(a) < len(b):
        a, b = b, a  # the bit vector runs over the longer string: fewer Python-level steps
    masks: dict[str, int] = {}
    for i, ch in enumerate(a):
        masks[ch] = masks.get(ch, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for ch in b:
        u = v & masks.get(ch, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_l(prediction: str, gold: str) -> float:
    """ROUGE-L F1 (LCS precision and recall, β = 1) of two normalised strings; 0 when either is empty."""
    lcs = lcs_length(prediction, gold)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(prediction), lcs / len(gold)
    return 2 * precision * recall / (precision + recall)


def score_record(
    record: AnswerRecord, gold_ids: Sequence[str], gold_texts: Mapping[str, str], judge_score: float | None
) -> dict[str, Any]:
    """Per-question metrics of one (non-failed) record.

    Args:
        record: The answer.
        gold_ids: The question's relevant documents (grade > 0).
        gold_texts: Their texts (title and text as indexed).
        judge_score: The judge's score in [0, 1], or ``None`` (no judge, or the judge failed).

    Returns:
        ``search_recall, citation_precision, citation_recall, answer_f1, rouge_l, judge_score`` (``None``
        where not applicable), plus ``n_searches``, ``turns``, ``abstained``, ``empty_answer`` and the
        counters (``n_<counter>``).

    Raises:
        ValueError: For a failed record (failures are listed, not scored) or a question without gold ids.
    """
    if record.failed:
        raise ValueError(
            f"{record.system}/{record.question_id} failed ({record.error}); failures are not scored"
        )
    gold = set(gold_ids)
    if not gold:
        raise ValueError(f"question {record.question_id} has no relevant document; it cannot be scored")
    retrieval = record.kind != "closed_book"
    cited = record.citations
    if record.abstained or not record.answer:
        f1 = rouge = 0.0
    else:
        answer = normalise_chars(strip_citations(record.answer))
        golds = [normalise_chars(gold_texts[d]) for d in gold_ids]
        f1 = max(char_f1(answer, g) for g in golds)
        rouge = max(rouge_l(answer, g) for g in golds)
    return {
        "search_recall": float(bool(gold & set(record.shown_doc_ids))) if retrieval else None,
        "citation_precision": (sum(d in gold for d in cited) / len(cited)) if retrieval and cited else None,
        "citation_recall": (len(gold & set(cited)) / len(gold)) if retrieval else None,
        "answer_f1": f1,
        "rouge_l": rouge,
        "judge_score": judge_score,
        "n_searches": len(record.searches) if retrieval else None,
        "turns": record.turns,
        "abstained": record.abstained,
        "empty_answer": not record.answer,
        **{f"n_{k}": int(v) for k, v in vars(record.counters).items()},
    }


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not ``None`` (or NaN), rounded to 6 places; ``None`` if none."""
    kept = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return round(sum(kept) / len(kept), 6) if kept else None

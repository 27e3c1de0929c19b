"""Seeded generation of finance calculation questions, family by family.

Each family draws from its own generator (seeded by the run seed and the family name), so adding a family or
changing one family's count leaves every other family's questions unchanged.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from finrag_pipelines.finmath import interest, markets
from finrag_pipelines.finmath.formulas import NoSolutionError
from finrag_pipelines.finmath.question import CalcQuestion, Draft, finish
from finrag_pipelines.mcq.split import normalise_text

logger = logging.getLogger(__name__)

FAMILIES: dict[str, Callable[[np.random.Generator], Draft]] = {
    "simple_interest": interest.simple_interest,
    "compound_interest": interest.compound_interest,
    "loan_late_penalty": interest.loan_late_penalty,
    "day_count_interest": interest.day_count_interest,
    "interest_tax": interest.interest_tax,
    "annual_rates": interest.annual_rates,
    "repayment": markets.repayment,
    "bond": markets.bond,
    "project_appraisal": markets.project_appraisal,
    "fund_fees": markets.fund_fees,
    "currency_exchange": markets.currency_exchange,
}
"""Every family, by name (the names used in ``sft_distill.calc.families``)."""

MAX_DRAWS_PER_QUESTION = 20
"""Draws allowed per requested question before a family is declared unable to produce its count."""


@dataclass
class GenerationStats:
    """What generation did: questions per family, repeated stems skipped, draws without a solution."""

    per_family: dict[str, int] = field(default_factory=dict)
    repeated: dict[str, int] = field(default_factory=dict)
    no_solution: dict[str, int] = field(default_factory=dict)


def family_rng(seed: int, family: str) -> np.random.Generator:
    """The family's own generator: a function of the run seed and the family name only."""
    salt = int(hashlib.sha256(family.encode("utf-8")).hexdigest()[:8], 16)
    return np.random.default_rng([seed, salt])


def generate_questions(
    families: Sequence[str], per_family: int, seed: int
) -> tuple[list[CalcQuestion], GenerationStats]:
    """``per_family`` distinct questions of each family (distinct by normalised stem).

    Raises:
        ValueError: On an unknown family, or a family that cannot produce ``per_family`` distinct questions.
    """
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown calculation families {unknown}; known: {sorted(FAMILIES)}")
    questions: list[CalcQuestion] = []
    stats = GenerationStats()
    for family in families:
        rng = family_rng(seed, family)
        seen: set[str] = set()
        made = repeated = failed = 0
        for _ in range(per_family * MAX_DRAWS_PER_QUESTION):
            if made == per_family:
                break
            try:
                question = finish(FAMILIES[family](rng), rng)
            except NoSolutionError:
                failed += 1
                continue
            key = normalise_text(question.question)
            if key in seen:
                repeated += 1
                continue
            seen.add(key)
            questions.append(question)
            made += 1
        if made < per_family:
            raise ValueError(
                f"family {family!r} produced only {made} distinct questions of {per_family} asked; "
                "lower sft_distill.calc.per_family"
            )
        stats.per_family[family], stats.repeated[family], stats.no_solution[family] = made, repeated, failed
    logger.info(
        "finmath: %d questions (%s), %d repeated stems skipped",
        len(questions),
        stats.per_family,
        sum(stats.repeated.values()),
    )
    return questions, stats

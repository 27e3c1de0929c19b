"""One generated calculation question: parameters, stem, rounding rule, options, answer and worked solution.

A family function returns a :class:`Draft` (the facts, the exact answer and the typical mistakes);
:func:`finish` rounds everything by the stated rule, turns the mistakes into distractors, shuffles the options
with the caller's generator and writes the final solution line. Values are :class:`~decimal.Decimal` so that
the stated rounding (half up) is applied to the exact value wherever the arithmetic is exact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal, getcontext
from typing import Any

import numpy as np

getcontext().prec = 50  # exact enough for every amount, rate and power the families compute

LETTERS = "ABCD"
NEAR_MISS_FACTORS: tuple[str, ...] = ("1.1", "0.9", "1.2", "0.8", "1.05", "0.95")
"""Fallback distractors (answer × factor) when typical mistakes round to the answer or to each other."""


@dataclass(frozen=True)
class Rounding:
    """How the answer is rounded and written: ``places`` decimals, ``unit`` after it, ``rule`` in words."""

    places: int
    unit: str
    rule: str

    def round(self, value: Decimal | float) -> Decimal:
        """Round half up to ``places`` decimals (floats through their shortest repr)."""
        exact = (
            value
            if isinstance(value, Decimal)
            else Decimal(repr(value) if isinstance(value, float) else value)
        )
        return exact.quantize(Decimal(1).scaleb(-self.places), rounding=ROUND_HALF_UP)

    def text(self, value: Decimal | float) -> str:
        """The rounded value with its unit, e.g. ``"1234.50元"``, ``"4.35%"``."""
        return f"{self.round(value)}{self.unit}"


YUAN = Rounding(2, "元", "计算结果以元为单位，四舍五入保留两位小数")
PERCENT = Rounding(2, "%", "结果用百分数表示，四舍五入保留两位小数")
SHARES = Rounding(2, "份", "份额四舍五入保留两位小数")
YEARS = Rounding(2, "年", "结果以年为单位，四舍五入保留两位小数")
FOREIGN = Rounding(2, "", "结果四舍五入保留两位小数")


@dataclass(frozen=True)
class Draft:
    """What a family computed, before options are built.

    Attributes:
        family: Family name (``simple_interest`` …).
        variant: What is asked (``interest``, ``total`` …).
        subject: Chinese subject label of the item.
        params: The sampled inputs (JSON values), from which the answer is recomputed in tests.
        scenario: The stem without the rounding rule: facts and question (the part an LLM may rewrite).
        rounding: The stated rounding rule and unit of the answer.
        value: The exact (unrounded) answer.
        mistakes: ``(value, name)`` of typical wrong computations, best first.
        steps: The worked solution, one line per step (the final line is added by :func:`finish`).
        phrasing: Which of the family's phrasings the scenario uses.
        unit_suffix: Text after the unit in options (e.g. a currency name when the unit is empty).
        allow_negative: Whether the answer and distractors may be negative (a net present value).
    """

    family: str
    variant: str
    subject: str
    params: dict[str, Any]
    scenario: str
    rounding: Rounding
    value: Decimal
    mistakes: list[tuple[Decimal, str]]
    steps: list[str]
    phrasing: int
    unit_suffix: str = ""
    allow_negative: bool = False


@dataclass(frozen=True)
class CalcQuestion:
    """A finished multiple-choice calculation question (one correct option, three distractors)."""

    family: str
    variant: str
    subject: str
    params: dict[str, Any]
    scenario: str
    rounding_rule: str
    options: dict[str, str]
    answer: str
    answer_value: str
    unit: str
    places: int
    phrasing: int
    distractors: dict[str, str] = field(default_factory=dict)
    solution: str = ""

    @property
    def question(self) -> str:
        """The full stem: the scenario, then the rounding rule in brackets."""
        return compose_question(self.scenario, self.rounding_rule)

    def as_row(self) -> dict[str, Any]:
        """A flat row (``params`` and ``distractors`` as JSON strings, options as the project's JSON)."""
        row = asdict(self)
        row["question"] = self.question
        row["params"] = json.dumps(self.params, ensure_ascii=False, sort_keys=True)
        row["distractors"] = json.dumps(self.distractors, ensure_ascii=False, sort_keys=True)
        row["options"] = json.dumps(self.options, ensure_ascii=False, sort_keys=True)
        return row


def compose_question(scenario: str, rounding_rule: str) -> str:
    """``scenario`` followed by ``（rounding rule）``."""
    return f"{scenario.strip()}（{rounding_rule}）"


def finish(draft: Draft, rng: np.random.Generator) -> CalcQuestion:
    """Round, build three distractors from the mistakes (near misses when they collide), shuffle, solve.

    Raises:
        ValueError: If the answer rounds to zero (a degenerate draft the family should not produce).
    """
    rounding = draft.rounding
    answer = rounding.round(draft.value)
    if answer == 0:
        raise ValueError(f"{draft.family}/{draft.variant}: the answer rounds to 0 ({draft.params})")
    seen = {answer}
    wrong: list[tuple[Decimal, str]] = []
    for value, name in draft.mistakes:
        rounded = rounding.round(value)
        if rounded not in seen and (rounded > 0 or draft.allow_negative and rounded != 0) and len(wrong) < 3:
            seen.add(rounded)
            wrong.append((rounded, name))
    candidates = [(answer * Decimal(f), f"near_miss_x{f}") for f in NEAR_MISS_FACTORS]
    step = Decimal(1).scaleb(-rounding.places)
    candidates += [(answer + step * k, f"near_miss_plus{k}") for k in range(1, 4)]
    for value, name in candidates:
        rounded = rounding.round(value)
        if len(wrong) < 3 and rounded not in seen and (rounded > 0 or draft.allow_negative and rounded != 0):
            seen.add(rounded)
            wrong.append((rounded, name))
    choices = [(answer, "correct")] + wrong
    order = rng.permutation(len(choices))
    options: dict[str, str] = {}
    distractors: dict[str, str] = {}
    letter_of_answer = ""
    for letter, index in zip(LETTERS, order):
        value, name = choices[int(index)]
        options[letter] = f"{value}{rounding.unit}{draft.unit_suffix}"
        if name == "correct":
            letter_of_answer = letter
        else:
            distractors[letter] = name
    final = (
        f"按题目要求（{rounding.rule}），结果为{answer}{rounding.unit}{draft.unit_suffix}，"
        f"对应选项{letter_of_answer}。"
    )
    return CalcQuestion(
        family=draft.family,
        variant=draft.variant,
        subject=draft.subject,
        params=draft.params,
        scenario=draft.scenario,
        rounding_rule=rounding.rule,
        options=options,
        answer=letter_of_answer,
        answer_value=str(answer),
        unit=rounding.unit + draft.unit_suffix,
        places=rounding.places,
        phrasing=draft.phrasing,
        distractors=distractors,
        solution="\n".join([*draft.steps, final]),
    )


def dec(value: float | str) -> Decimal:
    """An exact Decimal of a parameter (floats through their shortest repr: ``0.1`` → ``Decimal("0.1")``)."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def show(value: Decimal | float, digits: int = 6) -> str:
    """An intermediate value for a solution line: ``digits`` significant digits, no trailing zeros."""
    number = float(value)
    text = f"{number:.{digits}g}"
    if "e" in text:
        text = f"{number:.{max(digits, 8)}f}".rstrip("0").rstrip(".")
    return text


def pct(value: float | Decimal) -> str:
    """A rate parameter (in percent) as written in a stem: ``4.35`` → ``"4.35%"`` (no trailing zeros)."""
    number = value if isinstance(value, Decimal) else dec(value)
    return f"{number.normalize():f}%"


def yuan(value: float | Decimal) -> str:
    """An amount parameter as written in a stem: ``50000`` → ``"50000元"``."""
    number = value if isinstance(value, Decimal) else dec(value)
    return f"{number.normalize():f}元"


def term_text(months: int) -> str:
    """``24`` → ``"2年"``, ``18`` → ``"18个月"``."""
    return f"{months // 12}年" if months % 12 == 0 else f"{months}个月"


def term_params(months: int) -> dict[str, int]:
    """The term as the stem shows it: ``{"years": 2}`` for 24 months, ``{"months": 18}`` otherwise."""
    return {"years": months // 12} if months % 12 == 0 else {"months": months}


def pick(rng: np.random.Generator, options: list[Any] | tuple[Any, ...]) -> Any:
    """One element of ``options`` (a plain Python value, not a numpy scalar)."""
    return options[int(rng.integers(len(options)))]


def grid(rng: np.random.Generator, low: str, high: str, step: str) -> float:
    """A value on the grid ``low, low+step, …, high`` (exact decimals, returned as a float for JSON)."""
    lo, hi, st = Decimal(low), Decimal(high), Decimal(step)
    count = int((hi - lo) / st) + 1
    return float(lo + st * int(rng.integers(count)))


def amount(value: Decimal | float) -> str:
    """An intermediate amount for a solution line: at most four decimals, no trailing zeros."""
    number = value if isinstance(value, Decimal) else dec(float(value))
    rounded = number.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    text = f"{abs(rounded) if rounded == 0 else rounded:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text

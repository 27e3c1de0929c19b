"""The numbers of a stem, and the check that a rewritten stem kept them all.

A rewrite is kept only if it carries exactly the original's numbers, in the same order, each with the same
percent / per-mille sign. Nothing is dropped, changed or added, and no two quantities swap places
(``借款60天、逾期30天`` → ``借款30天、逾期60天`` is refused), so the question asks about the same values
and the code-computed answer still holds. The check is deliberately strict: a rewrite that spells a number in
words (``两个月``) or reorders the facts is refused, never guessed about.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal

_NUMBER = re.compile(r"(?<![\d.])(\d+(?:,\d{3})*(?:\.\d+)?)(\s*[%‰])?")


@dataclass(frozen=True)
class NumberCheck:
    """The verdict on a rewrite: ``ok`` and a reason (``ok``, ``number_missing``, ``number_added``,
    ``number_changed`` or ``number_order_changed``), with the numbers found on each side."""

    ok: bool
    reason: str
    original: tuple[str, ...]
    rewrite: tuple[str, ...]


def numbers_in(text: str) -> list[tuple[Decimal, str]]:
    """``(value, sign)`` of every number in ``text`` (NFKC; ``1,200`` is 1200)."""
    normal = unicodedata.normalize("NFKC", text or "")
    return [
        (Decimal(m.group(1).replace(",", "")), (m.group(2) or "").strip()) for m in _NUMBER.finditer(normal)
    ]


def _show(numbers: list[tuple[Decimal, str]]) -> tuple[str, ...]:
    return tuple(f"{value.normalize():f}{sign}" for value, sign in numbers)


def check_numbers_preserved(original: str, rewrite: str) -> NumberCheck:
    """Whether ``rewrite`` keeps every number of ``original`` (value and sign), in order, adding none."""
    before, after = numbers_in(original), numbers_in(rewrite)
    shown = (_show(before), _show(after))
    if before == after:
        return NumberCheck(True, "ok", *shown)
    left, right = sorted(before), sorted(after)
    if left == right:
        reason = "number_order_changed"
    elif len(after) < len(before) and all(after.count(n) <= before.count(n) for n in after):
        reason = "number_missing"
    elif len(after) > len(before) and all(before.count(n) <= after.count(n) for n in before):
        reason = "number_added"
    else:
        reason = "number_changed"
    return NumberCheck(False, reason, *shown)

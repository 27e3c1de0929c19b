"""Every generated answer is recomputed here, independently of finmath.formulas.

The generator uses closed forms (annuity formula, closed-form duration, Newton's method); these checks use
schedules simulated month by month, explicit sums, day-by-day counting and bisection. A generated answer
must be the stated rounding of the independently computed value.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finrag_pipelines.finmath import FAMILIES, check_numbers_preserved, generate_questions, numbers_in
from finrag_pipelines.finmath.question import CalcQuestion
from finrag_pipelines.mcq.extract import extract_answer
from finrag_pipelines.mcq.format import render_target

PER_YEAR = {"year": 1, "quarter": 4, "month": 12, "day": 365}


def bisect(f, lo: float, hi: float) -> float:
    """A root of ``f`` in [lo, hi] (f changes sign), to 1e-13."""
    flo = f(lo)
    assert flo * f(hi) < 0, "no sign change"
    for _ in range(200):
        mid = (lo + hi) / 2
        fm = f(mid)
        if (fm < 0) == (flo < 0):
            lo, flo = mid, fm
        else:
            hi = mid
        if hi - lo < 1e-14:
            break
    return (lo + hi) / 2


def accrue_simple(principal: float, monthly_rate: float, months: int) -> float:
    interest = 0.0
    for _ in range(months):
        interest += principal * monthly_rate
    return interest


def annuity_schedule_interest(principal: float, i: float, n: int) -> tuple[float, float]:
    """(payment, total interest) of equal instalments: the payment that clears the balance, by bisection."""

    def left_after(payment: float) -> float:
        balance = principal
        for _ in range(n):
            balance = balance * (1 + i) - payment
        return balance

    payment = bisect(left_after, principal / n, principal)
    balance, paid_interest = principal, 0.0
    for _ in range(n):
        interest = balance * i
        paid_interest += interest
        balance -= payment - interest
    return payment, paid_interest


def equal_principal_schedule(principal: float, i: float, n: int) -> list[float]:
    """Payments of equal principal repayment, simulated month by month."""
    part, balance, payments = principal / n, principal, []
    for _ in range(n):
        payments.append(part + balance * i)
        balance -= part
    return payments


def bond_flows(face: float, coupon: float, years: int) -> list[float]:
    return [face * coupon + (face if t == years else 0.0) for t in range(1, years + 1)]


def price_by_sum(face: float, coupon: float, y: float, years: int) -> float:
    return sum(cf / (1 + y) ** t for t, cf in enumerate(bond_flows(face, coupon, years), start=1))


def npv_backward(rate: float, investment: float, flows: list[float]) -> float:
    value = 0.0
    for cf in reversed(flows):
        value = (value + cf) / (1 + rate)
    return value - investment


def redemption_rate(days: int) -> float:
    table = [(0, 7, 1.5), (7, 365, 0.5), (365, 730, 0.25), (730, 10**9, 0.0)]
    return next(rate for lo, hi, rate in table if lo <= days < hi) / 100


def term_months(params: dict) -> int:
    return params["months"] if "months" in params else 12 * params["years"]


def recompute(q: CalcQuestion) -> float:
    p, v = q.params, q.variant
    if q.family == "simple_interest":
        interest = accrue_simple(p["principal"], p["annual_rate_pct"] / 100 / 12, term_months(p))
        return interest + (p["principal"] if v == "total" else 0)
    if q.family == "compound_interest":
        m = PER_YEAR[p["compounding"]]
        balance = p["principal"]
        for _ in range(m * p["years"]):
            balance += balance * p["annual_rate_pct"] / 100 / m
        return balance - (p["principal"] if v == "interest" else 0)
    if q.family == "loan_late_penalty":
        rate = p["monthly_rate_pct"] / 100
        due = p["principal"] + accrue_simple(p["principal"], rate, p["months"])
        if v == "due":
            return due
        penalty = accrue_simple(p["principal"], rate * (1 + p["markup_pct"] / 100), p["late_months"])
        return penalty if v == "extra" else due + penalty
    if q.family == "day_count_interest":
        day, end, days = date.fromisoformat(p["start"]), date.fromisoformat(p["end"]), 0
        while day < end:  # the start day counts, the end day does not
            days, day = days + 1, day + timedelta(days=1)
        daily = p["rate_pct"] / 100 / p.get("basis_days", 1)
        return p["principal"] * daily * days
    if q.family == "interest_tax":
        interest = accrue_simple(p["principal"], p["annual_rate_pct"] / 100 / 12, term_months(p))
        tax = interest * p["tax_pct"] / 100
        return {
            "tax": tax,
            "after_tax_interest": interest - tax,
            "after_tax_total": p["principal"] + interest - tax,
        }[v]
    if q.family == "annual_rates":
        if v == "effective":
            m, growth = PER_YEAR[p["compounding"]], 1.0
            for _ in range(m):
                growth *= 1 + p["nominal_rate_pct"] / 100 / m
            return (growth - 1) * 100
        principal, n = p["principal"], p["months"]
        payment = principal / n + principal * p["monthly_fee_pct"] / 100

        def pv_gap(i: float) -> float:
            return sum(payment / (1 + i) ** t for t in range(1, n + 1)) - principal

        return bisect(pv_gap, 1e-9, 1.0) * 12 * 100
    if q.family == "repayment":
        principal, i, n = p["principal"], p["annual_rate_pct"] / 100 / 12, p["years"] * 12
        payment, annuity_interest = annuity_schedule_interest(principal, i, n)
        ep = equal_principal_schedule(principal, i, n)
        return {
            "annuity_payment": payment,
            "principal_first": ep[0],
            "principal_total_interest": sum(ep) - principal,
            "interest_gap": annuity_interest - (sum(ep) - principal),
        }[v]
    if q.family == "bond":
        face, coupon, years = p["face"], p["coupon_rate_pct"] / 100, p["years"]
        if v == "ytm":
            return bisect(lambda y: price_by_sum(face, coupon, y, years) - p["price"], 1e-6, 1.0) * 100
        y = p["ytm_pct"] / 100
        pvs = [cf / (1 + y) ** t for t, cf in enumerate(bond_flows(face, coupon, years), start=1)]
        duration = sum(t * pv for t, pv in enumerate(pvs, start=1)) / sum(pvs)
        return {"price": sum(pvs), "macaulay": duration, "modified": duration / (1 + y)}[v]
    if q.family == "project_appraisal":
        investment, flows = p["investment"], [float(cf) for cf in p["flows"]]
        if v == "npv":
            return npv_backward(p["rate_pct"] / 100, investment, flows)
        return bisect(lambda r: npv_backward(r, investment, flows), 1e-9, 10.0) * 100
    if q.family == "fund_fees":
        if v == "redeem_amount":
            gross = p["shares"] * p["nav"]
            return gross - gross * redemption_rate(p["days"])
        fee = p["amount"] * (p["fee_pct"] / 100) / (1 + p["fee_pct"] / 100)
        return fee if v == "subscribe_fee" else (p["amount"] - fee) / p["nav"]
    if q.family == "currency_exchange":
        per_unit = {"buy_foreign": p["sell"], "sell_cash": p["cash_buy"], "sell_spot": p["spot_buy"]}
        if v == "rmb_to_foreign":
            return p["rmb"] / (p["sell"] / 100)
        return p["foreign"] * (per_unit[v] / 100)
    raise AssertionError(f"no independent recomputation for family {q.family!r}: add one")


def param_numbers(params: dict) -> list[Decimal]:
    """Every number a stem must show: numeric params, list items, and the parts of ISO dates."""
    out: list[Decimal] = []
    for value in params.values():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out.append(Decimal(repr(value)) if isinstance(value, float) else Decimal(value))
        elif isinstance(value, list):
            out.extend(Decimal(x) for x in value)
        elif isinstance(value, str) and value[:4].isdigit() and value.count("-") == 2:
            out.extend(Decimal(part) for part in value.split("-"))
    return out


def check_question(q: CalcQuestion) -> None:
    answer = Decimal(q.answer_value)
    exact = recompute(q)
    tolerance = 0.5 * 10**-q.places + 1e-7 * max(1.0, abs(exact))
    assert abs(float(answer) - exact) <= tolerance, (q.family, q.variant, q.params, q.answer_value, exact)
    assert len(q.options) == 4 and len(set(q.options.values())) == 4
    assert q.options[q.answer] == f"{q.answer_value}{q.unit}"
    assert set(q.distractors) == set(q.options) - {q.answer}
    shown = {value for value, _ in numbers_in(q.question)}
    missing = [n for n in param_numbers(q.params) if n not in shown]
    assert not missing, f"{q.family}: parameters {missing} do not appear in the stem {q.question!r}"
    assert q.rounding_rule in q.question and "保留" in q.rounding_rule
    got = extract_answer(render_target(q.solution, q.answer, "think"), q.options.keys())
    assert got.format_ok and got.reasoning_ok and got.letters == q.answer
    assert q.solution.splitlines()[-1].endswith(f"对应选项{q.answer}。")
    json.dumps(q.as_row(), ensure_ascii=False)  # a parquet/JSON-able row


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**31 - 1))
def test_every_generated_answer_matches_an_independent_recomputation(seed):
    questions, stats = generate_questions(list(FAMILIES), 4, seed)
    assert stats.per_family == {family: 4 for family in FAMILIES}
    for question in questions:
        check_question(question)


def test_every_family_and_variant_is_covered_with_several_phrasings():
    questions, _ = generate_questions(list(FAMILIES), 120, 11)
    for question in questions:
        check_question(question)
    for family in FAMILIES:
        mine = [q for q in questions if q.family == family]
        assert len({q.phrasing for q in mine}) == 3, family
        assert len({q.variant for q in mine}) >= 2, family
        assert len({q.answer for q in mine}) == 4, family  # the correct letter is spread over A-D


def test_seeded_and_independent_per_family():
    first, _ = generate_questions(["bond", "fund_fees"], 5, 42)
    again, _ = generate_questions(["fund_fees"], 5, 42)
    assert [q.question for q in first if q.family == "fund_fees"] == [q.question for q in again]
    other, _ = generate_questions(["bond", "fund_fees"], 5, 43)
    assert [q.question for q in first] != [q.question for q in other]


def test_typical_mistakes_become_the_distractors():
    questions, _ = generate_questions(["compound_interest", "day_count_interest", "annual_rates"], 60, 5)
    mistakes = {name for q in questions for name in q.distractors.values()}
    assert {"simple_instead_of_compound", "thirty_day_months", "fee_rate_times_12"} <= mistakes
    near_misses = sum(name.startswith("near_miss") for q in questions for name in q.distractors.values())
    assert near_misses < len(questions) * 0.2  # fallbacks are the exception


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown calculation families"):
        generate_questions(["lottery"], 1, 0)


def test_number_preservation():
    original = "小李借款50000元，月利率为1.2%，借期2个月，逾期1个月，罚息利率上浮50%。"
    kept = "小李向机构借了50000元，约定月利率1.2%，借期2个月；若逾期1个月，罚息利率在合同利率上上浮50%。"
    assert check_numbers_preserved(original, kept).ok
    assert check_numbers_preserved(original, original.replace("50000元", "50,000元")).ok  # same value
    cases = {
        "number_changed": original.replace("1.2%", "1.5%"),
        "number_missing": original.replace("，逾期1个月", ""),
        "number_added": original + "手续费100元。",
        "number_order_changed": "小李借款50000元，月利率为1.2%，借期1个月，逾期2个月，罚息利率上浮50%。",
    }
    for reason, rewrite in cases.items():
        verdict = check_numbers_preserved(original, rewrite)
        assert not verdict.ok and verdict.reason == reason, (reason, verdict)
    # a percent sign is part of the number: 1.2% written as 1.2 is a different quantity
    assert check_numbers_preserved(original, original.replace("1.2%", "1.2")).reason == "number_changed"
    # a number spelled in words is not guessed about
    assert not check_numbers_preserved(original, original.replace("2个月", "两个月")).ok

"""Interest families: simple and compound interest, a loan with late-payment penalty (the seed's example),
day-count interest, tax on interest, and nominal vs effective / instalment APR.

Each function samples realistic parameters from ``rng``, picks one of several phrasings and returns a
:class:`~finrag_pipelines.finmath.question.Draft`. Every number a stem shows is a parameter (or a fixed
rule such as ``100``), so a rewrite can be checked number by number.
"""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal

import numpy as np

from finrag_pipelines.finmath import formulas as fx
from finrag_pipelines.finmath.question import (
    PERCENT,
    YUAN,
    Draft,
    amount,
    dec,
    grid,
    pct,
    pick,
    show,
    term_params,
    term_text,
    yuan,
)

COMPOUNDING = {"year": (1, "每年"), "quarter": (4, "每季度"), "month": (12, "每月")}


def simple_interest(rng: np.random.Generator) -> Draft:
    """Interest or principal + interest of a simple-interest deposit, loan or product."""
    principal = int(rng.integers(10, 501)) * 1000
    rate = grid(rng, "1.50", "6.00", "0.05")
    months = pick(rng, (3, 6, 9, 12, 18, 24, 36, 60))
    variant = pick(rng, ("interest", "total"))
    ask = {"interest": "利息", "total": "本息合计"}[variant]
    term = term_text(months)
    phrasing = int(rng.integers(3))
    scenario = (
        f"张先生将{yuan(principal)}存入银行，存期{term}，年利率为{pct(rate)}，按单利计息。到期时他可以获得的{ask}是多少？",
        (
            f"某企业向银行借入{yuan(principal)}，期限{term}，约定年利率{pct(rate)}，按单利计息、到期一次还本付息。"
            f"到期应支付的{ask}是多少？"
        ),
        (
            f"小王购买了一款按单利计息的理财产品，本金{yuan(principal)}，年化收益率{pct(rate)}，持有{term}后到期。"
            f"到期{ask}为多少？"
        ),
    )[phrasing]
    p, r, years = dec(principal), dec(rate) / 100, Decimal(months) / 12
    interest = fx.simple_interest(p, r, years)
    add = p if variant == "total" else Decimal(0)
    compound = dec(float(p) * ((1 + float(r)) ** float(years) - 1))
    misread = p * r * (months if months % 12 else Decimal(months // 12) / 12)
    steps = [
        "单利计息时：利息 = 本金 × 年利率 × 期限（年）。",
        *([] if months % 12 == 0 else [f"期限{term}，折合{show(years)}年。"]),
        f"利息 = {principal} × {pct(rate)} × {show(years)} = {amount(interest)}元。",
    ]
    if variant == "total":
        steps.append(
            f"本息合计 = 本金 + 利息 = {principal} + {amount(interest)} = {amount(p + interest)}元。"
        )
    return Draft(
        family="simple_interest",
        variant=variant,
        subject="金融计算/单利",
        params={"principal": principal, "annual_rate_pct": rate, **term_params(months)},
        scenario=scenario,
        rounding=YUAN,
        value=interest + add,
        phrasing=phrasing,
        steps=steps,
        mistakes=[
            (compound + add, "compound_instead_of_simple"),
            (misread + add, "term_unit_misread"),
            (interest + p - add, "interest_total_confusion"),
        ],
    )


def compound_interest(rng: np.random.Generator) -> Draft:
    """Future value or interest with yearly, quarterly or monthly compounding."""
    principal = int(rng.integers(10, 501)) * 1000
    rate = grid(rng, "1.50", "8.00", "0.05")
    years = int(rng.integers(2, 11))
    code = pick(rng, tuple(COMPOUNDING))
    per_year, comp = COMPOUNDING[code]
    variant = pick(rng, ("total", "interest"))
    ask = {"total": "本息和（终值）", "interest": "利息收入"}[variant]
    phrasing = int(rng.integers(3))
    scenario = (
        (
            f"李女士将{yuan(principal)}投资于一款年利率为{pct(rate)}的产品，{comp}复利一次，投资期限{years}年。"
            f"到期时她的{ask}是多少？"
        ),
        f"某笔{yuan(principal)}的存款按年利率{pct(rate)}计息，{comp}计复利一次，{years}年后的{ask}为多少？",
        f"以{yuan(principal)}本金进行投资，名义年利率{pct(rate)}，{comp}复利计息，持有{years}年，{ask}为多少？",
    )[phrasing]
    p, r = dec(principal), dec(rate) / 100
    value = fx.compound_amount(p, r, per_year, years)
    sub = p if variant == "interest" else Decimal(0)
    periods = per_year * years
    if per_year > 1:
        wrong_rate, wrong_periods = p * (1 + r) ** periods, p * (1 + r / per_year) ** years
        names = ("annual_rate_per_period", "years_as_periods")
    else:
        wrong_rate, wrong_periods = p * (1 + r) ** (years - 1), p * (1 + r) ** (years + 1)
        names = ("one_period_short", "one_period_extra")
    steps = [
        "复利终值 = 本金 × (1 + 年利率 ÷ 每年复利次数)^(每年复利次数 × 年数)。",
        (
            f"每期利率 = {pct(rate)} ÷ {per_year} = {show(r / per_year)}，"
            f"期数 = {per_year} × {years} = {periods}。"
        ),
        f"终值 = {principal} × (1 + {show(r / per_year)})^{periods} = {amount(value)}元。",
    ]
    if variant == "interest":
        steps.append(f"利息收入 = 终值 − 本金 = {amount(value)} − {principal} = {amount(value - p)}元。")
    return Draft(
        family="compound_interest",
        variant=variant,
        subject="金融计算/复利",
        params={"principal": principal, "annual_rate_pct": rate, "years": years, "compounding": code},
        scenario=scenario,
        rounding=YUAN,
        value=value - sub,
        phrasing=phrasing,
        steps=steps,
        mistakes=[
            (p * (1 + r * years) - sub, "simple_instead_of_compound"),
            (wrong_rate - sub, names[0]),
            (wrong_periods - sub, names[1]),
        ],
    )


def loan_late_penalty(rng: np.random.Generator) -> Draft:
    """The seed's example: a loan at a monthly rate, what is due, and what a late repayment costs extra."""
    principal = int(rng.integers(1, 201)) * 1000
    rate = grid(rng, "0.50", "2.00", "0.05")
    months = int(rng.integers(1, 13))
    late = int(rng.integers(1, 7))
    markup = pick(rng, (30, 50))
    variant = pick(rng, ("due", "extra", "late_total"))
    rule = (
        f"若逾期，逾期期间对本金按罚息利率计息（不再另计正常利息），罚息利率在合同利率基础上上浮{markup}%。"
        if variant != "due"
        else ""
    )
    ask = {
        "due": "按时还款的话，到期共需还款多少钱？",
        "extra": f"如果还款晚了{late}个月，与按时还款相比需要多交多少钱？",
        "late_total": f"如果还款晚了{late}个月，届时共需还款多少钱？",
    }[variant]
    phrasing = int(rng.integers(3))
    scenario = (
        (
            f"小李向某贷款机构借款{yuan(principal)}，月利率为{pct(rate)}，借期{months}个月，按单利计息、到期一次还本付息。",
            f"某人借了{yuan(principal)}，约定月利率{pct(rate)}（单利），借款期限{months}个月，到期一次性归还本息。",
            f"一笔{yuan(principal)}的个人借款，月利率{pct(rate)}，单利计息，期限{months}个月，到期还本付息。",
        )[phrasing]
        + rule
        + ask
    )
    p, r, k = dec(principal), dec(rate) / 100, Decimal(markup) / 100
    due = p * (1 + r * months)
    penalty = p * r * (1 + k) * late
    steps = [
        "到期应还本息 = 本金 × (1 + 月利率 × 月数) = "
        f"{principal} × (1 + {pct(rate)} × {months}) = {amount(due)}元。"
    ]
    params = {"principal": principal, "monthly_rate_pct": rate, "months": months}
    if variant == "due":
        value = due
        mistakes = [
            (p * (1 + r) ** months, "compound_instead_of_simple"),
            (p * r * months, "forgot_principal"),
            (p * (1 + r * months / 12), "monthly_rate_read_as_annual"),
        ]
    else:
        params.update({"late_months": late, "markup_pct": markup})
        steps += [
            (
                f"罚息月利率 = 合同月利率 × (1 + {markup}%) = "
                f"{pct(rate)} × {show(1 + k)} = {show(r * (1 + k) * 100)}%。"
            ),
            (
                f"逾期{late}个月的罚息 = 本金 × 罚息月利率 × 逾期月数 = "
                f"{principal} × {show(r * (1 + k) * 100)}% × {late}"
                f" = {amount(penalty)}元。"
            ),
        ]
        normal, surcharge, on_due = p * r * late, p * r * k * late, due * r * (1 + k) * late
        if variant == "extra":
            steps.append("逾期期间不再另计正常利息，与按时还款相比多交的就是这部分罚息。")
            value = penalty
            mistakes = [
                (normal, "normal_rate_for_penalty"),
                (surcharge, "markup_only"),
                (on_due, "penalty_on_principal_and_interest"),
            ]
        else:
            steps.append(
                "届时共需还款 = 到期本息 + 罚息 = "
                f"{amount(due)} + {amount(penalty)} = {amount(due + penalty)}元。"
            )
            value = due + penalty
            mistakes = [
                (due + normal, "normal_rate_for_penalty"),
                (due, "forgot_penalty"),
                (due + surcharge, "markup_only"),
            ]
    return Draft(
        family="loan_late_penalty",
        variant=variant,
        subject="金融计算/借款与逾期罚息",
        params=params,
        scenario=scenario,
        rounding=YUAN,
        value=value,
        mistakes=mistakes,
        steps=steps,
        phrasing=phrasing,
    )


def _date_text(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def day_count_interest(rng: np.random.Generator) -> Draft:
    """Interest over the actual days between two dates (start counted, end not), daily or annual rate."""
    principal = int(rng.integers(10, 1001)) * 100
    year = int(rng.integers(2023, 2027))
    span = int(rng.integers(1, 7))
    start_month = int(rng.integers(1, 13 - span))
    start = date(year, start_month, int(rng.integers(1, 29)))
    end = date(year, start_month + span, start.day)
    days = (end - start).days
    variant = pick(rng, ("daily_rate", "annual_360", "annual_365"))
    if variant == "daily_rate":
        rate = grid(rng, "0.020", "0.060", "0.005")
        rate_text, basis = f"日利率为{pct(rate)}", None
    else:
        rate = grid(rng, "3.00", "8.00", "0.05")
        basis = 360 if variant == "annual_360" else 365
        rate_text = f"年利率为{pct(rate)}，一年按{basis}天计算"
    phrasing = int(rng.integers(3))
    d1, d2 = _date_text(start), _date_text(end)
    scenario = (
        (
            f"王先生于{d1}借款{yuan(principal)}，约定{rate_text}，按实际天数计息（算头不算尾），于{d2}一次性还本付息。"
            "他应支付的利息是多少？"
        ),
        (
            f"某公司{d1}从银行取得一笔{yuan(principal)}的短期借款，{rate_text}，按实际占用天数计息，{d2}到期归还"
            "（借款当日计息、还款当日不计息）。该笔借款的利息是多少？"
        ),
        f"一笔{yuan(principal)}的借款从{d1}起息，{d2}到期，{rate_text}，按实际天数计算利息（算头不算尾）。到期应付利息为多少？",
    )[phrasing]
    p = dec(principal)
    daily = dec(rate) / 100 if basis is None else dec(rate) / 100 / basis
    value = p * daily * days
    steps = [f"从{d1}到{d2}，算头不算尾，实际天数为{days}天。"]
    if basis is None:
        steps.append(
            f"利息 = 本金 × 日利率 × 天数 = {principal} × {pct(rate)} × {days} = {amount(value)}元。"
        )
        other = p * dec(rate) / 100 * days / 360
        mistakes = [
            (p * daily * 30 * span, "thirty_day_months"),
            (p * daily * (days + 1), "counted_both_ends"),
            (other, "daily_rate_read_as_annual"),
        ]
    else:
        steps.append(f"日利率 = 年利率 ÷ {basis} = {pct(rate)} ÷ {basis}。")
        steps.append(f"利息 = {principal} × {pct(rate)} × {days} ÷ {basis} = {amount(value)}元。")
        wrong_basis = 365 if basis == 360 else 360
        mistakes = [
            (p * daily * 30 * span, "thirty_day_months"),
            (p * daily * (days + 1), "counted_both_ends"),
            (p * dec(rate) / 100 * days / wrong_basis, "wrong_year_basis"),
        ]
    return Draft(
        family="day_count_interest",
        variant=variant,
        subject="金融计算/计息天数",
        params={
            "principal": principal,
            "rate_pct": rate,
            "start": start.isoformat(),
            "end": end.isoformat(),
            **({"basis_days": basis} if basis else {}),
        },
        scenario=scenario,
        rounding=YUAN,
        value=value,
        mistakes=mistakes,
        steps=steps,
        phrasing=phrasing,
    )


def interest_tax(rng: np.random.Generator) -> Draft:
    """After-tax interest, after-tax total or the tax itself on a simple-interest deposit."""
    principal = int(rng.integers(10, 501)) * 1000
    rate = grid(rng, "1.50", "4.00", "0.05")
    months = pick(rng, (3, 6, 12, 24, 36))
    tax = pick(rng, (5, 10, 20))
    variant = pick(rng, ("after_tax_interest", "after_tax_total", "tax"))
    ask = {
        "after_tax_interest": "到期可得的税后利息是多少？",
        "after_tax_total": "到期可取回的税后本息合计是多少？",
        "tax": "到期应缴纳的利息所得税是多少？",
    }[variant]
    term = term_text(months)
    phrasing = int(rng.integers(3))
    scenario = (
        (
            f"赵女士在银行存入{yuan(principal)}定期存款，存期{term}，年利率{pct(rate)}，按单利计息。"
            f"假设利息所得税税率为{tax}%，{ask}"
        ),
        f"某储户将{yuan(principal)}存为{term}定期，年利率{pct(rate)}（单利）。若对利息按{tax}%的税率征收利息所得税，{ask}",
        f"一笔{yuan(principal)}的{term}定期存款，年利率为{pct(rate)}，单利计息，利息所得税税率为{tax}%。{ask}",
    )[phrasing]
    p, r, t = dec(principal), dec(rate) / 100, Decimal(tax) / 100
    interest = fx.simple_interest(p, r, Decimal(months) / 12)
    steps = [
        (
            f"税前利息 = 本金 × 年利率 × 期限 = {principal} × {pct(rate)} × {show(Decimal(months) / 12)}"
            f" = {amount(interest)}元。"
        ),
        f"利息所得税 = 税前利息 × {tax}% = {amount(interest * t)}元（只对利息征税，本金不征税）。",
    ]
    if variant == "tax":
        value = interest * t
        mistakes = [
            ((p + interest) * t, "taxed_principal_too"),
            (interest * (1 - t), "after_tax_interest"),
            (p * r * t, "one_year_interest_taxed"),
        ]
    elif variant == "after_tax_interest":
        steps.append(
            f"税后利息 = {amount(interest)} − {amount(interest * t)} = {amount(interest * (1 - t))}元。"
        )
        value = interest * (1 - t)
        mistakes = [
            (interest, "no_tax"),
            (interest * t, "tax_instead_of_after_tax"),
            ((p + interest) * (1 - t) - p, "taxed_principal_too"),
        ]
    else:
        value = p + interest * (1 - t)
        steps.append(
            "税后本息合计 = 本金 + 税后利息 = "
            f"{principal} + {amount(interest * (1 - t))} = {amount(value)}元。"
        )
        mistakes = [
            (p + interest, "no_tax"),
            ((p + interest) * (1 - t), "taxed_principal_too"),
            (interest * (1 - t), "forgot_principal"),
        ]
    return Draft(
        family="interest_tax",
        variant=variant,
        subject="金融计算/利息税",
        params={"principal": principal, "annual_rate_pct": rate, **term_params(months), "tax_pct": tax},
        scenario=scenario,
        rounding=YUAN,
        value=value,
        mistakes=mistakes,
        steps=steps,
        phrasing=phrasing,
    )


EAR_COMPOUNDING = {"month": (12, "按月"), "quarter": (4, "按季度"), "day": (365, "按日（一年按365天）")}


def annual_rates(rng: np.random.Generator) -> Draft:
    """Nominal vs effective annual rate, or the real APR of a fee-based instalment plan."""
    variant = pick(rng, ("effective", "instalment_apr"))
    phrasing = int(rng.integers(3))
    if variant == "effective":
        rate = grid(rng, "2.0", "12.0", "0.1")
        code = pick(rng, tuple(EAR_COMPOUNDING))
        per_year, comp = EAR_COMPOUNDING[code]
        scenario = (
            f"某理财产品宣传的名义年利率为{pct(rate)}，{comp}复利一次。该产品的实际年利率（有效年利率）是多少？",
            f"一笔贷款的名义年利率为{pct(rate)}，{comp}计息并复利。借款人实际承担的有效年利率为多少？",
            f"若名义年利率为{pct(rate)}、{comp}复利，则对应的有效年利率（EAR）是多少？",
        )[phrasing]
        r = dec(rate) / 100
        value = fx.effective_annual_rate(r, per_year) * 100
        other = {12: 4, 4: 12, 365: 12}[per_year]
        steps = [
            "有效年利率 = (1 + 名义年利率 ÷ 每年复利次数)^每年复利次数 − 1。",
            f"= (1 + {pct(rate)} ÷ {per_year})^{per_year} − 1 = {show(value)}%。",
        ]
        mistakes = [
            (dec(rate), "nominal_as_effective"),
            (fx.effective_annual_rate(r, other) * 100, "wrong_compounding_frequency"),
            (dec(math.expm1(float(r)) * 100), "continuous_compounding"),
        ]
        params = {"nominal_rate_pct": rate, "compounding": code}
    else:
        principal = int(rng.integers(6, 61)) * 1000
        months = pick(rng, (3, 6, 12, 24))
        fee = grid(rng, "0.30", "0.90", "0.05")
        scenario = (
            (
                f"某信用卡账单分期：分期金额{yuan(principal)}，分{months}期（每月一期），本金按期平均归还，每期另收分期金额"
                f"{pct(fee)}的手续费。按内部收益率法计算，这笔分期的实际年化利率（月内部收益率×12）约为多少？"
            ),
            (
                f"小张用消费分期购买了一台价值{yuan(principal)}的电脑，分{months}个月还款，本金每月平均归还，每月另付初始本金"
                f"{pct(fee)}的手续费。以内部收益率计算，该分期的实际年化利率（名义APR，即月内部收益率×12）是多少？"
            ),
            (
                f"一笔{yuan(principal)}的现金分期，期限{months}个月，月手续费率{pct(fee)}（按初始本金计算），本金等额分摊。"
                "若用内部收益率法折算，实际年化利率（月IRR×12）约为多少？"
            ),
        )[phrasing]
        f = dec(fee) / 100
        monthly = fx.instalment_monthly_rate(float(principal), months, float(f))
        value = dec(monthly * 12 * 100)
        payment = dec(principal) / months + dec(principal) * f
        steps = [
            (
                "每月还款 = 本金 ÷ 期数 + 本金 × 月手续费率 = "
                f"{principal} ÷ {months} + {principal} × {pct(fee)}"
                f" = {amount(payment)}元。"
            ),
            (
                f"月内部收益率 i 满足：{principal} = {amount(payment)} × [1 − (1 + i)^−{months}] ÷ i，"
                f"迭代求得 i ≈ {show(monthly * 100)}%。"
            ),
            (
                f"实际年化利率（APR）= i × 12 ≈ {show(value)}%，"
                f"明显高于表面的月费率 × 12 = {show(dec(fee) * 12)}%，"
                "因为手续费始终按初始本金计收，而实际占用的本金逐月减少。"
            ),
        ]
        mistakes = [
            (dec(fee) * 12, "fee_rate_times_12"),
            (dec(fee) * months, "total_fee_rate"),
            (dec(((1 + monthly) ** 12 - 1) * 100), "effective_instead_of_nominal"),
        ]
        params = {"principal": principal, "months": months, "monthly_fee_pct": fee}
    return Draft(
        family="annual_rates",
        variant=variant,
        subject="金融计算/名义与实际利率",
        params=params,
        scenario=scenario,
        rounding=PERCENT,
        value=value,
        mistakes=mistakes,
        steps=steps,
        phrasing=phrasing,
    )

"""Loan repayment, bond, project appraisal, fund fee and currency families (``interest.py``: the rest)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from finrag_pipelines.finmath import formulas as fx
from finrag_pipelines.finmath.question import (
    FOREIGN,
    PERCENT,
    SHARES,
    YEARS,
    YUAN,
    Draft,
    amount,
    dec,
    grid,
    pct,
    pick,
    show,
    yuan,
)


def repayment(rng: np.random.Generator) -> Draft:
    """Equal instalments (等额本息) vs equal principal (等额本金): payments, interest and the difference."""
    principal = int(rng.integers(10, 201)) * 10000
    rate = grid(rng, "3.00", "6.00", "0.05")
    years = pick(rng, (1, 2, 3, 5, 10, 15, 20, 30))
    variant = pick(rng, ("annuity_payment", "principal_first", "principal_total_interest", "interest_gap"))
    ask = {
        "annuity_payment": "若采用等额本息还款方式，每月应还款多少？",
        "principal_first": "若采用等额本金还款方式，第一个月应还款多少？",
        "principal_total_interest": "若采用等额本金还款方式，整个贷款期内共需支付多少利息？",
        "interest_gap": "等额本息方式比等额本金方式多支付的利息总额是多少（计算过程中不对每月还款额取整）？",
    }[variant]
    phrasing = int(rng.integers(3))
    scenario = (
        f"某客户向银行申请个人住房贷款{yuan(principal)}，贷款期限{years}年，年利率{pct(rate)}，按月还款。",
        f"王先生向银行申请了一笔{yuan(principal)}的贷款，期限{years}年，贷款年利率{pct(rate)}，每月还款一次。",
        f"一笔金额为{yuan(principal)}、期限{years}年、年利率{pct(rate)}的贷款，按月计息、按月还款。",
    )[phrasing] + ask
    p, i, n = dec(principal), dec(rate) / 100 / 12, years * 12
    growth = (1 + i) ** n
    annuity = fx.annuity_payment(p, i, n)
    first = fx.equal_principal_payment(p, i, n, 1)
    ep_interest = fx.equal_principal_interest(p, i, n)
    annuity_interest = annuity * n - p
    steps = [f"月利率 i = {pct(rate)} ÷ 12 = {show(i)}，还款期数 n = {years} × 12 = {n}。"]
    annuity_steps = [
        "等额本息每月还款额 = P × i × (1 + i)^n ÷ [(1 + i)^n − 1]。",
        (
            f"(1 + i)^n = {show(growth, 10)}，每月还款额 = {principal} × {show(i)} × {show(growth, 10)} ÷ "
            f"({show(growth, 10)} − 1) = {amount(annuity)}元。"
        ),
    ]
    ep_steps = [
        "等额本金每月归还本金 P ÷ n，利息按剩余本金计算，利息总额 = P × i × (n + 1) ÷ 2。",
        f"等额本金利息总额 = {principal} × {show(i)} × {n + 1} ÷ 2 = {amount(ep_interest)}元。",
    ]
    if variant == "annuity_payment":
        value, steps = annuity, steps + annuity_steps
        mistakes = [
            (p * (1 + dec(rate) / 100 * years) / n, "flat_rate"),
            (first, "equal_principal_first_month"),
            ((p + ep_interest) / n, "equal_principal_average"),
        ]
    elif variant == "principal_first":
        value = first
        steps += [
            (
                f"每月归还本金 = {principal} ÷ {n} = {amount(p / n)}元；首月利息 = {principal} × {show(i)} = "
                f"{amount(p * i)}元。"
            ),
            f"首月还款额 = {amount(p / n)} + {amount(p * i)} = {amount(first)}元。",
        ]
        mistakes = [
            (annuity, "equal_instalment_payment"),
            (p / n, "principal_only"),
            (fx.equal_principal_payment(p, i, n, n), "last_month"),
        ]
    elif variant == "principal_total_interest":
        value, steps = ep_interest, steps + ep_steps
        mistakes = [
            (p * i * n, "interest_on_full_principal"),
            (p * i * (n - 1) / 2, "off_by_one_month"),
            (annuity_interest, "equal_instalment_interest"),
        ]
    else:
        value = annuity_interest - ep_interest
        steps += (
            annuity_steps
            + [
                (
                    f"等额本息利息总额 = 每月还款额 × n − P = {amount(annuity)} × {n} − {principal} = "
                    f"{amount(annuity_interest)}元。"
                )
            ]
            + ep_steps
        )
        steps.append(f"两者之差 = {amount(annuity_interest)} − {amount(ep_interest)} = {amount(value)}元。")
        mistakes = [
            (annuity_interest, "equal_instalment_interest_only"),
            (p * i * n - ep_interest, "flat_minus_principal"),
            (ep_interest, "equal_principal_interest_only"),
        ]
    return Draft(
        family="repayment",
        variant=variant,
        subject="金融计算/贷款还款方式",
        params={"principal": principal, "annual_rate_pct": rate, "years": years},
        scenario=scenario,
        rounding=YUAN,
        value=value,
        mistakes=mistakes,
        steps=steps,
        phrasing=phrasing,
    )


def _bond_flows(face: Decimal, coupon_rate: Decimal, years: int) -> list[Decimal]:
    return [face * coupon_rate + (face if t == years else 0) for t in range(1, years + 1)]


def bond(rng: np.random.Generator) -> Draft:
    """Price, Macaulay duration, modified duration or yield to maturity of an annual-coupon bond."""
    face = pick(rng, (100, 1000))
    coupon = grid(rng, "2.00", "7.00", "0.25")
    years = int(rng.integers(2, 11))
    ytm = grid(rng, "1.50", "8.00", "0.05")
    variant = pick(rng, ("price", "macaulay", "modified", "ytm"))
    f, c, y = dec(face), dec(coupon) / 100, dec(ytm) / 100
    price = fx.bond_price(f, c, y, years)
    quoted = YUAN.round(price)
    if variant == "ytm":
        market = f"目前市场价格为{yuan(quoted)}"
        ask = "该债券的到期收益率是多少？"
    else:
        market = f"市场要求的到期收益率为{pct(ytm)}"
        ask = {
            "price": "该债券的理论价格是多少？",
            "macaulay": "该债券的麦考利久期是多少年？",
            "modified": "该债券的修正久期是多少？",
        }[variant]
    phrasing = int(rng.integers(3))
    scenario = (
        f"某债券面值{yuan(face)}，票面利率{pct(coupon)}，每年付息一次，剩余期限{years}年，到期还本，{market}。{ask}",
        f"一只{years}年期、每年付息一次的债券，面值{yuan(face)}，票面利率为{pct(coupon)}，{market}。{ask}",
        (
            f"投资者评估一只剩余期限{years}年的附息债券：面值{yuan(face)}，年票面利率{pct(coupon)}，每年末付息，到期按面值偿还，"
            f"{market}。{ask}"
        ),
    )[phrasing]
    coupon_cash = f * c
    steps = [f"每年利息 C = 面值 × 票面利率 = {face} × {pct(coupon)} = {amount(coupon_cash)}元。"]
    params = {"face": face, "coupon_rate_pct": coupon, "years": years}
    rounding = YEARS
    duration = dec(fx.macaulay_duration(float(c), float(y), years))
    if variant == "price":
        rounding, value = YUAN, price
        steps += [
            "价格 = C × [1 − (1 + y)^−N] ÷ y + F ÷ (1 + y)^N。",
            (
                f"利息现值 = {amount(coupon_cash)} × [1 − (1 + {pct(ytm)})^−{years}] ÷ {pct(ytm)} = "
                f"{amount(price - f * (1 + y) ** -years)}元；面值现值 = {face} ÷ (1 + {pct(ytm)})^{years} = "
                f"{amount(f * (1 + y) ** -years)}元。"
            ),
            f"价格 = {amount(price)}元。",
        ]
        semiannual = fx.bond_price(f, c / 2, y / 2, 2 * years)
        mistakes = [
            (f * (1 + y) ** -years, "face_only_discounted"),
            (f * (1 + y) ** -years + coupon_cash * years, "coupons_not_discounted"),
            (semiannual, "semiannual_compounding"),
        ]
        params["ytm_pct"] = ytm
    elif variant in ("macaulay", "modified"):
        flows = _bond_flows(f, c, years)
        pvs = [cf / (1 + y) ** t for t, cf in enumerate(flows, start=1)]
        steps += [
            f"以 y = {pct(ytm)} 贴现各期现金流："
            + "；".join(
                f"第{t}年{amount(cf)}元，现值{amount(pv)}元"
                for t, (cf, pv) in enumerate(zip(flows, pvs), start=1)
            )
            + "。",
            f"价格 = 各期现值之和 = {amount(sum(pvs))}元。",
            (
                "麦考利久期 = Σ(t × 现值) ÷ 价格 = "
                f"{amount(sum(t * pv for t, pv in enumerate(pvs, start=1)))} ÷ "
                f"{amount(sum(pvs))} = {show(duration)}年。"
            ),
        ]
        at_coupon = dec(fx.macaulay_duration(float(c), float(c), years))
        if variant == "macaulay":
            value = duration
            mistakes = [
                (duration / (1 + y), "modified_instead"),
                (Decimal(years), "maturity_as_duration"),
                (at_coupon, "discounted_at_coupon_rate"),
            ]
        else:
            value = duration / (1 + y)
            steps.append(
                f"修正久期 = 麦考利久期 ÷ (1 + y) = {show(duration)} ÷ {show(1 + y)} = {show(value)}。"
            )
            mistakes = [
                (duration, "macaulay_instead"),
                (duration * (1 + y), "multiplied_by_one_plus_y"),
                (duration / (1 + c), "divided_by_one_plus_coupon"),
            ]
        params["ytm_pct"] = ytm
    else:
        rounding = PERCENT
        solved = fx.bond_yield(float(quoted), float(f), float(c), years)
        value = dec(solved * 100)
        approx = (coupon_cash + (f - quoted) / years) / ((f + quoted) / 2) * 100
        steps += [
            (
                f"到期收益率 y 满足：{quoted} = {amount(coupon_cash)} × [1 − (1 + y)^−{years}] ÷ y"
                f" + {face} ÷ (1 + y)^{years}。"
            ),
            (
                f"用近似公式 [C + (F − P) ÷ N] ÷ [(F + P) ÷ 2] 得初值约 {show(approx)}%，"
                f"再迭代求解得 y ≈ {show(value, 8)}%。"
            ),
            (
                f"验证：以 {show(value, 8)}% 贴现，"
                f"价格为 {amount(fx.bond_price(f, c, value / 100, years))}元，与市价一致。"
            ),
        ]
        mistakes = [
            (coupon_cash / quoted * 100, "current_yield"),
            (dec(coupon), "coupon_rate"),
            (approx, "approximation"),
        ]
        params["price"] = float(quoted)
    return Draft(
        family="bond",
        variant=variant,
        subject="金融计算/债券定价与久期",
        params=params,
        scenario=scenario,
        rounding=rounding,
        value=value,
        mistakes=mistakes,
        steps=steps,
        phrasing=phrasing,
    )


def project_appraisal(rng: np.random.Generator) -> Draft:
    """Net present value at a discount rate, or the internal rate of return, of a small project."""
    investment = int(rng.integers(10, 101)) * 10000
    years = int(rng.integers(3, 6))
    variant = pick(rng, ("npv", "irr"))
    for _ in range(100):
        flows = [int(rng.uniform(0.2, 0.5) * investment / 1000) * 1000 for _ in range(years)]
        if variant == "npv" or sum(flows) > 1.05 * investment:
            break
    else:
        raise fx.NoSolutionError("no cash flows with a positive return")
    rate = grid(rng, "5.0", "15.0", "0.5")
    flows_text = "、".join(yuan(cf) for cf in flows)
    ask = (
        f"若折现率为{pct(rate)}，该项目的净现值（NPV）是多少？"
        if variant == "npv"
        else "该项目的内部收益率（IRR）是多少？"
    )
    phrasing = int(rng.integers(3))
    scenario = (
        f"某公司拟投资一个项目，初始投资{yuan(investment)}，预计未来{years}年每年末的净现金流量分别为{flows_text}。{ask}",
        f"一项投资需在期初投入{yuan(investment)}，此后{years}年每年年末分别带来{flows_text}的现金流入。{ask}",
        f"甲企业评估一条生产线：期初一次性投入{yuan(investment)}，之后{years}年每年末的净现金流入依次为{flows_text}。{ask}",
    )[phrasing]
    c0, cfs = dec(investment), [dec(cf) for cf in flows]
    params = {"investment": investment, "flows": flows}
    if variant == "npv":
        r = dec(rate) / 100
        value = fx.net_present_value(r, c0, cfs)
        pvs = [cf / (1 + r) ** t for t, cf in enumerate(cfs, start=1)]
        steps = [
            "净现值 NPV = −初始投资 + Σ 第t年现金流 ÷ (1 + r)^t。",
            "各年现值："
            + "；".join(
                f"第{t}年 {cf} ÷ (1 + {pct(rate)})^{t} = {amount(pv)}元"
                for t, (cf, pv) in enumerate(zip(flows, pvs), start=1)
            )
            + "。",
            f"NPV = −{investment} + {amount(sum(pvs))} = {amount(value)}元。",
        ]
        mistakes = [
            (sum(cfs) - c0, "not_discounted"),
            (
                sum(cf / (1 + r) ** (t - 1) for t, cf in enumerate(cfs, start=1)) - c0,
                "discounted_one_year_less",
            ),
            (sum(pvs), "investment_ignored"),
        ]
        params["rate_pct"] = rate
        rounding, allow_negative = YUAN, True
    else:
        irr = fx.internal_rate_of_return(float(investment), [float(cf) for cf in flows])
        value, rounding, allow_negative = dec(irr * 100), PERCENT, False
        steps = [
            f"内部收益率 IRR 是使净现值为零的折现率：−{investment} + Σ 第t年现金流 ÷ (1 + IRR)^t = 0。",
            f"现金流入合计 {sum(flows)}元 大于投资，IRR 为正；试算并迭代求解得 IRR ≈ {show(value, 8)}%。",
            f"验证：以该利率贴现，净现值 = {amount(fx.net_present_value(value / 100, c0, cfs))}元 ≈ 0。",
        ]
        total = (sum(cfs) - c0) / c0 * 100
        mistakes = [
            (total / years, "average_simple_return"),
            (total, "total_return"),
            (dec(sum(flows) / years / investment * 100), "average_flow_over_investment"),
        ]
    return Draft(
        family="project_appraisal",
        variant=variant,
        subject="金融计算/净现值与内部收益率",
        params=params,
        scenario=scenario,
        rounding=rounding,
        value=value,
        mistakes=mistakes,
        steps=steps,
        phrasing=phrasing,
        allow_negative=allow_negative,
    )


REDEMPTION_SCHEDULE = ((7, Decimal("1.5")), (365, Decimal("0.5")), (730, Decimal("0.25")), (None, Decimal(0)))
SCHEDULE_TEXT = (
    "持有少于7天，赎回费率1.5%；7天（含）至365天，0.5%；365天（含）至730天，0.25%；730天及以上，免收赎回费"
)


def _redemption_rate(days: int) -> tuple[int, Decimal]:
    for index, (limit, rate) in enumerate(REDEMPTION_SCHEDULE):
        if limit is None or days < limit:
            return index, rate
    raise AssertionError("unreachable")


def fund_fees(rng: np.random.Generator) -> Draft:
    """Shares bought (front-end fee, 外扣法), the subscription fee, or the net redemption amount."""
    variant = pick(rng, ("subscribe_shares", "subscribe_fee", "redeem_amount"))
    nav = grid(rng, "0.8000", "3.5000", "0.0001")
    phrasing = int(rng.integers(3))
    n = dec(nav)
    if variant != "redeem_amount":
        amount_in = int(rng.integers(10, 501)) * 1000
        fee = pick(rng, (0.15, 0.6, 0.8, 1.0, 1.2, 1.5))
        ask = "可获得的基金份额是多少？" if variant == "subscribe_shares" else "需支付的申购费是多少？"
        scenario = (
            (
                f"投资者申购某开放式基金，申购金额{yuan(amount_in)}，申购费率{pct(fee)}，采用外扣法（前端收费）计算申购费，"
                f"当日基金份额净值为{yuan(nav)}。{ask}"
            ),
            (
                f"刘先生用{yuan(amount_in)}申购一只基金，该基金申购费率为{pct(fee)}，申购费按外扣法计算，申购当日单位净值"
                f"{yuan(nav)}。{ask}"
            ),
            (
                f"某基金的前端申购费率为{pct(fee)}（外扣法），申购当日基金单位净值为{yuan(nav)}。某投资者投入{yuan(amount_in)}"
                f"进行申购，{ask}"
            ),
        )[phrasing]
        a, f = dec(amount_in), dec(fee) / 100
        net = a / (1 + f)
        steps = [
            (
                "外扣法：净申购金额 = 申购金额 ÷ (1 + 申购费率) = "
                f"{amount_in} ÷ (1 + {pct(fee)}) = {amount(net)}元。"
            ),
            f"申购费 = 申购金额 − 净申购金额 = {amount_in} − {amount(net)} = {amount(a - net)}元。",
        ]
        if variant == "subscribe_shares":
            steps.append(
                f"申购份额 = 净申购金额 ÷ 份额净值 = {amount(net)} ÷ {nav} = {show(net / n, 10)}份。"
            )
            value, rounding = net / n, SHARES
            mistakes = [
                (a * (1 - f) / n, "inner_method"),
                (a / n, "fee_ignored"),
                (a * (1 + f) / n, "fee_added"),
            ]
        else:
            value, rounding = a - net, YUAN
            mistakes = [
                (a * f, "inner_method"),
                (a * f * (1 + f), "fee_on_amount_plus_fee"),
                (a * f / n, "fee_divided_by_nav"),
            ]
        params = {"amount": amount_in, "fee_pct": fee, "nav": nav}
    else:
        shares = int(rng.integers(10, 2001)) * 100
        days = pick(rng, (3, 5, 30, 90, 200, 400, 500, 800))
        index, rate = _redemption_rate(days)
        scenario = (
            (
                f"某基金的赎回费率为：{SCHEDULE_TEXT}。投资者持有该基金{shares}份，持有{days}天后全部赎回，赎回当日基金份额净值为"
                f"{yuan(nav)}。扣除赎回费后可得到的赎回金额是多少？"
            ),
            (
                f"张女士持有某基金{shares}份，已持有{days}天，今日以单位净值{yuan(nav)}全部赎回。该基金赎回费率：{SCHEDULE_TEXT}。"
                "她实际到账的赎回金额是多少？"
            ),
            (
                f"投资者赎回{shares}份基金，持有期为{days}天，赎回日单位净值{yuan(nav)}，赎回费率按持有期分档：{SCHEDULE_TEXT}。"
                "扣除赎回费后的净赎回金额为多少？"
            ),
        )[phrasing]
        gross, g = dec(shares) * n, rate / 100
        value, rounding = gross * (1 - g), YUAN
        neighbour = (
            REDEMPTION_SCHEDULE[index + 1 if index + 1 < len(REDEMPTION_SCHEDULE) else index - 1][1] / 100
        )
        steps = [
            f"持有{days}天，对应赎回费率{rate.normalize():f}%。",
            f"赎回总额 = 份额 × 净值 = {shares} × {nav} = {amount(gross)}元。",
            (
                f"赎回费 = {amount(gross)} × {rate.normalize():f}% = {amount(gross * g)}元；"
                f"净赎回金额 = {amount(gross)} − {amount(gross * g)} = {amount(value)}元。"
            ),
        ]
        mistakes = [
            (gross, "fee_ignored"),
            (gross * (1 - neighbour), "wrong_bracket"),
            (gross * (1 + g), "fee_added"),
        ]
        params = {"shares": shares, "days": days, "nav": nav}
    return Draft(
        family="fund_fees",
        variant=variant,
        subject="金融计算/基金申购赎回费用",
        params=params,
        scenario=scenario,
        rounding=rounding,
        value=value,
        mistakes=mistakes,
        steps=steps,
        phrasing=phrasing,
    )


CURRENCIES = {  # code: (name, unit, spot buying rate range per 100 units)
    "USD": ("美元", "美元", ("705.00", "730.00")),
    "EUR": ("欧元", "欧元", ("760.00", "800.00")),
    "GBP": ("英镑", "英镑", ("880.00", "950.00")),
    "HKD": ("港币", "港币", ("89.00", "93.00")),
    "JPY": ("日元", "日元", ("4.60", "5.20")),
}


def currency_exchange(rng: np.random.Generator) -> Draft:
    """Conversions at a bank's quotes (per 100 units): which side of the quote, cash vs spot, the 100."""
    code = pick(rng, tuple(CURRENCIES))
    name, unit, (low, high) = CURRENCIES[code]
    spot_buy = grid(rng, low, high, "0.01")
    b = dec(spot_buy)
    cash_buy = float((b * Decimal("0.992")).quantize(Decimal("0.01")))
    sell = float((b * Decimal("1.004")).quantize(Decimal("0.01")))
    bc, s = dec(cash_buy), dec(sell)
    variant = pick(rng, ("buy_foreign", "sell_cash", "sell_spot", "rmb_to_foreign"))
    step = 1000 if code == "JPY" else 100
    foreign = int(rng.integers(1, 501)) * step
    rmb = int(rng.integers(10, 501)) * 100
    ask = {
        "buy_foreign": f"客户用人民币购买{foreign}{unit}现汇，需支付多少人民币？",
        "sell_cash": f"客户将{foreign}{unit}现钞卖给银行，可兑换多少人民币？",
        "sell_spot": f"客户将账户中的{foreign}{unit}现汇结汇，可得到多少人民币？",
        "rmb_to_foreign": f"客户用{yuan(rmb)}人民币最多可购买多少{unit}现汇？",
    }[variant]
    phrasing = int(rng.integers(3))
    scenario = (
        (
            f"某日某银行公布的{name}牌价（人民币元/100{unit}）如下：现汇买入价{spot_buy:.2f}，现钞买入价{cash_buy:.2f}，"
            f"现汇卖出价{sell:.2f}，现钞卖出价{sell:.2f}。"
        ),
        (
            f"已知当日银行{name}报价：每100{unit}的现汇买入价为{spot_buy:.2f}元、现钞买入价为{cash_buy:.2f}元、卖出价为"
            f"{sell:.2f}元（现汇、现钞卖出价相同）。"
        ),
        (
            f"查询某行外汇牌价：{name}（单位：人民币元/100{unit}）现汇买入价{spot_buy:.2f}，现钞买入价{cash_buy:.2f}，"
            f"现汇/现钞卖出价{sell:.2f}。"
        ),
    )[phrasing] + ask
    x, y = dec(foreign), dec(rmb)
    rounding, suffix = YUAN, ""
    if variant == "buy_foreign":
        value = x * s / 100
        steps = [
            f"客户买入外汇，银行卖出，用卖出价{sell:.2f}。",
            f"需支付 = {foreign} × {sell:.2f} ÷ 100 = {amount(value)}元。",
        ]
        mistakes = [
            (x * b / 100, "bank_buying_rate"),
            (x * (b + s) / 200, "middle_rate"),
            (x * s, "forgot_per_100"),
        ]
    elif variant == "sell_cash":
        value = x * bc / 100
        steps = [
            f"客户卖出外币现钞，银行买入现钞，用现钞买入价{cash_buy:.2f}。",
            f"可兑换 = {foreign} × {cash_buy:.2f} ÷ 100 = {amount(value)}元。",
        ]
        mistakes = [
            (x * b / 100, "spot_rate_for_cash"),
            (x * s / 100, "selling_rate"),
            (x * bc, "forgot_per_100"),
        ]
    elif variant == "sell_spot":
        value = x * b / 100
        steps = [
            f"客户结汇（卖出现汇），银行买入现汇，用现汇买入价{spot_buy:.2f}。",
            f"可得到 = {foreign} × {spot_buy:.2f} ÷ 100 = {amount(value)}元。",
        ]
        mistakes = [
            (x * bc / 100, "cash_rate_for_spot"),
            (x * s / 100, "selling_rate"),
            (x * b, "forgot_per_100"),
        ]
    else:
        value, rounding, suffix = y * 100 / s, FOREIGN, unit
        steps = [
            f"客户买入外汇，用银行卖出价{sell:.2f}（每100{unit}）。",
            f"可购买 = {rmb} ÷ {sell:.2f} × 100 = {show(value, 10)}{unit}。",
        ]
        mistakes = [
            (y * 100 / b, "bank_buying_rate"),
            (y / s, "forgot_per_100"),
            (y * s / 100, "multiplied_instead"),
        ]
    params = {
        "currency": code,
        "spot_buy": spot_buy,
        "cash_buy": cash_buy,
        "sell": sell,
        **({"rmb": rmb} if variant == "rmb_to_foreign" else {"foreign": foreign}),
    }
    return Draft(
        family="currency_exchange",
        variant=variant,
        subject="金融计算/外汇兑换",
        params=params,
        scenario=scenario,
        rounding=rounding,
        value=value,
        mistakes=mistakes,
        steps=steps,
        phrasing=phrasing,
        unit_suffix=suffix,
    )

"""Closed-form finance formulas (and Newton's method where no closed form exists).

Rates are decimals (``0.0435`` for 4.35%). Exact arithmetic (Decimal) where the formula allows it: simple and
compound interest, instalments, fees, conversions; floats for roots and yields. Tests recompute every answer
with independent, iterative methods (schedules, explicit sums, bisection), never with these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal


class NoSolutionError(ValueError):
    """A root-finding step did not converge (the caller resamples the parameters)."""


def newton(
    f: Callable[[float], float], df: Callable[[float], float], x0: float, *, tol: float = 1e-13
) -> float:
    """Newton's method from ``x0``.

    Raises:
        NoSolutionError: If it does not converge in 100 steps or meets a zero derivative.
    """
    x = x0
    for _ in range(100):
        slope = df(x)
        if slope == 0:
            raise NoSolutionError("zero derivative")
        step = f(x) / slope
        x -= step
        if abs(step) < tol:
            return x
    raise NoSolutionError(f"no convergence from {x0}")


def simple_interest(principal: Decimal, rate: Decimal, years: Decimal) -> Decimal:
    """``P · r · t``."""
    return principal * rate * years


def compound_amount(principal: Decimal, rate: Decimal, per_year: int, years: int) -> Decimal:
    """``P · (1 + r/m)^(m·n)``: the value after ``years`` with ``per_year`` compoundings a year."""
    return principal * (1 + rate / per_year) ** (per_year * years)


def annuity_payment(principal: Decimal, monthly_rate: Decimal, months: int) -> Decimal:
    """Equal instalments (等额本息): ``P · i · (1+i)^n / ((1+i)^n − 1)``."""
    growth = (1 + monthly_rate) ** months
    return principal * monthly_rate * growth / (growth - 1)


def equal_principal_payment(principal: Decimal, monthly_rate: Decimal, months: int, month: int) -> Decimal:
    """Equal principal (等额本金), payment of month ``month`` (1-based): ``P/n + (P − (k−1)·P/n) · i``."""
    part = principal / months
    return part + (principal - (month - 1) * part) * monthly_rate


def equal_principal_interest(principal: Decimal, monthly_rate: Decimal, months: int) -> Decimal:
    """Total interest of equal principal repayment: ``P · i · (n + 1) / 2``."""
    return principal * monthly_rate * (months + 1) / 2


def effective_annual_rate(nominal: Decimal, per_year: int) -> Decimal:
    """``(1 + r/m)^m − 1``."""
    return (1 + nominal / per_year) ** per_year - 1


def instalment_monthly_rate(principal: float, months: int, monthly_fee: float) -> float:
    """The monthly internal rate of a fee-based instalment plan (principal/n + principal·fee each month).

    Solves ``P = A · (1 − (1+i)^−n) / i`` for ``i`` by Newton's method.
    """
    payment = principal / months + principal * monthly_fee

    def f(i: float) -> float:
        return payment * (1 - (1 + i) ** -months) / i - principal

    def df(i: float) -> float:
        return payment * (months * (1 + i) ** (-months - 1) * i - (1 - (1 + i) ** -months)) / i**2

    return newton(f, df, 2 * monthly_fee)


def bond_price(face: Decimal, coupon_rate: Decimal, yield_rate: Decimal, years: int) -> Decimal:
    """Price of an annual-coupon bond: ``C · (1 − (1+y)^−N) / y + F · (1+y)^−N``."""
    discount = (1 + yield_rate) ** -years
    return face * coupon_rate * (1 - discount) / yield_rate + face * discount


def macaulay_duration(coupon_rate: float, yield_rate: float, years: int) -> float:
    """Macaulay duration of an annual-coupon bond in years (closed form, any face value)::

    D = (1+y)/y − (1 + y + N(c − y)) / (c((1+y)^N − 1) + y)
    """
    c, y, n = coupon_rate, yield_rate, years
    return (1 + y) / y - (1 + y + n * (c - y)) / (c * ((1 + y) ** n - 1) + y)


def bond_yield(price: float, face: float, coupon_rate: float, years: int) -> float:
    """Yield to maturity of an annual-coupon bond at ``price`` (Newton's method on the price equation)."""
    coupon = face * coupon_rate

    def f(y: float) -> float:
        return coupon * (1 - (1 + y) ** -years) / y + face * (1 + y) ** -years - price

    def df(y: float) -> float:
        d_annuity = (years * (1 + y) ** (-years - 1) * y - (1 - (1 + y) ** -years)) / y**2
        return coupon * d_annuity - years * face * (1 + y) ** (-years - 1)

    start = (coupon + (face - price) / years) / ((face + price) / 2)  # the textbook approximation
    return newton(f, df, max(start, 1e-4))


def net_present_value(rate: Decimal, investment: Decimal, flows: Sequence[Decimal]) -> Decimal:
    """``−C0 + Σ CF_t / (1+r)^t`` (flows at the end of years 1, 2, …)."""
    return -investment + sum((cf / (1 + rate) ** t for t, cf in enumerate(flows, start=1)), Decimal(0))


def internal_rate_of_return(investment: float, flows: Sequence[float]) -> float:
    """The rate at which the net present value is zero (Newton's method; conventional flows)."""

    def f(r: float) -> float:
        return -investment + sum(cf / (1 + r) ** t for t, cf in enumerate(flows, start=1))

    def df(r: float) -> float:
        return sum(-t * cf / (1 + r) ** (t + 1) for t, cf in enumerate(flows, start=1))

    return newton(f, df, 0.1)

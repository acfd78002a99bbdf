"""Amounts in words a reader trusts: always with their currency. Knows nothing about Django."""

from decimal import Decimal

# Between the figure and the code: the two never part at the end of a line.
NBSP = "\u00a0"
MINUS = "\u2212"


def _decimal(amount) -> Decimal:
    return amount if isinstance(amount, Decimal) else Decimal(str(amount))


def money_text(amount, currency: str, *, places: int = 2) -> str:
    """12345.6, "EUR" -> "12,345.60 EUR" (a real minus sign when negative)."""
    value = _decimal(amount)
    figure = f"{abs(value):,.{places}f}"
    return f"{MINUS if value < 0 else ''}{figure}{NBSP}{currency}"


def money_short_text(amount, currency: str) -> str:
    """A headline amount that fits a card: "60.9 M EUR", "130,404 EUR", "95.50 EUR"."""
    value = _decimal(amount)
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:,.1f}{NBSP}M{NBSP}{currency}"
    return money_text(value, currency, places=0 if abs(value) >= 10_000 else 2)


def money_signed_text(amount, currency: str) -> str:
    """A difference: "+12.00 EUR", or a minus sign and "5.50 EUR"."""
    value = _decimal(amount)
    return money_text(value, currency) if value < 0 else f"+{money_text(value, currency)}"


def money_about_text(amount, currency: str) -> str:
    """An "about" figure, two significant digits at most past 100: "1,200 EUR"."""
    value = float(amount)
    if abs(value) >= 100:
        value = round(value, -1) if abs(value) < 1000 else round(value, -2)
    return money_text(value, currency, places=0)

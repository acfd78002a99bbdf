"""Small formatting filters of the staff pages."""

from datetime import timedelta
from decimal import Decimal

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def money(value) -> str:
    """12,345.60 (the currency is the business's own, so it is not repeated everywhere)."""
    if value is None or value == "":
        return "—"
    return f"{Decimal(value):,.2f}"


@register.filter
def money_short(value) -> str:
    """A headline amount that fits a card: 60.9 M, 130,404, 95.50."""
    if value is None or value == "":
        return "\u2014"
    amount = Decimal(value)
    if abs(amount) >= 1_000_000:
        return f"{amount / 1_000_000:,.1f} M"
    if abs(amount) >= 10_000:
        return f"{amount:,.0f}"
    return f"{amount:,.2f}"


@register.filter
def percent(value, digits: int = 1) -> str:
    """0.1234 -> 12.3%."""
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def signed_percent(value) -> str:
    """0.12 -> +12%, -0.05 -> -5% (with a real minus sign)."""
    if value is None:
        return "—"
    pct = float(value) * 100
    return f"+{pct:.0f}%" if pct >= 0 else f"\u2212{abs(pct):.0f}%"


@register.filter
def percent_width(value) -> str:
    """A CSS width from a share in 0..1, clamped."""
    try:
        share = min(max(float(value), 0.0), 1.0)
    except (TypeError, ValueError):
        share = 0.0
    return f"{share * 100:.1f}%"


@register.filter
def interval(bounds) -> str:
    """(0.12, 0.34) -> 12%-34% (with an en dash)."""
    if not bounds:
        return ""
    low, high = bounds
    return f"{low * 100:.0f}%\u2013{high * 100:.0f}%"


@register.filter
def signed_money(value) -> str:
    if value is None:
        return "—"
    value = Decimal(str(value))
    return f"+{value:,.2f}" if value >= 0 else f"\u2212{abs(value):,.2f}"


@register.filter
def confidence_class(value: str) -> str:
    return {"high": "good", "medium": "warn", "low": "bad"}.get(value, "gray")


@register.filter
def upto(value: str, delimiter: str) -> str:
    """The text before the first delimiter: "2 days, 3 hours" -> "2 days"."""
    return str(value).split(delimiter)[0]


@register.filter
def ago(value) -> str:
    """A past moment as "just now", "5 minutes ago", "3 days ago" (largest unit only)."""
    if not value:
        return ""
    if timezone.now() - value < timedelta(minutes=1):
        return "just now"
    return f"{timesince(value).split(',')[0]} ago"


@register.filter
def days(value) -> str:
    if value is None:
        return "—"
    n = round(float(value))
    return "1 day" if n == 1 else f"{n} days"


@register.filter
def stars(value) -> str:
    if value is None:
        return ""
    n = int(value)
    return "★" * n + "☆" * (5 - n)


@register.filter
def signed_points(value) -> str:
    """A difference of two shares: 0.05 -> +5.0 pts (percentage points)."""
    if value is None:
        return "—"
    pts = float(value) * 100
    return f"+{pts:.1f} pts" if pts >= 0 else f"\u2212{abs(pts):.1f} pts"


@register.filter
def points_interval(bounds) -> str:
    if not bounds:
        return ""
    low, high = bounds
    return f"{low * 100:+.1f} to {high * 100:+.1f} pts"


@register.filter
def money_interval(bounds) -> str:
    if not bounds:
        return ""
    low, high = bounds
    return f"{low:+,.2f} to {high:+,.2f}"

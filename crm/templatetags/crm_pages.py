"""Small formatting filters of the staff pages."""

from datetime import timedelta

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from crm.money import money_short_text, money_signed_text, money_text
from crm.selectors import business_get

register = template.Library()


def _currency(currency: str | None) -> str:
    """The amount's own currency when it has one (a purchase), else the business's."""
    return currency or business_get().currency


@register.filter
def money(value, currency: str | None = None) -> str:
    """12,345.60 EUR: every amount with its currency, the business's unless given."""
    if value is None or value == "":
        return "—"
    return money_text(value, _currency(currency))


@register.filter
def money_short(value, currency: str | None = None) -> str:
    """A headline amount that fits a card: 60.9 M EUR, 130,404 EUR, 95.50 EUR."""
    if value is None or value == "":
        return "\u2014"
    return money_short_text(value, _currency(currency))


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
    return money_signed_text(value, _currency(None))


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
def days_ago(value) -> str:
    """A past moment in the business's calendar days: "today", "1 day ago", "12 days ago",
    as the predictions and the segment's reasons count them beside it (a sale at 23:00 the
    day before yesterday is 2 days ago, though under 48 hours); a month or more as ``ago``."""
    if not value:
        return ""
    elapsed = (timezone.localdate() - timezone.localtime(value).date()).days
    if elapsed <= 0:
        return "today"
    if elapsed < 31:
        return "1 day ago" if elapsed == 1 else f"{elapsed} days ago"
    return ago(value)


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
    return f"{low:+,.2f} to {high:+,.2f}\u00a0{_currency(None)}"

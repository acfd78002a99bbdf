"""The predictions in the owner's words: what a customer will likely do, and what that
rests on. Pure."""

from __future__ import annotations

from crm.money import money_about_text

# How sure "still a customer" is, in words, from P(alive): the owner reads the words, not the
# number. "Likely gone" starts below even odds, the line every page uses.
ALIVE_WORDS = (
    (0.9, "Very likely still a customer"),
    (0.7, "Likely still a customer"),
    (0.5, "Perhaps still a customer"),
    (0.2, "Likely gone"),
    (0.0, "Very likely gone"),
)


def _money(amount: float, currency: str) -> str:
    # "About" figures: two significant digits are all the model can promise.
    return money_about_text(amount, currency)


def _purchases(expected: float) -> str:
    if expected < 0.15:
        return "no purchase expected"
    if expected < 0.75:
        return "perhaps one purchase"
    count = max(1, round(expected))
    return f"about {count} purchase{'s' if count != 1 else ''} expected"


def prediction_words(
    *,
    p_alive: float | None,
    expected_purchases_90d: float | None,
    value_12m: float | None,
    currency: str,
    repeat_purchases: int | None = None,
) -> str:
    """One sentence for the owner, e.g. "Very likely still a customer — about 2 purchases
    expected in the next 90 days — worth about EUR 340 over the next year"."""
    if p_alive is None or expected_purchases_90d is None or value_12m is None:
        return "Not enough data yet to say what this customer will do."
    words = next(text for bound, text in ALIVE_WORDS if p_alive >= bound)
    if repeat_purchases == 0:
        # With one purchase the model cannot tell a lapsed customer from a new one: it says
        # "still a customer" by construction, so do not claim more than it knows.
        words = "Has bought once so far"
    parts = [words, f"{_purchases(expected_purchases_90d)} in the next 90 days"]
    if value_12m >= 1:
        parts.append(f"worth about {_money(value_12m, currency)} over the next year")
    else:
        parts.append("little expected over the next year")
    return " — ".join(parts)


def _span(days: float) -> str:
    days = max(0.0, days)
    if days < 14:
        n = max(1, round(days))
        return f"{n} day{'s' if n != 1 else ''}"
    if days < 61:
        n = round(days / 7)
        return f"{n} week{'s' if n != 1 else ''}"
    if days < 730:
        n = round(days / 30.4)
        return f"{n} month{'s' if n != 1 else ''}"
    n = round(days / 365.25)
    return f"{n} year{'s' if n != 1 else ''}"


def prediction_basis(*, x: int, t_x: float, T: float, time_unit_days: float) -> str:
    """What a prediction rests on, in words: "Bought on 4 days over 14 months; the last time
    3 weeks ago." (x repeat days after the first; t_x and T in the model's time unit)."""
    since_last = (T - t_x) * time_unit_days
    days = x + 1
    if days == 1:
        since_first = T * time_unit_days
        return (
            "Bought once, today."
            if round(since_first) == 0
            else (f"Bought once, {_span(since_first)} ago.")
        )
    if round(since_last) == 0:
        last = "the last time today"
    else:
        last = f"the last time {_span(since_last)} ago"
    return f"Bought on {days} different days over {_span(t_x * time_unit_days)}; {last}."

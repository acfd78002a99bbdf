"""Cell parsers: each turns the text of one cell into a value or raises ValueError saying why."""

from __future__ import annotations

import re
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation

from django.utils import timezone

from crm.bounds import date_checked, model_text_checked

CENT = Decimal("0.01")
DECIMAL_DIGITS_MAX = 18

_TRUE = {"1", "true", "yes", "y", "on", "x"}
_FALSE = {"0", "false", "no", "n", "off"}


class CellError(ValueError):
    """A cell that cannot be imported: the column and a plain message."""

    def __init__(self, column: str, message: str):
        super().__init__(f"column '{column}': {message}")
        self.column = column
        self.message = message


def parse_decimal(value: str, *, what: str = "a number") -> Decimal:
    if not value:
        raise ValueError(f"is empty (expected {what})")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"'{value}' is not {what}") from None
    if not number.is_finite():
        raise ValueError(f"'{value}' is not {what}")
    # No field holds 10^18; refusing here keeps "1e999999" from failing later in quantize().
    if number and number.adjusted() >= DECIMAL_DIGITS_MAX:
        raise ValueError(f"'{value}' is too large")
    return number


def parse_date(value: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"'{value}' is not a real date ({exc})") from None
        raise ValueError(f"'{value}' is not a date; use YYYY-MM-DD") from None
    return date_checked(day)


def parse_datetime(value: str, *, date_format: str = "", zone: tzinfo | None = None) -> datetime:
    """An aware datetime (naive text is read in `zone`, by default the current time zone)."""
    try:
        if date_format:
            moment = datetime.strptime(value, date_format)  # noqa: DTZ007 (made aware below)
        else:
            moment = datetime.fromisoformat(value)
    except ValueError as exc:
        if not date_format and re.match(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"'{value}' is not a real date ({exc})") from None
        expected = date_format or "YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS]"
        raise ValueError(f"'{value}' is not a date and time; use {expected}") from None
    # Before the time zone: year 1 east of UTC has no UTC equivalent (OverflowError).
    date_checked(moment)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, zone)
    return moment


def parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"'{value}' is not yes/no (use yes, no, true, false, 1 or 0)")


def parse_external_id(value: str) -> str:
    # Spreadsheets turn integer ids into floats ("17850.0"); the shop's id is "17850".
    if re.fullmatch(r"\d+\.0+", value):
        return value.split(".", 1)[0]
    return value


def within_max_length(model, name: str, value: str) -> str:
    """The value, when it fits the model field's max_length (and holds no NUL byte)."""
    return model_text_checked(model, name, value)

"""The customer columns of our CSV files: one table read by both the import and the export.

A column is added here once: its name, how the export reads it from a customer, and how the
import parses it (columns without a parser, such as computed statistics, are export-only).
The table is in the order the export writes the columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from operator import attrgetter
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from crm.bounds import decimal_checked, text_checked
from crm.importers.reading import encoding_problem
from crm.importers.values import (
    CENT,
    CellError,
    parse_bool,
    parse_date,
    parse_datetime,
    parse_decimal,
    parse_external_id,
    within_max_length,
)
from crm.models import Customer, Tag


@dataclass(frozen=True)
class CsvColumn:
    """One column: its name, how the export reads it, how the import parses it."""

    name: str
    export: Callable[[Customer], Any] | None = None  # None: the attribute of the same name
    parse: Callable[[str], Any] | None = None  # None: not imported

    @property
    def read(self) -> Callable[[Customer], Any]:
        return self.export or attrgetter(self.name)

    def parse_cell(self, text: str) -> Any:
        """The value of a non-blank cell; raises CellError naming this column when it is bad."""
        if problem := encoding_problem(text):
            raise CellError(self.name, problem)
        try:
            return self.parse(text)
        except ValueError as exc:
            raise CellError(self.name, str(exc)) from None


def _text(name: str) -> Callable[[str], str]:
    return lambda value: within_max_length(Customer, name, value)


def _email(value: str) -> str:
    try:
        validate_email(value)
    except ValidationError:
        raise ValueError(f"'{value}' is not an e-mail address") from None
    return within_max_length(Customer, "email", value)


def _external_id(value: str) -> str:
    return within_max_length(Customer, "external_id", parse_external_id(value))


def _birth_date(value: str) -> date:
    born = parse_date(value)
    if born > timezone.localdate():
        raise ValueError(f"{value} is in the future")
    return born


def _age(value: str) -> int:
    if not re.fullmatch(r"\d+(\.0+)?", value):
        raise ValueError(f"'{value}' is not a whole number of years")
    age = int(Decimal(value))
    if age > 130:
        raise ValueError(f"{age} is not a plausible age (0-130)")
    return age


def _annual_income(value: str) -> Decimal:
    income = parse_decimal(value, what="an amount")
    if income < 0:
        raise ValueError(f"{value} is negative")
    return decimal_checked(Customer, "annual_income", income.quantize(CENT, ROUND_HALF_UP))


def _tags(value: str) -> list[str]:
    tags = [t.strip() for t in re.split(r"[;|]", value) if t.strip()]
    for tag in tags:
        within_max_length(Tag, "name", tag)
    return tags


def _created_at(value: str) -> datetime:
    created = parse_datetime(value)
    if created > timezone.now() + timedelta(days=1):
        raise ValueError(f"{value} is in the future")
    return created


def _customer_id(value: str) -> int:
    if not re.fullmatch(r"\d+(\.0+)?", value) or int(Decimal(value)) == 0:
        raise ValueError(f"'{value}' is not a customer id (a whole number)")
    return int(Decimal(value))


def _notes(value: str) -> str:
    return text_checked(value)


CUSTOMER_CSV_COLUMNS: tuple[CsvColumn, ...] = (
    # The export's own id: it names the customers that have neither e-mail nor external id.
    CsvColumn("id", export=attrgetter("pk"), parse=_customer_id),
    CsvColumn("name", parse=_text("name")),
    CsvColumn("email", parse=_email),
    CsvColumn("phone", parse=_text("phone")),
    CsvColumn("external_source", parse=_text("external_source")),
    CsvColumn("external_id", parse=_external_id),
    CsvColumn("birth_date", parse=_birth_date),
    CsvColumn("age", parse=_age),
    CsvColumn("annual_income", parse=_annual_income),
    CsvColumn("city", parse=_text("city")),
    CsvColumn("country", parse=_text("country")),
    CsvColumn("tags", export=lambda c: "; ".join(t.name for t in c.tags.all()), parse=_tags),
    CsvColumn("notes", parse=_notes),
    CsvColumn("marketing_consent", parse=parse_bool),
    CsvColumn("profiling_opt_out", parse=parse_bool),
    CsvColumn("is_archived", parse=parse_bool),
    CsvColumn("created_at", parse=_created_at),
    CsvColumn("purchase_count"),
    CsvColumn("total_spent"),
    CsvColumn("first_purchase_at"),
    CsvColumn("last_purchase_at"),
)

CUSTOMER_EXPORT_COLUMNS = tuple(c.name for c in CUSTOMER_CSV_COLUMNS)
# The columns a customer file may have, each with its parser (text -> value, or CellError).
CUSTOMER_PARSERS: dict[str, Callable[[str], Any]] = {
    c.name: c.parse_cell for c in CUSTOMER_CSV_COLUMNS if c.parse is not None
}
CUSTOMER_COLUMNS = tuple(CUSTOMER_PARSERS)

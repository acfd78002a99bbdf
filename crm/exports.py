"""Stream customers and purchases as CSV, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, TextIO

from django.db.models import QuerySet
from django.utils import timezone

from crm.csv_guard import FORMULA_STARTS, csv_guarded
from crm.importers.columns import CUSTOMER_CSV_COLUMNS, CUSTOMER_EXPORT_COLUMNS
from crm.models import Customer, Purchase

CHUNK_SIZE = 2000


PURCHASE_EXPORT_COLUMNS = (
    "id",
    "customer_email",
    "customer_external_id",
    "customer_name",
    "order_id",
    "kind",
    "amount",
    "currency",
    "purchased_at",
    "product",
    "category",
    "channel",
)


def csv_cell(value: Any) -> Any:
    """A value as it should be written: numbers stay numbers, formula-like text is defused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float | Decimal):
        return value  # a negative number is a number, not a formula
    if isinstance(value, datetime):
        # Whole seconds read best; fractions are kept when there are any, so that a
        # re-import gives back the very same moment.
        return timezone.localtime(value).isoformat(sep=" ", timespec="auto")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    # A text that already looks guarded gets a guard of its own, so the importer's
    # csv_unguard (strip one guard) gives it back exactly.
    if text.startswith(FORMULA_STARTS) or csv_guarded(text):
        return "'" + text
    return text


class ColumnProvider(Protocol):
    """Columns an app above crm adds to the customer export (crm cannot read its tables).

    ``values`` is called once per chunk of customers with their ids and returns, per id, a
    value for each of ``columns`` (a missing id or column is an empty cell).
    """

    columns: tuple[str, ...]

    def values(self, customer_ids: list[int]) -> dict[int, dict[str, Any]]: ...


def customer_rows(
    queryset: QuerySet[Customer],
    *,
    extra_columns: Sequence[ColumnProvider] = (),
    hidden: Sequence[str] = (),
) -> Iterator[list[Any]]:
    """The header, then one row per customer, read in chunks (tags prefetched per chunk).

    ``extra_columns``: providers whose columns follow crm's own, each asked once per chunk.
    ``hidden``: crm columns written blank (CUSTOMER_SENSITIVE_FIELDS for a user who may not
    see them); the header keeps them, so the file imports back the same way.
    """
    yield [*CUSTOMER_EXPORT_COLUMNS, *(c for p in extra_columns for c in p.columns)]
    customers = queryset.prefetch_related("tags").order_by("pk").iterator(chunk_size=CHUNK_SIZE)
    chunk: list[Customer] = []
    for customer in customers:
        chunk.append(customer)
        if len(chunk) == CHUNK_SIZE:
            yield from _customer_chunk_rows(chunk, extra_columns, hidden)
            chunk = []
    if chunk:
        yield from _customer_chunk_rows(chunk, extra_columns, hidden)


def _blank(customer: Customer) -> str:
    return ""


def _customer_chunk_rows(
    chunk: list[Customer], extra_columns: Sequence[ColumnProvider], hidden: Sequence[str]
) -> Iterator[list[Any]]:
    ids = [c.pk for c in chunk]
    extras = [(p.columns, p.values(ids)) for p in extra_columns]
    getters = [_blank if c.name in hidden else c.read for c in CUSTOMER_CSV_COLUMNS]
    for c in chunk:
        extra = [
            values.get(c.pk, {}).get(column) for columns, values in extras for column in columns
        ]
        yield [csv_cell(v) for v in (*(read(c) for read in getters), *extra)]


def purchase_rows(queryset: QuerySet[Purchase]) -> Iterator[list[Any]]:
    """The header, then one row per purchase, read in chunks with its customer."""
    yield list(PURCHASE_EXPORT_COLUMNS)
    rows = queryset.select_related("customer").order_by("pk").iterator(chunk_size=CHUNK_SIZE)
    for p in rows:
        yield [
            csv_cell(v)
            for v in (
                p.pk,
                p.customer.email,
                p.customer.external_id,
                p.customer.name,
                p.external_order_id,
                p.kind,
                p.amount,
                p.currency,
                p.purchased_at,
                p.product,
                p.category,
                p.channel,
            )
        ]


class _Echo:
    """A file-like object whose write() returns the line, for StreamingHttpResponse."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[list[Any]]) -> Iterator[str]:
    """CSV text, one line at a time (for a streaming HTTP response)."""
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow(row)


def csv_write(rows: Iterable[list[Any]], out: TextIO) -> int:
    """Write rows to an open text file; returns the number of data rows written."""
    writer = csv.writer(out)
    count = -1
    for row in rows:
        writer.writerow(row)
        count += 1
    return max(count, 0)


def csv_output_write(rows: Iterable[list[Any]], *, output: str, stderr: TextIO) -> None:
    """Write rows to a file, or to stdout when ``output`` is "-" (the export commands)."""
    if output == "-":
        count = csv_write(rows, sys.stdout)
        sys.stdout.flush()
    else:
        with open(output, "w", newline="", encoding="utf-8") as out:
            count = csv_write(rows, out)
    stderr.write(f"Exported {count:,} row(s).")

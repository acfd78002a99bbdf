"""Stream customers and purchases as CSV, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, TextIO

from django.db.models import Q, QuerySet
from django.utils import timezone

from crm.csv_guard import FORMULA_STARTS, csv_guarded
from crm.importers.columns import CUSTOMER_CSV_COLUMNS, CUSTOMER_EXPORT_COLUMNS
from crm.models import Customer, Purchase

CHUNK_SIZE = 5000
# A text starting with none of these needs no guard (see csv_cell).
_RISKY_STARTS = frozenset((*FORMULA_STARTS, "'"))
LINES_PER_BLOCK = 500


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

    ``values`` is called once per chunk of customers with their ids (sorted) and returns, per
    id, a value for each of ``columns`` (a missing id or column is an empty cell); ids not
    asked for are ignored, so ``ids_filter`` may read the range the ids span.
    """

    columns: tuple[str, ...]

    def values(self, customer_ids: list[int]) -> dict[int, dict[str, Any]]: ...


def customer_rows(
    queryset: QuerySet[Customer],
    *,
    extra_columns: Sequence[ColumnProvider] = (),
    hidden: Sequence[str] = (),
) -> Iterator[list[Any]]:
    """The header, then one row per customer, read in chunks of plain values (no model
    instances: a million customers stream at database speed).

    ``extra_columns``: providers whose columns follow crm's own, each asked once per chunk.
    ``hidden``: crm columns written blank (CUSTOMER_SENSITIVE_FIELDS for a user who may not
    see them); the header keeps them, so the file imports back the same way.
    """
    yield [*CUSTOMER_EXPORT_COLUMNS, *(c for p in extra_columns for c in p.columns)]
    # Every column is read straight from its field in the table's order ("id" is the pk),
    # except the tags, which are put in their place per chunk.
    names = [c.name for c in CUSTOMER_CSV_COLUMNS]
    assert all(c.export is None for c in CUSTOMER_CSV_COLUMNS if c.name not in ("id", "tags"))
    tags_at = names.index("tags")
    fields = ["pk" if name == "id" else name for name in names if name != "tags"]
    pk_at = fields.index("pk")
    hidden_at = [i for i, name in enumerate(names) if name in hidden]
    cell = _cell_writer()
    rows = queryset.order_by("pk").values_list(*fields)
    last = 0
    while True:
        chunk = list(rows.filter(pk__gt=last)[:CHUNK_SIZE])
        if not chunk:
            return
        last = chunk[-1][pk_at]
        ids = [row[pk_at] for row in chunk]
        tags = _tag_names(ids)
        extras = [(p.columns, p.values(ids)) for p in extra_columns]
        for row in chunk:
            pk = row[pk_at]
            out = list(map(cell, row))
            out.insert(tags_at, cell(tags.get(pk, "")))
            for i in hidden_at:
                out[i] = ""
            for columns, found in extras:
                values = found.get(pk)
                if values is None:
                    out.extend([""] * len(columns))
                else:
                    out.extend([cell(values.get(name)) for name in columns])
            yield out
        if len(chunk) < CHUNK_SIZE:
            return


def ids_filter(field: str, ids: Sequence[int]) -> Q:
    """`field` among `ids`, or within the range they span when they are dense (a chunk of a
    whole table): the database reads a range faster than thousands of parameters. The
    caller ignores the rows of ids it did not ask for."""
    if ids and max(ids) - min(ids) < 2 * len(ids):
        return Q(**{f"{field}__gte": min(ids), f"{field}__lte": max(ids)})
    return Q(**{f"{field}__in": list(ids)})


def _tag_names(customer_ids: list[int]) -> dict[int, str]:
    """{customer id: its tags' names joined by "; ", in name order} (one query)."""
    links = (
        Customer.tags.through.objects.filter(ids_filter("customer_id", customer_ids))
        .order_by("customer_id", "tag__name")
        .values_list("customer_id", "tag__name")
    )
    names: dict[int, list[str]] = {}
    for customer_id, name in links:
        names.setdefault(customer_id, []).append(name)
    return {customer_id: "; ".join(found) for customer_id, found in names.items()}


def _cell_writer():
    """csv_cell with the current time zone looked up once, not once per date."""
    zone = timezone.get_current_timezone()

    def cell(value: Any) -> Any:
        if type(value) is str:
            return value if value[:1] not in _RISKY_STARTS else csv_cell(value)
        if isinstance(value, datetime):
            return value.astimezone(zone).isoformat(sep=" ", timespec="auto")
        return csv_cell(value)

    return cell


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


def csv_lines(rows: Iterable[list[Any]]) -> Iterator[str]:
    """CSV text for a streaming HTTP response: the header line, then blocks of lines (one
    chunk per row would cost more in the server than the row itself)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    rows = iter(rows)
    for header in rows:
        writer.writerow(header)
        yield _taken(buffer)
        break
    for count, row in enumerate(rows, start=1):
        writer.writerow(row)
        if count % LINES_PER_BLOCK == 0:
            yield _taken(buffer)
    if rest := _taken(buffer):
        yield rest


def _taken(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


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

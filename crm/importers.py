"""Import customers and purchases from CSV: read, validate every row, then write in bulk.

Shared by the admin import pages and the `import_customers` / `import_purchases` commands.
Each import is one transaction: when any row is invalid nothing is written, unless the
caller asks for `only_valid`, in which case the invalid rows (or orders) are left out and
reported. A dry run does the whole import, then rolls it back.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from crm.models import Customer, Purchase, Tag
from crm.services import customer_stats_refresh

Progress = Callable[[int], None]

BATCH_SIZE = 1000
# bulk_update writes one CASE WHEN per row and field: small batches keep it linear.
UPDATE_BATCH_SIZE = 100
PROGRESS_EVERY = 5000
MAX_ERRORS = 1000  # kept in the report; the count of invalid rows is always exact
PREVIEW_ROWS = 20
CENT = Decimal("0.01")

CUSTOMER_COLUMNS = (
    "email",
    "name",
    "phone",
    "external_source",
    "external_id",
    "birth_date",
    "age",
    "annual_income",
    "city",
    "country",
    "tags",
    "notes",
    "marketing_consent",
    "profiling_opt_out",
    "created_at",
)
PURCHASE_COLUMNS = (
    "customer_email",
    "customer_external_id",
    "customer_name",
    "customer_country",
    "order_id",
    "amount",
    "quantity",
    "unit_price",
    "purchased_at",
    "currency",
    "product",
    "category",
    "channel",
    "kind",
)


@dataclass(frozen=True)
class Preset:
    """A named column mapping (our column -> the file's header) and import defaults."""

    name: str
    description: str
    mapping: dict[str, str]
    external_source: str
    cancel_prefix: str = ""
    currency: str = ""


PRESETS = {
    "uci": Preset(
        name="uci",
        description="UCI Online Retail: one line per item, invoices starting with C are "
        "cancellations, customers identified by CustomerID, prices in GBP.",
        mapping={
            "order_id": "InvoiceNo",
            "product": "Description",
            "quantity": "Quantity",
            "purchased_at": "InvoiceDate",
            "unit_price": "UnitPrice",
            "customer_external_id": "CustomerID",
            "customer_country": "Country",
        },
        external_source="uci",
        cancel_prefix="C",
        currency="GBP",
    ),
}


@dataclass(frozen=True)
class RowError:
    """One problem in the file. Row 1 is the header, as in a spreadsheet."""

    row: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"Row {self.row}" if self.row else "File"
        if self.column:
            where += f", column '{self.column}'"
        return f"{where}: {self.message}"


@dataclass
class ImportReport:
    """What an import read, wrote (or would write) and left out, and why."""

    kind: str
    dry_run: bool = False
    only_valid: bool = False
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    customers_created: int = 0
    zero_value_orders: int = 0
    invalid_rows: int = 0
    skipped: Counter = field(default_factory=Counter)
    errors: list[RowError] = field(default_factory=list)
    fatal: bool = False  # the file cannot be read at all (encoding of the header, columns)
    written: bool = False
    preview: list[dict] = field(default_factory=list)
    total_amount: Decimal = Decimal("0")

    @property
    def ok(self) -> bool:
        """True when the import can be (or was) written."""
        return not self.fatal and (not self.errors or self.only_valid)

    def add_error(self, row: int, column: str | None, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RowError(row, column, message))

    def summary(self) -> list[str]:
        """Plain-language lines for the command line and the admin."""
        noun = "customers" if self.kind == "customers" else "orders"
        verb = "would be" if self.dry_run or not self.written else "were"
        lines = [f"Rows read: {self.rows:,}."]
        if self.errors:
            lines.append(f"Invalid rows: {self.invalid_rows:,} (errors below).")
        if self.ok:
            lines.append(f"{noun.capitalize()} {verb} created: {self.created:,}.")
            lines.append(f"{noun.capitalize()} {verb} updated: {self.updated:,}.")
            if self.unchanged:
                lines.append(f"{noun.capitalize()} already up to date: {self.unchanged:,}.")
            if self.kind == "purchases":
                lines.append(f"Customers {verb} created: {self.customers_created:,}.")
                lines.append(f"Total amount of the orders: {self.total_amount:,.2f}.")
                if self.zero_value_orders:
                    lines.append(
                        f"Orders worth exactly 0 (kept: they are real visits that count "
                        f"for recency and frequency): {self.zero_value_orders:,}."
                    )
        for reason, count in sorted(self.skipped.items(), key=lambda kv: -kv[1]):
            lines.append(f"Skipped {count:,} row(s): {reason}.")
        if self.dry_run:
            lines.append("Dry run: nothing was written.")
        elif not self.written:
            lines.append("Nothing was written.")
        return lines


class _Fatal(Exception):
    """The file as a whole cannot be imported (reported as one error)."""

    def __init__(self, row: int, column: str | None, message: str):
        super().__init__(message)
        self.error = RowError(row, column, message)


class _DryRunRollback(Exception):
    pass


# -- reading ---------------------------------------------------------------------------------

_BAD_BYTES = re.compile("[\udc80-\udcff]")


def _open_text(source: str | Path | BinaryIO) -> io.TextIOWrapper:
    """A text stream over a CSV file, gzip or not. BOM and any line ending are accepted.

    Bytes that are not UTF-8 are kept as surrogates so each row can say where they are.
    """
    binary = open(source, "rb") if isinstance(source, str | Path) else source  # noqa: SIM115
    head = binary.read(2)
    binary.seek(0)
    if head == b"\x1f\x8b":
        binary = gzip.GzipFile(fileobj=binary)
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _encoding_problem(value: str) -> str | None:
    match = _BAD_BYTES.search(value)
    if not match:
        return None
    byte = ord(match.group()) - 0xDC00
    return (
        f"byte 0x{byte:02X} is not valid UTF-8 (the file looks like Latin-1/Windows-1252, "
        "as spreadsheet programs save 'CSV' by default); re-save the file as "
        "'CSV UTF-8' and import it again"
    )


@dataclass
class _Row:
    number: int
    values: dict[str, str]


def _rows(
    text: io.TextIOWrapper,
    *,
    known: tuple[str, ...],
    mapping: dict[str, str],
    report: ImportReport,
    progress: Progress | None,
) -> tuple[set[str], Iterator[_Row]]:
    """Read the header, then yield each row as {our column: stripped value}."""
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        raise _Fatal(1, None, "the file is empty") from None
    except UnicodeDecodeError as exc:  # gzip data that is not text at all
        raise _Fatal(1, None, f"the file is not a CSV text file ({exc.reason})") from None
    except (OSError, EOFError) as exc:
        raise _Fatal(1, None, f"the file cannot be read ({exc})") from None
    for name in header:
        if problem := _encoding_problem(name):
            raise _Fatal(1, None, problem)
    positions = {name.strip().lower(): i for i, name in enumerate(header)}
    unknown = set(mapping) - set(known)
    if unknown:
        raise _Fatal(0, None, f"unknown column(s) in the mapping: {', '.join(sorted(unknown))}")
    columns: dict[str, int] = {}
    for ours in known:
        theirs = mapping.get(ours, ours).strip().lower()
        if theirs in positions:
            columns[ours] = positions[theirs]
        elif ours in mapping:
            raise _Fatal(
                1,
                mapping[ours],
                f"missing column (mapped to '{ours}'); the header has: "
                + ", ".join(h.strip() for h in header),
            )

    def generate() -> Iterator[_Row]:
        count = 0
        try:
            for raw in reader:
                count += 1
                if progress and count % PROGRESS_EVERY == 0:
                    progress(PROGRESS_EVERY)
                if not raw or not any(cell.strip() for cell in raw):
                    continue
                report.rows += 1
                values = {}
                for ours, index in columns.items():
                    values[ours] = raw[index].strip() if index < len(raw) else ""
                yield _Row(reader.line_num, values)
        except csv.Error as exc:
            raise _Fatal(reader.line_num, None, f"the CSV is malformed ({exc})") from None
        except (OSError, EOFError) as exc:
            raise _Fatal(reader.line_num, None, f"the file cannot be read ({exc})") from None
        if progress:
            progress(count % PROGRESS_EVERY)

    return set(columns), generate()


# -- cell parsers: each returns a value or raises ValueError with a plain message -------------


def _decimal(value: str, *, what: str = "a number") -> Decimal:
    if not value:
        raise ValueError(f"is empty (expected {what})")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"'{value}' is not {what}") from None
    if not number.is_finite():
        raise ValueError(f"'{value}' is not {what}")
    return number


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"'{value}' is not a real date ({exc})") from None
        raise ValueError(f"'{value}' is not a date; use YYYY-MM-DD") from None


def _datetime(value: str, *, date_format: str = "") -> datetime:
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
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


_TRUE = {"1", "true", "yes", "y", "on", "x"}
_FALSE = {"0", "false", "no", "n", "off"}


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"'{value}' is not yes/no (use yes, no, true, false, 1 or 0)")


def _external_id(value: str) -> str:
    # Spreadsheets turn integer ids into floats ("17850.0"); the shop's id is "17850".
    if re.fullmatch(r"\d+\.0+", value):
        return value.split(".", 1)[0]
    return value


def _max_length(model, name: str, value: str) -> str:
    limit = model._meta.get_field(name).max_length
    if limit and len(value) > limit:
        raise ValueError(f"longer than {limit} characters")
    return value


# -- customers -------------------------------------------------------------------------------


@dataclass
class _CustomerRecord:
    row: int
    fields: dict
    tags: list[str]
    email_key: str
    external_key: tuple[str, str] | None
    instance: Customer | None = None


def _clean_customer(row: _Row, *, source: str, report: ImportReport) -> _CustomerRecord | None:
    fields: dict = {}
    tags: list[str] = []
    bad = False

    def fail(column: str, message: str) -> None:
        nonlocal bad
        bad = True
        report.add_error(row.number, column, message)

    today = timezone.localdate()
    for column, value in row.values.items():
        if problem := _encoding_problem(value):
            fail(column, problem)
            continue
        if value == "":
            continue  # a blank cell leaves the current value as it is
        try:
            if column == "email":
                try:
                    validate_email(value)
                except ValidationError:
                    raise ValueError(f"'{value}' is not an e-mail address") from None
                fields["email"] = _max_length(Customer, "email", value)
            elif column in ("name", "phone", "city", "country", "external_source"):
                fields[column] = _max_length(Customer, column, value)
            elif column == "external_id":
                fields["external_id"] = _max_length(Customer, column, _external_id(value))
            elif column == "notes":
                fields["notes"] = value
            elif column == "birth_date":
                born = _date(value)
                if born > today:
                    raise ValueError(f"{value} is in the future")
                fields["birth_date"] = born
            elif column == "age":
                if not re.fullmatch(r"\d+(\.0+)?", value):
                    raise ValueError(f"'{value}' is not a whole number of years")
                age = int(Decimal(value))
                if age > 130:
                    raise ValueError(f"{age} is not a plausible age (0-130)")
                fields["age"] = age
            elif column == "annual_income":
                income = _decimal(value, what="an amount")
                if income < 0:
                    raise ValueError(f"{value} is negative")
                fields["annual_income"] = income.quantize(CENT, ROUND_HALF_UP)
            elif column in ("marketing_consent", "profiling_opt_out"):
                fields[column] = _bool(value)
            elif column == "created_at":
                created = _datetime(value)
                if created > timezone.now() + timedelta(days=1):
                    raise ValueError(f"{value} is in the future")
                fields["created_at"] = created
            elif column == "tags":
                tags = [t.strip() for t in re.split(r"[;|]", value) if t.strip()]
                for tag in tags:
                    _max_length(Tag, "name", tag)
        except ValueError as exc:
            fail(column, str(exc))
    if bad:
        return None
    external_id = fields.get("external_id", "")
    if not fields.get("email") and not external_id:
        report.add_error(row.number, "email", "a customer needs an e-mail or an external_id")
        return None
    if external_id:
        fields.setdefault("external_source", source)
    return _CustomerRecord(
        row=row.number,
        fields=fields,
        tags=tags,
        email_key=fields.get("email", "").lower(),
        external_key=(fields["external_source"], external_id) if external_id else None,
    )


def _customers_by_email(emails: list[str]) -> dict[str, Customer]:
    found: dict[str, Customer] = {}
    for start in range(0, len(emails), BATCH_SIZE):
        batch = emails[start : start + BATCH_SIZE]
        for customer in Customer.objects.alias(email_lower=Lower("email")).filter(
            email_lower__in=batch
        ):
            found[customer.email.lower()] = customer
    return found


def _customers_by_external_id(keys: list[tuple[str, str]]) -> dict[tuple[str, str], Customer]:
    found: dict[tuple[str, str], Customer] = {}
    by_source: dict[str, list[str]] = {}
    for source, external_id in keys:
        by_source.setdefault(source, []).append(external_id)
    for source, ids in by_source.items():
        for start in range(0, len(ids), BATCH_SIZE):
            for customer in Customer.objects.filter(
                external_source=source, external_id__in=ids[start : start + BATCH_SIZE]
            ):
                found[(source, customer.external_id)] = customer
    return found


def customers_import(
    *,
    source: str | Path | BinaryIO,
    dry_run: bool = False,
    only_valid: bool = False,
    mapping: dict[str, str] | None = None,
    external_source: str = "shop",
    progress: Progress | None = None,
) -> ImportReport:
    """Create or update customers from a CSV file; returns the report.

    Matches existing customers on e-mail (case-insensitively) or on (external_source,
    external_id): re-importing a file updates them, never duplicates them. Blank cells leave
    the stored value alone; tags are added, never removed. Side effects: creates and updates
    Customer rows, creates Tag rows and tag links, all in one transaction (rolled back on a
    dry run, not started when a row is invalid and `only_valid` is false).
    """
    report = ImportReport(kind="customers", dry_run=dry_run, only_valid=only_valid)
    records: list[_CustomerRecord] = []
    try:
        with _open_text(source) as text:
            columns, rows = _rows(
                text,
                known=CUSTOMER_COLUMNS,
                mapping=mapping or {},
                report=report,
                progress=progress,
            )
            if "email" not in columns and "external_id" not in columns:
                raise _Fatal(1, "email", "missing column: the file needs 'email' or 'external_id'")
            seen_email: dict[str, int] = {}
            seen_external: dict[tuple[str, str], int] = {}
            for row in rows:
                record = _clean_customer(row, source=external_source, report=report)
                if record is not None:
                    if record.email_key and record.email_key in seen_email:
                        report.add_error(
                            row.number,
                            "email",
                            f"{record.fields['email']} already appears on row "
                            f"{seen_email[record.email_key]} of this file",
                        )
                        record = None
                    elif record.external_key and record.external_key in seen_external:
                        report.add_error(
                            row.number,
                            "external_id",
                            f"{record.external_key[1]} already appears on row "
                            f"{seen_external[record.external_key]} of this file",
                        )
                        record = None
                if record is None:
                    report.invalid_rows += 1
                    continue
                if record.email_key:
                    seen_email[record.email_key] = row.number
                if record.external_key:
                    seen_external[record.external_key] = row.number
                records.append(record)
    except _Fatal as fatal:
        report.fatal = True
        report.errors.insert(0, fatal.error)
        return report

    _match_customers(records, report)
    records = [r for r in records if r.instance is not False]
    report.preview = [{"row": r.row, **r.fields, "tags": ", ".join(r.tags)} for r in records][
        :PREVIEW_ROWS
    ]
    _note_left_out(report)
    if not report.ok:
        return report
    return _write(report, lambda: _write_customers(records, report))


def _match_customers(records: list[_CustomerRecord], report: ImportReport) -> None:
    by_email = _customers_by_email([r.email_key for r in records if r.email_key])
    by_external = _customers_by_external_id([r.external_key for r in records if r.external_key])
    for record in records:
        email_match = by_email.get(record.email_key) if record.email_key else None
        external_match = by_external.get(record.external_key) if record.external_key else None
        if email_match and external_match and email_match.pk != external_match.pk:
            report.add_error(
                record.row,
                "email",
                f"{record.fields['email']} belongs to another customer than external id "
                f"{record.external_key[1]}",
            )
            report.invalid_rows += 1
            record.instance = False  # left out
            continue
        record.instance = external_match or email_match


def _note_left_out(report: ImportReport) -> None:
    if report.only_valid and report.invalid_rows:
        report.skipped["invalid (see the errors)"] += report.invalid_rows


def _write(report: ImportReport, write: Callable[[], None]) -> ImportReport:
    try:
        with transaction.atomic():
            write()
            if report.dry_run:
                raise _DryRunRollback
        report.written = True
    except _DryRunRollback:
        pass
    except (IntegrityError, ValidationError) as exc:
        report.fatal = True
        report.created = report.updated = report.customers_created = 0
        report.errors.insert(0, RowError(0, None, f"the database refused the import: {exc}"))
    return report


def _write_customers(records: list[_CustomerRecord], report: ImportReport) -> None:
    new = [Customer(**r.fields) for r in records if r.instance is None]
    changed: list[Customer] = []
    update_fields: set[str] = set()
    for record in records:
        if record.instance is not None:
            if not _assign(record.instance, record.fields):
                report.unchanged += 1
                continue
            record.instance.updated_at = timezone.now()  # bulk_update skips auto_now
            update_fields.update(record.fields)
            changed.append(record.instance)
    created = Customer.objects.bulk_create(new, batch_size=BATCH_SIZE)
    if changed and update_fields:
        Customer.objects.bulk_update(
            changed, sorted(update_fields | {"updated_at"}), batch_size=UPDATE_BATCH_SIZE
        )
    report.created, report.updated = len(created), len(changed)
    new_iter = iter(created)
    links: list[tuple[int, str]] = []
    for record in records:
        customer = record.instance if record.instance is not None else next(new_iter)
        links.extend((customer.pk, name) for name in record.tags)
    if links:
        _tag_links_create(links)


def _assign(instance, values: dict) -> bool:
    """Set the values on the instance; True when any of them differed."""
    changed = False
    for name, value in values.items():
        if getattr(instance, name) != value:
            setattr(instance, name, value)
            changed = True
    return changed


def _tag_links_create(links: list[tuple[int, str]]) -> None:
    names = sorted({name for _, name in links})
    Tag.objects.bulk_create([Tag(name=n) for n in names], ignore_conflicts=True)
    tag_ids = dict(Tag.objects.filter(name__in=names).values_list("name", "pk"))
    through = Customer.tags.through
    Customer.tags.through.objects.bulk_create(
        [through(customer_id=c, tag_id=tag_ids[n]) for c, n in links],
        ignore_conflicts=True,
        batch_size=BATCH_SIZE,
    )


# -- purchases -------------------------------------------------------------------------------


@dataclass
class _Order:
    row: int
    customer_key: tuple[str, str]  # ("email", lowered) or ("external", id)
    purchased_at: datetime
    amount: Decimal
    lines: int
    product: str
    category: str
    currency: str
    channel: str
    kind: str
    order_id: str
    customer_name: str = ""
    customer_country: str = ""
    customer_email: str = ""
    amount_column: str = "amount"


_CHANNELS = {c.value: c.value for c in Purchase.Channel} | {
    c.label.lower(): c.value for c in Purchase.Channel
}
_KINDS = {c.value: c.value for c in Purchase.Kind} | {
    c.label.lower(): c.value for c in Purchase.Kind
}


def purchases_import(
    *,
    source: str | Path | BinaryIO,
    dry_run: bool = False,
    only_valid: bool = False,
    mapping: dict[str, str] | None = None,
    preset: str = "",
    create_customers: bool = False,
    external_source: str = "",
    currency: str = "",
    cancel_prefix: str | None = None,
    date_format: str = "",
    progress: Progress | None = None,
) -> ImportReport:
    """Create or update purchases from a CSV file; returns the report.

    Rows sharing an order_id are lines of one order (amount = the sum of their amounts, or
    of quantity x unit_price). Lines without a customer, cancelled orders (order id starting
    with `cancel_prefix`) and lines with a negative quantity are skipped and counted. An
    order already imported from the same source is updated, never duplicated. Side effects:
    creates and updates Purchase rows, creates the customers the file names when
    `create_customers` is set, and refreshes the purchase statistics of every customer
    touched, all in one transaction (rolled back on a dry run).
    """
    chosen = PRESETS[preset] if preset else None
    columns_map = {**(chosen.mapping if chosen else {}), **(mapping or {})}
    source_name = external_source or (chosen.external_source if chosen else "") or "shop"
    prefix = (
        cancel_prefix if cancel_prefix is not None else (chosen.cancel_prefix if chosen else "")
    )
    default_currency = (
        currency or (chosen.currency if chosen else "") or settings.DEFAULT_CURRENCY
    ).upper()
    report = ImportReport(kind="purchases", dry_run=dry_run, only_valid=only_valid)
    orders: dict[str, _Order] = {}
    bad_orders: set[str] = set()
    try:
        with _open_text(source) as text:
            columns, rows = _rows(
                text,
                known=PURCHASE_COLUMNS,
                mapping=columns_map,
                report=report,
                progress=progress,
            )
            _require_purchase_columns(columns)
            parse = _PurchaseLineParser(
                columns=columns,
                default_currency=default_currency,
                cancel_prefix=prefix,
                date_format=date_format,
                report=report,
            )
            for row in rows:
                parse.line(row, orders=orders, bad_orders=bad_orders)
    except _Fatal as fatal:
        report.fatal = True
        report.errors.insert(0, fatal.error)
        return report

    for key, order in orders.items():
        if key in bad_orders:
            continue
        order.amount = order.amount.quantize(CENT, ROUND_HALF_UP)
        if order.amount < 0:
            report.add_error(
                order.row,
                order.amount_column,
                f"the order's amount is negative ({order.amount}); record a refund with "
                "kind=refund and a positive amount",
            )
            report.invalid_rows += 1
            bad_orders.add(key)
    valid = [o for k, o in orders.items() if k not in bad_orders]
    customers, missing = _resolve_customers(valid, source=source_name)
    if missing and not create_customers:
        for order in valid:
            if order.customer_key in missing:
                kind, value = order.customer_key
                column = "customer_email" if kind == "email" else "customer_external_id"
                report.add_error(
                    order.row,
                    column,
                    f"no customer with {'e-mail' if kind == 'email' else 'external id'} "
                    f"{value}; import the customers first or ask to create them "
                    "(--create-customers, or the admin's 'create missing customers')",
                )
                report.invalid_rows += 1
        valid = [o for o in valid if o.customer_key not in missing]
    report.preview = [
        {
            "row": o.row,
            "customer": o.customer_key[1],
            "order_id": o.order_id,
            "purchased_at": o.purchased_at,
            "amount": o.amount,
            "currency": o.currency,
            "lines": o.lines,
            "product": o.product,
        }
        for o in valid[:PREVIEW_ROWS]
    ]
    _note_left_out(report)
    if not report.ok:
        return report
    return _write(
        report,
        lambda: _write_purchases(
            valid,
            customers=customers,
            missing=missing,
            source=source_name,
            report=report,
        ),
    )


def _require_purchase_columns(columns: set[str]) -> None:
    if "customer_email" not in columns and "customer_external_id" not in columns:
        raise _Fatal(
            1,
            "customer_email",
            "missing column: the file needs 'customer_email' or 'customer_external_id' "
            "(or a --map to the file's own column)",
        )
    if "purchased_at" not in columns:
        raise _Fatal(1, "purchased_at", "missing column 'purchased_at'")
    if "amount" not in columns and not {"quantity", "unit_price"} <= columns:
        absent = "unit_price" if "quantity" in columns else "amount"
        raise _Fatal(
            1, absent, f"missing column '{absent}' (give 'amount', or 'quantity' and 'unit_price')"
        )


class _PurchaseLineParser:
    """Validates one line and adds it to its order."""

    def __init__(self, *, columns, default_currency, cancel_prefix, date_format, report):
        self.columns = columns
        self.by_lines = "amount" not in columns
        self.default_currency = default_currency
        self.cancel_prefix = cancel_prefix
        self.date_format = date_format
        self.report = report
        self.latest = timezone.now() + timedelta(days=1)
        # Real exports repeat the same dates, ids and emails on many lines: parse each once.
        self.dates: dict[str, datetime] = {}
        self.external_ids: dict[str, str] = {}
        self.valid_emails: set[str] = set()
        self.valid_currencies: set[str] = set()
        self.limits = {
            "product": Purchase._meta.get_field("product").max_length,
            "category": Purchase._meta.get_field("category").max_length,
            "order_id": Purchase._meta.get_field("external_order_id").max_length,
        }

    def line(self, row: _Row, *, orders: dict[str, _Order], bad_orders: set[str]) -> None:
        values, report = row.values, self.report
        email = values.get("customer_email", "")
        raw_external_id = values.get("customer_external_id", "")
        external_id = self.external_ids.get(raw_external_id)
        if external_id is None:
            external_id = self.external_ids[raw_external_id] = _external_id(raw_external_id)
        order_id = values.get("order_id", "")
        if not email and not external_id:
            report.skipped["no customer on the line"] += 1
            return
        if self.cancel_prefix and order_id.startswith(self.cancel_prefix):
            report.skipped[f"cancelled order (order id starts with '{self.cancel_prefix}')"] += 1
            return
        problems: list[tuple[str, str]] = []
        if _BAD_BYTES.search("".join(values.values())):
            for column, value in values.items():
                if problem := _encoding_problem(value):
                    problems.append((column, problem))
        quantity = Decimal(1)
        if self.by_lines and not problems:
            try:
                quantity = _decimal(values["quantity"], what="a number")
            except ValueError as exc:
                problems.append(("quantity", str(exc)))
            else:
                if quantity < 0:
                    report.skipped["negative quantity (a return or cancellation line)"] += 1
                    return
        key = order_id or f"#row{row.number}"
        amount = Decimal(0)
        moment = None
        if not problems:
            amount_column = "unit_price" if self.by_lines else "amount"
            try:
                amount = _decimal(values[amount_column], what="an amount")
                if amount < 0:
                    raise ValueError(
                        f"{values[amount_column]} is negative; record a refund with "
                        "kind=refund and a positive amount"
                    )
                amount *= quantity
            except ValueError as exc:
                problems.append((amount_column, str(exc)))
            raw_date = values["purchased_at"]
            moment = self.dates.get(raw_date)
            if moment is None:
                try:
                    moment = _datetime(raw_date, date_format=self.date_format)
                except ValueError as exc:
                    problems.append(("purchased_at", str(exc)))
                else:
                    self.dates[raw_date] = moment
            if moment is not None and moment > self.latest:
                problems.append(("purchased_at", f"{raw_date} is in the future"))
            if email and email not in self.valid_emails:
                try:
                    validate_email(email)
                except ValidationError:
                    problems.append(("customer_email", f"'{email}' is not an e-mail address"))
                else:
                    self.valid_emails.add(email)
        fields = {}
        for column, choices in (("channel", _CHANNELS), ("kind", _KINDS)):
            value = values.get(column, "").lower()
            if value and value not in choices:
                allowed = ", ".join(sorted(set(choices.values())))
                problems.append((column, f"'{values[column]}' is not one of: {allowed}"))
            fields[column] = choices.get(value, "")
        currency = (values.get("currency") or self.default_currency).upper()
        if currency not in self.valid_currencies:
            if re.fullmatch(r"[A-Z]{3}", currency):
                self.valid_currencies.add(currency)
            else:
                problems.append(
                    ("currency", f"'{values['currency']}' is not a 3-letter currency code")
                )
        for column, limit in self.limits.items():
            if len(values.get(column, "")) > limit:
                problems.append((column, f"longer than {limit} characters"))
        customer_key = ("email", email.lower()) if email else ("external", external_id)

        order = orders.get(key)
        if order is not None and order.customer_key != customer_key and not problems:
            problems.append(
                (
                    "customer_email" if email else "customer_external_id",
                    f"order {order_id} already belongs to customer {order.customer_key[1]} "
                    f"(row {order.row})",
                )
            )
        if problems:
            for column, message in problems:
                report.add_error(row.number, column, message)
            report.invalid_rows += 1
            bad_orders.add(key)
            return
        if order is None:
            orders[key] = _Order(
                row=row.number,
                customer_key=customer_key,
                purchased_at=moment,
                amount=amount,
                lines=1,
                product=values.get("product", ""),
                category=values.get("category", ""),
                currency=currency,
                channel=fields["channel"],
                kind=fields["kind"] or Purchase.Kind.SALE,
                order_id=order_id,
                customer_name=values.get("customer_name", ""),
                customer_country=values.get("customer_country", ""),
                customer_email=email,
                amount_column="unit_price" if self.by_lines else "amount",
            )
        else:
            order.amount += amount
            order.lines += 1
            order.purchased_at = min(order.purchased_at, moment)
            order.category = order.category or values.get("category", "")


def _resolve_customers(
    orders: list[_Order], *, source: str
) -> tuple[dict[tuple[str, str], Customer], set[tuple[str, str]]]:
    keys = {o.customer_key for o in orders}
    emails = sorted(v for k, v in keys if k == "email")
    externals = sorted(v for k, v in keys if k == "external")
    found: dict[tuple[str, str], Customer] = {}
    for email, customer in _customers_by_email(emails).items():
        found[("email", email)] = customer
    for (_, external_id), customer in _customers_by_external_id(
        [(source, e) for e in externals]
    ).items():
        found[("external", external_id)] = customer
    return found, keys - set(found)


def _order_product(order: _Order) -> str:
    if order.lines == 1:
        return order.product
    more = f" and {order.lines - 1} more item{'s' if order.lines > 2 else ''}"
    limit = Purchase._meta.get_field("product").max_length
    return (order.product[: limit - len(more)] + more) if order.product else f"{order.lines} items"


def _write_purchases(
    orders: list[_Order],
    *,
    customers: dict[tuple[str, str], Customer],
    missing: set[tuple[str, str]],
    source: str,
    report: ImportReport,
) -> None:
    first_seen: dict[tuple[str, str], _Order] = {}
    for order in orders:
        first_seen.setdefault(order.customer_key, order)
    new_customers = []
    for key in sorted(missing):
        order = first_seen[key]
        kind, value = key
        new_customers.append(
            Customer(
                email=order.customer_email if kind == "email" else "",
                external_source=source if kind == "external" else "",
                external_id=value if kind == "external" else "",
                name=order.customer_name[:200],
                country=order.customer_country[:100],
            )
        )
    for key, customer in zip(
        sorted(missing),
        Customer.objects.bulk_create(new_customers, batch_size=BATCH_SIZE),
        strict=True,
    ):
        customers[key] = customer
    report.customers_created = len(new_customers)

    order_ids = [o.order_id for o in orders if o.order_id]
    existing: dict[str, Purchase] = {}
    for start in range(0, len(order_ids), BATCH_SIZE):
        for purchase in Purchase.objects.filter(
            external_source=source, external_order_id__in=order_ids[start : start + BATCH_SIZE]
        ):
            existing[purchase.external_order_id] = purchase
    touched: set[int] = set()
    new, changed = [], []
    for order in orders:
        values = {
            "customer_id": customers[order.customer_key].pk,
            "kind": order.kind,
            "amount": order.amount,
            "currency": order.currency,
            "purchased_at": order.purchased_at,
            "product": _order_product(order),
            "category": order.category,
            "channel": order.channel,
        }
        touched.add(values["customer_id"])
        report.total_amount += order.amount
        if order.amount == 0:
            report.zero_value_orders += 1
        purchase = existing.get(order.order_id) if order.order_id else None
        if purchase is None:
            new.append(
                Purchase(
                    external_source=source if order.order_id else "",
                    external_order_id=order.order_id,
                    **values,
                )
            )
        else:
            touched.add(purchase.customer_id)
            if _assign(purchase, values):
                changed.append(purchase)
            else:
                report.unchanged += 1
    Purchase.objects.bulk_create(new, batch_size=BATCH_SIZE)
    if changed:
        Purchase.objects.bulk_update(
            changed,
            [
                "customer_id",
                "kind",
                "amount",
                "currency",
                "purchased_at",
                "product",
                "category",
                "channel",
            ],
            batch_size=UPDATE_BATCH_SIZE,
        )
    report.created, report.updated = len(new), len(changed)
    customer_stats_refresh(customer_ids=touched)


def parse_mapping(items: list[str]) -> dict[str, str]:
    """Turn ["ours=Theirs", ...] into {"ours": "Theirs"}; raises ValueError when malformed."""
    mapping = {}
    for item in items:
        ours, sep, theirs = item.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise ValueError(f"'{item}' is not column=FileColumn")
        mapping[ours.strip()] = theirs.strip()
    return mapping

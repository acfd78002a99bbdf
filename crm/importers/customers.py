"""Import customers: parse each row through the column table, match, then write in bulk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.db.models.functions import Lower
from django.utils import timezone

from crm.audit import SYSTEM, Actor
from crm.importers.columns import CUSTOMER_COLUMNS, CUSTOMER_PARSERS
from crm.importers.reading import Row, open_text, rows_read
from crm.importers.report import (
    PREVIEW_ROWS,
    FatalImportError,
    ImportReport,
    Progress,
    import_write,
)
from crm.importers.values import CellError
from crm.models import Customer, Tag
from crm.search import SEARCHED_FIELDS

BATCH_SIZE = 1000
# bulk_update writes one CASE WHEN per row and field: small batches keep it linear.
UPDATE_BATCH_SIZE = 100


@dataclass
class _CustomerRecord:
    row: int
    fields: dict
    tags: list[str]
    email_key: str
    external_key: tuple[str, str] | None
    # The export's id: matches only a row with neither e-mail nor external id.
    customer_id: int | None = None
    instance: Customer | None = None


def customers_import(
    *,
    source: str | Path | BinaryIO,
    dry_run: bool = False,
    only_valid: bool = False,
    mapping: dict[str, str] | None = None,
    external_source: str = "shop",
    progress: Progress | None = None,
    actor: Actor = SYSTEM,
) -> ImportReport:
    """Create or update customers from a CSV file; returns the report.

    Matches existing customers on e-mail (case-insensitively) or on (external_source,
    external_id): re-importing a file updates them, never duplicates them. Blank cells leave
    the stored value alone; tags are added, never removed. Side effects: creates and updates
    Customer rows, creates Tag rows and tag links, all in one transaction (rolled back on a
    dry run, not started when a row is invalid and `only_valid` is false).
    """
    report = ImportReport(kind="customers", dry_run=dry_run, only_valid=only_valid)
    try:
        with open_text(source) as text:
            columns, rows = rows_read(
                text,
                known=CUSTOMER_COLUMNS,
                mapping=mapping or {},
                report=report,
                progress=progress,
            )
            if "email" not in columns and "external_id" not in columns:
                raise FatalImportError(
                    1, "email", "missing column: the file needs 'email' or 'external_id'"
                )
            records = _customer_records(rows, source=external_source, report=report)
    except FatalImportError as fatal:
        report.add_fatal(fatal.error)
        return report

    _match_customers(records, report)
    records = [r for r in records if r.instance is not False]
    report.preview = [{"row": r.row, **r.fields, "tags": ", ".join(r.tags)} for r in records][
        :PREVIEW_ROWS
    ]
    report.note_left_out()
    if not report.ok:
        return report
    return import_write(report=report, write=lambda: _write_customers(records, report), actor=actor)


def _customer_records(rows, *, source: str, report: ImportReport) -> list[_CustomerRecord]:
    """The valid rows, each customer once; the others are reported and counted as invalid."""
    records: list[_CustomerRecord] = []
    seen_email: dict[str, int] = {}
    seen_external: dict[tuple[str, str], int] = {}
    for row in rows:
        record = _clean_customer(row, source=source, report=report)
        if record is not None and not _first_in_file(record, seen_email, seen_external, report):
            record = None
        if record is None:
            report.invalid_rows += 1
            continue
        if record.email_key:
            seen_email[record.email_key] = row.number
        if record.external_key:
            seen_external[record.external_key] = row.number
        records.append(record)
    return records


def _first_in_file(
    record: _CustomerRecord,
    seen_email: dict[str, int],
    seen_external: dict[tuple[str, str], int],
    report: ImportReport,
) -> bool:
    """False (and an error) when an earlier row of the file already names this customer."""
    if record.email_key and record.email_key in seen_email:
        report.add_error(
            record.row,
            "email",
            f"{record.fields['email']} already appears on row "
            f"{seen_email[record.email_key]} of this file",
        )
        return False
    if record.external_key and record.external_key in seen_external:
        report.add_error(
            record.row,
            "external_id",
            f"{record.external_key[1]} already appears on row "
            f"{seen_external[record.external_key]} of this file",
        )
        return False
    return True


def _clean_customer(row: Row, *, source: str, report: ImportReport) -> _CustomerRecord | None:
    fields: dict = {}
    tags: list[str] = []
    customer_id: int | None = None
    bad = False
    for column, text in row.values.items():
        if text == "":
            continue  # a blank cell leaves the current value as it is
        try:
            value = CUSTOMER_PARSERS[column](text)
        except CellError as exc:
            report.add_error(row.number, exc.column, exc.message)
            bad = True
            continue
        if column == "tags":
            tags = value  # tags are links to add, not a field of the customer
        elif column == "id":
            customer_id = value
        else:
            fields[column] = value
    if bad:
        return None
    external_id = fields.get("external_id", "")
    if not fields.get("email") and not external_id and customer_id is None:
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
        customer_id=customer_id if not fields.get("email") and not external_id else None,
    )


def customers_by_email(emails: list[str]) -> dict[str, Customer]:
    """{lowered e-mail: customer} for the given lowered e-mails that exist."""
    found: dict[str, Customer] = {}
    for start in range(0, len(emails), BATCH_SIZE):
        batch = emails[start : start + BATCH_SIZE]
        for customer in Customer.objects.alias(email_lower=Lower("email")).filter(
            email_lower__in=batch
        ):
            found[customer.email.lower()] = customer
    return found


def customers_by_external_id(keys: list[tuple[str, str]]) -> dict[tuple[str, str], Customer]:
    """{(external_source, external_id): customer} for the given keys that exist."""
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


def customers_by_id(ids: list[int]) -> dict[int, Customer]:
    found: dict[int, Customer] = {}
    for start in range(0, len(ids), BATCH_SIZE):
        for customer in Customer.objects.filter(pk__in=ids[start : start + BATCH_SIZE]):
            found[customer.pk] = customer
    return found


def _match_customers(records: list[_CustomerRecord], report: ImportReport) -> None:
    by_email = customers_by_email([r.email_key for r in records if r.email_key])
    by_external = customers_by_external_id([r.external_key for r in records if r.external_key])
    by_id = customers_by_id([r.customer_id for r in records if r.customer_id])
    for record in records:
        if record.customer_id:
            record.instance = by_id.get(record.customer_id)
            if record.instance is None:
                report.add_error(
                    record.row,
                    "id",
                    f"no customer with id {record.customer_id} (a customer without e-mail or "
                    "external id is matched by the export's id)",
                )
                report.invalid_rows += 1
                record.instance = False  # left out
            continue
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


def _write_customers(records: list[_CustomerRecord], report: ImportReport) -> None:
    new = [Customer(**r.fields) for r in records if r.instance is None]
    for customer in new:
        customer.search_text_set()
    changed: list[Customer] = []
    update_fields: set[str] = set()
    for record in records:
        if record.instance is not None:
            if not assign(record.instance, record.fields):
                report.unchanged += 1
                continue
            record.instance.updated_at = timezone.now()  # bulk_update skips auto_now
            update_fields.update(record.fields)
            if SEARCHED_FIELDS & set(record.fields):
                record.instance.search_text_set()
                update_fields.add("search_text")
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


def assign(instance, values: dict) -> bool:
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

"""Import customers: stream the parsed rows into a staging table, match them to the stored
customers with joins, then write customers and tags with a few set-based statements."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from crm.audit import SYSTEM, Actor
from crm.importers.columns import CUSTOMER_COLUMNS, CUSTOMER_PARSERS
from crm.importers.reading import Row, open_text, rows_read
from crm.importers.report import (
    MAX_ERRORS,
    PREVIEW_ROWS,
    FatalImportError,
    ImportReport,
    Progress,
    RowError,
    import_write,
)
from crm.importers.staging import (
    StagingWriter,
    moment_adapter,
    query_execute,
    query_rows,
    query_scalar,
    staging_analyze,
    staging_tables,
    staging_update,
)
from crm.importers.values import CENT, CellError
from crm.models import Customer, Tag
from crm.search import SEARCHED_FIELDS, customer_search_text

BATCH_SIZE = 1000

# The customer fields a file sets, with the kind of value each holds ({kind} is a staging
# type). A staged NULL is a blank cell: it leaves the stored value alone.
_FIELD_KINDS: dict[str, str] = {
    "name": "text",
    "email": "text",
    "phone": "text",
    "external_source": "text",
    "external_id": "text",
    "birth_date": "date",
    "age": "int",
    "annual_income": "decimal",
    "city": "text",
    "country": "text",
    "notes": "text",
    "marketing_consent": "bool",
    "profiling_opt_out": "bool",
    "is_archived": "bool",
    "created_at": "moment",
}
_FIELDS = tuple(_FIELD_KINDS)

ROW_TABLE = "crm_import_customer_row"
TAG_TABLE = "crm_import_customer_tag"
# Each row: its keys (email_key lowered, "" when none; ext_* the (source, external id) key;
# by_id the export's id of a customer with neither), its fields, the search text a new
# customer gets, and what matching found (bad = refused).
_ROW_COLUMNS = ("file_row", "email_key", "ext_source", "ext_id", "by_id", *_FIELDS, "search_text")
_STAGING_TABLES = {
    ROW_TABLE: (
        "file_row {int} PRIMARY KEY, email_key {text} NOT NULL, ext_source {text} NOT NULL, "
        "ext_id {text} NOT NULL, by_id {big}, "
        + ", ".join(f"{name} {{{kind}}}" for name, kind in _FIELD_KINDS.items())
        + ", search_text {text} NOT NULL, bad {int} NOT NULL DEFAULT 0, "
        "email_match {big}, external_match {big}, customer_id {big}, "
        "searched_changed {int} NOT NULL DEFAULT 0, old_search_text {text}, "
        "new_search_text {text}"
    ),
    TAG_TABLE: "file_row {int} NOT NULL, place {int} NOT NULL, name {text} NOT NULL",
}
_FETCH = 10_000


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
    Customer rows, creates Tag rows and tag links, all in one short transaction (none on a dry
    run, whose figures come from the staged rows; not started when a row is invalid and
    `only_valid` is false). The file itself only ever goes to temporary tables.
    """
    report = ImportReport(kind="customers", dry_run=dry_run, only_valid=only_valid)
    with staging_tables(_STAGING_TABLES):
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
                _rows_stage(rows, source=external_source, report=report)
        except FatalImportError as fatal:
            report.add_fatal(fatal.error)
            return report

        staging_analyze(ROW_TABLE)
        staging_analyze(TAG_TABLE)
        later_errors = _duplicates_refuse() + _customers_match()
        report.invalid_rows += len(later_errors)
        if later_errors:
            report.errors = sorted(report.errors + later_errors, key=lambda e: e.row)[:MAX_ERRORS]
        report.preview = _preview()
        report.note_left_out()
        if not report.ok:
            return report
        if dry_run:
            # Every check the database would make is made above: the preview's figures come
            # from the staged rows, without taking the write lock.
            _figures_count(report)
            return report
        _search_texts_prepare()
        return import_write(report=report, write=lambda: _customers_write(report), actor=actor)


# --- reading the file into the staging tables ------------------------------------------------


def _rows_stage(rows, *, source: str, report: ImportReport) -> None:
    staged = StagingWriter(
        ROW_TABLE, _ROW_COLUMNS, nullable=("by_id", *_FIELDS)
    )  # a NULL field is a blank cell
    tags = StagingWriter(TAG_TABLE, ("file_row", "place", "name"))
    moment = moment_adapter()
    for row in rows:
        cleaned = _clean_customer(row, source=source, report=report)
        if cleaned is None:
            report.invalid_rows += 1
            continue
        fields, tag_names, customer_id = cleaned
        external_id = fields.get("external_id", "")
        staged.add(
            (
                row.number,
                fields.get("email", "").lower(),
                fields["external_source"] if external_id else "",
                external_id,
                customer_id,
                *(_staged_value(fields.get(name), moment) for name in _FIELDS),
                customer_search_text(
                    name=fields.get("name", ""),
                    email=fields.get("email", ""),
                    phone=fields.get("phone", ""),
                ),
            )
        )
        for place, name in enumerate(dict.fromkeys(tag_names)):
            tags.add((row.number, place, name))
    staged.flush()
    tags.flush()


def _staged_value(value, moment: Callable):
    """A parsed value as both databases' staging columns take it."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value.isoformat()
    return moment(value)  # an aware datetime


def _clean_customer(
    row: Row, *, source: str, report: ImportReport
) -> tuple[dict, list[str], int | None] | None:
    """(fields, tags, export id) of a valid row; None (and its errors) otherwise."""
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
    # The export's id matches only a row with neither e-mail nor external id.
    return fields, tags, customer_id if not fields.get("email") and not external_id else None


# --- set-based checks and matching ---------------------------------------------------------


def _refused(sql: str, message: Callable[..., RowError], params=()) -> list[RowError]:
    """Mark bad the rows the query finds (its first column is the row) and say why."""
    errors = [message(*found) for found in query_rows(sql, params)]
    for start in range(0, len(errors), BATCH_SIZE):
        batch = [e.row for e in errors[start : start + BATCH_SIZE]]
        query_execute(
            f"UPDATE {ROW_TABLE} SET bad = 1 WHERE file_row IN ({', '.join(['%s'] * len(batch))})",
            batch,
        )
    return errors


def _duplicates_refuse() -> list[RowError]:
    """Refuse every row naming a customer an earlier row of the file already names."""
    errors = _refused(
        f"""
        SELECT s.file_row, s.email, f.first_row FROM {ROW_TABLE} s JOIN (
            SELECT email_key, MIN(file_row) AS first_row FROM {ROW_TABLE}
            WHERE email_key <> '' GROUP BY email_key HAVING COUNT(*) > 1
        ) f ON f.email_key = s.email_key AND s.file_row > f.first_row
        ORDER BY s.file_row
        """,
        lambda row, email, first: RowError(
            row, "email", f"{email} already appears on row {first} of this file"
        ),
    )
    return errors + _refused(
        f"""
        SELECT s.file_row, s.ext_id, f.first_row FROM {ROW_TABLE} s JOIN (
            SELECT ext_source, ext_id, MIN(file_row) AS first_row FROM {ROW_TABLE}
            WHERE ext_id <> '' AND bad = 0 GROUP BY ext_source, ext_id HAVING COUNT(*) > 1
        ) f ON f.ext_source = s.ext_source AND f.ext_id = s.ext_id AND s.file_row > f.first_row
        WHERE s.bad = 0
        ORDER BY s.file_row
        """,
        lambda row, external_id, first: RowError(
            row, "external_id", f"{external_id} already appears on row {first} of this file"
        ),
    )


def _matches_find(*, only_unmatched: bool = False) -> None:
    """Each row's stored customer by e-mail and by external id (the unique indexes' own
    conditions repeated, so that they serve the join)."""
    customers = Customer._meta.db_table
    # On SQLite the staged key loses its text affinity ("+"): with it, the planner cannot
    # search the LOWER(email) index and scans every customer for every key.
    plain = "+" if connection.vendor == "sqlite" else ""
    unmatched = f" AND {ROW_TABLE}.customer_id IS NULL" if only_unmatched else ""
    # A customer just created from a row with an e-mail is found by it: no second look.
    by_email = f" AND {ROW_TABLE}.email_match IS NULL" if only_unmatched else ""
    query_execute(
        f"""
        UPDATE {ROW_TABLE} SET email_match = c.id FROM {customers} c
        WHERE {ROW_TABLE}.bad = 0 AND {ROW_TABLE}.email_key <> ''{unmatched}
          AND NOT (c.email = '') AND LOWER(c.email) = {plain}{ROW_TABLE}.email_key
        """
    )
    query_execute(
        f"""
        UPDATE {ROW_TABLE} SET external_match = c.id FROM {customers} c
        WHERE {ROW_TABLE}.bad = 0 AND {ROW_TABLE}.ext_id <> ''{unmatched}{by_email}
          AND c.external_source = {ROW_TABLE}.ext_source AND NOT (c.external_id = '')
          AND c.external_id = {ROW_TABLE}.ext_id
        """
    )


def _customers_match() -> list[RowError]:
    """Find each row's stored customer; refuse the rows naming a customer that does not
    exist (by the export's id) or two different customers (by e-mail and external id)."""
    customers = Customer._meta.db_table
    query_execute(
        f"UPDATE {ROW_TABLE} SET customer_id = c.id FROM {customers} c "
        f"WHERE {ROW_TABLE}.bad = 0 AND c.id = {ROW_TABLE}.by_id"
    )
    errors = _refused(
        f"SELECT file_row, by_id FROM {ROW_TABLE} "
        "WHERE bad = 0 AND by_id IS NOT NULL AND customer_id IS NULL ORDER BY file_row",
        lambda row, customer_id: RowError(
            row,
            "id",
            f"no customer with id {customer_id} (a customer without e-mail or external id is "
            "matched by the export's id)",
        ),
    )
    _matches_find()
    errors += _refused(
        f"SELECT file_row, email, external_id FROM {ROW_TABLE} WHERE bad = 0 "
        "AND email_match IS NOT NULL AND external_match IS NOT NULL "
        "AND email_match <> external_match ORDER BY file_row",
        lambda row, email, external_id: RowError(
            row,
            "email",
            f"{email} belongs to another customer than external id {external_id}",
        ),
    )
    query_execute(
        f"UPDATE {ROW_TABLE} SET customer_id = COALESCE(external_match, email_match) "
        "WHERE bad = 0 AND by_id IS NULL"
    )
    return errors


# --- the preview and the figures -----------------------------------------------------------


def _value_read(kind: str, value):
    """A staged value back as the parser gave it."""
    if value is None:
        return None
    if kind == "bool":
        return bool(value)
    if kind == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    if kind == "decimal":
        return Decimal(str(value)).quantize(CENT)
    if kind == "moment":
        if isinstance(value, str):  # SQLite: Django's UTC text
            value = timezone.make_aware(parse_datetime(value), UTC)
        return timezone.localtime(value)
    return value


def _preview() -> list[dict]:
    names = ", ".join(_FIELDS)
    found = list(
        query_rows(
            f"SELECT file_row, {names} FROM {ROW_TABLE} WHERE bad = 0 "
            f"ORDER BY file_row LIMIT {PREVIEW_ROWS}"
        )
    )
    tags: dict[int, list[str]] = {}
    if found:
        last = found[-1][0]
        for row, name in query_rows(
            f"SELECT file_row, name FROM {TAG_TABLE} WHERE file_row <= %s ORDER BY file_row, place",
            [last],
        ):
            tags.setdefault(row, []).append(name)
    preview = []
    for row, *values in found:
        fields = {
            name: _value_read(_FIELD_KINDS[name], value)
            for name, value in zip(_FIELDS, values, strict=True)
            if value is not None
        }
        preview.append({"row": row, **fields, "tags": ", ".join(tags.get(row, []))})
    return preview


def _differs(fields) -> str:
    """SQL: a row of the staging table (s) changes its stored customer (c) in these fields."""
    distinct = "IS DISTINCT FROM" if connection.vendor == "postgresql" else "IS NOT"
    return " OR ".join(f"(s.{f} IS NOT NULL AND c.{f} {distinct} s.{f})" for f in fields)


def _figures_count(report: ImportReport) -> None:
    """How many customers the import creates, updates and leaves as they are."""
    customers = Customer._meta.db_table
    report.created = query_scalar(
        f"SELECT COUNT(*) FROM {ROW_TABLE} WHERE bad = 0 AND customer_id IS NULL"
    )
    matched = query_scalar(
        f"SELECT COUNT(*) FROM {ROW_TABLE} WHERE bad = 0 AND customer_id IS NOT NULL"
    )
    report.updated = query_scalar(
        f"SELECT COUNT(*) FROM {ROW_TABLE} s JOIN {customers} c ON c.id = s.customer_id "
        f"WHERE s.bad = 0 AND ({_differs(_FIELDS)})"
    )
    report.unchanged = matched - report.updated


# --- the write -------------------------------------------------------------------------------


def _customers_write(report: ImportReport) -> None:
    customers = Customer._meta.db_table
    now = moment_adapter()(timezone.now())
    searched = sorted(SEARCHED_FIELDS)
    # The updated customers whose search text was not prepared, or whose stored one changed
    # since (a staff edit meanwhile): theirs is recomputed after the update.
    query_execute(
        f"UPDATE {ROW_TABLE} SET searched_changed = 1 WHERE bad = 0 AND customer_id IN "
        f"(SELECT s.customer_id FROM {ROW_TABLE} s JOIN {customers} c ON c.id = s.customer_id "
        f"WHERE s.bad = 0 AND ({_differs(searched)}) AND NOT (s.new_search_text IS NOT NULL "
        "AND c.search_text = s.old_search_text))"
    )
    matched = query_scalar(
        f"SELECT COUNT(*) FROM {ROW_TABLE} WHERE bad = 0 AND customer_id IS NOT NULL"
    )
    assignments = ", ".join(f"{f} = COALESCE(s.{f}, c.{f})" for f in _FIELDS)
    prepared = (
        "search_text = CASE WHEN s.new_search_text IS NOT NULL "
        "AND c.search_text = s.old_search_text THEN s.new_search_text ELSE c.search_text END"
    )
    report.updated = query_execute(
        f"UPDATE {customers} AS c SET {assignments}, {prepared}, updated_at = %s "
        f"FROM {ROW_TABLE} s "
        f"WHERE s.bad = 0 AND s.customer_id = c.id AND ({_differs(_FIELDS)})",
        [now],
    )
    report.unchanged = matched - report.updated
    _search_text_refresh()

    defaults = {f: Customer._meta.get_field(f).get_default() for f in _FIELDS}
    defaults["created_at"] = now  # the moment of the import, as for a customer added by hand
    values = ", ".join(f"COALESCE(s.{f}, %s)" for f in _FIELDS)
    report.created = query_execute(
        f"INSERT INTO {customers} ({', '.join(_FIELDS)}, search_text, updated_at, "
        "purchase_count, total_spent) "
        f"SELECT {values}, s.search_text, %s, 0, 0 FROM {ROW_TABLE} s "
        "WHERE s.bad = 0 AND s.customer_id IS NULL ORDER BY s.file_row",
        [*defaults.values(), now],
    )
    if report.created:
        _matches_find(only_unmatched=True)
        query_execute(
            f"UPDATE {ROW_TABLE} SET customer_id = COALESCE(external_match, email_match) "
            "WHERE bad = 0 AND customer_id IS NULL"
        )
    _tags_link()


def _search_texts_prepare() -> None:
    """Before the write, the search text each updated customer will have, next to the one it
    has now (the write uses it while that is unchanged): the folding is Python's, and it
    stays out of the write lock."""
    customers = Customer._meta.db_table
    searched = sorted(SEARCHED_FIELDS)
    last = 0
    while True:
        found = list(
            query_rows(
                f"SELECT s.file_row, c.search_text, COALESCE(s.name, c.name), "
                f"COALESCE(s.email, c.email), COALESCE(s.phone, c.phone) "
                f"FROM {ROW_TABLE} s JOIN {customers} c ON c.id = s.customer_id "
                f"WHERE s.bad = 0 AND s.file_row > %s AND ({_differs(searched)}) "
                f"ORDER BY s.file_row LIMIT {_FETCH}",
                [last],
            )
        )
        if not found:
            return
        last = found[-1][0]
        staging_update(
            f"UPDATE {ROW_TABLE} SET old_search_text = %s, new_search_text = %s "
            "WHERE file_row = %s",
            [
                (old, customer_search_text(name=name, email=email, phone=phone), row)
                for row, old, name, email, phone in found
            ],
        )


def _search_text_refresh() -> None:
    """Recompute the search text of the updated customers whose name, e-mail or phone
    changed (the folding is Python's, as for every other writer)."""
    customers = Customer._meta.db_table
    found = query_rows(
        f"SELECT c.id, c.name, c.email, c.phone FROM {customers} c WHERE c.id IN "
        f"(SELECT customer_id FROM {ROW_TABLE} WHERE bad = 0 AND searched_changed = 1)"
    )
    block: list[tuple[str, int]] = []
    sql = f"UPDATE {customers} SET search_text = %s WHERE id = %s"
    for customer_id, name, email, phone in list(found):
        block.append((customer_search_text(name=name, email=email, phone=phone), customer_id))
        if len(block) >= BATCH_SIZE:
            with connection.cursor() as cur:
                cur.executemany(sql, block)
            block = []
    if block:
        with connection.cursor() as cur:
            cur.executemany(sql, block)


def _tags_link() -> None:
    """Create the tags the file names that do not exist, and link every row's customer to its
    tags (links that exist are left as they are)."""
    tags = Tag._meta.db_table
    through = Customer.tags.through._meta.db_table
    query_execute(
        f"INSERT INTO {tags} (name) SELECT DISTINCT t.name FROM {TAG_TABLE} t "
        f"JOIN {ROW_TABLE} s ON s.file_row = t.file_row "
        f"WHERE s.bad = 0 AND NOT EXISTS (SELECT 1 FROM {tags} x WHERE x.name = t.name)"
    )
    query_execute(
        f"INSERT INTO {through} (customer_id, tag_id) "
        f"SELECT DISTINCT s.customer_id, x.id FROM {TAG_TABLE} t "
        f"JOIN {ROW_TABLE} s ON s.file_row = t.file_row JOIN {tags} x ON x.name = t.name "
        "WHERE s.bad = 0 AND s.customer_id IS NOT NULL "
        "ON CONFLICT DO NOTHING"
    )

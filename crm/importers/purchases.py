"""Import purchases: stream the file's lines into a staging table, then group them into
orders, find their customers and write them with a few set-based statements."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from crm.audit import SYSTEM, Actor
from crm.bounds import decimal_checked
from crm.importers.customers import BATCH_SIZE
from crm.importers.platforms import FileLayoutError, SkipLine
from crm.importers.presets import PRESETS, Preset
from crm.importers.purchase_lines import (
    AMOUNT_LIMIT,
    LINE_COLUMNS,
    LINE_SLOTS,
    LINE_TABLE_COLUMNS,
    PURCHASE_COLUMNS,
    PurchaseLineParser,
    line_row,
)
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
    query_execute,
    query_rows,
    query_scalar,
    staging_analyze,
    staging_tables,
)
from crm.importers.values import CENT
from crm.models import Customer, Purchase
from crm.services import customer_stats_refresh


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
    actor: Actor = SYSTEM,
) -> ImportReport:
    """Create or update purchases from a CSV file; returns the report.

    Rows sharing an order_id are lines of one order (amount = the sum of their amounts, or
    of quantity x unit_price). Lines without a customer, cancelled orders (order id starting
    with `cancel_prefix`) and lines with a negative quantity are skipped and counted. A
    platform's preset (stripe, shopify, paypal) first reads each line the platform's way
    (crm.importers.platforms): the lines it leaves out are counted the same way. An
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
    adapted = chosen is not None and chosen.adapter is not None
    with staging_tables(_STAGING_TABLES):
        try:
            with open_text(source) as text:
                columns, rows = rows_read(
                    text,
                    known=PURCHASE_COLUMNS + (chosen.reads if chosen else ()),
                    mapping=columns_map,
                    report=report,
                    progress=progress,
                )
                if adapted:
                    _require_preset_columns(chosen, columns)
                    columns = (columns & set(PURCHASE_COLUMNS)) | chosen.provides
                    # The adapter reads the platform's dates (with the date format, if given).
                    rows = _preset_lines(rows, chosen, date_format=date_format, report=report)
                _require_purchase_columns(columns)
                parse = PurchaseLineParser(
                    columns=columns,
                    default_currency=default_currency,
                    cancel_prefix=prefix,
                    date_format="" if adapted else date_format,
                    report=report,
                )
                staged = StagingWriter(LINE_TABLE, LINE_COLUMNS, nullable=("purchased_at",))
                previous, place = 0, 0
                for row in rows:
                    place = place + 1 if row.number == previous else 0
                    previous = row.number
                    line = parse.line(row, row.number * LINE_SLOTS + place)
                    if line is not None:
                        staged.add(line)
                staged.flush()
        except FatalImportError as fatal:
            report.add_fatal(fatal.error)
            return report

        _orders_group(report)
        _orders_with_invalid_amounts_drop(report, amount_column=parse.amount_column)
        _customers_resolve(source=source_name)
        if not create_customers:
            _orders_of_unknown_customers_drop(report)
        report.preview = _preview()
        report.note_left_out()
        if not report.ok:
            return report
        return import_write(
            report=report,
            actor=actor,
            write=lambda: _write_purchases(
                source=source_name, create_customers=create_customers, report=report
            ),
        )


def _require_preset_columns(preset: Preset, columns: set[str]) -> None:
    for group in preset.requires:
        if not columns.intersection(group):
            names = " or ".join(f"'{name}'" for name in group)
            raise FatalImportError(
                1, group[0], f"missing column {names}: the {preset.name} preset reads it"
            )


def _preset_lines(
    rows: Iterator[Row], preset: Preset, *, date_format: str, report: ImportReport
) -> Iterator[Row]:
    """The file's rows as the preset's adapter reads them: our lines, under their row number."""
    adapter = preset.adapter(date_format=date_format, ours=PURCHASE_COLUMNS)
    for row in rows:
        try:
            lines = adapter.lines(row.values)
        except SkipLine as skip:
            report.skipped[skip.reason] += 1
            continue
        except FileLayoutError as wrong:
            raise FatalImportError(row.number, wrong.column, str(wrong)) from None
        for line in lines:
            yield Row(row.number, line.values, tuple(line.problems))


def _require_purchase_columns(columns: set[str]) -> None:
    if "customer_email" not in columns and "customer_external_id" not in columns:
        raise FatalImportError(
            1,
            "customer_email",
            "missing column: the file needs 'customer_email' or 'customer_external_id' "
            "(or a --map to the file's own column)",
        )
    if "purchased_at" not in columns:
        raise FatalImportError(1, "purchased_at", "missing column 'purchased_at'")
    if "amount" not in columns and not {"quantity", "unit_price"} <= columns:
        absent = "unit_price" if "quantity" in columns else "amount"
        raise FatalImportError(
            1, absent, f"missing column '{absent}' (give 'amount', or 'quantity' and 'unit_price')"
        )


# --- the staging tables and the set-based steps ---------------------------------------------
# Lines go to LINE_TABLE as they are read; ORDER_TABLE groups them (one row per order);
# CUSTOMER_TABLE holds each customer the orders name, with the id found or created.

LINE_TABLE = "crm_import_line"
ORDER_TABLE = "crm_import_order"
CUSTOMER_TABLE = "crm_import_customer"
_STAGING_TABLES = {
    LINE_TABLE: LINE_TABLE_COLUMNS,
    ORDER_TABLE: (
        "order_key {text} PRIMARY KEY, first_line {int} NOT NULL, lines {int} NOT NULL, "
        "micro {big} NOT NULL, huge_lines {int} NOT NULL, purchased_at {moment}, "
        "order_id {text}, customer_kind {text}, customer_key {text}, customer_email {text}, "
        "customer_name {text}, customer_country {text}, product {text}, category {text}, "
        "currency {text}, channel {text}, kind {text}, mixed {int}, purchase_id {big}, "
        "old_customer_id {big}"
    ),
    CUSTOMER_TABLE: (
        "customer_kind {text} NOT NULL, customer_key {text} NOT NULL, first_line {int}, "
        "customer_id {big}, PRIMARY KEY (customer_kind, customer_key)"
    ),
}
# An order's amount in cents, from its millionths (all >= 0), rounded half up.
_CENTS = "((o.micro + 5000) / 10000)"


def _errors_merge(report: ImportReport, errors: list[RowError]) -> None:
    """Add errors found after the file was read among the row errors, in row order."""
    if errors:
        report.errors = sorted(report.errors + errors, key=lambda e: e.row)[:MAX_ERRORS]


def _orders_group(report: ImportReport) -> None:
    """Group the valid lines into orders (one pass); refuse the orders that have an invalid
    line or whose lines name two customers (each such line is reported)."""
    staging_analyze(LINE_TABLE)
    # One aggregate gives each order its first line, totals, the first line that has a
    # category, and whether its lines name more than one customer.
    query_execute(
        f"""
        INSERT INTO {ORDER_TABLE} (order_key, first_line, lines, micro, huge_lines,
            purchased_at, order_id, customer_kind, customer_key, customer_email,
            customer_name, customer_country, product, category, currency, channel, kind,
            mixed)
        SELECT a.order_key, a.first_line, a.lines, a.micro, a.huge_lines, a.purchased_at,
            f.order_id, f.customer_kind, f.customer_key, f.customer_email, f.customer_name,
            f.customer_country, f.product, COALESCE(c.category, ''), f.currency, f.channel,
            f.kind, a.mixed
        FROM (
            SELECT order_key, MIN(line) AS first_line, COUNT(*) AS lines, SUM(micro) AS micro,
                SUM(CASE WHEN huge <> '' THEN 1 ELSE 0 END) AS huge_lines,
                MIN(purchased_at) AS purchased_at,
                MIN(CASE WHEN category <> '' THEN line END) AS category_line,
                CASE WHEN MIN(customer_kind) <> MAX(customer_kind)
                       OR MIN(customer_key) <> MAX(customer_key) THEN 1 ELSE 0 END AS mixed
            FROM {LINE_TABLE} WHERE bad = 0 GROUP BY order_key
        ) a
        JOIN {LINE_TABLE} f ON f.line = a.first_line
        LEFT JOIN {LINE_TABLE} c ON c.line = a.category_line
        """
    )
    staging_analyze(ORDER_TABLE)
    conflicts: list[RowError] = []
    count = 0
    if query_scalar(f"SELECT COUNT(*) FROM {ORDER_TABLE} WHERE mixed = 1"):
        for line, kind, order_id, customer, first_line in query_rows(
            f"""
            SELECT l.line, l.customer_kind, o.order_id, o.customer_key, o.first_line
            FROM {LINE_TABLE} l JOIN {ORDER_TABLE} o ON o.order_key = l.order_key
            WHERE o.mixed = 1 AND l.bad = 0
              AND (l.customer_kind <> o.customer_kind OR l.customer_key <> o.customer_key)
            ORDER BY l.line
            """
        ):
            count += 1
            if len(conflicts) < MAX_ERRORS:
                conflicts.append(
                    RowError(
                        line_row(line),
                        "customer_email" if kind == "email" else "customer_external_id",
                        f"order {order_id} already belongs to customer {customer} "
                        f"(row {line_row(first_line)})",
                    )
                )
        query_execute(f"DELETE FROM {ORDER_TABLE} WHERE mixed = 1")
    report.invalid_rows += count
    _errors_merge(report, conflicts)
    if query_scalar(f"SELECT COUNT(*) FROM (SELECT 1 FROM {LINE_TABLE} WHERE bad <> 0 LIMIT 1) b"):
        query_execute(
            f"DELETE FROM {ORDER_TABLE} WHERE order_key IN "
            f"(SELECT order_key FROM {LINE_TABLE} WHERE bad <> 0)"
        )
    query_execute(f"CREATE INDEX {ORDER_TABLE}_first ON {ORDER_TABLE} (first_line)")


def _orders_with_invalid_amounts_drop(report: ImportReport, *, amount_column: str) -> None:
    """Refuse (and report) the orders whose total cannot be stored."""
    limit_micro = int(AMOUNT_LIMIT.scaleb(6)) - 5000  # rounds to the limit or above
    refused: list[str] = []
    huge: dict[str, Decimal] = {}  # the exact amounts of the (rare) lines kept as text
    for key, text in query_rows(f"SELECT order_key, huge FROM {LINE_TABLE} WHERE huge <> ''"):
        huge[key] = huge.get(key, Decimal(0)) + Decimal(text)
    for key, first_line, micro in list(
        query_rows(
            f"SELECT order_key, first_line, micro FROM {ORDER_TABLE} "
            "WHERE huge_lines > 0 OR micro >= %s ORDER BY first_line",
            [limit_micro],
        )
    ):
        total = Decimal(micro).scaleb(-6) + huge.get(key, Decimal(0))
        report.add_error(line_row(first_line), amount_column, _order_amount_problem(total))
        report.invalid_rows += 1
        refused.append(key)
    for start in range(0, len(refused), BATCH_SIZE):
        batch = refused[start : start + BATCH_SIZE]
        query_execute(
            f"DELETE FROM {ORDER_TABLE} WHERE order_key IN ({', '.join(['%s'] * len(batch))})",
            batch,
        )


def _order_amount_problem(total: Decimal) -> str:
    """Why an order's total cannot be stored."""
    try:
        amount = total.quantize(CENT, ROUND_HALF_UP)
    except InvalidOperation:  # more digits than any amount has (a huge quantity x price)
        return "the order's amount is too large"
    try:
        decimal_checked(Purchase, "amount", amount)
    except ValueError as exc:
        return f"the order's amount {exc}"
    return "the order's amount is too large"


def _customers_resolve(*, source: str) -> None:
    """Every customer the orders name, with the id of the stored customer when there is one."""
    query_execute(
        f"INSERT INTO {CUSTOMER_TABLE} (customer_kind, customer_key, first_line) "
        f"SELECT customer_kind, customer_key, MIN(first_line) FROM {ORDER_TABLE} "
        "GROUP BY customer_kind, customer_key"
    )
    staging_analyze(CUSTOMER_TABLE)
    _customer_ids_find(source=source)


def _customer_ids_find(*, source: str) -> None:
    customers = Customer._meta.db_table
    # The partial unique indexes' conditions are repeated, so that they can serve the join.
    # On SQLite the staged key loses its text affinity ("+"): with it, the planner cannot
    # search the LOWER(email) index and scans every customer for every key.
    plain = "+" if connection.vendor == "sqlite" else ""
    query_execute(
        f"""
        UPDATE {CUSTOMER_TABLE} SET customer_id = c.id FROM {customers} c
        WHERE {CUSTOMER_TABLE}.customer_id IS NULL AND {CUSTOMER_TABLE}.customer_kind = 'email'
          AND NOT (c.email = '') AND LOWER(c.email) = {plain}{CUSTOMER_TABLE}.customer_key
        """
    )
    query_execute(
        f"""
        UPDATE {CUSTOMER_TABLE} SET customer_id = c.id FROM {customers} c
        WHERE {CUSTOMER_TABLE}.customer_id IS NULL
          AND {CUSTOMER_TABLE}.customer_kind = 'external'
          AND c.external_source = %s AND NOT (c.external_id = '')
          AND c.external_id = {CUSTOMER_TABLE}.customer_key
        """,
        [source],
    )


def _orders_of_unknown_customers_drop(report: ImportReport) -> None:
    """Refuse (and report) the orders whose customer does not exist."""
    count = 0
    for first_line, kind, value in query_rows(
        f"""
        SELECT o.first_line, o.customer_kind, o.customer_key
        FROM {ORDER_TABLE} o JOIN {CUSTOMER_TABLE} k
          ON k.customer_kind = o.customer_kind AND k.customer_key = o.customer_key
        WHERE k.customer_id IS NULL ORDER BY o.first_line
        """
    ):
        count += 1
        if len(report.errors) < MAX_ERRORS:
            report.add_error(
                line_row(first_line),
                "customer_email" if kind == "email" else "customer_external_id",
                f"no customer with {'e-mail' if kind == 'email' else 'external id'} "
                f"{value}; import the customers first or ask to create them "
                "(--create-customers, or the admin's 'create missing customers')",
            )
    report.invalid_rows += count
    if count:
        query_execute(
            f"DELETE FROM {ORDER_TABLE} WHERE (customer_kind, customer_key) IN "
            f"(SELECT customer_kind, customer_key FROM {CUSTOMER_TABLE} "
            "WHERE customer_id IS NULL)"
        )
        query_execute(f"DELETE FROM {CUSTOMER_TABLE} WHERE customer_id IS NULL")


def _moment_read(value) -> datetime:
    if isinstance(value, str):  # SQLite: Django's UTC text
        value = timezone.make_aware(parse_datetime(value), UTC)
    return timezone.localtime(value)


def _cents_amount(cents: int) -> Decimal:
    return (Decimal(int(cents)) / 100).quantize(CENT)


def _preview() -> list[dict]:
    return [
        {
            "row": line_row(first_line),
            "customer": customer,
            "order_id": order_id,
            "purchased_at": _moment_read(moment),
            "amount": _cents_amount(cents),
            "currency": currency,
            "lines": lines,
            "product": product,
        }
        for first_line, customer, order_id, moment, cents, currency, lines, product in query_rows(
            f"SELECT o.first_line, o.customer_key, o.order_id, o.purchased_at, {_CENTS}, "
            f"o.currency, o.lines, o.product FROM {ORDER_TABLE} o "
            f"ORDER BY o.first_line LIMIT {PREVIEW_ROWS}"
        )
    ]


def _order_values_sql() -> str:
    """Each order as the purchase it becomes (its customer found, amount and product set)."""
    limit = Purchase._meta.get_field("product").max_length
    amount = (
        f"CAST({_CENTS} AS numeric) / 100"
        if connection.vendor == "postgresql"
        else f"{_CENTS} / 100.0"
    )
    more = (
        "' and ' || CAST(o.lines - 1 AS TEXT) || ' more item' "
        "|| CASE WHEN o.lines > 2 THEN 's' ELSE '' END"
    )
    product = (
        "CASE WHEN o.lines = 1 THEN o.product "
        "WHEN o.product = '' THEN CAST(o.lines AS TEXT) || ' items' "
        f"ELSE SUBSTR(o.product, 1, {limit} - LENGTH({more})) || {more} END"
    )
    return f"""
        SELECT o.first_line, o.purchase_id, k.customer_id, o.kind, {amount} AS amount,
            o.currency, o.purchased_at, {product} AS product, o.category, o.channel,
            o.order_id
        FROM {ORDER_TABLE} o JOIN {CUSTOMER_TABLE} k
          ON k.customer_kind = o.customer_kind AND k.customer_key = o.customer_key
    """


_PURCHASE_FIELDS = (
    "customer_id",
    "kind",
    "amount",
    "currency",
    "purchased_at",
    "product",
    "category",
    "channel",
)


def _write_purchases(*, source: str, create_customers: bool, report: ImportReport) -> None:
    if create_customers:
        report.customers_created = _missing_customers_create(source=source)
    purchases = Purchase._meta.db_table
    query_execute(
        f"""
        UPDATE {ORDER_TABLE} SET purchase_id = p.id, old_customer_id = p.customer_id
        FROM {purchases} p
        WHERE {ORDER_TABLE}.order_id <> '' AND p.external_source = %s
          AND p.external_order_id = {ORDER_TABLE}.order_id AND NOT (p.external_order_id = '')
        """,
        [source],
    )
    values = _order_values_sql()
    matched = query_scalar(f"SELECT COUNT(*) FROM {ORDER_TABLE} WHERE purchase_id IS NOT NULL")
    if matched:
        assignments = ", ".join(f"{f} = v.{f}" for f in _PURCHASE_FIELDS)
        differs = " OR ".join(f"{purchases}.{f} <> v.{f}" for f in _PURCHASE_FIELDS)
        report.updated = query_execute(
            f"UPDATE {purchases} SET {assignments} "
            f"FROM ({values} WHERE o.purchase_id IS NOT NULL) v "
            f"WHERE {purchases}.id = v.purchase_id AND ({differs})"
        )
        report.unchanged = matched - report.updated
    fields = ", ".join(_PURCHASE_FIELDS)
    report.created = query_execute(
        f"INSERT INTO {purchases} ({fields}, external_source, external_order_id, created_at) "
        f"SELECT {', '.join(f'v.{f}' for f in _PURCHASE_FIELDS)}, "
        "CASE WHEN v.order_id <> '' THEN %s ELSE '' END, v.order_id, %s "
        f"FROM ({values} WHERE o.purchase_id IS NULL) v ORDER BY v.first_line",
        [source, timezone.now()],
    )
    total_cents, zero = _scalar_row(
        f"SELECT SUM({_CENTS}), SUM(CASE WHEN {_CENTS} = 0 THEN 1 ELSE 0 END) FROM {ORDER_TABLE} o"
    )
    report.total_amount = _cents_amount(total_cents or 0)
    report.zero_value_orders = int(zero or 0)
    touched = [
        customer_id
        for (customer_id,) in query_rows(
            f"SELECT customer_id FROM {CUSTOMER_TABLE} UNION "
            f"SELECT old_customer_id FROM {ORDER_TABLE} WHERE old_customer_id IS NOT NULL"
        )
    ]
    customer_stats_refresh(customer_ids=touched)


def _scalar_row(sql: str, params=()) -> tuple:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def _missing_customers_create(*, source: str) -> int:
    """Create the customers the orders name that do not exist, from their first order."""
    missing = list(
        query_rows(
            f"""
            SELECT k.customer_kind, k.customer_key, o.customer_email, o.customer_name,
                o.customer_country
            FROM {CUSTOMER_TABLE} k JOIN {ORDER_TABLE} o ON o.first_line = k.first_line
            WHERE k.customer_id IS NULL ORDER BY k.customer_kind, k.customer_key
            """
        )
    )
    for start in range(0, len(missing), BATCH_SIZE):
        new_customers = []
        for kind, value, email, name, country in missing[start : start + BATCH_SIZE]:
            customer = Customer(
                email=email if kind == "email" else "",
                external_source=source if kind == "external" else "",
                external_id=value if kind == "external" else "",
                name=name[:200],
                country=country[:100],
            )
            customer.search_text_set()
            new_customers.append(customer)
        Customer.objects.bulk_create(new_customers)
    if missing:
        _customer_ids_find(source=source)
    return len(missing)

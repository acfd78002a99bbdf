"""Import purchases: group the file's lines into orders, find their customers, write in bulk."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_HALF_UP, InvalidOperation
from pathlib import Path
from typing import BinaryIO

from crm.audit import SYSTEM, Actor
from crm.bounds import decimal_checked
from crm.importers.customers import (
    BATCH_SIZE,
    UPDATE_BATCH_SIZE,
    assign,
    customers_by_email,
    customers_by_external_id,
)
from crm.importers.platforms import FileLayoutError, SkipLine
from crm.importers.presets import PRESETS, Preset
from crm.importers.purchase_lines import PURCHASE_COLUMNS, Order, PurchaseLineParser
from crm.importers.reading import Row, open_text, rows_read
from crm.importers.report import (
    PREVIEW_ROWS,
    FatalImportError,
    ImportReport,
    Progress,
    import_write,
)
from crm.importers.values import CENT
from crm.models import Customer, Purchase
from crm.selectors import business_get
from crm.services import customer_stats_refresh

CustomerKey = tuple[str, str]  # ("email", lowered e-mail) or ("external", external id)


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
        currency or (chosen.currency if chosen else "") or business_get().currency
    ).upper()
    report = ImportReport(kind="purchases", dry_run=dry_run, only_valid=only_valid)
    orders: dict[str, Order] = {}
    bad_orders: set[str] = set()
    adapted = chosen is not None and chosen.adapter is not None
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
            for row in rows:
                parse.line(row, orders=orders, bad_orders=bad_orders)
    except FatalImportError as fatal:
        report.add_fatal(fatal.error)
        return report

    valid = _orders_with_valid_amounts(orders, bad_orders=bad_orders, report=report)
    customers, missing = _resolve_customers(valid, source=source_name)
    if missing and not create_customers:
        valid = _orders_with_known_customers(valid, missing=missing, report=report)
        missing = set()  # left out (with only_valid) or the import stops: none to create
    report.preview = [_preview(o) for o in valid[:PREVIEW_ROWS]]
    report.note_left_out()
    if not report.ok:
        return report
    return import_write(
        report=report,
        actor=actor,
        write=lambda: _write_purchases(
            valid,
            customers=customers,
            missing=missing,
            source=source_name,
            report=report,
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


def _orders_with_valid_amounts(
    orders: dict[str, Order], *, bad_orders: set[str], report: ImportReport
) -> list[Order]:
    """The orders whose lines were all valid, rounded to the cent; negative or too large
    totals reported."""
    for key, order in orders.items():
        if key in bad_orders:
            continue
        problem = _order_amount_problem(order)
        if problem:
            report.add_error(order.row, order.amount_column, problem)
            report.invalid_rows += 1
            bad_orders.add(key)
    return [o for k, o in orders.items() if k not in bad_orders]


def _order_amount_problem(order: Order) -> str:
    """Why the order's total cannot be stored ("" when it can); rounds it to the cent."""
    try:
        order.amount = order.amount.quantize(CENT, ROUND_HALF_UP)
    except InvalidOperation:  # more digits than any amount has (a huge quantity x price)
        return "the order's amount is too large"
    if order.amount < 0:
        return (
            f"the order's amount is negative ({order.amount}); record a refund with "
            "kind=refund and a positive amount"
        )
    try:
        decimal_checked(Purchase, "amount", order.amount)
    except ValueError as exc:
        return f"the order's amount {exc}"
    return ""


def _orders_with_known_customers(
    orders: list[Order], *, missing: set[CustomerKey], report: ImportReport
) -> list[Order]:
    """The orders whose customer exists; the others are reported."""
    for order in orders:
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
    return [o for o in orders if o.customer_key not in missing]


def _preview(order: Order) -> dict:
    return {
        "row": order.row,
        "customer": order.customer_key[1],
        "order_id": order.order_id,
        "purchased_at": order.purchased_at,
        "amount": order.amount,
        "currency": order.currency,
        "lines": order.lines,
        "product": order.product,
    }


def _resolve_customers(
    orders: list[Order], *, source: str
) -> tuple[dict[CustomerKey, Customer], set[CustomerKey]]:
    keys = {o.customer_key for o in orders}
    emails = sorted(v for k, v in keys if k == "email")
    externals = sorted(v for k, v in keys if k == "external")
    found: dict[CustomerKey, Customer] = {}
    for email, customer in customers_by_email(emails).items():
        found[("email", email)] = customer
    for (_, external_id), customer in customers_by_external_id(
        [(source, e) for e in externals]
    ).items():
        found[("external", external_id)] = customer
    return found, keys - set(found)


def _order_product(order: Order) -> str:
    if order.lines == 1:
        return order.product
    more = f" and {order.lines - 1} more item{'s' if order.lines > 2 else ''}"
    limit = Purchase._meta.get_field("product").max_length
    return (order.product[: limit - len(more)] + more) if order.product else f"{order.lines} items"


_PURCHASE_UPDATE_FIELDS = [
    "customer_id",
    "kind",
    "amount",
    "currency",
    "purchased_at",
    "product",
    "category",
    "channel",
]


def _write_purchases(
    orders: list[Order],
    *,
    customers: dict[CustomerKey, Customer],
    missing: set[CustomerKey],
    source: str,
    report: ImportReport,
) -> None:
    customers.update(_missing_customers_create(orders, missing=missing, source=source))
    report.customers_created = len(missing)
    existing = _purchases_by_order_id([o.order_id for o in orders if o.order_id], source=source)
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
            continue
        touched.add(purchase.customer_id)
        if assign(purchase, values):
            changed.append(purchase)
        else:
            report.unchanged += 1
    Purchase.objects.bulk_create(new, batch_size=BATCH_SIZE)
    if changed:
        Purchase.objects.bulk_update(changed, _PURCHASE_UPDATE_FIELDS, batch_size=UPDATE_BATCH_SIZE)
    report.created, report.updated = len(new), len(changed)
    customer_stats_refresh(customer_ids=touched)


def _missing_customers_create(
    orders: list[Order], *, missing: set[CustomerKey], source: str
) -> dict[CustomerKey, Customer]:
    """Create the customers the orders name that do not exist, from their first order."""
    first_seen: dict[CustomerKey, Order] = {}
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
    for customer in new_customers:
        customer.search_text_set()
    created = Customer.objects.bulk_create(new_customers, batch_size=BATCH_SIZE)
    return dict(zip(sorted(missing), created, strict=True))


def _purchases_by_order_id(order_ids: list[str], *, source: str) -> dict[str, Purchase]:
    existing: dict[str, Purchase] = {}
    for start in range(0, len(order_ids), BATCH_SIZE):
        for purchase in Purchase.objects.with_order_ids(
            source=source, order_ids=order_ids[start : start + BATCH_SIZE]
        ):
            existing[purchase.external_order_id] = purchase
    return existing

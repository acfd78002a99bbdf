"""Column mappings: the named presets for known files, and the `ours=Theirs` option parser."""

from __future__ import annotations

from dataclasses import dataclass

from crm.importers.platforms import PayPalActivity, ShopifyOrders, StripePayments

# What an adapter fills in on every line it gives, whatever the file's own columns.
_ADAPTED = frozenset({"order_id", "amount", "purchased_at", "kind", "channel"})


@dataclass(frozen=True)
class Preset:
    """A named column mapping (our column -> the file's header) and import defaults.

    A platform's file needs more than a mapping: `adapter` turns each of its lines into our
    lines (see crm.importers.platforms), reading the further columns in `reads` when the file
    has them; `requires` lists the ones it cannot do without (any one of each group).
    """

    name: str
    description: str
    mapping: dict[str, str]
    external_source: str
    cancel_prefix: str = ""
    currency: str = ""
    reads: tuple[str, ...] = ()
    requires: tuple[tuple[str, ...], ...] = ()
    adapter: type[StripePayments | ShopifyOrders | PayPalActivity] | None = None
    provides: frozenset[str] = frozenset()  # our columns the adapter fills in


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
    "stripe": Preset(
        name="stripe",
        description="Stripe payments export (Payments > Export): payments not paid are "
        "skipped, 'Amount Refunded' is a refund.",
        mapping={"order_id": "id", "amount": "Amount", "currency": "Currency"},
        external_source="stripe",
        reads=(
            "Status",
            "Captured",
            "Created date (UTC)",
            "Created (UTC)",
            "Amount Refunded",
            "Customer Email",
            "Customer ID",
            "Card Name",
            "Card Address Country",
            "Description",
        ),
        requires=(
            ("Status",),
            ("Created date (UTC)", "Created (UTC)"),
            ("Customer Email", "Customer ID"),
        ),
        adapter=StripePayments,
        provides=_ADAPTED | {"customer_email", "customer_external_id"},
    ),
    "shopify": Preset(
        name="shopify",
        description="Shopify orders export (Orders > Export): orders not paid are skipped, "
        "'Refunded Amount' is a refund.",
        mapping={
            "customer_email": "Email",
            "purchased_at": "Created at",
            "amount": "Total",
            "currency": "Currency",
            "product": "Lineitem name",
        },
        external_source="shopify",
        reads=(
            "Name",
            "Id",
            "Financial Status",
            "Paid at",
            "Refunded Amount",
            "Billing Name",
            "Billing Country",
        ),
        requires=(("Name",), ("Financial Status",)),
        adapter=ShopifyOrders,
        provides=_ADAPTED,
    ),
    "paypal": Preset(
        name="paypal",
        description="PayPal activity download: payments received and refunds sent, nothing "
        "else; dates month/day/year unless a date format says otherwise.",
        mapping={
            "order_id": "Transaction ID",
            "purchased_at": "Date",
            "amount": "Gross",
            "currency": "Currency",
            "customer_email": "From Email Address",
            "customer_name": "Name",
        },
        external_source="paypal",
        reads=("Type", "Status", "Time", "TimeZone", "To Email Address", "Item Title", "Country"),
        requires=(("Type",), ("Status",)),
        adapter=PayPalActivity,
        provides=_ADAPTED,
    ),
}


def parse_mapping(items: list[str]) -> dict[str, str]:
    """Turn ["ours=Theirs", ...] into {"ours": "Theirs"}; raises ValueError when malformed."""
    mapping = {}
    for item in items:
        ours, sep, theirs = item.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise ValueError(f"'{item}' is not column=FileColumn")
        mapping[ours.strip()] = theirs.strip()
    return mapping

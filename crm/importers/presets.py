"""Column mappings: the named presets for known files, and the `ours=Theirs` option parser."""

from __future__ import annotations

from dataclasses import dataclass


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


def parse_mapping(items: list[str]) -> dict[str, str]:
    """Turn ["ours=Theirs", ...] into {"ours": "Theirs"}; raises ValueError when malformed."""
    mapping = {}
    for item in items:
        ours, sep, theirs = item.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise ValueError(f"'{item}' is not column=FileColumn")
        mapping[ours.strip()] = theirs.strip()
    return mapping

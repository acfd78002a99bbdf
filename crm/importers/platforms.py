"""Read the files the big shop platforms export (Stripe, Shopify, PayPal) as our purchase lines.

Each platform's adapter turns one line of its file into zero, one or two lines in our
columns: a sale, and a refund when the line records one. It only translates (status to
skip or keep, refunds, amounts and dates written the platform's way); whether a value is
acceptable is left to the purchase importer's own checks. Knows nothing about Django.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Problems = list[tuple[str, str]]  # (our column, message)

SALE, REFUND, ONLINE = "sale", "refund", "online"


class SkipLine(Exception):
    """The line is left out on purpose (a failed payment, an unpaid order); counted by reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class FileLayoutError(Exception):
    """The whole file is laid out otherwise than the preset reads it (e.g. day-first dates)."""

    def __init__(self, column: str, message: str):
        super().__init__(message)
        self.column = column


@dataclass
class Line:
    """One purchase line in our columns, and what could not be read on it."""

    values: dict[str, str]
    problems: Problems = field(default_factory=list)


# --- amounts -------------------------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?")


def plain_amount(text: str) -> str:
    """The amount with a decimal point and no thousands separators: "1,234.50" and "1.234,50"
    both give "1234.50", "23,00" gives "23.00". Text that is no amount comes back unchanged,
    so the importer names it as the file wrote it."""
    value = text.replace("\u00a0", "").replace(" ", "")
    if "," in value and "." in value:
        point = "," if value.rfind(",") > value.rfind(".") else "."
        grouping = "." if point == "," else ","
        whole, _, decimals = value.rpartition(point)
        if not re.fullmatch(rf"[-+]?\d{{1,3}}(\{grouping}\d{{3}})*", whole):
            return text
        value = whole.replace(grouping, "") + "." + decimals
    elif "," in value:
        # Groups of exactly three after each comma are thousands ("1,250"); else a decimal comma.
        if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+", value):
            value = value.replace(",", "")
        else:
            value = value.replace(",", ".")
    elif re.fullmatch(r"[-+]?\d{1,3}(\.\d{3}){2,}", value):  # "1.234.567"
        value = value.replace(".", "")
    return value if _NUMBER.fullmatch(value) else text


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(plain_amount(text))
    except InvalidOperation:
        return None


def _is_positive(text: str) -> bool:
    number = _decimal(text)
    return number is not None and number > 0


# --- dates ---------------------------------------------------------------------------------

# Abbreviations PayPal writes in its TimeZone column (North America, Europe, Asia-Pacific).
# Ambiguous ones (IST) are left out: an IANA name ("Europe/Dublin") is read as well.
_ZONE_HOURS = {
    "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 1, "BST": 1, "CET": 1, "MET": 1,
    "CEST": 2, "MEST": 2, "EET": 2, "EEST": 3, "MSK": 3, "HST": -10, "HDT": -9,
    "AKST": -9, "AKDT": -8, "PST": -8, "PDT": -7, "MST": -7, "MDT": -6, "CST": -6,
    "CDT": -5, "EST": -5, "EDT": -4, "AST": -4, "ADT": -3, "NST": -3.5, "NDT": -2.5,
    "HKT": 8, "SGT": 8, "AWST": 8, "JST": 9, "KST": 9, "ACST": 9.5, "ACDT": 10.5,
    "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13,
}  # fmt: skip


def time_zone(name: str) -> tzinfo | None:
    """The zone an abbreviation ("PDT") or an IANA name names; None when unknown."""
    hours = _ZONE_HOURS.get(name.upper())
    if hours is not None:
        return timezone(timedelta(hours=hours), name.upper())
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _with_zone(moment: datetime, zone: tzinfo | None) -> str:
    # The wall-clock time keeps its zone; no conversion, so no date can overflow here.
    if zone is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.isoformat(sep=" ")


def moment_text(
    text: str, *, date_format: str, zone: tzinfo | None, column: str = "purchased_at"
) -> tuple[str, Problems]:
    """The cell as ISO 8601 text, with `zone` when it names none. Without a date format, text
    that is not ISO comes back unchanged, for the importer to report."""
    if not text:
        return text, []
    if date_format:
        try:
            moment = datetime.strptime(text, date_format)  # noqa: DTZ007 (zone added below)
        except ValueError:
            return text, [(column, f"'{text}' is not a date and time; use {date_format}")]
        return _with_zone(moment, zone), []
    # "2024-03-05 14:22:10 -0500" (Shopify) is ISO but for the space before the offset.
    iso = re.sub(r"\s+([+-]\d{2}):?(\d{2})$", r"\1:\2", text)
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return text, []
    return _with_zone(moment, zone), []


def _line_values(values: dict[str, str], ours: tuple[str, ...]) -> dict[str, str]:
    return {name: values[name] for name in ours if name in values}


# --- the platforms -------------------------------------------------------------------------


class StripePayments:
    """Stripe Dashboard → Payments → Export: one line per payment, times in UTC."""

    PAID = {"paid", "succeeded", "refunded", "partially refunded", "partially_refunded"}

    def __init__(self, *, date_format: str, ours: tuple[str, ...]):
        self.date_format = date_format
        self.ours = ours

    def lines(self, values: dict[str, str]) -> list[Line]:
        status = values.get("Status", "")
        if status.lower() not in self.PAID:
            raise SkipLine(f"payment not completed (Stripe status '{status}')")
        if values.get("Captured", "").lower() == "false":
            raise SkipLine("payment authorised but never captured")
        sale = _line_values(values, self.ours)
        sale.setdefault("customer_email", values.get("Customer Email", ""))
        sale.setdefault("customer_external_id", values.get("Customer ID", ""))
        sale.setdefault("customer_name", values.get("Card Name", ""))
        sale.setdefault("customer_country", values.get("Card Address Country", ""))
        sale.setdefault("product", values.get("Description", ""))
        created = sale.get("purchased_at") or values.get("Created date (UTC)", "")
        when, problems = moment_text(
            created or values.get("Created (UTC)", ""), date_format=self.date_format, zone=UTC
        )
        sale |= {
            "purchased_at": when,
            "amount": plain_amount(sale.get("amount", "")),
            "kind": SALE,
            "channel": sale.get("channel") or ONLINE,
        }
        refunded = values.get("Amount Refunded", "")
        if "Amount Refunded" not in values and status.lower() == "refunded":
            refunded = sale["amount"]
        return _with_refund(sale, refunded, problems)


class ShopifyOrders:
    """Shopify admin → Orders → Export: one line per item; the order's own values (status,
    total, refunds, id, billing) only on its first line."""

    PAID = {"paid", "partially_paid", "partially_refunded", "refunded"}
    # Read on an order's first line and lent to its further lines.
    ORDER_VALUES = (
        "customer_email",
        "customer_name",
        "customer_country",
        "purchased_at",
        "currency",
        "Financial Status",
        "Paid at",
        "Id",
        "Billing Name",
        "Billing Country",
    )

    def __init__(self, *, date_format: str, ours: tuple[str, ...]):
        self.date_format = date_format
        self.ours = ours
        self.orders: dict[str, dict[str, str]] = {}  # order name -> its first line's values

    def lines(self, values: dict[str, str]) -> list[Line]:
        name = values.get("Name", "")
        first = self.orders.get(name)
        is_first = first is None
        if is_first:
            self.orders[name] = {k: values.get(k, "") for k in self.ORDER_VALUES}
        else:
            values = values | {k: v for k, v in first.items() if v and not values.get(k)}
        status = values.get("Financial Status", "")
        if status.lower() not in self.PAID:
            raise SkipLine(f"order not paid (Shopify financial status '{status or 'blank'}')")
        line = _line_values(values, self.ours)
        line.setdefault("customer_name", values.get("Billing Name", ""))
        line.setdefault("customer_country", values.get("Billing Country", ""))
        line["order_id"] = values.get("Id") or name
        line["kind"] = SALE
        line["channel"] = line.get("channel") or ONLINE
        line["purchased_at"], problems = moment_text(
            line.get("purchased_at") or values.get("Paid at", ""),
            date_format=self.date_format,
            zone=None,
        )
        if not is_first:
            line["amount"] = "0"  # the order's total is on its first line only
            return [Line(line, problems)]
        line["amount"] = plain_amount(line.get("amount", ""))
        refunded = values.get("Refunded Amount", "")
        if not refunded and status.lower() == "refunded":
            refunded = line["amount"]
        return _with_refund(line, refunded, problems)


class PayPalActivity:
    """PayPal → Activity → Statements → Activity download: every movement of the balance, one
    line each, the date in the account's own layout, time and zone in their own columns."""

    COMPLETED = {"completed", "cleared", "refunded", "partially refunded"}
    # Types holding "payment" that are no sale to a customer.
    NOT_SALES = ("reversal", "hold", "withdrawal", "conversion", "deposit", "transfer", "auth")

    def __init__(self, *, date_format: str, ours: tuple[str, ...]):
        self.date_format = date_format
        self.ours = ours

    def lines(self, values: dict[str, str]) -> list[Line]:
        kind = self._kind(values)
        status = values.get("Status", "")
        if status.lower() not in self.COMPLETED:
            raise SkipLine(f"payment not completed (PayPal status '{status}')")
        line = _line_values(values, self.ours)
        line.setdefault("product", values.get("Item Title", ""))
        line.setdefault("customer_country", values.get("Country", ""))
        amount = plain_amount(line.get("amount", ""))
        if kind == REFUND:
            # A refund goes from the shop to the customer: the customer is the recipient.
            line["customer_email"] = values.get("To Email Address") or line.get(
                "customer_email", ""
            )
            amount = amount.removeprefix("-")
        line |= {"amount": amount, "kind": kind, "channel": line.get("channel") or ONLINE}
        problems: Problems = []
        line["purchased_at"] = self._moment(values, line.get("purchased_at", ""), problems)
        return [Line(line, problems)]

    def _kind(self, values: dict[str, str]) -> str:
        type_ = values.get("Type", "")
        lowered = type_.lower()
        paid_out = values.get("amount", "").lstrip().startswith("-")
        if "refund" in lowered and paid_out:
            return REFUND
        if paid_out:
            raise SkipLine(f"money paid out, not a sale (PayPal type '{type_}')")
        if "payment" in lowered and not any(word in lowered for word in self.NOT_SALES):
            return SALE
        raise SkipLine(f"not a sale (PayPal type '{type_}')")

    def _moment(self, values: dict[str, str], day: str, problems: Problems) -> str:
        """Date, Time and TimeZone as one ISO 8601 text."""
        try:
            date = datetime.strptime(day, self.date_format or "%m/%d/%Y").date()  # noqa: DTZ007
        except ValueError:
            self._check_day_first(day)
            problems.append(
                ("purchased_at", f"'{day}' is not a date; use {self.date_format or '%m/%d/%Y'}")
            )
            return day
        clock = values.get("Time", "")
        try:
            moment = datetime.combine(date, time.fromisoformat(clock) if clock else time())
        except ValueError:
            problems.append(("purchased_at", f"time '{clock}' is not a time; use HH:MM:SS"))
            return day
        name = values.get("TimeZone", "")
        zone = time_zone(name) if name else None
        if name and zone is None:
            problems.append(
                ("purchased_at", f"'{name}' is not a time zone (e.g. PST, CET or Europe/Paris)")
            )
        return _with_zone(moment, zone)

    def _check_day_first(self, day: str) -> None:
        """With the default (US) layout, a date that can only be day first stops the import:
        every other date of the file may have been read the wrong way round."""
        if self.date_format:
            return
        found = re.fullmatch(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})", day)
        if found and (found[2] != "/" or int(found[1]) > 12):
            layout = f"%d{found[2]}%m{found[2]}%Y"
            raise FileLayoutError(
                "purchased_at",
                f"'{day}' has the day first: this PayPal file writes its dates as {layout}; "
                f"import it again with the date format {layout}",
            )


def _with_refund(sale: dict[str, str], refunded: str, problems: Problems) -> list[Line]:
    """The sale, and its refund when the line records one (an amount that is not 0). A line
    that cannot be read is one error: no refund is read from it."""
    if problems or not refunded:
        return [Line(sale, problems)]
    if _decimal(refunded) is not None and not _is_positive(refunded):
        return [Line(sale)]
    return [Line(sale), Line(_refund(sale, amount=plain_amount(refunded)))]


def _refund(sale: dict[str, str], *, amount: str) -> dict[str, str]:
    """The refund of a sale: its own order id, so a re-import updates it instead of adding it
    again, on the sale's date (the exports give no refund date)."""
    return sale | {
        "order_id": f"{sale.get('order_id', '')}:refund",
        "amount": amount,
        "kind": REFUND,
        "product": sale.get("product", ""),
    }

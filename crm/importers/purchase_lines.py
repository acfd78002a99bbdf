"""Validate the lines of a purchase file one by one, each into a row of the staging table."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from crm.bounds import decimal_limit, model_field
from crm.importers.reading import BAD_BYTES, Row, encoding_problem
from crm.importers.report import ImportReport
from crm.importers.staging import moment_adapter
from crm.importers.values import parse_datetime, parse_decimal, parse_external_id
from crm.models import Purchase

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

_CHANNELS = {c.value: c.value for c in Purchase.Channel} | {
    c.label.lower(): c.value for c in Purchase.Channel
}
_KINDS = {c.value: c.value for c in Purchase.Kind} | {
    c.label.lower(): c.value for c in Purchase.Kind
}

Problems = list[tuple[str, str]]  # (column, message) for one line
_SALE = Purchase.Kind.SALE.value
_ONE = Decimal(1)
_ZERO = Decimal(0)

# A file row may give several lines (a platform's sale and its refund): the staging table's
# `line` is row number x LINE_SLOTS + the line's place in its row, unique and in file order;
# line_row() gives the row number back for the report.
LINE_SLOTS = 4


def line_row(line: int) -> int:
    return int(line) // LINE_SLOTS


# The staging table's columns, in the order PurchaseLineParser.line() returns them.
LINE_COLUMNS = (
    "line",
    "order_key",
    "order_id",
    "customer_kind",
    "customer_key",
    "customer_email",
    "customer_name",
    "customer_country",
    "micro",
    "huge",
    "purchased_at",
    "product",
    "category",
    "currency",
    "channel",
    "kind",
    "bad",
)
LINE_TABLE_COLUMNS = (
    "line {int} PRIMARY KEY, order_key {text} NOT NULL, order_id {text}, customer_kind {text}, "
    "customer_key {text}, customer_email {text}, customer_name {text}, "
    "customer_country {text}, micro {big}, huge {text}, purchased_at {moment}, "
    "product {text}, category {text}, currency {text}, channel {text}, kind {text}, "
    "bad {int} NOT NULL"
)
MICRO = Decimal("0.000001")
# A line at or above this cannot be part of a storable order: its exact amount is kept as
# text instead (the order is then refused with its exact total), so sums never overflow.
AMOUNT_LIMIT = decimal_limit(model_field(Purchase, "amount"))
CACHE_LIMIT = 100_000  # parsed dates, ids and e-mails kept at most (memory stays flat)


def _bad_line(number: int, key: str) -> tuple:
    return (number, key, "", "", "", "", "", "", 0, "", None, "", "", "", "", "", 1)


class PurchaseLineParser:
    """Validates one line and turns it into a staging row (orders are grouped in SQL).

    Amounts are staged in millionths: orders are summed exactly to that precision, then
    rounded to the cent. Problems are reported on the report as they are found.
    """

    def __init__(self, *, columns, default_currency, cancel_prefix, date_format, report):
        self.columns = columns
        self.by_lines = "amount" not in columns
        self.amount_column = "unit_price" if self.by_lines else "amount"
        self.default_currency = default_currency
        self.cancel_prefix = cancel_prefix
        self.date_format = date_format
        self.report: ImportReport = report
        self.latest = timezone.now() + timedelta(days=1)
        self.zone = timezone.get_current_timezone()
        # Staged as text (COPY would format each datetime again): formatted once per date.
        adapt = moment_adapter()
        self.adapt = lambda moment: str(adapt(moment))
        # Real exports repeat the same dates, ids and emails on many lines: parse each once.
        self.dates: dict[str, tuple[str, bool]] = {}  # staged text, in the future
        self.numbers: dict[str, Decimal] = {}
        self.external_ids: dict[str, str] = {}
        self.valid_emails: set[str] = set()
        self.valid_currencies: set[str] = set()
        self.limits = {
            "product": Purchase._meta.get_field("product").max_length,
            "category": Purchase._meta.get_field("category").max_length,
            "order_id": Purchase._meta.get_field("external_order_id").max_length,
        }

    def line(self, row: Row, line_id: int) -> tuple | None:
        """The line's staging row (LINE_COLUMNS, `line_id` first), or None when it is skipped."""
        values = row.values
        get = values.get
        email = get("customer_email", "")
        external_id = get("customer_external_id", "")
        if external_id:
            external_id = self._external_id(external_id)
        order_id = get("order_id", "")
        if reason := self._skip_reason(email=email, external_id=external_id, order_id=order_id):
            self.report.skipped[reason] += 1
            return None
        problems = list(row.problems)
        # One search over the joined line first: almost every line is clean.
        if BAD_BYTES.search("".join(values.values())):
            problems += _encoding_problems(values)
        measured = self._measure(values, email=email, problems=problems)
        if measured is None:
            self.report.skipped["negative quantity (a return or cancellation line)"] += 1
            return None
        micro, huge, moment = measured
        channel = self._choice(values, "channel", _CHANNELS, problems)
        kind = self._choice(values, "kind", _KINDS, problems)
        currency = self._currency(values, problems)
        self._check_lengths(values, problems)
        key = order_id or f"#row{row.number}"
        if problems:
            self._reject(row.number, problems)
            return _bad_line(line_id, key)
        return (
            line_id,
            key,
            order_id,
            "email" if email else "external",
            email.lower() if email else external_id,
            email,
            get("customer_name", ""),
            get("customer_country", ""),
            micro,
            huge,
            moment,
            get("product", ""),
            get("category", ""),
            currency,
            channel,
            kind or _SALE,
            0,
        )

    def _reject(self, row: int, problems: Problems) -> None:
        for column, message in problems:
            self.report.add_error(row, column, message)
        self.report.invalid_rows += 1

    def _external_id(self, raw: str) -> str:
        external_id = self.external_ids.get(raw)
        if external_id is None:
            if len(self.external_ids) > CACHE_LIMIT:
                self.external_ids.clear()
            external_id = self.external_ids[raw] = parse_external_id(raw)
        return external_id

    def _skip_reason(self, *, email: str, external_id: str, order_id: str) -> str:
        """Why the line is left out without being an error, or "" to import it."""
        if not email and not external_id:
            return "no customer on the line"
        if self.cancel_prefix and order_id.startswith(self.cancel_prefix):
            return f"cancelled order (order id starts with '{self.cancel_prefix}')"
        return ""

    def _measure(
        self, values: dict[str, str], *, email: str, problems: Problems
    ) -> tuple[int, str, object] | None:
        """The line's amount (in millionths, or as exact text when huge) and date (e-mail
        checked too); None for a negative quantity.

        Only a line that is readable so far is measured: one problem per line is enough.
        """
        quantity = _ONE
        if self.by_lines and not problems:
            quantity = self._number(values, "quantity", "a number", problems)
            if quantity is None:  # the problem is noted: the line is not measured
                quantity = _ONE
            elif quantity < 0:
                return None
        if problems:
            return 0, "", None
        amount = self._amount(values, quantity, problems)
        moment = self._moment(values["purchased_at"], problems)
        self._check_email(email, problems)
        if amount < AMOUNT_LIMIT:
            return int(amount.quantize(MICRO, ROUND_HALF_UP).scaleb(6)), "", moment
        return 0, str(amount), moment

    def _number(
        self, values: dict[str, str], column: str, what: str, problems: Problems
    ) -> Decimal | None:
        """The cell as a number (None, and the problem noted, when it is not one)."""
        text = values[column]
        number = self.numbers.get(text)
        if number is None:
            try:
                number = parse_decimal(text, what=what)
            except ValueError as exc:
                problems.append((column, str(exc)))
                return None
            if len(self.numbers) > CACHE_LIMIT:
                self.numbers.clear()
            self.numbers[text] = number
        return number

    def _amount(self, values: dict[str, str], quantity: Decimal, problems: Problems) -> Decimal:
        """The line's amount: `amount`, or quantity x unit_price."""
        column = self.amount_column
        amount = self._number(values, column, "an amount", problems)
        if amount is None:
            return _ZERO
        if amount < 0:
            problems.append(
                (
                    column,
                    f"{values[column]} is negative; record a refund with "
                    "kind=refund and a positive amount",
                )
            )
        return amount * quantity

    def _moment(self, raw: str, problems: Problems):
        """The moment as it is staged (None when the cell is bad)."""
        cached = self.dates.get(raw)
        if cached is None:
            try:
                moment = parse_datetime(raw, date_format=self.date_format, zone=self.zone)
            except ValueError as exc:
                problems.append(("purchased_at", str(exc)))
                return None
            if len(self.dates) > CACHE_LIMIT:
                self.dates.clear()
            cached = self.dates[raw] = (self.adapt(moment), moment > self.latest)
        if cached[1]:
            problems.append(("purchased_at", f"{raw} is in the future"))
        return cached[0]

    def _check_email(self, email: str, problems: Problems) -> None:
        if not email or email in self.valid_emails:
            return
        try:
            validate_email(email)
        except ValidationError:
            problems.append(("customer_email", f"'{email}' is not an e-mail address"))
        else:
            if len(self.valid_emails) > CACHE_LIMIT:
                self.valid_emails.clear()
            self.valid_emails.add(email)

    def _choice(
        self, values: dict[str, str], column: str, choices: dict[str, str], problems: Problems
    ) -> str:
        """The choice the cell names, "" when it is blank."""
        text = values.get(column)
        if not text:
            return ""
        value = choices.get(text) or choices.get(text.lower())
        if value is None:
            allowed = ", ".join(sorted(set(choices.values())))
            problems.append((column, f"'{text}' is not one of: {allowed}"))
            return ""
        return value

    def _currency(self, values: dict[str, str], problems: Problems) -> str:
        currency = (values.get("currency") or self.default_currency).upper()
        if currency in self.valid_currencies:
            return currency
        if re.fullmatch(r"[A-Z]{3}", currency):
            self.valid_currencies.add(currency)
        else:
            problems.append(("currency", f"'{values['currency']}' is not a 3-letter currency code"))
        return currency

    def _check_lengths(self, values: dict[str, str], problems: Problems) -> None:
        for column, limit in self.limits.items():
            text = values.get(column)
            if text and len(text) > limit:
                problems.append((column, f"longer than {limit} characters"))


def _encoding_problems(values: dict[str, str]) -> Problems:
    return [(c, p) for c, value in values.items() if (p := encoding_problem(value))]

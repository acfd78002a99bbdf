"""What an import found and did: the report, its row errors, and the all-or-nothing write."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from crm.audit import SYSTEM, Actor, audit_record
from crm.cache import pages_cache_changed
from crm.models import AuditEntry

Progress = Callable[[int], None]

MAX_ERRORS = 1000  # kept in the report; the count of invalid rows is always exact
PREVIEW_ROWS = 20


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
    ignored_columns: list[str] = field(default_factory=list)  # in the file, not ours
    total_amount: Decimal = Decimal("0")

    def preview_table(self) -> tuple[list[str], list[list]]:
        """The preview as a table: every column any row has, in first-seen order, and each
        row's value under its own column ("" where a row has none: a blank cell)."""
        columns: dict[str, None] = {}
        for row in self.preview:
            columns.update(dict.fromkeys(row))
        names = list(columns)
        return names, [[row.get(name, "") for name in names] for row in self.preview]

    @property
    def ok(self) -> bool:
        """True when the import can be (or was) written."""
        return not self.fatal and (not self.errors or self.only_valid)

    def add_error(self, row: int, column: str | None, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RowError(row, column, message))

    def add_fatal(self, error: RowError) -> None:
        """The file cannot be imported at all: this error goes first, nothing is written."""
        self.fatal = True
        self.errors.insert(0, error)

    def note_left_out(self) -> None:
        if self.only_valid and self.invalid_rows:
            self.skipped["invalid (see the errors)"] += self.invalid_rows

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
                lines.extend(self._purchase_lines(verb))
        if self.ignored_columns:
            lines.append(
                f"Columns ignored (not known to the import): {', '.join(self.ignored_columns)}."
            )
        for reason, count in sorted(self.skipped.items(), key=lambda kv: -kv[1]):
            lines.append(f"Skipped {count:,} row(s): {reason}.")
        if self.dry_run:
            lines.append("Dry run: nothing was written.")
        elif not self.written:
            lines.append("Nothing was written.")
        return lines

    def _purchase_lines(self, verb: str) -> list[str]:
        lines = [
            f"Customers {verb} created: {self.customers_created:,}.",
            f"Total amount of the orders: {self.total_amount:,.2f}.",
        ]
        if self.zero_value_orders:
            lines.append(
                f"Orders worth exactly 0 (kept: they are real visits that count "
                f"for recency and frequency): {self.zero_value_orders:,}."
            )
        return lines


class FatalImportError(Exception):
    """The file as a whole cannot be imported (reported as one error)."""

    def __init__(self, row: int, column: str | None, message: str):
        super().__init__(message)
        self.error = RowError(row, column, message)


class _DryRunRollback(Exception):
    pass


def import_write(
    *, report: ImportReport, write: Callable[[], None], actor: Actor = SYSTEM
) -> ImportReport:
    """Run `write` in one transaction, rolled back on a dry run; a refusal becomes fatal.

    Every import writes through here, so here the pages' cached figures are invalidated and
    the import goes to the audit trail (in the same transaction: no entry without the rows).
    """
    try:
        with transaction.atomic():
            write()
            if report.dry_run:
                raise _DryRunRollback
            pages_cache_changed()
            audit_record(
                actor=actor,
                action=AuditEntry.Action.IMPORTED,
                object_type="crm.customer" if report.kind == "customers" else "crm.purchase",
                count=report.created + report.updated,
                detail=f"created {report.created}, updated {report.updated}, "
                f"invalid rows {report.invalid_rows}",
            )
        report.written = True
    except _DryRunRollback:
        pass
    except (IntegrityError, ValidationError) as exc:
        report.fatal = True
        report.created = report.updated = report.customers_created = 0
        report.errors.insert(0, RowError(0, None, f"the database refused the import: {exc}"))
    return report

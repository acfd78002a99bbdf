"""Import customers from a CSV file (see README, "Importing and exporting")."""

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from crm.importers import ImportReport, customers_import, parse_mapping

SHOWN_ERRORS = 50


class ImportCommand(BaseCommand):
    """Options and reporting shared by the CSV import commands."""

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV file, UTF-8, optionally gzip-compressed (.gz).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Check and count everything, write nothing."
        )
        parser.add_argument(
            "--only-valid",
            action="store_true",
            help="Import the valid rows and leave the invalid ones out (default: all or nothing).",
        )
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="COLUMN=FILE_COLUMN",
            help="Read one of our columns from the file's column of another name (repeatable).",
        )
        parser.add_argument(
            "--source",
            default="",
            help="Name of the system the external ids come from (default: 'shop').",
        )

    def run_import(self, options, importer, **kwargs) -> ImportReport:
        try:
            mapping = parse_mapping(options["map"])
        except ValueError as exc:
            raise CommandError(f"--map {exc}") from None
        with tqdm(
            desc="Reading", unit=" rows", file=sys.stderr, disable=None, mininterval=0.5
        ) as bar:
            try:
                report = importer(
                    source=options["file"],
                    dry_run=options["dry_run"],
                    only_valid=options["only_valid"],
                    mapping=mapping,
                    progress=bar.update,
                    **kwargs,
                )
            except FileNotFoundError:
                raise CommandError(f"No such file: {options['file']}") from None
        for error in report.errors[:SHOWN_ERRORS]:
            self.stderr.write(str(error))
        if len(report.errors) > SHOWN_ERRORS:
            more = max(report.invalid_rows, len(report.errors)) - SHOWN_ERRORS
            self.stderr.write(f"... and about {more:,} more.")
        for line in report.summary():
            self.stdout.write(line)
        if not report.ok:
            raise CommandError(
                "Nothing was imported: fix the rows above (or use --only-valid to import the "
                "valid rows only)."
                if not report.fatal
                else "Nothing was imported."
            )
        return report


class Command(ImportCommand):
    help = (
        "Create or update customers from a CSV file. Customers match on e-mail "
        "(case-insensitively) or external id: re-importing updates, never duplicates."
    )

    def handle(self, *args, **options):
        self.run_import(options, customers_import, external_source=options["source"] or "shop")

"""Export customers as CSV to a file or stdout (see README, "Importing and exporting")."""

import sys

from django.core.management.base import BaseCommand

from crm.exports import csv_write, customer_rows
from crm.models import Customer


class Command(BaseCommand):
    help = "Write every customer as CSV (streamed: memory stays flat however many there are)."

    def add_arguments(self, parser):
        parser.add_argument("-o", "--output", default="-", help="File to write; '-' is stdout.")
        parser.add_argument("--active", action="store_true", help="Leave archived customers out.")

    def handle(self, *args, **options):
        queryset = Customer.objects.active() if options["active"] else Customer.objects.all()
        write_rows(customer_rows(queryset), options["output"], stderr=self.stderr)


def write_rows(rows, output: str, *, stderr) -> None:
    if output == "-":
        count = csv_write(rows, sys.stdout)
        sys.stdout.flush()
    else:
        with open(output, "w", newline="", encoding="utf-8") as out:
            count = csv_write(rows, out)
    stderr.write(f"Exported {count:,} row(s).")

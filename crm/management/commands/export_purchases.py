"""Export purchases as CSV to a file or stdout (see README, "Importing and exporting")."""

from django.core.management.base import BaseCommand

from crm.exports import csv_output_write, purchase_rows
from crm.models import Purchase


class Command(BaseCommand):
    help = "Write every purchase as CSV (streamed: memory stays flat however many there are)."

    def add_arguments(self, parser):
        parser.add_argument("-o", "--output", default="-", help="File to write; '-' is stdout.")

    def handle(self, *args, **options):
        csv_output_write(
            purchase_rows(Purchase.objects.all()), output=options["output"], stderr=self.stderr
        )

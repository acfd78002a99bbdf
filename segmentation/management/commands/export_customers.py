"""Export customers as CSV to a file or stdout (see README, "Importing and exporting")."""

from django.core.management.base import BaseCommand

from crm.exports import csv_output_write, customer_rows
from crm.models import Customer
from segmentation.exports import CUSTOMER_EXPORT_PROVIDERS


class Command(BaseCommand):
    help = "Write every customer as CSV (streamed: memory stays flat however many there are)."

    def add_arguments(self, parser):
        parser.add_argument("-o", "--output", default="-", help="File to write; '-' is stdout.")
        parser.add_argument("--active", action="store_true", help="Leave archived customers out.")

    def handle(self, *args, **options):
        queryset = Customer.objects.active() if options["active"] else Customer.objects.all()
        rows = customer_rows(queryset, extra_columns=CUSTOMER_EXPORT_PROVIDERS)
        csv_output_write(rows, output=options["output"], stderr=self.stderr)

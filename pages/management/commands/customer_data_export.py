"""Write everything held about one customer to a JSON file (their right of access)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from crm.audit import SYSTEM
from crm.models import Customer
from pages.customer_data import customer_data_json


def customer_find(key: str) -> Customer:
    """A customer by id or e-mail (any case); a clear error otherwise."""
    if key.isdigit():
        customer = Customer.objects.filter(pk=int(key)).first()
    else:
        customer = Customer.objects.filter(email__iexact=key.strip()).exclude(email="").first()
    if customer is None:
        raise CommandError(f"No customer with the id or e-mail {key!r}.")
    return customer


class Command(BaseCommand):
    help = "Write everything held about one customer (by id or e-mail) as one JSON file."

    def add_arguments(self, parser):
        parser.add_argument("customer", help="the customer's id or e-mail address")
        parser.add_argument(
            "--output", help="file to write (default: customer-<id>-data.json; - for stdout)"
        )

    def handle(self, *args, customer: str, output: str | None, **options):
        found = customer_find(customer)
        body = customer_data_json(customer=found, actor=SYSTEM)
        if output == "-":
            self.stdout.write(body.decode())
            return
        path = Path(output or f"customer-{found.pk}-data.json")
        try:
            path.write_bytes(body)
        except OSError as exc:
            raise CommandError(f"Could not write {path}: {exc.strerror}.") from None
        self.stdout.write(f"Wrote all data of customer #{found.pk} to {path}.")

"""Erase one customer and everything held about them (their right to erasure)."""

from django.core.management.base import BaseCommand

from crm.audit import SYSTEM
from pages.customer_data import customer_erase
from pages.management.commands.customer_data_export import customer_find


class Command(BaseCommand):
    help = "Erase one customer (by id or e-mail) and everything held about them. No undo."

    def add_arguments(self, parser):
        parser.add_argument("customer", help="the customer's id or e-mail address")
        parser.add_argument(
            "--yes", action="store_true", help="do not ask for confirmation (scripts)"
        )

    def handle(self, *args, customer: str, yes: bool, **options):
        found = customer_find(customer)
        if not yes:
            answer = input(f"Erase customer #{found.pk} and all their data for good? [y/N] ")
            if answer.strip().lower() not in {"y", "yes"}:
                self.stdout.write("Nothing was erased.")
                return
        erasure = customer_erase(customer=found, actor=SYSTEM)
        self.stdout.write(f"Customer #{erasure.customer_id} erased: {erasure.summary()}.")

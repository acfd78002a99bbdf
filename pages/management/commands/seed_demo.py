"""Load demo customers, purchases, feedback, tags and offers."""

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pages.demo import demo_seed


class Command(BaseCommand):
    help = (
        "Insert demo customers of several behaviours (regular high spenders, occasional, "
        "lapsed, new, one-off, unhappy, prospects) with two years of purchases and feedback."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customers", type=int, default=2000, help="How many (default 2000).")
        parser.add_argument("--seed", type=int, default=1, help="Random seed (default 1).")

    def handle(self, *args, customers: int, seed: int, **options) -> None:
        if customers < 0:
            raise CommandError("--customers must be 0 or more.")
        started = time.monotonic()
        verbose = options["verbosity"] > 0
        summary = demo_seed(
            customers=customers,
            seed=seed,
            progress=(
                (lambda m: self.stdout.write(f"{time.monotonic() - started:6.1f} s  {m}"))
                if verbose
                else None
            ),
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data: {summary.customers:,} customers, {summary.purchases:,} purchases, "
                f"{summary.feedback:,} feedback entries, {summary.tags:,} tags given, "
                f"{summary.offers} new offers in {time.monotonic() - started:.1f} s."
            )
        )

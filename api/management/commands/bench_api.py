"""Post purchases in bulk requests through the whole HTTP stack and print purchases/second,
next to its target and to a floor: the same purchases bulk-inserted without HTTP."""

import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import Count, Sum
from django.test import Client
from django.test.utils import override_settings

from api import services
from api.models import ApiToken
from crm.models import Customer, Purchase
from crm.services import customer_overdue_from_refresh

# What the bulk endpoint should sustain: a year of a busy small shop's orders in seconds.
TARGET_PER_SECOND = 2000
PURCHASED_AT = datetime(2026, 1, 1, 12, tzinfo=UTC)
_CHUNK = 500  # ids per IN list: within SQLite's variable limit

# The customers' figures after the purchases, as one UPDATE (sales count, refunds subtract).
_STATS_SQL = """
UPDATE crm_customer SET
    purchase_count = (SELECT COUNT(*) FROM crm_purchase p
                      WHERE p.customer_id = crm_customer.id AND p.kind = 'sale'),
    total_spent = (SELECT COALESCE(SUM(CASE WHEN p.kind = 'sale' THEN p.amount
                                            ELSE -p.amount END), 0)
                   FROM crm_purchase p WHERE p.customer_id = crm_customer.id),
    first_purchase_at = (SELECT MIN(p.purchased_at) FROM crm_purchase p
                         WHERE p.customer_id = crm_customer.id AND p.kind = 'sale'),
    last_purchase_at = (SELECT MAX(p.purchased_at) FROM crm_purchase p
                        WHERE p.customer_id = crm_customer.id AND p.kind = 'sale')
WHERE id IN ({ids})
"""


class Command(BaseCommand):
    help = "Benchmark the bulk purchase endpoint: bench_api --purchases 20000"

    def add_arguments(self, parser):
        parser.add_argument("--purchases", type=int, default=20000)
        parser.add_argument("--batch", type=int, default=services.BULK_MAX)
        parser.add_argument(
            "--customers", type=int, default=2000, help="Distinct customers the purchases name."
        )
        parser.add_argument("--runs", type=int, default=3, help="Runs of each way (median).")
        parser.add_argument(
            "--keep", action="store_true", help="Keep the rows written (deleted by default)."
        )

    def handle(self, *args, purchases, batch, customers, runs, keep, **options):
        if not 1 <= batch <= services.BULK_MAX:
            raise CommandError(f"--batch must be from 1 to {services.BULK_MAX}.")
        if purchases < 1 or not 1 <= customers <= purchases or runs < 1:
            raise CommandError("Give at least 1 purchase, 1 to --purchases customers, 1 run.")
        run = uuid.uuid4().hex[:8]
        self.stdout.write(
            f"Writing {purchases:,} purchases naming {customers:,} new customers, "
            f"{runs} run(s) of each way, on {connection.vendor}..."
        )
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        api_times: list[tuple[float, float]] = []
        floor_times: list[tuple[float, float]] = []
        for index in range(runs):
            ways = (("through", self._through_api, api_times), ("floor", self._floor, floor_times))
            for name, way, times in ways:
                source = f"bench-{run}-{name}-{index}"
                try:
                    times.append(way(source=source, n=purchases, customers=customers, batch=batch))
                    # Both ways must leave the same rows and figures, or the ratio means nothing.
                    written, expected = _written(source), _expected(purchases, customers)
                    if written != expected:
                        raise CommandError(f"The {name} run wrote {written}, not {expected}.")
                finally:
                    if not keep:
                        _delete(source)
        self._report(purchases, customers, batch, api_times, floor_times, load)

    def _through_api(self, *, source: str, n: int, customers: int, batch: int) -> tuple:
        """Seconds (wall clock, and this process's CPU) to post the purchases in requests of
        `batch`."""
        user, _ = get_user_model().objects.get_or_create(username="bench-api")
        api_token, token = services.api_token_create(user=user, name=source, scope="read_write")
        # The Django test client goes through the whole request stack (middleware,
        # authentication, throttling, parsing, the view, the database) without a socket.
        client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", SERVER_NAME="localhost")
        # A first request loads the URL configuration and its views: not part of the figure.
        client.get("/api/v1/segments/")
        try:
            started, cpu = time.perf_counter(), time.process_time()
            with override_settings(API_RATE_LIMIT="1000000/min"):
                for start in range(0, n, batch):
                    body = {
                        "purchases": [
                            {
                                "customer_external_source": source,
                                "customer_external_id": f"c{i % customers}",
                                "amount": f"{i % 200 + 1}.50",
                                "external_source": source,
                                "external_order_id": f"o{i}",
                                "purchased_at": PURCHASED_AT.isoformat(),
                            }
                            for i in range(start, min(start + batch, n))
                        ]
                    }
                    response = client.post(
                        "/api/v1/purchases/bulk/", json.dumps(body), content_type="application/json"
                    )
                    if response.status_code != 200:
                        raise CommandError(f"{response.status_code}: {response.content[:500]!r}")
            return time.perf_counter() - started, time.process_time() - cpu
        finally:
            ApiToken.objects.filter(pk=api_token.pk).delete()

    def _floor(self, *, source: str, n: int, customers: int, batch: int) -> tuple:
        """Seconds (wall clock, and this process's CPU) for the cheapest correct write of the
        same purchases, without HTTP and without the product's services: find or create the
        customers, insert the purchases (a known order id left as it is), recompute the
        customers' figures; one transaction."""
        started, cpu = time.perf_counter(), time.process_time()
        with transaction.atomic():
            names = [f"c{c}" for c in range(customers)]
            ids: dict[str, int] = {}
            for start in range(0, len(names), _CHUNK):
                ids.update(
                    Customer.objects.filter(
                        external_source=source, external_id__in=names[start : start + _CHUNK]
                    ).values_list("external_id", "pk")
                )
            new = [Customer(external_source=source, external_id=e) for e in names if e not in ids]
            ids.update((c.external_id, c.pk) for c in Customer.objects.bulk_create(new, _CHUNK))
            Purchase.objects.bulk_create(
                (
                    Purchase(
                        customer_id=ids[f"c{i % customers}"],
                        amount=Decimal(f"{i % 200 + 1}.50"),
                        purchased_at=PURCHASED_AT,
                        external_source=source,
                        external_order_id=f"o{i}",
                    )
                    for i in range(n)
                ),
                batch_size=batch,
                ignore_conflicts=True,
            )
            touched = sorted(ids.values())
            with connection.cursor() as cursor:
                for start in range(0, len(touched), _CHUNK):
                    chunk = touched[start : start + _CHUNK]
                    cursor.execute(_STATS_SQL.format(ids=", ".join(["%s"] * len(chunk))), chunk)
            # The stored overdue moment is part of the figures every purchase write keeps.
            customer_overdue_from_refresh(customer_ids=touched)
        return time.perf_counter() - started, time.process_time() - cpu

    def _report(self, n, customers, batch, api_times, floor_times, load) -> None:
        api, floor = (statistics.median(t for t, _ in times) for times in (api_times, floor_times))
        api_cpu, floor_cpu = (
            statistics.median(c for _, c in ts) for ts in (api_times, floor_times)
        )
        rate = n / api
        verdict = "met" if rate >= TARGET_PER_SECOND else "NOT met"
        self.stdout.write(
            f"Bulk endpoint, requests of {batch:,}: {api:.2f} s, {rate:,.0f} purchases/s "
            f"(target >= {TARGET_PER_SECOND:,}/s: {verdict}); CPU {api_cpu:.2f} s, "
            f"{n / api_cpu:,.0f}/s; runs: " + ", ".join(f"{t:.2f} s" for t, _ in api_times)
        )
        self.stdout.write(
            f"Floor, one bulk insert without HTTP: {floor:.2f} s, {n / floor:,.0f} purchases/s; "
            f"CPU {floor_cpu:.2f} s, {n / floor_cpu:,.0f}/s; runs: "
            + ", ".join(f"{t:.2f} s" for t, _ in floor_times)
        )
        self.stdout.write(
            f"Endpoint / floor: {api / floor:.1f}x the time, {api_cpu / floor_cpu:.1f}x the CPU "
            f"({n:,} purchases, {customers:,} customers, medians, {connection.vendor}, "
            f"load average {load:.1f} at the start)"
        )


def _expected(n: int, customers: int) -> tuple[int, int, int, Decimal]:
    total = sum(Decimal(f"{i % 200 + 1}.50") for i in range(n))
    return (customers, n, n, total)


def _written(source: str) -> tuple[int, int, int, Decimal]:
    """Customers, purchases, and the customers' purchase count and spend: what a way wrote."""
    figures = Customer.objects.filter(external_source=source).aggregate(
        customers=Count("id"), counted=Sum("purchase_count"), spent=Sum("total_spent")
    )
    purchases = Purchase.objects.filter(external_source=source).count()
    return (
        figures["customers"],
        purchases,
        figures["counted"] or 0,
        figures["spent"] or Decimal(0),
    )


def _delete(source: str) -> None:
    with transaction.atomic():
        Purchase.objects.filter(external_source=source).delete()
        Customer.objects.filter(external_source=source).delete()

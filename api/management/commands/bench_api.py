"""Post purchases in bulk requests through the whole HTTP stack and print purchases/second."""

import json
import time
import uuid

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.test import Client
from django.test.utils import override_settings

from api import services
from api.models import ApiToken
from crm.models import Customer, Purchase


class Command(BaseCommand):
    help = "Benchmark the bulk purchase endpoint: bench_api --purchases 20000"

    def add_arguments(self, parser):
        parser.add_argument("--purchases", type=int, default=20000)
        parser.add_argument("--batch", type=int, default=services.BULK_MAX)
        parser.add_argument(
            "--customers", type=int, default=2000, help="Distinct customers the purchases name."
        )
        parser.add_argument(
            "--keep", action="store_true", help="Keep the rows written (deleted by default)."
        )

    def handle(self, *args, purchases, batch, customers, keep, **options):
        if not 1 <= batch <= services.BULK_MAX:
            raise CommandError(f"--batch must be from 1 to {services.BULK_MAX}.")
        run = uuid.uuid4().hex[:8]
        source = f"bench-{run}"
        user, _ = get_user_model().objects.get_or_create(username="bench-api")
        api_token, token = services.api_token_create(
            user=user, name=f"bench {run}", scope="read_write"
        )
        # The Django test client goes through the whole request stack (middleware,
        # authentication, throttling, parsing, the view, the database) without a socket.
        client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", SERVER_NAME="localhost")
        self.stdout.write(f"Posting {purchases:,} purchases in batches of {batch:,}...")
        # A first request loads the URL configuration and its views: not part of the figure.
        client.get("/api/v1/segments/")
        written = 0
        started = time.perf_counter()
        try:
            with override_settings(API_RATE_LIMIT="1000000/min"):
                while written < purchases:
                    size = min(batch, purchases - written)
                    body = {
                        "purchases": [
                            {
                                "customer_external_source": source,
                                "customer_external_id": f"c{(written + i) % customers}",
                                "amount": f"{(written + i) % 200 + 1}.50",
                                "external_source": source,
                                "external_order_id": f"o{written + i}",
                                "purchased_at": "2026-01-01T12:00:00Z",
                            }
                            for i in range(size)
                        ]
                    }
                    response = client.post(
                        "/api/v1/purchases/bulk/",
                        json.dumps(body),
                        content_type="application/json",
                    )
                    if response.status_code != 200:
                        raise CommandError(f"{response.status_code}: {response.content[:500]!r}")
                    written += size
            elapsed = time.perf_counter() - started
            self.stdout.write(
                f"{written:,} purchases in {elapsed:.2f} s: {written / elapsed:,.0f} purchases/s "
                f"({self._vendor()})"
            )
        finally:
            ApiToken.objects.filter(pk=api_token.pk).delete()
            if not keep:
                with transaction.atomic():
                    Purchase.objects.filter(external_source=source).delete()
                    Customer.objects.filter(external_source=source).delete()

    def _vendor(self) -> str:
        return connection.vendor

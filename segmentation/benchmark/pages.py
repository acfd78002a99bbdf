"""Page latency through the Django test client, logged in as a staff user."""

import statistics
import time
from collections.abc import Callable
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse

from crm.models import Customer
from segmentation.models import Segment

BENCH_USER = "bench-owner"
# The staff pages' url names; a page whose name does not resolve is left out.
CUSTOMER_PAGE_NAMES = ("pages:customer_detail",)
DASHBOARD_NAMES = ("pages:dashboard",)
TODAY_NAMES = ("pages:today",)
CUSTOMER_LIST_NAMES = ("pages:customer_list",)
OFFER_LIST_NAMES = ("offers:offer_list",)
SEGMENT_PAGE_NAMES = ("pages:segment_detail",)
REQUESTS = 20
# Rows the customer list's search shows (?per_page=), the same at every size.
SEARCH_ROWS = 20


def _reverse_first(names: tuple[str, ...], *args) -> str | None:
    for name in names:
        try:
            return reverse(name, args=args)
        except NoReverseMatch:
            continue
    return None


def staff_client() -> Client:
    user, _ = get_user_model().objects.get_or_create(
        username=BENCH_USER, defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client


def page_urls() -> dict[str, list[str]]:
    """Each page to time and the URLs its requests rotate through (absent pages are left out).

    Customer pages rotate over 20 repeat buyers with 5-30 purchases, the same kind of
    customer at every size. The searches do the same work at every size too: the admin's
    looks up one customer's e-mail; the customer list's looks for a common last name and
    shows its SEARCH_ROWS most valuable matches (a surname matches about 20 of a thousand
    customers and 20,000 of a million: a full page would compare 20 rows with 50); and a
    phone number typed without its country code.
    """
    customers = list(
        Customer.objects.filter(purchase_count__range=(5, 30))
        .order_by("id")
        .values_list("id", "name")[:REQUESTS]
    ) or list(Customer.objects.order_by("id").values_list("id", "name")[:REQUESTS])
    pages: dict[str, list[str]] = {}
    changelist = reverse("admin:crm_customer_changelist")
    pages["admin_changelist"] = [changelist]
    if customers:
        term = customers[0][1].split()[-1] if customers[0][1] else "example"
        email = Customer.objects.filter(pk=customers[0][0]).values_list("email", flat=True)
        pages["admin_search"] = [f"{changelist}?{urlencode({'q': email.first() or term})}"]
        pages["admin_customer"] = [
            reverse("admin:crm_customer_change", args=[pk]) for pk, _ in customers
        ]
        staff = [_reverse_first(CUSTOMER_PAGE_NAMES, pk) for pk, _ in customers]
        if all(staff):
            pages["customer_page"] = staff
        listing = _reverse_first(CUSTOMER_LIST_NAMES)
        if listing:
            pages["customer_list"] = [listing]
            # A surname, and a phone's last digits typed without its country code.
            pages["customer_search"] = [f"{listing}?q={term}&per_page={SEARCH_ROWS}"]
            phone = Customer.objects.filter(pk=customers[0][0]).values_list("phone", flat=True)
            digits = "".join(ch for ch in (phone.first() or "") if ch.isdigit())
            if digits.startswith("44"):  # the generated numbers are British: +44 20 ...
                pages["customer_search_phone"] = [f"{listing}?q=0{digits[2:]}"]
    for page, names in (
        ("dashboard", DASHBOARD_NAMES),
        ("today", TODAY_NAMES),
        ("offers", OFFER_LIST_NAMES),
    ):
        url = _reverse_first(names)
        if url:
            pages[page] = [url]
    segment = (
        Segment.objects.active().filter(kind=Segment.Kind.CLUSTER).order_by("-size", "id").first()
    )
    if segment:
        url = _reverse_first(SEGMENT_PAGE_NAMES, segment.pk) or reverse(
            "admin:segmentation_segment_change", args=[segment.pk]
        )
        pages["segment_page"] = [url]
    return pages


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def latency_summary(samples: list[float]) -> dict:
    if not samples:
        return {"n": 0, "median": None, "p95": None}
    return {
        "n": len(samples),
        "median": statistics.median(samples),
        "p95": _percentile(samples, 0.95),
        "min": min(samples),
        "max": max(samples),
    }


def timed_get(client: Client, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}, expected 200")
    return seconds


def pages_measure(
    pages: dict[str, list[str]], *, requests: int = REQUESTS, client: Client | None = None
) -> dict[str, dict]:
    """Median and p95 of `requests` GETs per page, after one untimed warm-up request."""
    client = client or staff_client()
    out = {}
    for page, urls in pages.items():
        timed_get(client, urls[0])
        samples = [timed_get(client, urls[i % len(urls)]) for i in range(requests)]
        out[page] = {"url": urls[0], **latency_summary(samples)}
    return out


def pages_queries(
    pages: dict[str, list[str]], *, client: Client | None = None, top: int = 3
) -> dict[str, dict]:
    """For one request per page: how many queries it ran, their total time and the slowest,
    to tell which query makes a page grow with the data."""
    client = client or staff_client()
    out = {}
    for page, urls in pages.items():
        with CaptureQueriesContext(connection) as captured:
            timed_get(client, urls[0])
        queries = [(float(q["time"]), q["sql"]) for q in captured.captured_queries]
        queries.sort(key=lambda q: -q[0])
        out[page] = {
            "queries": len(queries),
            "query_seconds": sum(t for t, _ in queries),
            "slowest": [{"seconds": t, "sql": sql[:400]} for t, sql in queries[:top]],
        }
    return out


def pages_measure_while(
    pages: dict[str, list[str]],
    running: Callable[[], bool],
    *,
    requests: int = REQUESTS,
    client: Client | None = None,
) -> dict[str, list[float]]:
    """Request the pages in turn while running() is true; the samples taken meanwhile."""
    client = client or staff_client()
    samples: dict[str, list[float]] = {page: [] for page in pages}
    i = 0
    while running() and min(len(s) for s in samples.values()) < requests:
        for page, urls in pages.items():
            if not running():
                break
            samples[page].append(timed_get(client, urls[i % len(urls)]))
        i += 1
    return samples

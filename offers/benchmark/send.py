"""Time an offer e-mail to a large segment through the product's own send path, against the
cheapest correct way to push as many messages to the same SMTP server.

The product side runs in a child process (`manage.py bench_send --child`) so its peak memory
is its own: the worker's task functions, queueing then sending in batches, exactly as a
worker would run them, the broker left out (the tasks' re-enqueueing is a list here).
"""

import json
import os
import smtplib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from unittest import mock

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Max, Min
from django.test import Client
from django.urls import reverse

from crm.models import Customer
from offers import tasks
from offers.benchmark.smtp_sink import SmtpSink
from offers.models import Delivery, Offer, OfferResponse
from segmentation.benchmark.generate import DatasetSpec, database_schema_ready, dataset_ensure
from segmentation.models import Membership, Segment

RESULT_PREFIX = "BENCH-SEND-RESULT "
SENDER = "shop@bench.example"
BOUNCES = "bounces@bench.example"
# The fastest the product may be configured to send (EMAIL_SEND_RATE's upper bound): the
# bench measures the send path, not the provider's limit.
RATE = "10000"


def peak_rss_kb() -> int:
    """This process's own peak memory (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


# --- The data ------------------------------------------------------------------------------


def _delete_all(*models) -> None:
    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"DELETE FROM {model._meta.db_table}")


def bench_prepare(*, customers: int, seed: int, log: Callable[[str], None]) -> tuple[int, int]:
    """Every customer eligible, all in one segment, and an e-mail offer for it (no control
    group: every member gets a message). Refuses a database the bench did not create.
    Returns (offer id, segment id)."""
    database_schema_ready()
    # The offers' rows first: the dataset's wipe knows only the crm and segmentation tables.
    through = Offer.segments.through
    _delete_all(Delivery, OfferResponse, through, Offer)
    dataset_ensure(
        DatasetSpec(customers=customers, purchases_per_customer=1.0, seed=seed),
        reuse=True,
        log=log,
    )
    with transaction.atomic():
        Customer.objects.update(marketing_consent=True, unsubscribed_at=None, is_archived=False)
        _delete_all(Membership)
        Segment.objects.all().delete()
        segment = Segment.objects.create(
            name="Everyone (bench)", auto_name="Everyone (bench)", size=customers
        )
        Membership.objects.bulk_create(
            (
                Membership(customer_id=pk, segment=segment)
                for pk in Customer.objects.values_list("pk", flat=True).iterator()
            ),
            batch_size=5000,
        )
        offer = Offer.objects.create(
            title="Tea for two",
            description="Two teas for the price of one.",
            channel=Offer.Channel.EMAIL,
            holdout_share=0,
            email_subject="{first_name}, {offer_title}",
            email_body=(
                "Dear {name},\n\n{offer_terms}\n\nAccept it here: {offer_link}\n\n"
                "See you soon,\n{business_name}\n"
            ),
        )
        offer.segments.add(segment)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for model in (Membership, Customer):
                cursor.execute(f"ANALYZE {model._meta.db_table}")
    return offer.pk, segment.pk


def deliveries_reset(*, offer_id: int) -> None:
    """Forget a previous repeat's send of the offer."""
    Delivery.objects.filter(offer_id=offer_id)._raw_delete(connection.alias)
    OfferResponse.objects.filter(offer_id=offer_id)._raw_delete(connection.alias)


# --- The owner's request -------------------------------------------------------------------


def request_times(*, offer_id: int, segment_id: int, repeats: int) -> dict:
    """The send page (GET, lists the recipients) and its confirmation (POST), through the
    whole request stack; the enqueued task is recorded, not published."""
    owner, _ = get_user_model().objects.get_or_create(
        username="bench-owner", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(owner)
    url = reverse("offers:offer_email_send", args=[offer_id, segment_id])
    enqueued: list[tuple] = []
    get_seconds, post_seconds = [], []
    with mock.patch.object(tasks.offer_email_queue, "delay", lambda *a: enqueued.append(a)):
        for repeat in range(repeats):
            if repeat == 0:  # the page reads the whole segment: once is enough
                started = time.perf_counter()
                page = client.get(url)
                get_seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            confirmed = client.post(url)
            post_seconds.append(time.perf_counter() - started)
            if page.status_code != 200 or confirmed.status_code != 302:
                raise RuntimeError(
                    f"the send page answered {page.status_code}/{confirmed.status_code}"
                )
    return {
        "get_seconds": statistics.median(get_seconds),
        "post_seconds": statistics.median(post_seconds),
        "enqueued": len(enqueued),
        "deliveries_written_by_request": Delivery.objects.filter(offer_id=offer_id).count(),
    }


# --- The product's send, in a child process ------------------------------------------------


def send_here(*, offer_id: int, segment_id: int) -> dict:
    """Run the worker's tasks in this process: queue the segment, then send batch after batch
    as the task re-enqueues itself."""
    pending: list[int] = []
    with mock.patch.object(tasks.offer_email_send, "delay", pending.append):
        started = time.perf_counter()
        tasks.offer_email_queue.apply((offer_id, segment_id), throw=True)
        queued_at = time.perf_counter()
        batches = 0
        while pending:
            tasks.offer_email_send.apply((pending.pop(),), throw=True)
            batches += 1
        finished = time.perf_counter()
    return {
        "queue_seconds": queued_at - started,
        "send_seconds": finished - queued_at,
        "sent": Delivery.objects.filter(offer_id=offer_id, status=Delivery.Status.SENT).count(),
        "batches": batches,
        "peak_rss_kb": peak_rss_kb(),
    }


def _child_peak_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def send_in_child(
    *, offer_id: int, segment_id: int, port: int, budget: float | None, log: Callable[[str], None]
) -> dict:
    """Run send_here in a child process; with ``budget`` (seconds), stop it then and measure
    what it sent so far. The figures come from the deliveries' own times, so a stopped run
    and a finished one read alike: queueing from the first delivery written to the first
    message sent, sending from the first to the last message sent."""
    env = {
        **os.environ,
        "EMAIL_URL": f"smtp://127.0.0.1:{port}",
        "DEFAULT_FROM_EMAIL": SENDER,
        "EMAIL_BOUNCE_ADDRESS": BOUNCES,
        "EMAIL_SEND_RATE": RATE,
    }
    command = [
        sys.executable,
        str(Path(settings.BASE_DIR) / "manage.py"),
        "bench_send",
        "--child",
        f"--offer={offer_id}",
        f"--segment={segment_id}",
    ]
    started = time.monotonic()
    child = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    peak_kb, stopped, last_log = 0, False, started
    while child.poll() is None:
        time.sleep(1)
        peak_kb = max(peak_kb, _child_peak_kb(child.pid))
        if time.monotonic() - last_log > 60:
            last_log = time.monotonic()
            sent = Delivery.objects.filter(offer_id=offer_id, status=Delivery.Status.SENT).count()
            log(f"  {time.monotonic() - started:,.0f} s: {sent:,} sent")
        if budget is not None and time.monotonic() - started > budget:
            child.terminate()
            child.wait(30)
            stopped = True
    output = child.stdout.read() if child.stdout else ""
    result = {}
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    if not result and not stopped:
        raise RuntimeError("the sending child failed (run it with --child to see why)")
    times = Delivery.objects.filter(offer_id=offer_id).aggregate(
        written=Min("created_at"), first=Min("sent_at"), last=Max("sent_at")
    )
    sent = Delivery.objects.filter(offer_id=offer_id, status=Delivery.Status.SENT).count()
    queued = Delivery.objects.filter(offer_id=offer_id).count()
    stopped = stopped and sent < queued - 1  # not when only its exit was cut short
    if not sent:
        raise RuntimeError("nothing was sent within the time given")
    return {
        "stopped": stopped,
        "queued": queued,
        "sent": sent,
        "queue_seconds": (times["first"] - times["written"]).total_seconds(),
        "send_seconds": max((times["last"] - times["first"]).total_seconds(), 1e-6),
        "batches": result.get("batches"),
        "peak_rss_kb": result.get("peak_rss_kb") or peak_kb,
    }


# --- The floor -----------------------------------------------------------------------------


def floor_messages(*, count: int, size: int) -> list[tuple[str, bytes]]:
    """``count`` plain-text messages of about ``size`` bytes, each to its own address and with
    its own Message-ID, rendered before any timing."""
    date = formatdate()
    out = []
    for i in range(count):
        to = f"customer{i}@example.com"
        head = (
            f"From: {SENDER}\r\nTo: {to}\r\nSubject: Ada, Tea for two\r\nDate: {date}\r\n"
            f"Message-ID: <floor.{i}@bench.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        ).encode()
        line = b"Two teas for the price of one, see you soon.\r\n"
        body = line * max(1, (size - len(head)) // len(line))
        out.append((to, head + body))
    return out


def floor_send(*, port: int, messages: list[tuple[str, bytes]]) -> float:
    """Seconds to send pre-rendered messages over one SMTP connection with smtplib."""
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for to, raw in messages:
            smtp.sendmail(SENDER, [to], raw)
    return time.perf_counter() - started


# --- The whole bench -----------------------------------------------------------------------


def bench_send(
    *,
    customers: int,
    repeats: int,
    seed: int,
    budget: float | None,
    log: Callable[[str], None],
) -> dict:
    log(f"Preparing {customers:,} eligible customers in one segment...")
    offer_id, segment_id = bench_prepare(customers=customers, seed=seed, log=log)
    log("Timing the owner's request...")
    request = request_times(offer_id=offer_id, segment_id=segment_id, repeats=3)
    log(
        f"  send page {request['get_seconds']:.2f} s; confirm {request['post_seconds']:.3f} s, "
        f"{request['deliveries_written_by_request']} deliveries written by it"
    )
    runs, floors = [], []
    with SmtpSink() as sink:
        for repeat in range(repeats):
            deliveries_reset(offer_id=offer_id)
            before, before_bytes = sink.received()
            log(f"Run {repeat + 1}/{repeats}: the product's send path (child process)...")
            run = send_in_child(
                offer_id=offer_id, segment_id=segment_id, port=sink.port, budget=budget, log=log
            )
            received, size = sink.received()
            run["received"] = received - before
            run["mean_bytes"] = (size - before_bytes) / max(1, received - before)
            runs.append(run)
            log(
                f"  queued {run['queued']:,} in {run['queue_seconds']:.1f} s; sent "
                f"{run['sent']:,} in {run['send_seconds']:.1f} s"
                f"{' (stopped: time budget)' if run['stopped'] else ''}; "
                f"peak {run['peak_rss_kb'] / 1024:,.0f} MiB"
            )
            log(f"Run {repeat + 1}/{repeats}: the floor (smtplib, one connection)...")
            messages = floor_messages(count=run["sent"], size=int(run["mean_bytes"]))
            before = sink.received()[0]
            floors.append(
                {"seconds": floor_send(port=sink.port, messages=messages), "count": len(messages)}
            )
            del messages
            sink.wait_for(before + floors[-1]["count"])
    # Per message, so that a run stopped by the time budget compares with its floor (sent
    # the same number of messages).
    send_per_message = statistics.median(r["send_seconds"] / r["sent"] for r in runs)
    floor_per_message = statistics.median(f["seconds"] / f["count"] for f in floors)
    return {
        "load": os.getloadavg()[0],
        "customers": customers,
        "database": connection.vendor,
        "repeats": repeats,
        "request": request,
        "runs": runs,
        "floors": floors,
        "queue_seconds": statistics.median(r["queue_seconds"] for r in runs),
        "send_per_second": 1 / send_per_message,
        "floor_per_second": 1 / floor_per_message,
        "ratio": send_per_message / floor_per_message,
        "peak_rss_mib": statistics.median(r["peak_rss_kb"] for r in runs) / 1024,
        "batch": settings.EMAIL_SEND_BATCH,
    }

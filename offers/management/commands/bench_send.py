"""`manage.py bench_send`: an offer e-mailed to a large segment, through the product's send
path, against smtplib's floor (see README, "Benchmarks")."""

import json
import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from offers.benchmark.send import RESULT_PREFIX, bench_send, send_here
from segmentation.benchmark.generate import BenchRefused


class Command(BaseCommand):
    help = (
        "Send an offer e-mail to a segment of synthetic eligible customers through the "
        "product's send path, to a local SMTP server, and compare with the fastest plain "
        "smtplib send of as many messages. Only in a bench database (refuses real data)."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=100_000)
        parser.add_argument("--repeat", type=int, default=1, help="Runs (medians reported).")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--budget",
            type=float,
            help="Stop the product's send after this many seconds and measure what it sent "
            "(for a slow machine; the floor then sends as many messages).",
        )
        # Used by the bench itself to send in a child process.
        parser.add_argument("--child", action="store_true", help="(internal)")
        parser.add_argument("--offer", type=int, help="(internal)")
        parser.add_argument("--segment", type=int, help="(internal)")

    def handle(self, *args, **opts):
        settings.DEBUG = False
        if opts["child"]:
            result = send_here(offer_id=opts["offer"], segment_id=opts["segment"])
            self.stdout.write(RESULT_PREFIX + json.dumps(result))
            return
        if opts["customers"] < 1 or opts["repeat"] < 1:
            raise CommandError("--customers and --repeat must be at least 1.")
        try:
            r = bench_send(
                customers=opts["customers"],
                repeats=opts["repeat"],
                seed=opts["seed"],
                budget=opts["budget"],
                log=lambda line: self.stderr.write(line),
            )
        except BenchRefused as error:
            raise CommandError(f"Refused: {error}") from error
        request, run = r["request"], r["runs"][-1]
        out = self.stdout.write
        out(
            f"Offer e-mail to one segment of {r['customers']:,} eligible customers "
            f"({r['database']}; {r['repeats']} run(s), medians; SMTP server: aiosmtpd in its "
            f"own process; EMAIL_SEND_BATCH {r['batch']}, mean message {run['mean_bytes']:,.0f} B; "
            f"load average {r['load']:.1f} on {os.cpu_count()} cores)"
        )
        out(
            f"  owner's request  send page (lists recipients) {request['get_seconds']:.2f} s; "
            f"confirm (enqueue only) {request['post_seconds'] * 1000:.0f} ms, "
            f"{request['deliveries_written_by_request']} deliveries written by it"
        )
        out(
            f"  product          queue {r['queue_seconds']:.1f} s (the worker writes "
            f"{run['queued']:,} deliveries), then {r['send_per_second']:,.1f} msg/s sending "
            f"({run['sent']:,} messages in {run['send_seconds']:.1f} s"
            f"{', stopped by --budget' if run['stopped'] else ''}; {run['received']:,} "
            f"received); peak memory {r['peak_rss_mib']:,.0f} MiB"
        )
        out(
            f"  floor            smtplib, one connection, {r['floors'][-1]['count']:,} "
            f"pre-rendered messages: {r['floor_per_second']:,.1f} msg/s"
        )
        out(f"  ratio            product / floor = {r['ratio']:.1f}x the time per message")

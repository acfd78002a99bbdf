"""`manage.py bench`: time a recluster and the pages against their floors (see README)."""

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from segmentation.benchmark import report
from segmentation.benchmark.generate import (
    BenchRefused,
    DatasetSpec,
    database_schema_ready,
    dataset_ensure,
)
from segmentation.benchmark.recluster import RESULT_PREFIX, recluster_once
from segmentation.benchmark.suite import BenchOptions, bench_run, pages_only


class Command(BaseCommand):
    help = (
        "Generate synthetic customers in a bench-only database, run the recluster and time "
        "it against its floors and a naive pipeline, and time the pages. Refuses a database "
        "holding customers it did not create."
    )
    # The bench checks what it needs itself; system checks would import every URLconf first.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=100_000)
        parser.add_argument("--purchases-per-customer", type=float, default=10.0)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--reuse",
            action="store_true",
            help="Keep the data already generated for the same size and seed.",
        )
        parser.add_argument("--runs", type=int, default=3, help="Reclusters per case (median).")
        parser.add_argument("--naive-subset", type=int, default=2000)
        parser.add_argument("--requests", type=int, default=20, help="Requests per page.")
        parser.add_argument(
            "--small-customers",
            type=int,
            default=1000,
            help="Customers in the small database the page latencies are compared with.",
        )
        parser.add_argument("--skip-pages", action="store_true")
        parser.add_argument("--skip-naive", action="store_true")
        parser.add_argument(
            "--skip-daily", action="store_true", help="Skip the nightly case (a day of sales)."
        )
        parser.add_argument(
            "--cold-cache",
            action="store_true",
            help="Also time a nightly run after emptying the page cache and restarting a "
            "local PostgreSQL (needs root; stops every other connection to that server).",
        )
        parser.add_argument(
            "--small-database-url",
            help="Database for the 1,000-customer page timings (default: a sibling of this "
            "database named <name>_1k, created if missing).",
        )
        parser.add_argument("--results-dir", default=str(Path(settings.BASE_DIR) / "bench-results"))
        parser.add_argument(
            "--generate-only", action="store_true", help="Only generate (or keep) the data."
        )
        # Used by the bench itself to run pieces in child processes.
        parser.add_argument("--recluster-once", action="store_true", help="(internal)")
        parser.add_argument("--pages-only", action="store_true", help="(internal)")

    def handle(self, *args, **opts):
        settings.DEBUG = False
        if opts["recluster_once"]:
            self.stdout.write(RESULT_PREFIX + json.dumps(recluster_once(), default=str))
            return
        if opts["customers"] < 1 or opts["purchases_per_customer"] <= 0 or opts["runs"] < 1:
            raise CommandError(
                "--customers and --runs must be at least 1, --purchases-per-customer positive"
            )
        options = BenchOptions(
            spec=DatasetSpec(
                customers=opts["customers"],
                purchases_per_customer=opts["purchases_per_customer"],
                seed=opts["seed"],
            ),
            reuse=opts["reuse"],
            runs=opts["runs"],
            naive_subset=max(1, opts["naive_subset"]),
            pages=not opts["skip_pages"],
            naive=not opts["skip_naive"],
            requests=max(1, opts["requests"]),
            small_database_url=opts["small_database_url"],
            small_customers=max(1, opts["small_customers"]),
            daily=not opts["skip_daily"],
            cold_cache=opts["cold_cache"],
        )
        log = self.stderr.write if opts["pages_only"] else self.stdout.write
        try:
            if opts["generate_only"]:
                database_schema_ready()
                marker, reused = dataset_ensure(options.spec, reuse=options.reuse, log=log)
                self.stdout.write(f"{'reused' if reused else 'generated'}: {json.dumps(marker)}")
                return
            if opts["pages_only"]:
                result = pages_only(options, log=log)
                self.stdout.write(RESULT_PREFIX + json.dumps(result, default=str))
                return
            results = bench_run(options, log=log)
        except (BenchRefused, ValueError) as error:
            raise CommandError(str(error)) from error
        for case in ("cold", "warm", "daily", "cold_cache"):
            runs = results["recluster"].get(case, {}).get("runs")
            if not runs:
                continue
            median_run = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
            self.stdout.write(f"\nrecluster, {case} (median run):")
            for line in report.phase_table(median_run):
                self.stdout.write("  " + line)
        self.stdout.write("")
        for line in report.summary_lines(results):
            self.stdout.write(line)
        path = report.results_write(results, Path(opts["results_dir"]))
        self.stdout.write(f"results: {path}")

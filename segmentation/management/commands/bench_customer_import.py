"""`manage.py bench_customer_import`: time the customers import (see README)."""

import json
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from segmentation.benchmark.customer_import import (
    RESULT_PREFIX,
    STEPS,
    bench_customer_import_run,
    step_run,
)
from segmentation.benchmark.generate import BenchRefused


class Command(BaseCommand):
    help = (
        "Generate a customers file (100,000 rows by default) in a bench-only database, then "
        "preview it, import it and import it again with changed names. Refuses a database "
        "holding customers it did not create."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=100_000)
        parser.add_argument("--once", choices=STEPS, help="(internal)")
        parser.add_argument("--file", help="(internal)")

    def handle(self, *args, **opts):
        if opts["once"]:
            self.stdout.write(RESULT_PREFIX + json.dumps(step_run(opts["once"], opts["file"])))
            return
        if opts["rows"] < 10:
            raise CommandError("--rows must be at least 10")
        with tempfile.TemporaryDirectory() as scratch:
            try:
                lines = bench_customer_import_run(
                    rows=opts["rows"], workdir=Path(scratch), log=self.stdout.write
                )
            except BenchRefused as error:
                raise CommandError(str(error)) from error
        self.stdout.write("")
        for line in lines:
            self.stdout.write(line)

"""`manage.py bench_import`: time the purchases import and the customer export (see README)."""

import json
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from segmentation.benchmark.generate import BenchRefused
from segmentation.benchmark.imports import RESULT_PREFIX, STEPS, bench_import_run, step_run


class Command(BaseCommand):
    help = (
        "Generate a purchases file (1,000,000 lines by default) in a bench-only database, "
        "import it and export the customers, each against its floor. Refuses a database "
        "holding customers it did not create."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--lines", type=int, default=1_000_000)
        parser.add_argument("--runs", type=int, default=1, help="Runs per step (median).")
        parser.add_argument("--workdir", help="Where the files go (default: a temporary folder).")
        # Used by the bench itself to time each step in a child process.
        parser.add_argument("--once", choices=sorted(STEPS), help="(internal)")
        parser.add_argument("--file", help="(internal)")

    def handle(self, *args, **opts):
        if opts["once"]:
            result = step_run(opts["once"], opts["file"])
            self.stdout.write(RESULT_PREFIX + json.dumps(result))
            return
        if opts["lines"] < 10 or opts["runs"] < 1:
            raise CommandError("--lines must be at least 10 and --runs at least 1")
        with tempfile.TemporaryDirectory() as scratch:
            workdir = Path(opts["workdir"] or scratch)
            try:
                lines = bench_import_run(
                    lines=opts["lines"], runs=opts["runs"], workdir=workdir, log=self.stdout.write
                )
            except BenchRefused as error:
                raise CommandError(str(error)) from error
        self.stdout.write("")
        for line in lines:
            self.stdout.write(line)
